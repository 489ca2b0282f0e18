// Staged rollout with auto-halt: 200 simulated devices sync through the real
// ingest actor and embedded store (ingest feeds the rollout their outcomes,
// their acks bring them the settings), on a manual clock.
#include "cloud/rollout.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <caf/exit_reason.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "cloud/ingest.hpp"
#include "cloud_fixture.hpp"
#include "messages/wire.hpp"
#include "ask.hpp"
#include "helpers.hpp"
#include "tools/fleetctl_rollout.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;
constexpr int64_t bake_ms = 10 * 60 * 1000;
constexpr size_t fleet_size = 200;

// A retention this short makes a device drop batches before they sync.
constexpr int64_t bad_retention_ms = 1000;

// A retention this long fills a device's disk (80 % used instead of 40 %).
constexpr int64_t hoarding_retention_ms = int64_t{365} * 24 * 3600 * 1000;

// One simulated device: what it would send and what its acks told it.
struct sim_device {
  std::string id;
  int64_t tier = 1;
  int64_t seq = 0;
  cloud_settings settings;
  int64_t total_disk = 100'000'000'000;
  int64_t available_disk = 60'000'000'000;
};

// The real store, except that setting a device of `refuse` fails; every
// setting asked for is listed in `sets`, and the most settings requests
// (reads and sets) outstanding at once kept in `most_outstanding`.
struct flaky_log {
  std::mutex m;
  std::set<std::string> refuse;
  std::vector<std::string> sets;
  size_t outstanding = 0;
  size_t most_outstanding = 0;
};

// Forwards a settings request to `real`, counting it outstanding until the
// answer is back.
template <class Self, class... Ts>
caf::result<cloud_settings> counted(Self* self, cloud_store_actor real,
                                    std::shared_ptr<flaky_log> log,
                                    Ts... xs) {
  {
    std::lock_guard<std::mutex> guard(log->m);
    log->most_outstanding = std::max(log->most_outstanding,
                                     ++log->outstanding);
  }
  auto rp = self->template make_response_promise<cloud_settings>();
  auto done = [log] {
    std::lock_guard<std::mutex> guard(log->m);
    --log->outstanding;
  };
  self->request(real, 30s, config_atom::value, std::move(xs)...)
    .then(
      [rp, done](cloud_settings& x) mutable {
        done();
        rp.deliver(std::move(x));
      },
      [rp, done](caf::error& err) mutable {
        done();
        rp.deliver(std::move(err));
      });
  return rp;
}

cloud_store_actor::behavior_type
flaky_store(cloud_store_actor::pointer self, cloud_store_actor real,
            std::shared_ptr<flaky_log> log) {
  return {
    [=](write_atom a, ingest_batch& b) -> caf::result<ingest_outcome> {
      return self->delegate(real, a, std::move(b));
    },
    [=](devices_atom a) -> caf::result<device_infos> {
      return self->delegate(real, a);
    },
    [=](points_atom a, std::string& d) -> caf::result<metric_samples> {
      return self->delegate(real, a, std::move(d));
    },
    [=](logs_atom a, std::string& d) -> caf::result<log_lines> {
      return self->delegate(real, a, std::move(d));
    },
    [=](events_atom a, std::string& d) -> caf::result<event_records> {
      return self->delegate(real, a, std::move(d));
    },
    [=](config_atom, std::string& d,
        settings_change& c) -> caf::result<cloud_settings> {
      {
        std::lock_guard<std::mutex> guard(log->m);
        log->sets.push_back(d);
        if (log->refuse.count(d) > 0)
          return make_error(ec::storage_failed, "refused by the test");
      }
      return counted(self, real, log, d, c);
    },
    [=](config_atom, std::string& d) -> caf::result<cloud_settings> {
      return counted(self, real, log, d);
    },
    [=](delivery_atom a, std::string& d,
        int64_t since) -> caf::result<delivery_rows> {
      return self->delegate(real, a, std::move(d), since);
    },
    [=](stats_atom a) -> caf::result<actor_stats> {
      return self->delegate(real, a);
    },
  };
}

struct rollout_fixture : test::cloud_fixture {
  cloud_store_actor store;
  ingest_actor ing;
  rollout_actor ro;
  std::vector<sim_device> fleet;

