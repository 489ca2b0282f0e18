// The sink runner: the journal delivered in order, resumed from the
// persisted cursor after a restart, retried with backoff and a breaker,
// refused entries and undecodable rows counted and skipped.
#include "cloud/sink_runner.hpp"

#include <memory>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "messages/error.hpp"
#include "helpers.hpp"
#include "journal_sinks.hpp"
#include "runner_fixture.hpp"
#include "store_batches.hpp"

using namespace fleetd;
using namespace std::chrono_literals;
using test::recorder_sink;
using test::runner_fixture;

namespace {

std::vector<int64_t> seqs(int64_t from, int64_t to) {
  std::vector<int64_t> out;
  for (auto i = from; i <= to; ++i)
    out.push_back(i);
  return out;
}

// `a` then `b`: what a rewrite after `a` delivers.
std::vector<int64_t> joined(std::vector<int64_t> a,
                            const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Entries 1..`n` delivered to a recorder whose writes count as durable only
// 1 s (node clock) after; nothing saved yet.
struct windowed : runner_fixture {
  std::shared_ptr<recorder_sink> sink = std::make_shared<recorder_sink>("rec");
  sink_runner_actor r;

  explicit windowed(int64_t n) {
    write(1, n);
    sink->set_durable_after(1000ms);
    r = start(runner_cfg(sink));
    CHECK(test::eventually([&] { return sink->sequences() == seqs(1, n); },
                           10s));
    CHECK(counters(r)["saved_cursor"] == 0);
    CHECK(journal_rows() == n);
  }
};

} // namespace

TEST_CASE("a sink receives every journal entry once, in order, and the "
          "journal empties behind it") {
  runner_fixture f;
  f.write(1, 10);
  auto sink = std::make_shared<recorder_sink>("rec");
  auto r = f.start(f.runner_cfg(sink));
  CHECK(test::eventually([&] { return sink->sequences().size() >= 10; }, 10s));
  CHECK(sink->sequences() == seqs(1, 10));
  auto xs = sink->entries();
  CHECK(xs[0].org == "acme");
  CHECK(xs[0].device == "dev-1");
  CHECK(xs[0].samples.size() == 2);
  CHECK(test::eventually([&] { return f.journal_rows() == 0; }, 10s));
  auto c = f.counters(r);
  CHECK(c["written"] == 10);
  CHECK(c["lag_entries"] == 0);
  CHECK(c["errors"] == 0);
  // Later batches follow without a restart.
  f.write(11, 12);
  CHECK(test::eventually([&] { return sink->sequences().size() == 12; }, 10s));
}

TEST_CASE("a write holds at most sinks.batch-points points past its first "
          "entry, whatever sinks.batch-entries allows") {
  runner_fixture f;
  f.write(1, 10); // 2 samples each
  auto sink = std::make_shared<recorder_sink>("rec");
  auto cfg = f.runner_cfg(sink); // 3 entries a write
  cfg.chunk.points = 3;
  auto r = f.start(cfg);
  CHECK(test::eventually([&] { return sink->sequences().size() >= 10; }, 10s));
  CHECK(sink->sequences() == seqs(1, 10));
  // 2 + 2 passes 3: each write stops after its second entry.
  CHECK(sink->write_sizes() == std::vector<size_t>(5, 2));
  CHECK(test::eventually([&] { return f.journal_rows() == 0; }, 10s));
}

TEST_CASE("a restarted runner resumes after its persisted cursor: nothing "
          "twice, nothing missed") {
  runner_fixture f;
  f.write(1, 5);
  auto sink = std::make_shared<recorder_sink>("rec");
  auto r = f.start(f.runner_cfg(sink));
  REQUIRE(test::eventually([&] { return sink->sequences().size() == 5; }, 10s));
  f.stop(r);
  f.write(6, 9);
  f.start(f.runner_cfg(sink));
  CHECK(test::eventually([&] { return sink->sequences().size() >= 9; }, 10s));
  CHECK(sink->sequences() == seqs(1, 9));
}

TEST_CASE("retryable errors back off, then the same entries are delivered; "
          "enough of them open the breaker") {
  runner_fixture f;
  f.write(1, 3);
  auto sink = std::make_shared<recorder_sink>("rec");
  sink->fail_next(4);
  auto c = f.runner_cfg(sink);
  c.breaker_threshold = 3;
  auto r = f.start(c);
  // The breaker reopens on the node's clock: time passes only when told.
  CHECK(test::eventually([&] { return f.counters(r)["breaker_open"] == 1; },
                         10s));
  CHECK(sink->sequences().empty());
  // The probe fails once more (the breaker reopens), then delivers.
  CHECK(test::eventually(
    [&] {
      f.clock->advance(10);
      return sink->sequences().size() == 3;
    },
    10s));
  CHECK(sink->sequences() == seqs(1, 3));
  auto n = f.counters(r);
  CHECK(n["retries"] == 4);
  CHECK(n["breaker_opened"] == 1);
  CHECK(n["breaker_open"] == 0);
  CHECK(n["written"] == 3);
}

TEST_CASE("writes younger than the backend's durable_after are not saved; "
          "after a failure they are written again, then saved and pruned") {
  // No time passes on the node's clock: nothing durable, nothing saved.
  windowed f{6};
  auto& sink = f.sink;
  auto& r = f.r;
  // The backend fails (it may have lost what it held in memory).
  sink->fail_next(1);
  f.write(7, 9);
  auto again = joined(seqs(1, 6), seqs(1, 9));
  CHECK(test::eventually([&] { return sink->sequences() == again; }, 10s));
  CHECK(f.counters(r)["rewinds"] == 1);
  f.clock->advance(1000);
  CHECK(test::eventually([&] { return f.journal_rows() == 0; }, 10s));
  auto n = f.counters(r);
  CHECK(n["saved_cursor"] == n["cursor"]);
  CHECK(n["lag_entries"] == 0);
}

TEST_CASE("a backend that restarted since the writes is not saved past "
          "them: they are written again, then saved once it did not") {
  windowed f{3};
  auto& sink = f.sink;
  auto& r = f.r;
  // One window, one watch; no check before anything is due.
  CHECK(sink->watches_checks() == std::pair{1, 0});
  sink->restart_next(1);
  f.clock->advance(1000);
  auto again = joined(seqs(1, 3), seqs(1, 3));
  CHECK(test::eventually([&] { return sink->sequences() == again; }, 10s));
  auto n = f.counters(r);
  CHECK(n["restarts"] == 1);
  CHECK(n["rewinds"] == 1);
  CHECK(n["saved_cursor"] == 0);
  CHECK(f.journal_rows() == 3);
  // The rewrite opened a new window; a quarter window later it is checked.
  CHECK(sink->watches_checks() == std::pair{2, 1});
  f.clock->advance(1000);
  CHECK(test::eventually([&] { return f.journal_rows() == 0; }, 10s));
  CHECK(sink->watches_checks() == std::pair{2, 2});
  CHECK(f.counters(r)["restarts"] == 1);
}

TEST_CASE("an entry the backend refuses invalid_record is counted and "
          "skipped; the rest of its chunk is delivered") {
  runner_fixture f;
  f.write(1, 6);
  auto sink = std::make_shared<recorder_sink>("rec");
  sink->refuse(2);
  auto r = f.start(f.runner_cfg(sink));
  CHECK(test::eventually([&] { return sink->sequences().size() == 5; }, 10s));
  CHECK(sink->sequences() == std::vector<int64_t>{1, 3, 4, 5, 6});
  CHECK(test::eventually([&] { return f.counters(r)["invalid"] == 1; }, 10s));
  CHECK(test::eventually([&] { return f.journal_rows() == 0; }, 10s));
}

TEST_CASE("rows stay until every enabled sink passed them") {
  runner_fixture f;
  f.write(1, 4);
  auto a = std::make_shared<recorder_sink>("a");
  auto b = std::make_shared<recorder_sink>("b");
  f.start(f.runner_cfg(a, {"a", "b"}));
  REQUIRE(test::eventually([&] { return a->sequences().size() == 4; }, 10s));
  CHECK(f.journal_rows() == 4);
  f.start(f.runner_cfg(b, {"a", "b"}));
  CHECK(test::eventually([&] { return b->sequences().size() == 4; }, 10s));
  CHECK(test::eventually([&] { return f.journal_rows() == 0; }, 10s));
}

TEST_CASE("a journal row that does not decode is counted and skipped, not a "
          "crash loop") {
  runner_fixture f;
  f.write(1, 2);
  {
    auto db = sqlite::database::open(f.path);
    REQUIRE(db);
    REQUIRE_FALSE(db->exec("INSERT INTO journal (received_ms, org, device, "
                           "entry) VALUES (1, 'acme', 'dev-1', x'28b52ffd0000')"));
  }
  f.write(3, 4);
  auto sink = std::make_shared<recorder_sink>("rec");
  auto r = f.start(f.runner_cfg(sink));
  CHECK(test::eventually([&] { return sink->sequences().size() == 4; }, 10s));
  CHECK(sink->sequences() == seqs(1, 4));
  auto c = f.counters(r);
  CHECK(c["undecodable"] == 1);
  CHECK(c["written"] == 4);
}
