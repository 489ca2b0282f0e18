// Device identity on real processes over HTTPS: an enrolled device syncs
// exactly once; every wrong key, another device's id, a missing client
// certificate is refused with its own code and counter and stores nothing;
// a revocation takes effect within 5 s; a second org's key writes only its
// own device.
#include <doctest/doctest.h>

#include <csignal>
#include <string>
#include <vector>

#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/http_client.hpp"
#include "support.hpp"
#include "test_pki.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

struct https_cloud {
  temp_dir tmp;
  test_pki pki = make_test_pki(tmp.path() + "/pki");
  std::string dir = tmp.path() + "/cloud";
  process node{program("fleetd-cloud"),
               {"--node.data-dir=" + dir, "--ingest.port=0",
                "--console.port=0", "--ingest.tls-cert=" + pki.file("server.pem"),
                "--ingest.tls-key=" + pki.file("server.key"),
                "--ingest.tls-client-ca=" + pki.file("ca.pem")},
               tmp.path() + "/cloud.log"};
  uint16_t ingest = port_from(dir + "/ingest.port");
  uint16_t console = port_from(dir + "/console.port");

  /// fleetctl against this node: (exit status, stdout).
  std::pair<int, std::string> ctl(std::vector<std::string> args) {
    return fleetctl(tmp.path(), console, std::move(args));
  }

  /// The secret a key- or token-making command printed.
  std::string secret(std::vector<std::string> args) {
    return fleetctl_secret(tmp.path(), console, std::move(args));
  }

  /// A raw device request; `key` empty: none. With the client certificate
  /// unless `anonymous_tls`.
  http_response post(const std::string& key, const std::string& device,
                     int64_t seq, bool anonymous_tls = false) {
    http_client client{"127.0.0.1", ingest, 10s, 1 << 20};
    REQUIRE(!client.use_tls(pki.client(!anonymous_tls)));
    std::vector<std::pair<std::string, std::string>> headers{
      {"Content-Type", "application/x-protobuf"}, {"Content-Encoding", "zstd"}};
    if (!key.empty())
      headers.emplace_back("Authorization", "Bearer " + key);
    auto res = client.post("/v1/sync", one_point_sync(device, seq), headers);
    REQUIRE_MESSAGE(res, render(res.error()));
    return *res;
  }

  int64_t ingest_counter(const std::string& name) {
    auto st = console_status(console);
    return st ? counter(*st, "ingest", name) : -1;
  }
};

} // namespace