  explicit rollout_fixture(size_t n = fleet_size, bool tiers = false)
    : cloud_fixture("fleetd-rollout", clock_start_ms) {
    store = spawn_cloud_store(dir.file("cloud.db"));
    ro = spawn_rollout();
    ingest_config icfg;
    icfg.store = store;
    icfg.anonymous = true;
    icfg.outcomes = caf::actor_cast<outcome_listener>(ro);
    ing = keep(sys->spawn(ingest, icfg));
    for (size_t i = 0; i < n; ++i) {
      sim_device d;
      char name[32];
      snprintf(name, sizeof(name), "dev-%03zu", i);
      d.id = name;
      d.tier = tiers ? 1 + static_cast<int64_t>(i % 3) : 1;
      fleet.push_back(d);
    }
    round();
  }

  // A rollout actor over the fleet's store, persisting in cloud.db; only
  // the test's ticks make it judge (its own timer waits an hour).
  rollout_actor spawn_rollout(int64_t max_devices = 100000,
                              cloud_store_actor via = {}) {
    auto book = rollout_book::open(dir.file("cloud.db"));
    REQUIRE_MESSAGE(book, render(book.error()));
    rollout_config cfg;
    cfg.check_interval = std::chrono::hours(1);
    cfg.max_devices = max_devices;
    cfg.store = via ? via : store;
    cfg.book = std::make_shared<rollout_book>(std::move(*book));
    cfg.clock = clock;
    return keep(sys->spawn<caf::detached>(rollout, cfg));
  }

  // Every device syncs one batch through ingest, as its settings make it:
  // a bad retention loses two batches of three before they leave.
  void round() {
    for (auto& d : fleet) {
      d.seq += d.settings.retention_ms == bad_retention_ms ? 3 : 1;
      encode_settings es;
      es.device_id = d.id;
      es.sequence = d.seq;
      es.epoch = "e1";
      es.now_ms = clock->now_ms();
      es.zstd_level = 0;
      es.config_version = d.settings.version;
      metric_samples xs;
      for (int i = 0; i < 4; ++i)
        xs.push_back(metric_sample{"cpu", {{"core", std::to_string(i)}},
                                   clock->now_ms(), 1.5 * i});
      device_capability cap;
      cap.tier = d.tier;
      cap.total_disk = d.total_disk;
      cap.available_disk = d.settings.retention_ms == hoarding_retention_ms
                             ? d.total_disk / 5
                             : d.available_disk;
      cap.has_network = true;
      auto body = with_send_fields(encode_metrics_request(es, xs), 0, &cap);
      auto rep = test::ask<http_reply>(*self, ing, 10s, sync_atom::value,
                                       sync_envelope{body, "", protobuf_type,
                                                     ""});
      REQUIRE(rep.status == 200);
      auto ack = test::ack_of(rep.body);
      if (ack.config.version > d.settings.version)
        d.settings = ack.config;
    }
  }

  // Kills the rollout actor as a crash would; a new one reads the book,
  // and a new ingest feeds it.
  void restart() {
    (*self)->send_exit(ro, caf::exit_reason::kill);
    (*self)->wait_for(ro);
    ro = spawn_rollout();
    ingest_config icfg;
    icfg.store = store;
    icfg.anonymous = true;
    icfg.outcomes = caf::actor_cast<outcome_listener>(ro);
    ing = keep(sys->spawn(ingest, icfg));
  }

  // A rollout actor in place of the first that reaches the store through
  // flaky_store; its log.
  std::shared_ptr<flaky_log> through_flaky_store() {
    auto log = std::make_shared<flaky_log>();
    auto flaky = keep(sys->spawn(flaky_store, store, log));
    (*self)->send_exit(ro, caf::exit_reason::kill);
    (*self)->wait_for(ro);
    ro = spawn_rollout(100000, flaky);
    return log;
  }

  // The answer, and for a start or resume (answered while the stage is
  // pushed) the status once the pushes are done.
  rollout_status run(rollout_command cmd) {
    auto out = test::ask<rollout_status>(*self, ro, 30s, rollout_atom::value,
                                         cmd);
    if (out.phase == "pushing" && (cmd.op == "start" || cmd.op == "resume"))
      CHECK(test::eventually(
        [&] {
          out = status(cmd.org);
          return out.phase != "pushing";
        },
        20s));
    return out;
  }

