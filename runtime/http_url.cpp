#include "runtime/http_url.hpp"

#include <algorithm>
#include <charconv>

#include "messages/error.hpp"

namespace fleetd {

caf::expected<http_url> parse_http_url(const std::string& url,
                                       const std::string& option) {
  auto bad = [&](const std::string& what) {
    return make_error(ec::bad_config, option + ": " + what + url);
  };
  http_url t;
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    t.tls = true;
    rest = url.substr(8);
  } else {
    return bad("not http:// or https://: ");
  }
  auto slash = std::min(rest.find('/'), rest.size());
  auto authority = rest.substr(0, slash);
  t.path = rest.substr(slash);
  while (!t.path.empty() && t.path.back() == '/')
    t.path.pop_back();
  auto colon = authority.rfind(':');
  t.host = authority.substr(0, colon);
  t.port = t.tls ? 443 : 80;
  if (colon != std::string::npos) {
    auto p = authority.substr(colon + 1);
    auto r = std::from_chars(p.data(), p.data() + p.size(), t.port);
    if (r.ec != std::errc{} || r.ptr != p.data() + p.size() || t.port == 0)
      return bad("bad port in ");
  }
  if (t.host.empty() || t.path.find_first_of("?#") != std::string::npos)
    return bad("want scheme://host[:port][/path]: ");
  return t;
}

} // namespace fleetd
