// fleetd scraping a real prometheus-node-exporter (Debian's) and a target
// where nothing listens: every round the exporter's whole page is stored
// with job and instance, scrape_samples_scraped matches what was stored,
// up is 1 and 0 as it should be, the dead target's failures are counted,
// and the scraped series reach the cloud.
#include <doctest/doctest.h>

#include <unistd.h>

#include <csignal>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "messages/labels.hpp"
#include "skip.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* node_exporter = "/usr/bin/prometheus-node-exporter";
constexpr const char* device_id = "scrape-dev";

// SQL that holds for series whose labels include job=`job`.
std::string job_is(const std::string& job) {
  return "instr(s.labels, X'" + hex(std::string("job") + '\0' + job + '\0')
         + "') > 0";
}

// The value of a "ts bits-in-hex" row.
double value_of(const std::string& row) {
  auto bits = std::stoull(row.substr(row.find(' ') + 1), nullptr, 16);
  double out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

} // namespace

TEST_CASE("fleetd scrapes a real node_exporter; a dead target is up 0") {
  if (access(node_exporter, X_OK) != 0)
    return skip(std::string(node_exporter)
                + " is not installed (tools/install-deps)");
  temp_dir tmp;
  auto ne_port = free_port();
  process exporter{node_exporter,
                   {"--web.listen-address=127.0.0.1:" + std::to_string(ne_port)},
                   tmp.path() + "/node_exporter.log"};
  // Listening before fleetd's first round, which would be up 0 otherwise.
  REQUIRE(eventually([&] { return listening(ne_port); }, 20s));
  process cloud{program("fleetd-cloud"),
                {"--node.data-dir=" + tmp.path() + "/cloud", "--ingest.port=0",
                 "--console.port=0"},
                tmp.path() + "/cloud.log"};
  auto port = port_from(tmp.path() + "/cloud/ingest.port");
  REQUIRE(port != 0);
  auto dead_port = free_port();
  auto instance = "127.0.0.1:" + std::to_string(ne_port);
  auto dev_dir = tmp.path() + "/device";
  process device{
    program("fleetd"),
    {"--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
     "--cloud.port=" + std::to_string(port), "--console.port=0",
     "--scrape.targets=node=http://" + instance
       + "/metrics, dead=http://127.0.0.1:" + std::to_string(dead_port),
     "--scrape.interval=2s", "--scrape.timeout=2s",
     "--sync.interval=200ms"},
    tmp.path() + "/device.log"};
  auto console = port_from(dev_dir + "/console.port");
  REQUIRE(console != 0);
  auto node_actor = "scrape:node:" + instance;
  auto dead_actor = "scrape:dead:127.0.0.1:" + std::to_string(dead_port);
  bool enough = eventually(
    [&] {
      auto st = console_status(console);
      return st && counter(*st, node_actor, "rounds") >= 3
             && counter(*st, dead_actor, "read_problems") >= 3;
    },
    60s);
  auto st = console_status(console);
  REQUIRE(st);
  REQUIRE_MESSAGE(enough, "device log: " << read_file(tmp.path()
                                                      + "/device.log"));
  CHECK(counter(*st, node_actor, "read_problems") == 0);
  CHECK(counter(*st, node_actor, "store_failures") == 0);
  device.signal(SIGTERM);
  REQUIRE(device.wait(10s) == 0);

  auto db = dev_dir + "/fleetd.db";
  auto node = job_is("node");
  auto dead = job_is("dead");
  auto instance_hex = hex(std::string("instance") + '\0' + instance + '\0');
  // Every series of the node job carries its instance.
  CHECK(query_int(db, "SELECT count(*) FROM series s WHERE " + node
                        + " AND instr(s.labels, X'" + instance_hex + "') = 0")
        == 0);
  // node_exporter's breadth: its own series, not only up and friends.
  CHECK(query_int(db, "SELECT count(*) FROM series s WHERE " + node
                        + " AND s.name LIKE 'node_%'")
        > 100);
  CHECK(query_int(db, "SELECT count(*) FROM series s WHERE " + node
                        + " AND s.name = 'node_exporter_build_info'")
        == 1);
  auto values = [&](const std::string& name, const std::string& job) {
    return query(db, "SELECT m.ts || ' ' || printf('%016x', m.bits) FROM "
                     "metrics m JOIN "
                     "series s ON s.id = m.series_id WHERE s.name = '"
                       + name + "' AND " + job + " ORDER BY m.ts");
  };
  auto ups = values("up", node);
  // Three rounds were collected; a stop may cut the last one's store.
  REQUIRE(ups.size() >= 2);
  for (auto& u : ups)
    CHECK(value_of(u) == 1);
  auto dead_ups = values("up", dead);
  REQUIRE(dead_ups.size() >= 2);
  for (auto& u : dead_ups)
    CHECK(value_of(u) == 0);
  CHECK(query_int(db, "SELECT count(*) FROM series s WHERE " + dead
                        + " AND s.name NOT IN ('up', "
                          "'scrape_duration_seconds', "
                          "'scrape_samples_scraped')")
        == 0);
  // Each round stored what it says it scraped (plus its three own series;
  // a page's own timestamps would move points off the round's: none here).
  auto scraped = values("scrape_samples_scraped", node);
  REQUIRE(scraped.size() == ups.size());
  for (auto& row : scraped) {
    auto ts = row.substr(0, row.find(' '));
    auto said = value_of(row);
    CAPTURE(ts);
    CHECK(said > 100);
    CHECK(query_int(db, "SELECT count(*) FROM metrics m JOIN series s ON "
                        "s.id = m.series_id WHERE m.ts = "
                          + ts + " AND " + node)
          == static_cast<int64_t>(said) + 3);
  }
  // The scraped series reached the cloud.
  cloud_store store(tmp.path() + "/cloud/cloud.db");
  CHECK(eventually(
    [&] {
      for (auto& r : store.rows(cloud_store::table::points, device_id))
        if (r[0] == "node_exporter_build_info")
          return true;
      return false;
    },
    10s));
  cloud.signal(SIGTERM);
  CHECK(cloud.wait(10s) == 0);
}