  caf::error refused(rollout_command cmd) {
    caf::error out;
    (*self)->request(ro, 30s, rollout_atom::value, std::move(cmd))
      .receive([&](rollout_status&) { FAIL_CHECK("not refused"); },
               [&](caf::error& err) { out = std::move(err); });
    return out;
  }

  rollout_status status(const std::string& org = {}) {
    rollout_command c;
    c.op = "status";
    c.org = org;
    return run(c);
  }

  rollout_command start(settings_change change) {
    rollout_command c;
    c.op = "start";
    c.change = change;
    c.canary_percent = 5;
    c.steps = {25, 50, 100};
    c.bake_ms = bake_ms;
    return c;
  }

  // Two rounds of syncs (the first brings the settings, the second shows
  // them at work), then the bake ends and the rollout is nudged to judge.
  void bake() {
    round();
    round();
    round();
    clock->advance(bake_ms);
    caf::anon_send(ro, tick_atom::value);
  }

  // Waits for the rollout to leave the stage it was judging.
  rollout_status after_judgement(int64_t stage) {
    rollout_status out;
    CHECK(test::eventually(
      [&] {
        out = status();
        return out.phase == "halted" || out.phase == "done"
               || (out.phase == "baking" && out.stage > stage);
      },
      20s));
    return out;
  }

  std::set<std::string> with(const std::function<bool(const sim_device&)>& p) {
    std::set<std::string> out;
    for (auto& d : fleet)
      if (p(d))
        out.insert(d.id);
    return out;
  }
};

rollout_command op(const char* name) {
  rollout_command out;
  out.op = name;
  return out;
}

settings_change batch_size(int64_t n) {
  settings_change c;
  c.values.batch_size = n;
  c.fields = field_batch_size;
  return c;
}

settings_change retention(int64_t ms) {
  settings_change c;
  c.values.retention_ms = ms;
  c.fields = field_retention;
  return c;
}

} // namespace

TEST_CASE("a rollout that worsens sync success halts by itself after its "
          "canary and never pushes further") {
  rollout_fixture f;
  auto st = f.run(f.start(retention(bad_retention_ms)));
  CHECK(st.phase == "baking");
  CHECK(st.devices == 200);
  CHECK(st.changed == 10);
  CHECK(st.stage == 0);
  REQUIRE(st.stages.size() == 4);
  f.bake();
  st = f.after_judgement(0);
  CHECK(st.phase == "halted");
  CHECK(st.stage == 0);
  CHECK(st.changed == 10);
  CHECK(st.reason.find("halted by itself after stage 1 of 4: sync success")
        != std::string::npos);
  MESSAGE("changed: sync " << st.changed_health.sync_success << " ("
                           << st.changed_health.accepted << " accepted, "
                           << st.changed_health.missing
                           << " missing); unchanged: sync "
                           << st.unchanged_health.sync_success);
  CHECK(st.changed_health.missing == 40);
  CHECK(st.unchanged_health.sync_success == 1.0);
  CHECK(st.changed_health.sync_success < 0.5);
  // Halted stays halted: more time and ticks push nothing further.
  f.clock->advance(10 * bake_ms);
  caf::anon_send(f.ro, tick_atom::value);
  f.round();
  CHECK(f.status().phase == "halted");
  CHECK(f.with([](auto& d) { return d.settings.retention_ms > 0; }).size()
        == 10);
  // A second rollout for the org waits for this one.
  CHECK(is_error(f.refused(f.start(batch_size(7))), ec::conflict));
  // Rolled back: every canary device has its own retention again.
  st = f.run(op("rollback"));
  CHECK(st.phase == "rolled_back");
  CHECK(st.changed == 0);
  f.round();
  CHECK(f.with([](auto& d) { return d.settings.retention_ms != 0; }).empty());
}

TEST_CASE("a rollout that fills the devices' disks halts by itself on "
          "storage use") {
  rollout_fixture f;
  auto st = f.run(f.start(retention(hoarding_retention_ms)));
  REQUIRE(st.phase == "baking");
  f.bake();
  st = f.after_judgement(0);
  CHECK(st.phase == "halted");
  CHECK(st.changed == 10);
  INFO(st.reason);
  CHECK(st.reason.find("storage use 80.0% vs 40.0%") != std::string::npos);
  CHECK(st.reason.find("sync success") == std::string::npos);
  CHECK(st.changed_health.sync_success == 1.0);
}

