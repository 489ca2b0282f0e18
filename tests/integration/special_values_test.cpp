// NaN (with a payload), +Inf, -Inf and -0.0 from a real fleetd, through its
// store and the wire, into a real fleetd-cloud: stored bit for bit, and the
// stream never wedges on them.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "edge/load_generator.hpp"
#include "messages/labels.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t rounds = 5;
constexpr const char* device_id = "special-dev";

std::string bits_hex(double x) {
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx",
           static_cast<unsigned long long>(bits_of(x)));
  return buf;
}

/// "kind bits" of every fleetd_load_special point `sql` finds (its first
/// column the labels blob in hex, its second the bits in hex), sorted.
std::vector<std::string> special_lines(const std::vector<std::string>& rows) {
  std::map<std::string, std::string> kind_of;
  for (auto kind : {"nan", "inf", "neg_inf", "neg_zero"})
    kind_of[hex(encode_labels({{"kind", kind}}))] = kind;
  std::vector<std::string> out;
  for (auto& r : rows) {
    auto sep = r.find(' ');
    REQUIRE(sep != std::string::npos);
    auto i = kind_of.find(r.substr(0, sep));
    REQUIRE_MESSAGE(i != kind_of.end(), "unexpected labels " << r);
    out.push_back(i->second + " " + r.substr(sep + 1));
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// What load.special-values writes in `rounds` rounds.
std::vector<std::string> expected_lines() {
  std::vector<std::string> out;
  for (int64_t r = 1; r <= rounds; ++r) {
    out.push_back("nan " + bits_hex(load_nan(r)));
    out.push_back("inf 7ff0000000000000");
    out.push_back("neg_inf fff0000000000000");
    out.push_back("neg_zero 8000000000000000");
  }
  std::sort(out.begin(), out.end());
  return out;
}

constexpr const char* special_sql
  = "SELECT hex(s.labels) || ' ' || printf('%016x', {t}.bits) FROM {table} "
    "{t} JOIN series s ON s.id = {t}.series_id WHERE s.name = "
    "'fleetd_load_special'";

std::string sql_for(const std::string& table, const std::string& alias,
                    const std::string& where = "") {
  std::string out = special_sql;
  for (auto [key, value] : {std::pair<std::string, std::string>{"{table}", table},
                            {"{t}", alias}})
    for (size_t p; (p = out.find(key)) != std::string::npos;)
      out.replace(p, key.size(), value);
  return out + where;
}

} // namespace

TEST_CASE("NaN with its payload, infinities and -0.0 reach the cloud bit for "
          "bit from a device on either backend") {
  for (std::string backend : {"sqlite", "memory"}) {
    CAPTURE(backend);
    temp_dir tmp;
    MESSAGE("backend ", backend, ", temp dir ", tmp.path());
    process cloud{program("fleetd-cloud"),
                  {"--node.data-dir=" + tmp.path() + "/cloud",
                   "--ingest.port=0", "--console.port=0"},
                  tmp.path() + "/cloud.log"};
    auto port = port_from(tmp.path() + "/cloud/ingest.port");
    REQUIRE(port != 0);
    auto dev_dir = tmp.path() + "/device";
    process device{program("fleetd"),
                   {"--node.data-dir=" + dev_dir,
                    std::string("--device.id=") + device_id,
                    "--cloud.port=" + std::to_string(port), "--console.port=0",
                    "--storage.backend=" + backend, "--collector.rounds=1",
                    "--load.series=2", "--load.special-values=true",
                    "--load.interval=50ms",
                    "--load.rounds=" + std::to_string(rounds),
                    "--sync.interval=50ms", "--sync.batch-size=7",
                    "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms"},
                   tmp.path() + "/device.log"};
    auto console = port_from(dev_dir + "/console.port");
    REQUIRE(console != 0);
    // Drained: every round stored and acked, nothing refused or queued.
    bool drained = eventually(
      [&] {
        auto st = console_status(console);
        return st && counter(*st, "load_generator", "rounds") == rounds
               && state_of(*st, "load_generator") == "done"
               && counter(*st, "storage", "queued_batches") == 0
               && counter(*st, "storage", "unbatched_points") == 0;
      },
      60s);
    auto st = console_status(console);
    REQUIRE(st);
    CHECK(counter(*st, "sync_metrics", "batches_rejected") <= 0);
    REQUIRE_MESSAGE(drained, "device log: " << read_file(tmp.path()
                                                          + "/device.log"));
    device.signal(SIGTERM);
    REQUIRE(device.wait(10s) == 0);
    cloud.signal(SIGTERM);
    REQUIRE(cloud.wait(10s) == 0);
    auto cloud_db = tmp.path() + "/cloud/cloud.db";
    auto got = special_lines(query(
      cloud_db, sql_for("points", "p",
                        std::string(" AND p.device_id = '") + device_id + "'")));
    CHECK(got == expected_lines());
    // The readable column: NULL for NaN only.
    CHECK(query_int(cloud_db, "SELECT count(*) FROM points WHERE value IS "
                              "NULL")
          == rounds);
    if (backend == "sqlite") {
      // The device's own store holds them exactly too, and the cloud holds
      // every point the device holds.
      auto dev_db = dev_dir + "/fleetd.db";
      CHECK(special_lines(query(dev_db, sql_for("metrics", "m")))
            == expected_lines());
      CHECK(cloud_points(cloud_db, device_id) == device_points(dev_db));
    }
  }
}
