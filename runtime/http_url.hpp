#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace fleetd {

/// A host (a name, IPv4, or IPv6 without its brackets) and a port.
struct host_port {
  std::string host;
  uint16_t port = 0;
};

/// Splits "host:port" or "[v6-address]:port" (port 1..65535, or 0 too with
/// `any_port`: bind any free one); ec::bad_config naming `option` and why.
caf::expected<host_port> parse_host_port(std::string_view item,
                                         const std::string& option,
                                         bool any_port = false);

/// An http(s) URL split for http_client.
struct http_url {
  bool tls = false;
  std::string host;
  uint16_t port = 0;
  /// The path, without trailing slashes ("" for none).
  std::string path;
};

/// Splits `url` (scheme://host[:port][/path], no query or fragment; the
/// port defaults to 80 or 443); ec::bad_config naming `option` else.
caf::expected<http_url> parse_http_url(const std::string& url,
                                       const std::string& option);

} // namespace fleetd