TEST_CASE("a good rollout goes stage by stage to 100 % of the devices") {
  rollout_fixture f;
  auto st = f.run(f.start(batch_size(500)));
  INFO(st.reason);
  REQUIRE(st.phase == "baking");
  std::vector<int64_t> changed{st.changed};
  auto canary = f.with([](auto&) { return false; });
  for (int64_t stage = 0; st.phase == "baking" && stage < 8; ++stage) {
    f.bake();
    if (stage == 0)
      canary = f.with([](auto& d) { return d.settings.batch_size == 500; });
    st = f.after_judgement(stage);
    changed.push_back(st.changed);
  }
  CHECK(st.phase == "done");
  CHECK(changed == std::vector<int64_t>{10, 50, 100, 200, 200});
  CHECK(canary.size() == 10);
  f.round();
  CHECK(f.with([](auto& d) { return d.settings.batch_size == 500; }).size()
        == fleet_size);
  CHECK(st.changed_health.sync_success == 1.0);
  // A finished rollout makes room for the next one.
  CHECK(f.run(f.start(batch_size(600))).phase == "baking");
}

TEST_CASE("halt keeps the state, resume goes on, rollback restores the "
          "previous settings") {
  rollout_fixture f;
  // A device the operator had set before keeps that value after a rollback.
  auto& pinned = f.fleet[0];
  test::ask<cloud_settings>(*f.self, f.store, 5s, config_atom::value,
                            pinned.id, batch_size(42));
  f.round();
  REQUIRE(pinned.settings.batch_size == 42);
  auto st = f.run(f.start(batch_size(500)));
  REQUIRE(st.changed == 10);
  st = f.run(op("halt"));
  CHECK(st.phase == "halted");
  CHECK(st.reason == "halted by the operator");
  f.bake();
  f.clock->advance(bake_ms);
  caf::anon_send(f.ro, tick_atom::value);
  CHECK(f.status().phase == "halted");
  CHECK(f.status().changed == 10);
  st = f.run(op("resume"));
  CHECK(st.phase == "baking");
  CHECK(st.stage == 0);
  f.bake();
  st = f.after_judgement(0);
  CHECK(st.phase == "baking");
  CHECK(st.stage == 1);
  CHECK(st.changed == 50);
  f.round();
  auto changed = f.with([](auto& d) { return d.settings.batch_size == 500; });
  CHECK(changed.size() == 50);
  CHECK(is_error(f.refused(op("resume")), ec::bad_config));
  st = f.run(op("rollback"));
  CHECK(st.phase == "rolled_back");
  f.round();
  CHECK(f.with([](auto& d) { return d.settings.batch_size == 500; }).empty());
  CHECK(f.with([](auto& d) { return d.settings.batch_size == 42; })
        == std::set<std::string>{pinned.id});
  CHECK(is_error(f.refused(op("halt")), ec::bad_config));
}

TEST_CASE("by tier: tier 1 first, then 2, then 3, each canary first") {
  rollout_fixture f(fleet_size, true);
  auto cmd = f.start(batch_size(500));
  cmd.by_tier = true;
  cmd.canary_percent = 10;
  cmd.steps = {100};
  auto st = f.run(cmd);
  REQUIRE(st.stages.size() == 6);
  std::vector<int64_t> tiers;
  for (auto& s : st.stages)
    tiers.push_back(s.tier);
  CHECK(tiers == std::vector<int64_t>{1, 1, 2, 2, 3, 3});
  auto of_tier = [&f](int64_t t) {
    return f.with([t](auto& d) {
      return d.tier == t && d.settings.batch_size == 500;
    }).size();
  };
  // Tier sizes: 67, 67, 66; the canary is ceil(10 %) of each.
  std::vector<std::vector<size_t>> seen;
  for (int64_t stage = 0; st.phase == "baking" && stage < 8; ++stage) {
    f.bake();
    seen.push_back({of_tier(1), of_tier(2), of_tier(3)});
    st = f.after_judgement(stage);
  }
  CHECK(st.phase == "done");
  f.round();
  seen.push_back({of_tier(1), of_tier(2), of_tier(3)});
  CHECK(seen == std::vector<std::vector<size_t>>{{7, 0, 0},
                                                 {67, 0, 0},
                                                 {67, 7, 0},
                                                 {67, 67, 0},
                                                 {67, 67, 7},
                                                 {67, 67, 66},
                                                 {67, 67, 66}});
}

