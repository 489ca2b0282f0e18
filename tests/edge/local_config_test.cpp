// The settings of `fleetd config set`: each key's values and refusals, the
// file's round trip and its hostile forms, applying them over the cloud's,
// and config get's sources.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "edge/capability.hpp"
#include "edge/local_config.hpp"
#include "messages/error.hpp"
#include "scratch_dir.hpp"

using namespace fleetd;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string message(const caf::error& err) {
  return err ? render(err) : "";
}

} // namespace

TEST_CASE("each setting takes its values and refuses others with bad_config") {
  local_settings x;
  CHECK(!set_local(x, "compression=zstd"));
  CHECK(*x.zstd_level == 3);
  CHECK(!set_local(x, "compression = zstd:19"));
  CHECK(*x.zstd_level == 19);
  CHECK(!set_local(x, "compression=none"));
  CHECK(*x.zstd_level == 0);
  CHECK(!set_local(x, "compression=7"));
  CHECK(*x.zstd_level == 7);
  CHECK(!set_local(x, "sync_interval=10m"));
  CHECK(*x.sync_interval_ms == 600'000);
  CHECK(!set_local(x, "metric_interval=60s"));
  CHECK(*x.metric_interval_ms == 60'000);
  CHECK(!set_local(x, "retention=24h"));
  CHECK(*x.retention_ms == 86'400'000);
  CHECK(!set_local(x, "store_logs=false"));
  CHECK(*x.store_logs == false);
  for (auto bad : {"compression=zstd:0", "compression=zstd:20",
                   "compression=lz4", "compression=", "compression=-1",
                   "compression=999999999999999999999", "sync_interval=0s",
                   "sync_interval=5ms", "sync_interval=soon",
                   "sync_interval=100000d", "retention=30s",
                   "store_logs=maybe", "colour=blue", "no equals sign",
                   "=3"}) {
    CAPTURE(bad);
    auto before = x.zstd_level;
    auto err = set_local(x, bad);
    REQUIRE(err);
    CHECK(err == ec::bad_config);
    CHECK(x.zstd_level == before);
  }
  CHECK(message(set_local(x, "colour=blue")).find("compression, sync_interval")
        != std::string::npos);
  CHECK(!unset_local(x, "compression"));
  CHECK(!x.zstd_level);
  CHECK(unset_local(x, "colour") == ec::bad_config);
}

TEST_CASE("the file round-trips, and a hostile one is refused by name") {
  fleetd::test::scratch_dir dir;
  auto none = load_local_settings(dir.path());
  REQUIRE(none);
  CHECK(none->empty());
  local_settings x;
  REQUIRE(!set_local(x, "compression=zstd:5"));
  REQUIRE(!set_local(x, "sync_interval=90s"));
  REQUIRE(!set_local(x, "metric_interval=250ms"));
  REQUIRE(!set_local(x, "retention=36h"));
  REQUIRE(!set_local(x, "store_logs=false"));
  REQUIRE(!save_local_settings(dir.path(), x));
  auto back = load_local_settings(dir.path());
  REQUIRE(back);
  CHECK(back->zstd_level == x.zstd_level);
  CHECK(back->sync_interval_ms == x.sync_interval_ms);
  CHECK(back->metric_interval_ms == x.metric_interval_ms);
  CHECK(back->retention_ms == x.retention_ms);
  CHECK(back->store_logs == x.store_logs);
  auto path = local_settings_path(dir.path());
  for (auto text : {std::string("sync_interval 10m\n"),
                    std::string("colour = blue\n"),
                    std::string("retention = forever\n"),
                    std::string(5000, 'x')}) {
    CAPTURE(text.substr(0, 30));
    write_text(path, text);
    auto r = load_local_settings(dir.path());
    REQUIRE(!r);
    CHECK(r.error() == ec::bad_config);
    CHECK(message(r.error()).find(path) != std::string::npos);
  }
  write_text(path, "# a comment\n\n  store_logs = true  \n");
  auto ok = load_local_settings(dir.path());
  REQUIRE(ok);
  CHECK(*ok->store_logs == true);
}

TEST_CASE("local settings win over the cloud's; config get names each "
          "source") {
  hardware hw;
  hw.total_disk = 100'000'000'000;
  hw.total_ram = 8'000'000'000;
  hw.available_disk = hw.total_disk;
  tier_overrides ov;
  ov.retention = std::chrono::hours(2);
  ov.sync_interval = std::chrono::seconds(30);
  auto report = derive(hw, ov);
  cloud_settings cloud;
  cloud.version = 4;
  cloud.sync_interval_ms = 60'000;
  cloud.zstd_level = 5;
  apply_cloud(report, cloud);
  setting_sources src;
  src.sync_interval = "flag";
  src.retention = "file";
  src.metric_interval = "flag";
  src.metric_interval_ms = 5000;
  local_settings local;
  auto table = config_table(report, ov, src, local, "");
  REQUIRE(table);
  auto& t = table->text;
  CHECK(t.find("compression = zstd:5  (cloud: version 4)") != std::string::npos);
  CHECK(t.find("sync_interval = 1m  (cloud") != std::string::npos);
  CHECK(t.find("metric_interval = 5s  (flag") != std::string::npos);
  CHECK(t.find("retention = 2h  (file") != std::string::npos);
  CHECK(t.find("store_logs = true  (default") != std::string::npos);
  REQUIRE(!set_local(local, "sync_interval=10m"));
  REQUIRE(!set_local(local, "store_logs=false"));
  apply_local(report, local);
  CHECK(report.settings.sync_interval_ms == 600'000);
  CHECK(!report.settings.store_logs);
  // The cloud's other settings stay.
  CHECK(report.settings.zstd_level == 5);
  table = config_table(report, ov, src, local, "sync_interval");
  REQUIRE(table);
  CHECK(table->text == "sync_interval = 10m  (local set: over cloud 1m)\n");
  CHECK(table->json.find("\"source\":\"local set\"") != std::string::npos);
  CHECK(config_table(report, ov, src, local, "colour").error()
        == ec::bad_config);
  // Tier 3 keeps no history: a local retention changes nothing there.
  auto small = derive(hardware{}, tier_overrides{});
  REQUIRE(!set_local(local, "retention=24h"));
  apply_local(small, local);
  CHECK(small.settings.retention_ms == 0);
  // Tier 3 on SQLite keeps history though its tier has no retention: the
  // local retention applies, and config get shows it.
  tier_overrides on_sqlite;
  on_sqlite.backend = "sqlite";
  auto kept = derive(hardware{}, on_sqlite);
  REQUIRE(kept.settings.sqlite);
  REQUIRE(kept.settings.retention_ms == 0);
  apply_local(kept, local);
  CHECK(kept.settings.retention_ms == 86'400'000);
  table = config_table(kept, on_sqlite, setting_sources{}, local, "retention");
  REQUIRE(table);
  CHECK(table->text.find("(local set: over tier none)") != std::string::npos);
}
