#pragma once

#include <cstdint>
#include <string>

#include <caf/expected.hpp>

namespace fleetd {

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
