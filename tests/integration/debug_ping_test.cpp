// fleetd debug ping against a real fleetd-cloud over HTTPS: each fault gives
// its own verdict and a failing exit status, the steps after the failed one
// are skipped, and a healthy link passes every step with exit status 0:
// cloud down (a closed port), wrong CA, wrong key, revoked key (revoked
// through the tenancy's fleetctl command), slow link (the fault proxy's
// added latency), healthy.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <vector>

#include "fault_proxy.hpp"
#include "support.hpp"
#include "test_pki.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

struct ping_cloud {
  temp_dir tmp;
  test_pki pki = make_test_pki(tmp.path() + "/pki");
  std::string dir = tmp.path() + "/cloud";
  process node{program("fleetd-cloud"),
               {"--node.data-dir=" + dir, "--ingest.port=0",
                "--console.port=0",
                "--ingest.tls-cert=" + pki.file("server.pem"),
                "--ingest.tls-key=" + pki.file("server.key")},
               tmp.path() + "/cloud.log"};
  uint16_t ingest = port_from(dir + "/ingest.port");
  uint16_t console = port_from(dir + "/console.port");

  std::string secret(std::vector<std::string> args) {
    return fleetctl_secret(tmp.path(), console, std::move(args));
  }

  /// A key file holding `key`.
  std::string key_file(const std::string& name, const std::string& key) {
    auto path = tmp.path() + "/" + name + ".key";
    write_file(path, key + "\n");
    return path;
  }

  /// `fleetd debug ping` with this device's settings: (exit status, output).
  std::pair<int, std::string> ping(uint16_t port, const std::string& ca,
                                   const std::string& key_file,
                                   std::vector<std::string> more = {}) {
    std::vector<std::string> args{"debug", "ping",
                                  "--node.data-dir=" + tmp.path() + "/device",
                                  "--device.id=dev1",
                                  "--cloud.port=" + std::to_string(port),
                                  "--cloud.ca-file=" + ca,
                                  "--cloud.key-file=" + key_file,
                                  "--cloud.timeout=3s"};
    args.insert(args.end(), more.begin(), more.end());
    return run_to_end(program("fleetd"), args, 60s);
  }
};

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

} // namespace

