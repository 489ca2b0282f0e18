// Memory stores for tiers 2 and 3: bounds hold, every drop is counted.
#include <doctest/doctest.h>

#include "edge/memory_store.hpp"
#include "messages/wire.hpp"

using namespace fleetd;

namespace {

metric_samples round_of(int64_t ts, int series) {
  metric_samples out;
  for (int i = 0; i < series; ++i) {
    metric_sample x;
    x.name = "sensor_" + std::to_string(i);
    x.labels = {{"unit", "c"}};
    x.timestamp_ms = ts;
    x.value = static_cast<double>(ts % 1000) + i;
    out.push_back(std::move(x));
  }
  return out;
}

int64_t point_drops(memory_store& st) {
  auto d = st.drops();
  return d[drop_kind::metrics_synced] + d[drop_kind::metrics_queued_copy]
         + d[drop_kind::metrics_unsynced];
}

// One sync round against a cloud that acks everything: batch and ack.
void sync_all(memory_store& st, int64_t now,
              const char* stream = metrics_stream) {
  auto up = st.fetch(stream, 1000);
  REQUIRE(up);
  if (up->size() == 0)
    return;
  queued_batch b;
  b.stream = stream;
  b.sequence = up->next_sequence;
  b.last_id = up->last_id;
  b.points = static_cast<int64_t>(up->size());
  b.created_ms = now;
  REQUIRE(st.enqueue(b));
  REQUIRE(st.ack(stream, b.sequence, 0, {}, {}));
}

} // namespace

TEST_CASE("an ack that deletes its batch keeps the series session and its "
          "histories") {
  auto clk = std::make_shared<manual_clock>(0);
  memory_store st{memory_limits{1000, 0, 100}, clk};
  metric_sample s;
  s.name = "a";
  s.timestamp_ms = 1;
  REQUIRE(st.store(metric_samples{s}));
  auto up = st.fetch(metrics_stream, 10);
  REQUIRE(up);
  queued_batch b;
  b.stream = metrics_stream;
  b.sequence = up->next_sequence;
  b.last_id = up->last_id;
  b.points = 1;
  REQUIRE(st.enqueue(b));
  REQUIRE(st.ack(metrics_stream, b.sequence, 0, {s}, "h1"));
  auto ws = st.session(metrics_stream);
  REQUIRE(ws);
  CHECK(ws->series.size() == 1);
  CHECK(ws->history == "h1");
  // Nothing deleted: unchanged.
  REQUIRE(st.ack(metrics_stream, b.sequence, 1, {s}, "h2"));
  CHECK(st.session(metrics_stream)->history == "h1");
  CHECK(st.session(metrics_stream)->series.size() == 1);
}

TEST_CASE("the collected and stored counts outlive a storage actor on the "
          "same memory store") {
  auto clk = std::make_shared<manual_clock>(0);
  memory_store st{memory_limits{1000, 0, 100}, clk};
  CHECK(st.load_flow().streams.empty());
  flow_counts x{st.epoch(), {}};
  count_flow(x, st.epoch(), metrics_stream, 7, 6);
  REQUIRE_FALSE(st.save_flow(x));
  auto y = st.load_flow();
  CHECK(y == x);
  CHECK(y.streams.at(metrics_stream).collected == 7);
  CHECK(y.streams.at(metrics_stream).stored == 6);
}

TEST_CASE("a tier 2 ring keeps the latest 1000 points through hours offline") {
  auto clk = std::make_shared<manual_clock>(0);
  memory_store st{memory_limits{1000, 0, 100}, clk};
  int64_t stored = 0;
  // Six simulated hours, 30 series every 10 s, no cloud.
  for (int i = 0; i < 6 * 360; ++i) {
    clk->advance(10000);
    auto n = st.store(round_of(clk->now_ms(), 30));
    REQUIRE(n);
    stored += *n;
    CHECK(st.points_held() <= 1000);
  }
  CHECK(st.points_held() == 1000);
  CHECK(stored == st.points_held() + point_drops(st));
  CHECK(st.drops()[drop_kind::metrics_unsynced] == stored - 1000);
  // The newest data is what is left.
  auto up = st.fetch(metrics_stream, 2000);
  REQUIRE(up);
  CHECK(up->samples.back().timestamp_ms == clk->now_ms());
}

TEST_CASE("a tier 2 ring drops synced points first as the cloud acks") {
  auto clk = std::make_shared<manual_clock>(0);
  memory_store st{memory_limits{1000, 0, 100}, clk};
  int64_t stored = 0;
  for (int i = 0; i < 720; ++i) {
    clk->advance(10000);
    stored += *st.store(round_of(clk->now_ms(), 30));
    if (i % 6 == 5)
      sync_all(st, clk->now_ms());
  }
  auto d = st.drops();
  CHECK(d[drop_kind::metrics_unsynced] == 0);
  CHECK(d[drop_kind::metrics_synced] > 0);
  CHECK(stored == st.points_held() + point_drops(st));
}

TEST_CASE("a tier 3 store keeps the current value and the last 10 readings") {
  auto clk = std::make_shared<manual_clock>(0);
  memory_store st{memory_limits{0, 10, 10}, clk};
  int64_t stored = 0;
  for (int i = 0; i < 3 * 360; ++i) {
    clk->advance(10000);
    stored += *st.store(round_of(clk->now_ms(), 5));
  }
  CHECK(st.points_held() == 5 * 10);
  CHECK(stored == st.points_held() + point_drops(st));
  auto up = st.fetch(metrics_stream, 1000);
  REQUIRE(up);
  CHECK(up->samples.size() == 50);
  CHECK(up->samples.front().timestamp_ms == clk->now_ms() - 9 * 10000);
}