TEST_CASE("over HTTPS an enrolled device syncs exactly once; wrong keys, "
          "another device's id and a missing client certificate are refused "
          "with their own codes and store nothing") {
  https_cloud c;
  REQUIRE(c.ingest != 0);
  REQUIRE(c.console != 0);
  REQUIRE(c.ctl({"org", "create", "acme"}).first == 0);
  auto token = c.secret({"enroll", "create", "--org", "acme", "--uses", "1",
                         "--expires", "10m"});
  CHECK(token.rfind("fdt_", 0) == 0);
  auto dev_dir = c.tmp.path() + "/device";
  process device{program("fleetd"),
                 {"--node.data-dir=" + dev_dir, "--device.id=dev1",
                  "--cloud.port=" + std::to_string(c.ingest),
                  "--cloud.ca-file=" + c.pki.file("ca.pem"),
                  "--cloud.tls-cert=" + c.pki.file("client.pem"),
                  "--cloud.tls-key=" + c.pki.file("client.key"),
                  "--cloud.enroll-token=" + token, "--console.port=0",
                  "--collector.interval=50ms", "--collector.rounds=5",
                  "--sync.interval=50ms", "--sync.batch-size=50",
                  "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms"},
                 c.tmp.path() + "/device.log"};
  auto dev_db = dev_dir + "/fleetd.db";
  auto cloud_db = c.dir + "/cloud.db";
  // Every point the device collected reaches the cloud once, as acme/dev1.
  std::vector<std::string> mine;
  bool synced = eventually(
    [&] {
      mine = device_points(dev_db);
      return !mine.empty() && cloud_points(cloud_db, "acme/dev1") == mine;
    },
    60s);
  REQUIRE_MESSAGE(synced, read_file(c.tmp.path() + "/device.log"));
  CHECK(file_size(dev_dir + "/device.key") == 69);
  CHECK(read_file(c.tmp.path() + "/device.log").find(token) == std::string::npos);
  CHECK(read_file(c.tmp.path() + "/cloud.log").find(token) == std::string::npos);
  device.signal(SIGTERM);
  CHECK(device.wait(10s) == 0);
  // The token was for one device: a second enrollment is refused (401).
  http_client enroller{"127.0.0.1", c.ingest, 10s, 1 << 20};
  REQUIRE(!enroller.use_tls(c.pki.client(true)));
  auto again = enroller.post("/v1/enroll", "dev9",
                             {{"Authorization", "Bearer " + token}});
  REQUIRE(again);
  CHECK(again->status == 401);
  CHECK(again->error.rfind("bad_enroll_token", 0) == 0);

  auto held = cloud_points(cloud_db, "acme/dev1").size();
  auto key2 = c.secret({"device", "add", "--org", "acme", "dev2"});
  struct {
    std::string key;
    std::string device;
    bool anonymous_tls;
    unsigned status;
    const char* code;
  } refusals[] = {
    {"", "dev2", false, 401, "missing_key"},
    {"fdk_" + std::string(64, '7'), "dev2", false, 401, "unknown_key"},
    {key2, "dev1", false, 403, "device_mismatch"},
    {key2, "dev2", true, 403, "client_certificate_required"},
  };
  for (auto& r : refusals) {
    CAPTURE(r.code);
    auto res = c.post(r.key, r.device, 1, r.anonymous_tls);
    CHECK(res.status == r.status);
    CHECK(res.error.rfind(r.code, 0) == 0);
  }
  // A second org with a device of the same name: its key writes only its own
  // device (its sequence 1 is new, no duplicate of acme's) and names no other.
  REQUIRE(c.ctl({"org", "create", "globex"}).first == 0);
  auto gkey = c.secret({"device", "add", "--org", "globex", "dev1"});
  CHECK(c.post(gkey, "dev1", 1).status == 200);
  CHECK(c.post(gkey, "dev2", 2).error.rfind("device_mismatch", 0) == 0);
  CHECK(cloud_points(cloud_db, "globex/dev1").size() == 1);
  CHECK(cloud_points(cloud_db, "acme/dev1").size() == held);
  // Rotated out (no overlap) and revoked keys.
  auto key3 = c.secret({"device", "rotate-key", "--org", "acme", "--overlap",
                        "0s", "dev2"});
  CHECK(c.post(key2, "dev2", 1).error.rfind("expired_key", 0) == 0);
  CHECK(c.post(key3, "dev2", 1).status == 200);
  REQUIRE(c.ctl({"device", "revoke", "--org", "acme", "dev2"}).first == 0);
  auto revoked_at = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return c.post(key3, "dev2", 2).status == 401; },
                     5s));
  auto took = std::chrono::steady_clock::now() - revoked_at;
  CHECK(took < 5s);
  CHECK(c.post(key3, "dev2", 3).error.rfind("revoked_key", 0) == 0);
  for (auto code : {"missing_key", "unknown_key", "device_mismatch",
                    "expired_key", "revoked_key"})
    CHECK_MESSAGE(c.ingest_counter(std::string("rejected_") + code) >= 1,
                  code);
  // Only the one good raw request of dev2 was stored; dev1 kept its own.
  CHECK(cloud_points(cloud_db, "acme/dev2").size() == 1);
  CHECK(cloud_points(cloud_db, "acme/dev1").size() == held);
  CHECK(cloud_points(cloud_db, "dev1").empty());
  c.node.signal(SIGTERM);
  CHECK(c.node.wait(10s) == 0);
}

TEST_CASE("a device over its org's quota gets 429s, loses nothing, and "
          "catches up when the quota is raised") {
  https_cloud c;
  REQUIRE(c.console != 0);
  REQUIRE(c.ctl({"org", "create", "acme"}).first == 0);
  auto key = c.secret({"device", "add", "--org", "acme", "dev1"});
  // One byte a day: every request after the first is over.
  REQUIRE(c.ctl({"quota", "set", "--org", "acme", "--bytes-per-day", "1"})
            .first
          == 0);
  auto dev_dir = c.tmp.path() + "/device";
  write_file(c.tmp.path() + "/device.key", key + "\n");
  process device{program("fleetd"),
                 {"--node.data-dir=" + dev_dir, "--device.id=dev1",
                  "--cloud.port=" + std::to_string(c.ingest),
                  "--cloud.ca-file=" + c.pki.file("ca.pem"),
                  "--cloud.tls-cert=" + c.pki.file("client.pem"),
                  "--cloud.tls-key=" + c.pki.file("client.key"),
                  "--cloud.key-file=" + c.tmp.path() + "/device.key",
                  "--console.port=0", "--collector.interval=50ms",
                  "--collector.rounds=10", "--sync.interval=50ms",
                  "--sync.batch-size=20", "--sync.backoff-base=20ms",
                  "--sync.backoff-cap=300ms"},
                 c.tmp.path() + "/device.log"};
  REQUIRE(eventually([&] { return c.ingest_counter("rejected_over_quota") >= 3; },
                     60s));
  auto dev_db = dev_dir + "/fleetd.db";
  auto cloud_db = c.dir + "/cloud.db";
  auto held = cloud_points(cloud_db, "acme/dev1");
  CHECK(held.size() < device_points(dev_db).size());
  REQUIRE(c.ctl({"quota", "set", "--org", "acme", "--bytes-per-day", "0"})
            .first
          == 0);
  std::vector<std::string> mine;
  // The wait the cloud asks for is at most 10 s; the quota is reread in 2 s.
  bool caught_up = eventually(
    [&] {
      mine = device_points(dev_db);
      return cloud_points(cloud_db, "acme/dev1") == mine;
    },
    40s);
  REQUIRE_MESSAGE(caught_up, read_file(c.tmp.path() + "/device.log"));
  CHECK(mine.size() >= 10);
  device.signal(SIGTERM);
  CHECK(device.wait(10s) == 0);
}