TEST_CASE("fleetd debug ping gives each fault its verdict and a healthy "
          "link exit status 0") {
  ping_cloud c;
  REQUIRE(c.ingest != 0);
  REQUIRE(c.console != 0);
  REQUIRE(fleetctl(c.tmp.path(), c.console, {"org", "create", "acme"}).first
          == 0);
  auto key = c.secret({"device", "add", "--org", "acme", "dev1"});
  auto good = c.key_file("good", key);
  auto ca = c.pki.file("ca.pem");

  SUBCASE("healthy") {
    auto [rc, out] = c.ping(c.ingest, ca, good);
    INFO(out);
    CHECK(rc == 0);
    CHECK(has(out, "verdict: healthy"));
    for (auto step : {"dns: ok", "tcp: ok", "tls: ok", "auth: ok", "rtt: ok"})
      CHECK_MESSAGE(has(out, step), step);
    // The certificate's details: subject, issuer, validity, names.
    CHECK(has(out, "subject: "));
    CHECK(has(out, "issuer: "));
    CHECK(has(out, "valid until: "));
    CHECK(has(out, "127.0.0.1"));
    CHECK(has(out, "median: "));
    auto json = c.ping(c.ingest, ca, good, {"--json"});
    CHECK(json.first == 0);
    CHECK(has(json.second, "\"healthy\":true"));
    CHECK(has(json.second, "\"step\":\"rtt\",\"verdict\":\"ok\""));
  }
  SUBCASE("cloud down: the port is closed") {
    auto closed = free_port();
    auto [rc, out] = c.ping(closed, ca, good);
    INFO(out);
    CHECK(rc == 1);
    CHECK(has(out, "verdict: cloud down: connection refused at 127.0.0.1:"
                     + std::to_string(closed)));
    CHECK(has(out, "tcp: failed"));
    CHECK(has(out, "tls: skipped"));
    CHECK(has(out, "rtt: skipped"));
  }
  SUBCASE("wrong CA") {
    auto [rc, out] = c.ping(c.ingest, c.pki.file("other-ca.pem"), good);
    INFO(out);
    CHECK(rc == 1);
    CHECK(has(out, "verdict: wrong CA: "));
    CHECK(has(out, "tls: failed"));
    // The certificate it refused is still shown.
    CHECK(has(out, "subject: "));
    CHECK(has(out, "auth: skipped"));
  }
  SUBCASE("wrong key") {
    auto wrong = c.key_file("wrong", "fdk_" + std::string(64, '7'));
    auto [rc, out] = c.ping(c.ingest, ca, wrong);
    INFO(out);
    CHECK(rc == 1);
    CHECK(has(out, "verdict: wrong key: "));
    CHECK(has(out, "unknown_key"));
    CHECK(has(out, "tls: ok"));
    CHECK(has(out, "auth: failed"));
  }
  SUBCASE("revoked key") {
    auto key2 = c.secret({"device", "add", "--org", "acme", "dev2"});
    auto revoked = c.key_file("revoked", key2);
    REQUIRE(c.ping(c.ingest, ca, revoked).first == 0);
    REQUIRE(fleetctl(c.tmp.path(), c.console,
                     {"device", "revoke", "--org", "acme", "dev2"})
              .first
            == 0);
    // The tenancy's cache lets a revocation take effect within 5 s.
    std::string out;
    CHECK(eventually(
      [&] {
        auto r = c.ping(c.ingest, ca, revoked);
        out = r.second;
        return r.first == 1 && has(out, "verdict: revoked: ");
      },
      15s));
    INFO(out);
    CHECK(has(out, "auth: failed"));
  }
  SUBCASE("wrong host name: the certificate names another host") {
    auto dir2 = c.tmp.path() + "/cloud2";
    process other{program("fleetd-cloud"),
                  {"--node.data-dir=" + dir2, "--ingest.port=0",
                   "--console.port=0",
                   "--ingest.tls-cert=" + c.pki.file("wrongname.pem"),
                   "--ingest.tls-key=" + c.pki.file("wrongname.key")},
                  c.tmp.path() + "/cloud2.log"};
    auto port = port_from(dir2 + "/ingest.port");
    REQUIRE(port != 0);
    auto [rc, out] = c.ping(port, ca, good);
    INFO(out);
    CHECK(rc == 1);
    CHECK(has(out, "verdict: wrong host name: the certificate of 127.0.0.1:"));
    CHECK(has(out, "names wrong.example, not 127.0.0.1"));
    CHECK(has(out, "tls: failed"));
    other.signal(SIGTERM);
    CHECK(other.wait(10s) == 0);
  }
  SUBCASE("an unreadable key file is its own failed step") {
    // A directory: it opens, and reading it fails (EISDIR), even as root.
    auto [rc, out] = c.ping(c.ingest, ca, c.tmp.path());
    INFO(out);
    CHECK(rc == 1);
    CHECK(has(out, "key: failed: io_error: cannot read " + c.tmp.path()
                     + ": Is a directory"));
    CHECK(has(out, "verdict: unreadable key: "));
    CHECK(has(out, "auth: skipped"));
  }
  SUBCASE("no answer after TCP got through is a slow link, not cloud down") {
    // Listening, never accepting: the kernel completes the handshake.
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    auto [rc, out] = c.ping(ntohs(addr.sin_port), ca, good,
                            {"--cloud.insecure=true", "--cloud.timeout=1s"});
    ::close(fd);
    INFO(out);
    CHECK(rc == 1);
    CHECK(has(out, "tcp: ok"));
    CHECK(has(out, "auth: failed"));
    CHECK(has(out, "verdict: slow link / no answer: "));
  }
  SUBCASE("slow link through the fault proxy") {
    fault_proxy proxy{c.ingest};
    proxy.delay(150ms);
    auto [rc, out] = c.ping(proxy.port(), ca, good,
                            {"--debug.slow-rtt=200ms", "--debug.ping-count=3"});
    INFO(out);
    CHECK(rc == 1);
    CHECK(has(out, "verdict: slow link: RTT median "));
    CHECK(has(out, "above 200.0 ms"));
    // Every step before the round trips passed.
    CHECK(has(out, "auth: ok"));
  }
  c.node.signal(SIGTERM);
  CHECK(c.node.wait(10s) == 0);
}
