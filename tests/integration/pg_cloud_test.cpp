// fleetd-cloud on PostgreSQL (store.backend = postgresql, behind PgBouncer):
// the node migrates the schema at start, a real device enrolls (tenancy in
// PostgreSQL: no tenancy.db) and syncs, and every point it collected is in
// PostgreSQL once, under its org.
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "messages/error.hpp"
#include "pg_fixture.hpp"
#include "runtime/http_client.hpp"
#include "runtime/pg.hpp"
#include "skip.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

// The points PostgreSQL holds for org/device, as device_points writes them.
std::vector<std::string> pg_points(pg::connection& c, const std::string& org,
                                   const std::string& device) {
  std::vector<std::string> out;
  if (c.begin(org))
    return out;
  auto r = c.exec("SELECT s.name || '{' || upper(encode(s.labels, 'hex')) "
                  "|| '} ' || p.ts || ' ' || lpad(to_hex(p.bits), 16, '0') "
                  "FROM points p JOIN series s "
                  "ON s.id = p.series_id WHERE p.device = $1",
                  {device});
  c.rollback();
  if (!r)
    return out;
  for (int i = 0; i < r->rows(); ++i)
    out.emplace_back(r->text(i, 0));
  std::sort(out.begin(), out.end());
  return out;
}

// A database for cloud nodes, a scratch directory, and in it the secret
// file the nodes share.
struct pg_cloud {
  std::string why;
  std::optional<pg_database> db;
  temp_dir tmp;
  std::string secret = tmp.path() + "/tenancy.secret";

  explicit pg_cloud(const std::string& prefix)
    : db(fresh_pg_database(prefix, why, true)) {
    write_file(secret, std::string(64, 'c') + "\n");
  }
};

// A cloud node on `db` (through PgBouncer) in `dir`, hashing keys with the
// secret in `secret_file`.
std::unique_ptr<process> pg_node(const std::string& dir,
                                 const pg_database& db,
                                 const std::string& secret_file) {
  return std::make_unique<process>(
    program("fleetd-cloud"),
    std::vector<std::string>{"--node.data-dir=" + dir, "--ingest.port=0",
                             "--console.port=0", "--ingest.anonymous=false",
                             "--tenancy.secret-file=" + secret_file,
                             "--store.backend=postgresql",
                             "--store.postgresql-url=" + db.pooled_url,
                             "--store.postgresql-owner-url=" + db.owner_url,
                             // Retention drops nothing of today; runs once.
                             "--store.retention-days=30",
                             "--store.postgresql-statement-timeout=10000"},
    dir + ".log");
}

// One raw sync of device `device` with `key` to the node at `port`.
http_response sync_once(uint16_t port, const std::string& key,
                        const std::string& device, int64_t seq) {
  http_client client{"127.0.0.1", port, 10s, 1 << 20};
  auto res = client.post("/v1/sync", one_point_sync(device, seq),
                         {{"Content-Type", "application/x-protobuf"},
                          {"Content-Encoding", "zstd"},
                          {"Authorization", "Bearer " + key}});
  REQUIRE_MESSAGE(res, render(res.error()));
  return *res;
}

} // namespace

