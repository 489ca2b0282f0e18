// The device build's fleetd (tools/build --device: -Os, LTO, static
// CAF/mbedTLS/SQLite/zstd, protobuf-lite) still works: it prints its version
// and enrolls and syncs every point it collects to a normal fleetd-cloud over
// HTTPS with a client certificate, and loads no library beyond the C/C++
// runtime. Its TLS (mbedTLS, not OpenSSL) refuses a cloud with a wrong name
// or another CA's certificate, and its console a peer without a client
// certificate. Skipped when no device build exists (it is opt-in: the normal
// build never makes it).
#include <doctest/doctest.h>

#include <csignal>

#include "runtime/options.hpp"
#include "skip.hpp"
#include "support.hpp"
#include "test_pki.hpp"
#include "tools/bench/install_size.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

void check_version(const std::string& prog) {
  auto [status, out] = run_to_end(prog, {"--version"}, 10s);
  CHECK(status == 0);
  CHECK(out == std::string("fleetd ") + fleetd_version() + "\n");
}

// The device build installs one file: ldd lists only the C/C++ runtime.
void check_static(const std::string& prog) {
  auto size = bench::measure_install_size(prog);
  REQUIRE_MESSAGE(size, caf::to_string(size.error()));
  for (size_t i = 1; i < size->files.size(); ++i)
    FAIL_CHECK("the device build loads " << size->files[i].name);
  CHECK(size->bytes == size->files.front().bytes);
}

// The device build's fleetd; empty, the case skipped, when there is none.
std::string device_program() {
  std::string prog = FLEETD_DEVICE_PROGRAM;
  if (exists(prog))
    return prog;
  skip("no device build at " + prog + ": make one with tools/build --device");
  return {};
}

// A cloud whose ingest presents `cert` (of tools/make-certs) and asks for
// client certificates of the test CA.
process start_cloud(const std::string& dir, const test_pki& pki,
                    const std::string& cert,
                    std::vector<std::string> extra = {}) {
  std::vector<std::string> args{
    "--node.data-dir=" + dir, "--ingest.port=0", "--console.port=0",
    "--ingest.tls-cert=" + pki.file(cert + ".pem"),
    "--ingest.tls-key=" + pki.file(cert + ".key"),
    "--ingest.tls-client-ca=" + pki.file("ca.pem")};
  args.insert(args.end(), extra.begin(), extra.end());
  return process{program("fleetd-cloud"), args, dir + ".log"};
}

// The ports of the cloud started in `dir`, and a token to enroll a device
// into its org acme (made here; fleetctl's files in `tmp`).
struct enrolling {
  uint16_t port = 0;
  uint16_t console = 0;
  std::string token;
};

enrolling enroll_acme(const std::string& tmp, const std::string& dir) {
  enrolling out;
  out.port = port_from(dir + "/ingest.port");
  out.console = port_from(dir + "/console.port");
  REQUIRE_MESSAGE(out.port != 0, read_file(dir + ".log"));
  REQUIRE(fleetctl(tmp, out.console, {"org", "create", "acme"}).first == 0);
  out.token = fleetctl_secret(tmp, out.console,
                              {"enroll", "create", "--org", "acme"});
  return out;
}

// The device program syncing to host:port with the client certificate.
std::vector<std::string> device_args(const std::string& dir,
                                     const test_pki& pki,
                                     const std::string& host, uint16_t port) {
  return {"--node.data-dir=" + dir, "--device.id=small",
          "--cloud.host=" + host, "--cloud.port=" + std::to_string(port),
          "--cloud.ca-file=" + pki.file("ca.pem"),
          "--cloud.tls-cert=" + pki.file("client.pem"),
          "--cloud.tls-key=" + pki.file("client.key"), "--console.port=0",
          "--collector.interval=50ms", "--sync.interval=50ms"};
}

} // namespace

TEST_CASE("the device build prints its version and syncs every point to a "
          "cloud over HTTPS") {
  auto prog = device_program();
  if (prog.empty())
    return;
  check_version(prog);
  check_static(prog);
  temp_dir tmp;
  auto pki = make_test_pki(tmp.path() + "/pki");
  auto cloud_dir = tmp.path() + "/cloud";
  auto cloud = start_cloud(cloud_dir, pki, "server");
  auto c = enroll_acme(tmp.path(), cloud_dir);
  auto dev_dir = tmp.path() + "/device";
  auto args = device_args(dev_dir, pki, "127.0.0.1", c.port);
  args.insert(args.end(),
              {"--cloud.enroll-token=" + c.token, "--collector.rounds=3"});
  process device{prog, args, tmp.path() + "/device.log"};
  std::vector<std::string> mine;
  bool synced = eventually(
    [&] {
      mine = device_points(dev_dir + "/fleetd.db");
      return mine.size() > 0
             && cloud_points(cloud_dir + "/cloud.db", "acme/small") == mine;
    },
    30s);
  REQUIRE_MESSAGE(synced, read_file(tmp.path() + "/device.log"));
  device.signal(SIGTERM);
  CHECK(device.wait(10s) == 0);
}