TEST_CASE("by tier: a tier's stage is judged against its own tier only") {
  rollout_fixture f(fleet_size, true);
  // Tier 1's disks are fuller than the others' (70 % vs 40 % used): by
  // itself no reason to halt a change that leaves them as they are.
  for (auto& d : f.fleet)
    if (d.tier == 1)
      d.available_disk = 30'000'000'000;
  f.round();
  auto cmd = f.start(batch_size(500));
  cmd.by_tier = true;
  cmd.canary_percent = 10;
  cmd.steps = {100};
  auto st = f.run(cmd);
  REQUIRE(st.phase == "baking");
  // Status splits the devices as the judgement will: tier 1's, with disks.
  f.round();
  st = f.status();
  CHECK(st.changed_health.devices == 7);
  CHECK(st.unchanged_health.devices == 60);
  CHECK(st.changed_health.storage_used == doctest::Approx(0.7));
  CHECK(st.unchanged_health.storage_used == doctest::Approx(0.7));
  f.bake();
  st = f.after_judgement(0);
  INFO(st.reason);
  CHECK(st.phase == "baking");
  CHECK(st.stage == 1);
  // The whole way: each tier against itself.
  for (int64_t stage = 1; st.phase == "baking" && stage < 8; ++stage) {
    f.bake();
    st = f.after_judgement(stage);
  }
  CHECK(st.phase == "done");
}

TEST_CASE("a restarted rollout actor goes on from its saved state with the "
          "same devices") {
  rollout_fixture f;
  auto st = f.run(f.start(batch_size(500)));
  REQUIRE(st.changed == 10);
  f.round();
  auto canary = f.with([](auto& d) { return d.settings.batch_size == 500; });
  REQUIRE(canary.size() == 10);
  f.restart();
  st = f.status();
  CHECK(st.phase == "baking");
  CHECK(st.changed == 10);
  CHECK(st.stage == 0);
  // The bake starts again at the restart (its figures were in memory).
  CHECK(st.bake_started_ms == f.clock->now_ms());
  f.bake();
  st = f.after_judgement(0);
  CHECK(st.stage == 1);
  CHECK(st.changed == 50);
  f.round();
  auto step = f.with([](auto& d) { return d.settings.batch_size == 500; });
  CHECK(step.size() == 50);
  CHECK(std::includes(step.begin(), step.end(), canary.begin(), canary.end()));
  // Rollback still knows each device's previous settings.
  st = f.run(op("rollback"));
  CHECK(st.phase == "rolled_back");
  f.round();
  CHECK(f.with([](auto& d) { return d.settings.batch_size == 500; }).empty());
}

TEST_CASE("a bad change still halts when the rollout actor restarts "
          "mid-bake") {
  rollout_fixture f;
  auto st = f.run(f.start(retention(bad_retention_ms)));
  REQUIRE(st.changed == 10);
  f.round();
  f.restart();
  REQUIRE(f.status().phase == "baking");
  f.bake();
  st = f.after_judgement(0);
  INFO(st.reason);
  CHECK(st.phase == "halted");
  CHECK(st.reason.find("sync success") != std::string::npos);
  CHECK(st.changed_health.missing > 0);
  CHECK(st.unchanged_health.sync_success == 1.0);
}

TEST_CASE("devices whose push failed are not counted changed, and resume "
          "pushes exactly those") {
  rollout_fixture f;
  auto log = f.through_flaky_store();
  auto cmd = f.start(batch_size(500));
  // The canary, as the rollout picks it.
  std::vector<rollout_device> devices;
  for (auto& d : f.fleet)
    devices.push_back({d.id, d.tier});
  auto canary = stage_targets(devices, plan_stages(cmd, {1}), 0);
  REQUIRE(canary.size() == 10);
  std::set<std::string> refused(canary.begin(), std::next(canary.begin(), 3));
  log->refuse = refused;
  auto st = f.run(cmd);
  INFO(st.reason);
  CHECK(st.phase == "halted");
  CHECK(st.reason.find("push failed") != std::string::npos);
  CHECK(st.changed == 7);
  f.round();
  CHECK(f.with([](auto& d) { return d.settings.batch_size == 500; }).size()
        == 7);
  {
    std::lock_guard<std::mutex> guard(log->m);
    log->refuse.clear();
    log->sets.clear();
  }
  st = f.run(op("resume"));
  CHECK(st.phase == "baking");
  CHECK(st.changed == 10);
  {
    std::lock_guard<std::mutex> guard(log->m);
    CHECK(std::set<std::string>(log->sets.begin(), log->sets.end())
          == refused);
    CHECK(log->sets.size() == 3);
  }
  f.round();
  CHECK(f.with([](auto& d) { return d.settings.batch_size == 500; })
        == canary);
  // The confirmed pushes are kept across a restart.
  f.restart();
  f.round();
  st = f.status();
  CHECK(st.changed_health.devices == 10);
  CHECK(st.unchanged_health.devices == 190);
}

