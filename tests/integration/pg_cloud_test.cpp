// fleetd-cloud on PostgreSQL (store.backend = postgresql, behind PgBouncer):
// the node migrates the schema at start, a real device enrolls and syncs,
// and every point it collected is in PostgreSQL once, under its org.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "pg_fixture.hpp"
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

} // namespace

TEST_CASE("a device syncs through fleetd-cloud into PostgreSQL exactly once") {
  std::string why;
  auto db = fresh_pg_database("cloud_node", why, true);
  if (!db)
    return skip(why);
  temp_dir tmp;
  auto dir = tmp.path() + "/cloud";
  process node{program("fleetd-cloud"),
               {"--node.data-dir=" + dir, "--ingest.port=0",
                "--console.port=0", "--ingest.anonymous=false",
                "--store.backend=postgresql",
                "--store.postgresql-url=" + db->pooled_url,
                "--store.postgresql-owner-url=" + db->owner_url,
                "--store.retention-days=30",
                "--store.postgresql-statement-timeout=10000"},
               tmp.path() + "/cloud.log"};
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
}
