#pragma once

// A throwaway CA and certificates (tools/make-certs) for HTTPS tests.

#include <cstdlib>
#include <string>

#include <doctest/doctest.h>

#include "runtime/tls.hpp"

namespace fleetd::test {

struct test_pki {
  std::string dir;

  std::string file(const std::string& name) const {
    return dir + "/" + name;
  }
  /// The server's certificate and key; `client_ca` asks for client certs.
  tls_files server(bool client_ca = false) const {
    return {file("server.pem"), file("server.key"),
            client_ca ? file("ca.pem") : ""};
  }
  /// A client trusting the CA; with a client certificate when `with_cert`.
  tls_files client(bool with_cert = false) const {
    if (!with_cert)
      return {"", "", file("ca.pem")};
    return {file("client.pem"), file("client.key"), file("ca.pem")};
  }
};

/// Makes the PKI in `dir` with tools/make-certs. The openssl CLI it needs
/// is in tools/install-deps: without it the test fails, it does not pass.
inline test_pki make_test_pki(const std::string& dir) {
  auto cmd = std::string(FLEETD_SOURCE_DIR) + "/tools/make-certs '" + dir
             + "' >/dev/null 2>&1";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0,
                  "tools/make-certs failed: is openssl installed "
                  "(tools/install-deps)?");
  return test_pki{dir};
}

} // namespace fleetd::test
