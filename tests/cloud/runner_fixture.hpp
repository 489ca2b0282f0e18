#pragma once

// A journal in a scratch embedded store and sink runners draining it on a
// manual clock: sink_runner_test and the runner against real servers.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "cloud/embedded_journal.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/sink_runner.hpp"
#include "messages/error.hpp"
#include "messages/register.hpp"
#include "runtime/sqlite.hpp"
#include "ask.hpp"
#include "scratch_dir.hpp"
#include "store_batches.hpp"

namespace fleetd::test {

using namespace std::chrono_literals;

struct runner_fixture {
  scratch_dir dir{"fleetd-sinkrunner"};
  std::shared_ptr<manual_clock> clock
    = std::make_shared<manual_clock>(store_clock_start_ms);
  std::string path = dir.file("cloud.db");
  journal_config jcfg;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  std::unique_ptr<embedded_store> store;
  std::vector<sink_runner_actor> runners;

  runner_fixture() {
    REQUIRE(dir.ok());
    jcfg.enabled = true;
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
    auto st = embedded_store::open(path, clock, jcfg);
    REQUIRE_MESSAGE(st, render(st.error()));
    store = std::make_unique<embedded_store>(std::move(*st));
  }

  ~runner_fixture() {
    for (auto& r : runners)
      stop(r);
  }

  void stop(const sink_runner_actor& r) {
    (*self)->send_exit(r, caf::exit_reason::user_shutdown);
    (*self)->wait_for(r);
  }

  void write(const ingest_batch& b) {
    auto r = store->write(b);
    REQUIRE_MESSAGE(r, render(r.error()));
  }

  void write(int64_t from, int64_t to) {
    for (auto i = from; i <= to; ++i)
      write(journal_batch("acme/dev-1", i));
  }

  sink_runner_config runner_cfg(std::shared_ptr<sink_backend> sink,
                                std::vector<std::string> enabled = {}) {
    sink_runner_config c;
    c.chunk.entries = 3;
    c.poll = 5ms;
    c.backoff_base = 1ms;
    c.backoff_cap = 5ms;
    c.breaker_open = 5ms;
    c.seed = 7;
    c.clock = clock;
    c.holder = "node-1";
    c.backend = sink;
    c.enabled = enabled.empty() ? std::vector<std::string>{sink->name()}
                                : enabled;
    c.open_reader = [p = path, clk = clock,
                     j = jcfg]() -> caf::expected<std::shared_ptr<journal_reader>> {
      auto r = embedded_journal::open(p, clk, j);
      if (!r)
        return r.error();
      return std::shared_ptr<journal_reader>{
        std::make_shared<embedded_journal>(std::move(*r))};
    };
    return c;
  }

  sink_runner_actor start(sink_runner_config c) {
    auto r = sys->spawn<caf::detached>(sink_runner, std::move(c));
    runners.push_back(r);
    return r;
  }

  std::map<std::string, int64_t> counters(const sink_runner_actor& r) {
    return ask<actor_stats>(*self, r, 5s, stats_atom::value).counters;
  }

  int64_t journal_rows() {
    auto db = sqlite::database::open(path);
    REQUIRE(db);
    auto st = db->prepare("SELECT count(*) FROM journal");
    REQUIRE(st);
    REQUIRE(*st->step());
    return st->column_int(0);
  }
};

} // namespace fleetd::test