TEST_CASE("a rollout has at most 64 settings requests outstanding, however "
          "many devices it changes") {
  rollout_fixture f;
  auto log = f.through_flaky_store();
  auto cmd = f.start(batch_size(500));
  cmd.canary_percent = 100;
  cmd.steps = {100};
  auto st = f.run(cmd);
  CHECK(st.phase == "baking");
  CHECK(st.changed == 200);
  std::lock_guard<std::mutex> guard(log->m);
  CHECK(log->sets.size() == 200);
  CHECK(log->outstanding == 0);
  MESSAGE("most outstanding: " << log->most_outstanding);
  CHECK(log->most_outstanding <= 64);
  CHECK(log->most_outstanding >= 2);
}

TEST_CASE("start answers once the stage is recorded; status shows the "
          "pushes' progress") {
  rollout_fixture f;
  auto st = test::ask<rollout_status>(*f.self, f.ro, 30s, rollout_atom::value,
                                      f.start(batch_size(500)));
  CHECK(st.phase == "pushing");
  CHECK(st.changed == 0);
  CHECK(st.devices == 200);
  CHECK(st.stages.size() == 4);
  CHECK(test::eventually(
    [&] {
      st = f.status();
      return st.phase == "baking";
    },
    20s));
  CHECK(st.changed == 10);
}

TEST_CASE("hostile sequences count no negative and no endless missing "
          "batches") {
  rollout_fixture f(4);
  REQUIRE(f.run(f.start(batch_size(500))).phase == "baking");
  auto send = [&](const char* device, int64_t seq) {
    caf::anon_send(f.ro, outcome_atom::value,
                   sync_outcome{device, "metrics", seq, true, 100, 1});
  };
  auto max = std::numeric_limits<int64_t>::max();
  auto min = std::numeric_limits<int64_t>::min();
  send("dev-000", max);
  send("dev-000", 5);
  send("dev-000", min);
  send("dev-001", 1);
  send("dev-001", max);
  send("dev-001", min);
  send("dev-002", min);
  send("dev-002", max);
  rollout_status st;
  CHECK(test::eventually(
    [&] {
      st = f.status();
      return st.changed_health.accepted + st.unchanged_health.accepted == 8;
    },
    10s));
  // dev-001's jump from 1 to the largest sequence is clamped.
  CHECK(st.changed_health.missing + st.unchanged_health.missing == 1'000'000);
}

