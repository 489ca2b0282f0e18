#include "runtime/http_url.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "messages/error.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

// A host as the resolver, SNI and the Host header take it.
bool valid_host(std::string_view host) {
  if (host.empty() || host.size() > 253)
    return false;
  for (unsigned char c : host)
    if (!std::isalnum(c) && c != '.' && c != '-' && c != '_' && c != ':'
        && c != '%')
      return false;
  return true;
}

} // namespace

caf::expected<host_port> parse_host_port(std::string_view item,
                                         const std::string& option,
                                         bool any_port) {
  auto bad = [&](const char* why) {
    return make_error(ec::bad_config,
                      option + ": '" + printable(item, 64) + "': " + why);
  };
  std::string_view host;
  std::string_view port;
  if (!item.empty() && item.front() == '[') {
    auto close = item.find(']');
    if (close == std::string_view::npos || close + 1 >= item.size()
        || item[close + 1] != ':')
      return bad("expected [v6-address]:port");
    host = item.substr(1, close - 1);
    port = item.substr(close + 2);
  } else {
    auto colon = item.rfind(':');
    if (colon == std::string_view::npos)
      return bad("expected host:port");
    host = item.substr(0, colon);
    port = item.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return bad("an IPv6 address goes in brackets: [v6-address]:port");
  }
  if (!valid_host(host))
    return bad("bad host (letters, digits, '.', '-', '_'; IPv6 in brackets)");
  uint32_t n = 0;
  if (port.empty() || port.size() > 5)
    return bad("port must be 1..65535");
  for (unsigned char c : port) {
    if (!std::isdigit(c))
      return bad("port must be 1..65535");
    n = n * 10 + (c - '0');
  }
  if ((n < 1 && !any_port) || n > 65535)
    return bad("port must be 1..65535");
  return host_port{std::string(host), static_cast<uint16_t>(n)};
}


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
