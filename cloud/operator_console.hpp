#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "messages/types.hpp"
#include "runtime/http_server.hpp"

namespace fleetd {

class option_set;
class web_console;
struct common_options;

/// The console.http-listen option: the operator's HTTPS door to the web
/// console, which admits the client certificates the console port admits.
struct operator_console_config {
  /// host:port (0: any free port); empty: off.
  std::string listen;
};

/// Declares console.http-listen.
void declare(option_set& opts, operator_console_config& x);

/// bad_config naming the option: an address that is no IP, or the listener
/// without the console's certificate, key and CA (`common`'s console.tls-*).
caf::error validate(const operator_console_config& x,
                    const common_options& common);

/// GET /console, /console/api/* and /metrics over HTTPS with the console's
/// certificate and key, for clients whose certificate console.tls-ca signed
/// (an operator's, as fleetctl presents on the console port): the web
/// console's every-org view. A device's or a foreign certificate fails the
/// handshake; none is answered 403; both counted by the server.
class operator_console {
public:
  /// Listens on `cfg.listen` and writes the bound port to
  /// `<data-dir>/console-http.port`; nullptr when the option is off.
  static caf::expected<std::shared_ptr<operator_console>>
  start(const operator_console_config& cfg, const common_options& common,
        std::shared_ptr<web_console> web);

  /// SIGHUP: reads the console's TLS files again; connections in flight
  /// keep theirs.
  caf::error reload_tls();

  void stop();

  /// The listener's connection counters, for the inspector's status row
  /// "console_http" (refusals: tls_handshake_failures, client_cert_missing).
  actor_stats stats() const;

  uint16_t port() const {
    return port_;
  }

private:
  std::shared_ptr<http_server> server_;
  uint16_t port_ = 0;
};

} // namespace fleetd