TEST_CASE("bad rollout commands are refused with a reason") {
  rollout_fixture f(3);
  auto refused = [&](rollout_command c, const char* what) {
    auto err = f.refused(c);
    CHECK_MESSAGE(is_error(err, ec::bad_config), render(err));
    CHECK_MESSAGE(render(err).find(what) != std::string::npos, render(err));
  };
  auto ok = f.start(batch_size(10));
  auto c = ok;
  c.change.fields = 0;
  refused(c, "nothing to set");
  c = ok;
  c.canary_percent = 0;
  refused(c, "--canary");
  c = ok;
  c.steps = {50, 25, 100};
  refused(c, "--steps");
  c = ok;
  c.steps = {25, 50};
  refused(c, "last share must be 100");
  c = ok;
  c.steps.assign(21, 100);
  refused(c, "--steps");
  c = ok;
  c.bake_ms = -1;
  refused(c, "--bake");
  c = ok;
  c.margins.storage_points = -1;
  refused(c, "--margin");
  c = ok;
  c.change.values.batch_size = max_setting_batch_size + 1;
  CHECK(is_error(f.refused(c), ec::bad_config));
  c = ok;
  c.op = "explode";
  refused(c, "unknown command");
  refused(op("halt"), "has no rollout");
  c = ok;
  c.org = "nobody";
  CHECK(is_error(f.refused(c), ec::unknown_device));
  CHECK(f.status().phase == "none");
  // An org larger than rollout.max-devices is refused, nothing changed.
  auto small = f.spawn_rollout(2);
  caf::error too_many;
  (*f.self)->request(small, 30s, rollout_atom::value, ok)
    .receive([&](rollout_status&) { FAIL_CHECK("not refused"); },
             [&](caf::error& err) { too_many = std::move(err); });
  CHECK_MESSAGE(is_error(too_many, ec::too_large), render(too_many));
  CHECK(test::ask<rollout_status>(*f.self, small, 5s, rollout_atom::value,
                                  op("status"))
          .phase
        == "none");
  // The console refuses a plan with the node's own rule and words.
  rollout_options o;
  o.canary = "5%";
  o.bake = std::chrono::minutes(10);
  std::string many = "5";
  for (int i = 0; i < 20; ++i)
    many += ",100";
  for (auto steps : {"25,50", "50,25,100", "2,100", many.c_str()}) {
    o.steps = steps;
    auto console = rollout_command_of({"rollout", "start"}, o, "",
                                      batch_size(10));
    REQUIRE_FALSE(console);
    c = ok;
    c.steps.clear();
    std::stringstream in(steps);
    std::string word;
    while (std::getline(in, word, ','))
      c.steps.push_back(std::stod(word));
    CHECK(render(console.error()) == render(f.refused(c)));
  }
  // The console's parsing of shares.
  for (auto bad : {"", "%", "0", "-5%", "101", "5x", "nan", "1e999",
                   "99999999999999999999"})
    CHECK_MESSAGE(!parse_percent(bad), bad);
  CHECK(*parse_percent("0.5%") == 0.5);
  CHECK(*parse_percent("100") == 100);
  // Outcomes of devices no rollout watches are counted and dropped.
  for (int i = 0; i < 1000; ++i)
    caf::anon_send(f.ro, outcome_atom::value,
                   sync_outcome{"intruder-" + std::to_string(i), "metrics",
                                i, true, 1 << 20, 1});
  auto stats = test::ask<actor_stats>(*f.self, f.ro, 5s, stats_atom::value);
  CHECK(stats.counters["outcomes_ignored"] >= 1000);
}

TEST_CASE("a rollout takes only its org's devices; orgs roll out at once") {
  rollout_fixture f(2);
  // Devices of orgs as ingest stores them once their key proved the org.
  for (auto id : {"acme/d1", "acme/d2", "other/d3"}) {
    ingest_batch b;
    b.device_id = id;
    b.stream = "metrics";
    b.epoch = "e1";
    b.checksum = "c1";
    b.sequence = 1;
    b.samples = {metric_sample{"cpu", {}, clock_start_ms, 1.0}};
    test::ask<ingest_outcome>(*f.self, f.store, 5s, write_atom::value, b);
  }
  auto c = f.start(batch_size(500));
  c.org = "acme";
  c.canary_percent = 100;
  c.steps = {100};
  auto st = f.run(c);
  CHECK(st.phase == "baking");
  CHECK(st.stages.size() == 1);
  CHECK(st.devices == 2);
  CHECK(st.changed == 2);
  c.org = "other";
  c.change = batch_size(300);
  st = f.run(c);
  CHECK(st.devices == 1);
  CHECK(st.changed == 1);
  auto settings = [&](const std::string& id) {
    return test::ask<cloud_settings>(*f.self, f.store, 5s, config_atom::value,
                                     id)
      .batch_size;
  };
  CHECK(settings("acme/d1") == 500);
  CHECK(settings("acme/d2") == 500);
  CHECK(settings("other/d3") == 300);
  CHECK(settings("dev-000") == 0);
  CHECK(settings("dev-001") == 0);
  CHECK(f.status().phase == "none");
  // One org's rollback leaves the other's alone.
  auto back = op("rollback");
  back.org = "acme";
  CHECK(f.run(back).phase == "rolled_back");
  CHECK(settings("acme/d1") == 0);
  CHECK(settings("other/d3") == 300);
}
