#include "cloud/operator_console.hpp"

#include <arpa/inet.h>

#include "cloud/web_console.hpp"
#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/http_url.hpp"
#include "runtime/logger.hpp"
#include "runtime/node.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

// A console request is a GET without a body: anything larger is hostile.
constexpr size_t max_body_bytes = 16 * 1024;

bool is_ip_address(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1
         || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// The console's connection budget and handshake deadline apply to this
// door of it as well.
http_limits limits_of(const common_options& common) {
  http_limits out;
  auto conns = static_cast<size_t>(common.console_max_connections);
  out.max_connections = conns;
  out.max_connections_per_address = conns;
  out.max_body_bytes = max_body_bytes;
  out.max_inflight_bytes = conns * max_body_bytes;
  out.header_timeout = common.console_handshake_timeout;
  out.max_streams = 0;
  return out;
}

} // namespace

void declare(option_set& opts, operator_console_config& x) {
  opts.add("console.http-listen", x.listen, "",
           "The web console over HTTPS for operators: host:port to listen "
           "on (port 0: any free one, written to <data-dir>/console-http.port), "
           "with console.tls-cert and tls-key, admitting only client "
           "certificates console.tls-ca signed (every org); empty: off");
}

caf::error validate(const operator_console_config& x,
                    const common_options& common) {
  if (x.listen.empty())
    return caf::none;
  auto hp = parse_host_port(x.listen, "console.http-listen", true);
  if (!hp)
    return hp.error();
  if (!is_ip_address(hp->host))
    return bad_config("console.http-listen: '" + hp->host
                      + "' is not an IP address");
  if (common.console_tls_cert.empty() || common.console_tls_key.empty()
      || common.console_tls_ca.empty())
    return bad_config("console.http-listen: needs console.tls-cert, "
                      "console.tls-key and console.tls-ca (the operators' "
                      "CA): only their certificates open it");
  return caf::none;
}

caf::expected<std::shared_ptr<operator_console>>
operator_console::start(const operator_console_config& cfg,
                        const common_options& common,
                        std::shared_ptr<web_console> web) {
  if (cfg.listen.empty())
    return std::shared_ptr<operator_console>{};
  // Checked by validate().
  auto hp = parse_host_port(cfg.listen, "console.http-listen", true);
  if (!hp)
    return hp.error();
  auto out = std::make_shared<operator_console>();
  out->server_ = std::make_shared<http_server>(
    limits_of(common),
    [web](http_request req, http_server::respond_fn respond) {
      web->route_operator(req, respond);
    });
  tls_files files{common.console_tls_cert, common.console_tls_key,
                  common.console_tls_ca};
  if (auto err = out->server_->use_tls(files))
    return bad_config("console.http-listen: " + render(err));
  auto port = out->server_->start(hp->host, hp->port);
  if (!port)
    return bad_config("console.http-listen: " + render(port.error()));
  out->port_ = *port;
  log_info("fleetd-cloud", "web console for operators on https://",
           hp->host, ":", *port, "/console (client certificates of ",
           common.console_tls_ca, ")");
  if (auto err = write_file_atomically(common.data_dir + "/console-http.port",
                                       std::to_string(*port) + "\n")) {
    out->stop();
    return err;
  }
  return out;
}

caf::error operator_console::reload_tls() {
  return server_->reload_tls();
}

void operator_console::stop() {
  server_->stop();
}

actor_stats operator_console::stats() const {
  actor_stats s;
  s.name = "console_http";
  s.state = "https+operator-cert";
  for (auto& [name, value] : named_counters(server_->counters()))
    s.counters[name] = value;
  return s;
}

} // namespace fleetd