TEST_CASE("a device syncs through fleetd-cloud into PostgreSQL exactly once") {
  pg_cloud c{"cloud_node"};
  if (!c.db)
    return skip(c.why);
  auto& db = c.db;
  auto& tmp = c.tmp;
  auto dir = tmp.path() + "/cloud";
  auto node = pg_node(dir, *db, c.secret);
  auto ingest = port_from(dir + "/ingest.port");
  auto console = port_from(dir + "/console.port");
  REQUIRE_MESSAGE(ingest != 0, read_file(tmp.path() + "/cloud.log"));
  REQUIRE(console != 0);
  REQUIRE(fleetctl(tmp.path(), console, {"org", "create", "acme"}).first == 0);
  auto token = fleetctl_secret(tmp.path(), console,
                               {"enroll", "create", "--org", "acme", "--uses",
                                "1", "--expires", "10m"});
  auto dev_dir = tmp.path() + "/device";
  process device{program("fleetd"),
                 {"--node.data-dir=" + dev_dir, "--device.id=dev1",
                  "--cloud.port=" + std::to_string(ingest),
                  "--cloud.enroll-token=" + token, "--console.port=0",
                  "--collector.interval=50ms", "--collector.rounds=5",
                  "--sync.interval=50ms", "--sync.batch-size=50",
                  "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms"},
                 tmp.path() + "/device.log"};
  auto app = pg_connect(db->app_url);
  std::vector<std::string> mine;
  bool synced = eventually(
    [&] {
      mine = device_points(dev_dir + "/fleetd.db");
      std::sort(mine.begin(), mine.end());
      return !mine.empty() && pg_points(app, "acme", "dev1") == mine;
    },
    60s);
  REQUIRE_MESSAGE(synced, read_file(tmp.path() + "/device.log") << "\n"
                            << read_file(tmp.path() + "/cloud.log"));
  // Each batch once, the ack at the last: nothing doubled or lost.
  REQUIRE_FALSE(app.begin("acme"));
  auto r = pg_must(app, "SELECT count(*), max(sequence) FROM batches WHERE "
                        "device = 'dev1' AND stream = 'metrics'");
  CHECK(r.int64(0, 0) == r.int64(0, 1));
  app.rollback();
  // store.retention-days: the retention actor ran its pass at start.
  CHECK(eventually(
    [&] {
      auto st = console_status(console);
      return st && counter(*st, "retention", "passes") >= 1
             && counter(*st, "retention", "failures") == 0;
    },
    20s));
  // The console lists the device from PostgreSQL.
  auto [rc, out] = fleetctl(tmp.path(), console, {"devices"});
  CHECK(rc == 0);
  CHECK(out.find("acme/dev1") != std::string::npos);
  // The device's key row is in PostgreSQL, and the node kept no tenancy file.
  REQUIRE_FALSE(app.begin("acme"));
  auto keys = pg_must(app, "SELECT count(*) FROM device_keys WHERE device = "
                           "'dev1'");
  CHECK(keys.int64(0, 0) == 1);
  app.rollback();
  CHECK_FALSE(exists(dir + "/tenancy.db"));
  CHECK_FALSE(exists(dir + "/tenancy.secret"));
}

TEST_CASE("nodes sharing PostgreSQL and the secret share device keys: one "
          "node's key works on the other, its revocation too; a node "
          "without the secret file does not start") {
  pg_cloud c{"cloud_nodes"};
  if (!c.db)
    return skip(c.why);
  auto& tmp = c.tmp;
  auto one = pg_node(tmp.path() + "/one", *c.db, c.secret);
  auto two = pg_node(tmp.path() + "/two", *c.db, c.secret);
  auto console_one = port_from(tmp.path() + "/one/console.port");
  auto ingest_two = port_from(tmp.path() + "/two/ingest.port");
  REQUIRE_MESSAGE(ingest_two != 0, read_file(tmp.path() + "/two.log"));
  REQUIRE(console_one != 0);
  REQUIRE(fleetctl(tmp.path(), console_one, {"org", "create", "acme"}).first
          == 0);
  auto key = fleetctl_secret(tmp.path(), console_one,
                             {"device", "add", "--org", "acme", "dev1"});
  CHECK(sync_once(ingest_two, key, "dev1", 1).status == 200);
  // Revoked on one node: the other refuses the key within tenancy.cache-ttl.
  REQUIRE(fleetctl(tmp.path(), console_one,
                   {"device", "revoke", "--org", "acme", "dev1"})
            .first
          == 0);
  http_response last;
  bool refused = eventually(
    [&] {
      last = sync_once(ingest_two, key, "dev1", 2);
      return last.status == 401;
    },
    10s);
  CHECK(refused);
  CHECK(last.error.rfind("revoked_key", 0) == 0);
  CHECK_FALSE(exists(tmp.path() + "/two/tenancy.db"));
  // A third node pointed at a secret file that is not there refuses to
  // start, naming the option, rather than make up a secret of its own.
  auto three = pg_node(tmp.path() + "/three", *c.db,
                       tmp.path() + "/missing.secret");
  CHECK(three->wait(30s) == 1);
  auto log = read_file(tmp.path() + "/three.log");
  CHECK(log.find("tenancy.secret-file") != std::string::npos);
  CHECK_FALSE(exists(tmp.path() + "/missing.secret"));
}