TEST_CASE("the device build resumes its TLS session when it reconnects after "
          "the node's idle timeout") {
  auto prog = device_program();
  if (prog.empty())
    return;
  temp_dir tmp;
  auto pki = make_test_pki(tmp.path() + "/pki");
  auto cloud_dir = tmp.path() + "/cloud";
  auto cloud = start_cloud(cloud_dir, pki, "server",
                           {"--ingest.idle-timeout=100ms"});
  auto c = enroll_acme(tmp.path(), cloud_dir);
  auto dev_dir = tmp.path() + "/device";
  auto args = device_args(dev_dir, pki, "127.0.0.1", c.port);
  // Rounds and syncs 400 ms apart: every sync finds its connection closed.
  args.insert(args.end(), {"--cloud.enroll-token=" + c.token,
                           "--collector.interval=400ms",
                           "--sync.interval=400ms", "--collector.rounds=5"});
  process device{prog, args, tmp.path() + "/device.log"};
  int64_t resumed = 0;
  bool synced = eventually(
    [&] {
      auto mine = device_points(dev_dir + "/fleetd.db");
      if (mine.empty()
          || cloud_points(cloud_dir + "/cloud.db", "acme/small") != mine)
        return false;
      auto [rc, out] = fleetctl(tmp.path(), c.console, {"status", "--json"});
      resumed = rc == 0 ? json_int(out, "tls_resumed") : -1;
      return resumed >= 2;
    },
    30s);
  INFO("tls_resumed on the node: " << resumed);
  CHECK_MESSAGE(synced, read_file(tmp.path() + "/device.log"));
  device.signal(SIGTERM);
  CHECK(device.wait(10s) == 0);
}

TEST_CASE("the device build refuses a cloud with a wrong name or another CA's "
          "certificate") {
  auto prog = device_program();
  if (prog.empty())
    return;
  temp_dir tmp;
  auto pki = make_test_pki(tmp.path() + "/pki");
  // wrongname carries only wrong.example; stranger is localhost of other-ca.
  struct attempt {
    const char* cert;
    const char* host;
    const char* why;
  };
  for (auto a : {attempt{"wrongname", "127.0.0.1", "CN"},
                 attempt{"wrongname", "localhost", "CN"},
                 attempt{"stranger", "127.0.0.1", "not correctly signed"}}) {
    CAPTURE(a.cert);
    CAPTURE(a.host);
    auto cloud_dir = tmp.path() + "/cloud-" + a.cert + a.host;
    auto cloud = start_cloud(cloud_dir, pki, a.cert);
    auto port = port_from(cloud_dir + "/ingest.port");
    REQUIRE(port != 0);
    auto dev_dir = tmp.path() + "/device-" + a.cert + a.host;
    auto log = dev_dir + ".log";
    auto args = device_args(dev_dir, pki, a.host, port);
    args.push_back("--cloud.enroll-token=none");
    process device{prog, args, log};
    bool refused = eventually(
      [&] { return read_file(log).find("TLS handshake with") != std::string::npos; },
      20s);
    CHECK_MESSAGE(refused, read_file(log));
    CHECK_MESSAGE(read_file(log).find(a.why) != std::string::npos,
                  read_file(log));
    CHECK(cloud_points(cloud_dir + "/cloud.db", "acme/small").empty());
    device.signal(SIGTERM);
    CHECK(device.wait(10s) == 0);
  }
}

TEST_CASE("the device build's TLS console wants a client certificate of its CA") {
  auto prog = device_program();
  if (prog.empty())
    return;
  temp_dir tmp;
  auto pki = make_test_pki(tmp.path() + "/pki");
  auto dev_dir = tmp.path() + "/device";
  auto args = device_args(dev_dir, pki, "127.0.0.1", 1);
  args.insert(args.end(), {"--console.tls-cert=" + pki.file("server.pem"),
                           "--console.tls-key=" + pki.file("server.key"),
                           "--console.tls-ca=" + pki.file("ca.pem")});
  process device{prog, args, dev_dir + ".log"};
  auto console = port_from(dev_dir + "/console.port");
  REQUIRE_MESSAGE(console != 0, read_file(dev_dir + ".log"));
  auto ctl = [&](const std::string& who) {
    std::vector<std::string> a;
    if (!who.empty())
      a = {"--cert=" + pki.file(who + ".pem"), "--key=" + pki.file(who + ".key"),
           "--ca=" + pki.file("ca.pem")};
    a.push_back("status");
    return fleetctl(tmp.path(), console, a);
  };
  auto [rc, out] = ctl("client");
  CHECK_MESSAGE(rc == 0, out);
  CHECK(out.find("small") != std::string::npos);
  CHECK(ctl("").first != 0);         // no certificate: plain BASP
  CHECK(ctl("stranger").first != 0); // a client certificate of another CA
  // fleetd debug on the device: its own console client, over mbedTLS too,
  // pinning the node's certificate.
  std::vector<std::string> debug{"debug", "capabilities", "--json",
                                 "--node.data-dir=" + dev_dir};
  debug.insert(debug.end(), args.end() - 3, args.end());
  auto [debug_rc, debug_out] = run_to_end(prog, debug, 30s);
  CHECK_MESSAGE(debug_rc == 0, debug_out);
  CHECK_MESSAGE(debug_out.find("\"sqlite\":true") != std::string::npos,
                debug_out);
  device.signal(SIGTERM);
  CHECK(device.wait(10s) == 0);
}
