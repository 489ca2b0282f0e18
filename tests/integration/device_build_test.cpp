// The device build's fleetd (tools/build --device: -Os, LTO, static
// CAF/OpenSSL/SQLite/zstd, protobuf-lite) still works: it prints its version
// and enrolls and syncs every point it collects to a normal fleetd-cloud over
// HTTPS with a client certificate, and loads no library beyond the C/C++
// runtime. Skipped when no device build exists (it is opt-in: the normal
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

} // namespace

TEST_CASE("the device build prints its version and syncs every point to a "
          "cloud over HTTPS") {
  std::string prog = FLEETD_DEVICE_PROGRAM;
  if (!exists(prog))
    return skip("no device build at " + prog
                + ": make one with tools/build --device");
  check_version(prog);
  check_static(prog);
  temp_dir tmp;
  auto pki = make_test_pki(tmp.path() + "/pki");
  auto cloud_dir = tmp.path() + "/cloud";
  process cloud{program("fleetd-cloud"),
                {"--node.data-dir=" + cloud_dir, "--ingest.port=0",
                 "--console.port=0",
                 "--ingest.tls-cert=" + pki.file("server.pem"),
                 "--ingest.tls-key=" + pki.file("server.key"),
                 "--ingest.tls-client-ca=" + pki.file("ca.pem")},
                tmp.path() + "/cloud.log"};
  auto port = port_from(cloud_dir + "/ingest.port");
  auto console = port_from(cloud_dir + "/console.port");
  REQUIRE_MESSAGE(port != 0, read_file(tmp.path() + "/cloud.log"));
  REQUIRE(fleetctl(tmp.path(), console, {"org", "create", "acme"}).first == 0);
  auto token = fleetctl_secret(tmp.path(), console,
                               {"enroll", "create", "--org", "acme"});
  auto dev_dir = tmp.path() + "/device";
  process device{prog,
                 {"--node.data-dir=" + dev_dir, "--device.id=small",
                  "--cloud.port=" + std::to_string(port),
                  "--cloud.ca-file=" + pki.file("ca.pem"),
                  "--cloud.tls-cert=" + pki.file("client.pem"),
                  "--cloud.tls-key=" + pki.file("client.key"),
                  "--cloud.enroll-token=" + token, "--console.port=0",
                  "--collector.interval=50ms", "--collector.rounds=3",
                  "--sync.interval=50ms"},
                 tmp.path() + "/device.log"};
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
