#pragma once

// A SQLite store's file on a manual clock, and what another connection sees
// of it: what a commit put on disk. Shared by the commit-interval and the
// group-commit tests.

#include <memory>
#include <string>

#include <doctest/doctest.h>

#include "edge/sqlite_store.hpp"
#include "fault_disk.hpp"
#include "runtime/sqlite.hpp"
#include "scratch_dir.hpp"

namespace fleetd::test {

constexpr int64_t commit_start_ms = 1'700'000'000'000;

struct commit_fixture {
  explicit commit_fixture(const char* prefix) : dir(prefix) {
    // nop
  }

  scratch_dir dir;
  std::shared_ptr<manual_clock> clk
    = std::make_shared<manual_clock>(commit_start_ms);

  sqlite_store_config base_config() {
    sqlite_store_config cfg;
    cfg.path = dir.path() + "/fleetd.db";
    cfg.clock = clk;
    return cfg;
  }

  // Rows another connection sees: what is in the file.
  int64_t rows_on_disk(const char* table) {
    auto n = rows_unlocked(dir.path() + "/fleetd.db", table);
    REQUIRE(n >= 0);
    return n;
  }
};

/// A commit_fixture whose config(v) sets one field of the store's limits.
template <int64_t storage_limits::*Field>
struct limit_fixture : commit_fixture {
  using commit_fixture::commit_fixture;

  sqlite_store_config config(int64_t value) {
    auto cfg = base_config();
    cfg.limits.*Field = value;
    return cfg;
  }
};

/// `n` samples of series m{i=0..n-1} at `ts`.
inline metric_samples round_of(int64_t n, int64_t ts) {
  metric_samples xs;
  for (int64_t i = 0; i < n; ++i)
    xs.push_back(metric_sample{"m", {{"i", std::to_string(i)}}, ts, 1.0 * i});
  return xs;
}

/// Fetches every unbatched sample of `st` and persists them as one batch;
/// its sequence.
inline int64_t enqueue_all(sqlite_store& st, int64_t points) {
  auto up = st.fetch("metrics", 100);
  REQUIRE(up);
  REQUIRE(static_cast<int64_t>(up->samples.size()) == points);
  queued_batch b;
  b.stream = "metrics";
  b.sequence = up->next_sequence;
  b.last_id = up->last_id;
  b.points = points;
  b.created_ms = commit_start_ms;
  b.body = "body";
  REQUIRE(st.enqueue(b));
  return b.sequence;
}

} // namespace fleetd::test
