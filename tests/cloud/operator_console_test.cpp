// console.http-listen on its own: what validate() refuses, and a listener
// with real certificates that serves the console to a client certificate of
// the console's CA and refuses one without (the whole cloud with an
// operators' and a devices' CA: tests/integration/operator_console_test.cpp).
#include <fstream>
#include <iterator>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <doctest/doctest.h>

#include "cloud/operator_console.hpp"
#include "cloud/web_console.hpp"
#include "messages/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/http_client.hpp"
#include "runtime/node.hpp"
#include "scratch_dir.hpp"
#include "test_pki.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

common_options console_with(const test::test_pki& pki,
                            const std::string& data_dir) {
  common_options out;
  out.data_dir = data_dir;
  out.console_tls_cert = pki.file("server.pem");
  out.console_tls_key = pki.file("server.key");
  out.console_tls_ca = pki.file("ca.pem");
  out.console_max_connections = 4;
  out.console_handshake_timeout = 5s;
  return out;
}

} // namespace

TEST_CASE("console.http-listen: off by default, an IP address and the "
          "console's certificate, key and CA required") {
  common_options tls;
  tls.console_tls_cert = "c.pem";
  tls.console_tls_key = "c.key";
  tls.console_tls_ca = "ca.pem";
  CHECK(!validate(operator_console_config{}, common_options{}));
  CHECK(!validate(operator_console_config{"127.0.0.1:0"}, tls));
  CHECK(!validate(operator_console_config{"[::1]:7443"}, tls));
  for (auto bad : {"localhost:7443", "127.0.0.1", "127.0.0.1:70000", ":7443"})
    CHECK_MESSAGE(validate(operator_console_config{bad}, tls), bad);
  auto no_ca = tls;
  no_ca.console_tls_ca.clear();
  auto err = validate(operator_console_config{"127.0.0.1:0"}, no_ca);
  REQUIRE(err);
  CHECK(render(err).find("console.http-listen") != std::string::npos);
}

TEST_CASE("the listener serves the console to the CA's client certificates "
          "and answers one without 403, both counted") {
  test::scratch_dir tmp{"fleetd-opconsole"};
  auto pki = test::make_test_pki(tmp.path() + "/pki");
  auto common = console_with(pki, tmp.path());
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto web = std::make_shared<web_console>(
    sys, web_console_config{{}, {}, make_system_clock(), {}});
  auto off = operator_console::start({}, common, web);
  REQUIRE(off);
  CHECK(*off == nullptr);
  auto op = operator_console::start({"127.0.0.1:0"}, common, web);
  REQUIRE(op);
  REQUIRE(*op);
  auto port = (*op)->port();
  std::ifstream in(tmp.path() + "/console-http.port");
  CHECK(std::string(std::istreambuf_iterator<char>(in), {})
        == std::to_string(port) + "\n");
  auto get = [port](const tls_files& files) {
    http_client c{"127.0.0.1", port, 10s, 1 << 20};
    REQUIRE(!c.use_tls(files));
    auto r = c.get("/console", {});
    REQUIRE(r);
    return r->status;
  };
  CHECK(get(pki.client(true)) == 200);
  CHECK(get(pki.client(false)) == 403);
  auto st = (*op)->stats();
  CHECK(st.name == "console_http");
  CHECK(st.counters["client_cert_missing"] == 1);
  CHECK(web->stats().counters["operator_requests"] == 1);
  CHECK(!(*op)->reload_tls());
  (*op)->stop();
}
