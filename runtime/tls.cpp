#include "runtime/tls_context.hpp"

namespace fleetd {

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

caf::error check_tls_server(const tls_files& files) {
  auto ctx = make_server_context(files);
  return ctx ? caf::none : ctx.error();
}

caf::error check_tls_client(const tls_files& files) {
  auto ctx = make_client_context(files);
  return ctx ? caf::none : ctx.error();
}

} // namespace fleetd