TEST_CASE("a bounded batch queue drops and counts the oldest unacked batch") {
  auto clk = std::make_shared<manual_clock>(0);
  memory_store st{memory_limits{0, 0, 3}, clk};
  for (int64_t seq = 1; seq <= 5; ++seq) {
    REQUIRE(st.store(round_of(seq, 4)));
    auto up = st.fetch(metrics_stream, 100);
    REQUIRE(up);
    queued_batch b;
    b.stream = metrics_stream;
    b.sequence = seq;
    b.last_id = up->last_id;
    b.points = static_cast<int64_t>(up->samples.size());
    REQUIRE(st.enqueue(b));
  }
  auto pend = st.pending(metrics_stream, 10);
  REQUIRE(pend);
  REQUIRE(pend->size() == 3);
  CHECK(pend->front().sequence == 3);
  CHECK(st.drops()[drop_kind::batches_unsynced] == 2);
  CHECK(st.drops()[drop_kind::metrics_unsynced] == 8);
  // Declared per stream, so the cloud does not count them missing too.
  CHECK(drop_kind::declared(metrics_stream, st.epoch(), st.drops()).records
        == std::map<std::string, int64_t>{{"metrics_batches", 2},
                                          {"metrics_unsynced", 8}});
  CHECK_FALSE(st.enqueue(queued_batch{metrics_stream, 9, 0, 0, 0, 0, ""}));
}

TEST_CASE("a memory store keeps the newest cursor of each log source with "
          "its lines (both lost together at a restart)") {
  memory_store st({}, make_system_clock());
  CHECK(st.cursors()->empty());
  log_lines one{log_line{{{"job", "t"}}, 1, "a"}};
  REQUIRE(st.store_logs(one, {{"log:/x", 2, "v2 1:2"}}));
  REQUIRE(st.store_logs({}, {{"log:/x", 1, "v2 1:0"}, {"log:/y", 3, "v2"}}));
  auto cs = st.cursors();
  REQUIRE(cs);
  REQUIRE(cs->size() == 2);
  CHECK((*cs)[0].value == "v2 1:2");
  CHECK((*cs)[1].key == "log:/y");
  CHECK(st.fetch(logs_stream, 10)->logs.size() == 1);
}

TEST_CASE("what a stream declares: its losses by kind under the store's "
          "epoch, not copies or synced rows, not other streams") {
  auto clk = std::make_shared<manual_clock>(0);
  memory_store st{memory_limits{1000, 0, 100}, clk};
  REQUIRE(st.store(round_of(1, 1000)));
  sync_all(st, 1);
  REQUIRE(st.store(round_of(2, 1500)));
  auto d = st.drops();
  CHECK(d[drop_kind::metrics_synced] == 1000);
  CHECK(d[drop_kind::metrics_unsynced] == 500);
  auto m = drop_kind::declared(metrics_stream, st.epoch(), st.drops());
  CHECK(m.origin == st.epoch());
  CHECK(m.records
        == std::map<std::string, int64_t>{{drop_kind::metrics_unsynced, 500}});
  CHECK(drop_kind::declared(logs_stream, st.epoch(), st.drops())
          .records.empty());
  // A store started afresh declares under a new origin.
  memory_store again{memory_limits{1000, 0, 100}, clk};
  CHECK(again.epoch() != st.epoch());
}

TEST_CASE("events the cap drops before any batch covers them, and records "
          "refused before storage, are declared drops of their stream") {
  auto clk = std::make_shared<manual_clock>(0);
  memory_store st{memory_limits{1000, 0, 100}, clk};
  // 30 events synced, then 100 more: the cap of 100 drops the 30 synced
  // ones (no loss), none unsynced.
  for (int i = 0; i < 30; ++i)
    REQUIRE_FALSE(st.record_event("k", std::to_string(i)));
  sync_all(st, 0, events_stream);
  CHECK(st.fetch(events_stream, 100)->events.empty());
  for (int i = 0; i < 100; ++i)
    REQUIRE_FALSE(st.record_event("k", "more"));
  CHECK(st.drops()[drop_kind::events] == 30);
  CHECK(st.drops()[drop_kind::events_unsynced] == 0);
  // 25 more push out 25 that no batch holds: lost, and declared.
  for (int i = 0; i < 25; ++i)
    REQUIRE_FALSE(st.record_event("k", "lost"));
  CHECK(st.drops()[drop_kind::events] == 55);
  CHECK(st.drops()[drop_kind::events_unsynced] == 25);
  REQUIRE_FALSE(st.count_refused(drop_kind::refused(events_stream,
                                                    "bad_format"), 3));
  REQUIRE_FALSE(st.count_refused(drop_kind::refused(metrics_stream,
                                                    "too_large"), 7));
  auto e = drop_kind::declared(events_stream, st.epoch(), st.drops());
  CHECK(e.records
        == std::map<std::string, int64_t>{
          {drop_kind::events_unsynced, 25}, {"events_refused_bad_format", 3}});
  auto m = drop_kind::declared(metrics_stream, st.epoch(), st.drops());
  CHECK(m.records
        == std::map<std::string, int64_t>{{"metrics_refused_too_large", 7}});
}
