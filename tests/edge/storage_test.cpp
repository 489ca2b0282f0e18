// The device's SQLite store: samples, the sync queue, stream cursors, and
// what happens to a file that is not a database.
#include "edge/sqlite_store.hpp"
#include "edge/storage.hpp"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "ask.hpp"
#include "fault_disk.hpp"
#include "scratch_dir.hpp"

#include "messages/error.hpp"
#include "messages/register.hpp"
#include "messages/wire.hpp"
#include "runtime/sqlite.hpp"
#include "check_samples.hpp"

using namespace fleetd;
using test::check_same_samples;
using namespace std::chrono_literals;

namespace fs = std::filesystem;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;

const std::string stream = metrics_stream;

// Each suite names its own temp directories, so leftovers say whose they are.
constexpr const char* dir_prefix = "fleetd-storage";

/// A timestamp `offset` ms after the clock's start: well inside retention.
int64_t ts(int64_t offset) {
  return clock_start_ms + offset;
}

metric_sample sample(std::string name, label_map labels, int64_t ts,
                     double value) {
  metric_sample s;
  s.name = std::move(name);
  s.labels = std::move(labels);
  s.timestamp_ms = ts;
  s.value = value;
  return s;
}

/// `n` samples over two series that share a name, then a label-less one.
metric_samples samples_from(int64_t first_ts, size_t n) {
  metric_samples out;
  for (size_t i = 0; i < n; ++i) {
    auto ts = first_ts + static_cast<int64_t>(i);
    switch (i % 3) {
      case 0:
        out.push_back(sample("cpu", {{"core", "0"}, {"mode", "user"}}, ts,
                             static_cast<double>(i) + 0.25));
        break;
      case 1:
        out.push_back(sample("cpu", {{"core", "1"}, {"mode", "user"}}, ts,
                             -static_cast<double>(i)));
        break;
      default:
        out.push_back(sample("mem.free", {}, ts, 1e9 + static_cast<double>(i)));
    }
  }
  return out;
}

metric_samples slice(const metric_samples& xs, size_t from, size_t to) {
  return metric_samples(xs.begin() + static_cast<ptrdiff_t>(from),
                        xs.begin() + static_cast<ptrdiff_t>(to));
}

bool has_code(const caf::error& err, ec code) {
  return err.category() == caf::atom("fleetd")
         && err.code() == static_cast<uint8_t>(code);
}

/// Bytes a real batch body could hold: NULs, high bytes, a zstd magic.
std::string body_for(int64_t seq) {
  std::string out("\x28\xB5\x2F\xFD", 4);
  out += std::string(3, '\0');
  out += "batch " + std::to_string(seq);
  out += std::string("\xFF\x00\x80\x7F", 4);
  return out;
}

queued_batch batch(int64_t seq, int64_t last_id, int64_t points) {
  queued_batch b;
  b.stream = stream;
  b.sequence = seq;
  b.last_id = last_id;
  b.points = points;
  b.created_ms = clock_start_ms + seq;
  b.body = body_for(seq);
  return b;
}

struct store_fixture {
  test::scratch_dir dir{dir_prefix};
  std::shared_ptr<manual_clock> clock
    = std::make_shared<manual_clock>(clock_start_ms);
  std::string path = dir.file("fleetd.db");

  sqlite_store_config config() const {
    sqlite_store_config cfg;
    cfg.path = path;
    cfg.clock = clock;
    return cfg;
  }

  sqlite_store open() {
    REQUIRE(dir.ok());
    auto st = sqlite_store::open(config());
    REQUIRE_MESSAGE(st, "cannot open " << path << ": "
                                       << (st ? "" : render(st.error())));
    return std::move(*st);
  }
};

unbatched_points fetch_all(sqlite_store& st, int64_t max = 1000) {
  auto r = st.fetch(stream, max);
  REQUIRE_MESSAGE(r, render(r.error()));
  return std::move(*r);
}

queued_batches pending_all(sqlite_store& st, int64_t max = 1000) {
  auto r = st.pending(stream, max);
  REQUIRE_MESSAGE(r, render(r.error()));
  return std::move(*r);
}

void store_ok(sqlite_store& st, const metric_samples& xs) {
  auto n = st.store(xs);
  REQUIRE_MESSAGE(n, render(n.error()));
  CHECK(*n == static_cast<int64_t>(xs.size()));
}

/// Runs `sql` on a second connection to the same file.
void exec_beside(const std::string& path, const std::string& sql) {
  auto db = sqlite::database::open(path);
  REQUIRE_MESSAGE(db, render(db.error()));
  auto err = db->exec(sql);
  REQUIRE_MESSAGE(!err, render(err));
}

} // namespace

TEST_CASE("stored samples come back from fetch in order with names and "
          "labels intact") {
  store_fixture f;
  auto st = f.open();
  auto xs = samples_from(clock_start_ms, 7);
  store_ok(st, slice(xs, 0, 4));
  store_ok(st, slice(xs, 4, 7));
  auto up = fetch_all(st);
  check_same_samples(up.samples, xs);
  CHECK(up.next_sequence == 1);
  CHECK(up.last_id == 7);
  SUBCASE("fetch returns at most max samples, oldest first") {
    auto two = fetch_all(st, 2);
    check_same_samples(two.samples, slice(xs, 0, 2));
    CHECK(two.last_id == 2);
  }
  SUBCASE("storing nothing commits nothing") {
    store_ok(st, {});
    CHECK(fetch_all(st).samples.size() == xs.size());
  }
  auto stats = st.stats();
  CHECK(stats.state == "ok");
  CHECK(stats.counters["points_stored"] == 7);
  CHECK(stats.counters["metrics_rows"] == 7);
  CHECK(stats.counters["series"] == 3);
  CHECK(stats.counters["unbatched_points"] == 7);
  CHECK(stats.counters["store_failures"] == 0);
}

TEST_CASE("an empty store fetches nothing and expects batch 1") {
  store_fixture f;
  auto st = f.open();
  auto up = fetch_all(st);
  CHECK(up.samples.empty());
  CHECK(up.last_id == 0);
  CHECK(up.next_sequence == 1);
  CHECK(pending_all(st).empty());
}

TEST_CASE("enqueue advances the stream cursor and the next sequence") {
  store_fixture f;
  auto st = f.open();
  auto xs = samples_from(clock_start_ms, 5);
  store_ok(st, xs);
  auto first = fetch_all(st, 3);
  REQUIRE(first.samples.size() == 3);
  auto seq = st.enqueue(batch(first.next_sequence, first.last_id, 3));
  REQUIRE_MESSAGE(seq, render(seq.error()));
  CHECK(*seq == 1);
  auto rest = fetch_all(st);
  CHECK(rest.next_sequence == 2);
  check_same_samples(rest.samples, slice(xs, 3, 5));
  CHECK(rest.last_id == 5);
  seq = st.enqueue(batch(rest.next_sequence, rest.last_id, 2));
  REQUIRE_MESSAGE(seq, render(seq.error()));
  CHECK(*seq == 2);
  auto none = fetch_all(st);
  CHECK(none.samples.empty());
  CHECK(none.next_sequence == 3);
  // Nothing new: the cursor stays where the last batch ended.
  CHECK(none.last_id == 5);
  auto stats = st.stats();
  CHECK(stats.counters["batches_enqueued"] == 2);
  CHECK(stats.counters["queued_batches"] == 2);
  CHECK(stats.counters["unbatched_points"] == 0);
}

TEST_CASE("an enqueue with the wrong sequence is refused with bad_sequence "
          "and changes nothing") {
  store_fixture f;
  auto st = f.open();
  auto xs = samples_from(clock_start_ms, 6);
  store_ok(st, xs);
  REQUIRE(st.enqueue(batch(1, 2, 2)));
  auto before = fetch_all(st);
  REQUIRE(before.next_sequence == 2);
  SUBCASE("a sequence from the future") {
    auto r = st.enqueue(batch(3, 4, 2));
    REQUIRE_FALSE(r);
    CHECK_MESSAGE(has_code(r.error(), ec::bad_sequence), render(r.error()));
  }
  SUBCASE("a sequence already used") {
    auto r = st.enqueue(batch(1, 4, 2));
    REQUIRE_FALSE(r);
    CHECK_MESSAGE(has_code(r.error(), ec::bad_sequence), render(r.error()));
  }
  SUBCASE("sequence zero") {
    auto r = st.enqueue(batch(0, 4, 2));
    REQUIRE_FALSE(r);
    CHECK_MESSAGE(has_code(r.error(), ec::bad_sequence), render(r.error()));
  }
  auto after = fetch_all(st);
  CHECK(after.next_sequence == 2);
  CHECK(after.last_id == before.last_id);
  check_same_samples(after.samples, before.samples);
  auto queued = pending_all(st);
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].sequence == 1);
  CHECK(queued[0].body == body_for(1));
  CHECK(st.stats().counters["batches_enqueued"] == 1);
  // The right sequence still goes in afterwards.
  CHECK(st.enqueue(batch(2, 6, 4)));
}

TEST_CASE("the first batch of a stream must be number 1") {
  store_fixture f;
  auto st = f.open();
  store_ok(st, samples_from(clock_start_ms, 2));
  auto r = st.enqueue(batch(2, 2, 2));
  REQUIRE_FALSE(r);
  CHECK(has_code(r.error(), ec::bad_sequence));
  CHECK(pending_all(st).empty());
  CHECK(fetch_all(st).samples.size() == 2);
}

TEST_CASE("pending lists the lowest sequence first with identical body "
          "bytes") {
  store_fixture f;
  auto st = f.open();
  store_ok(st, samples_from(clock_start_ms, 9));
  for (int64_t seq = 1; seq <= 3; ++seq)
    REQUIRE(st.enqueue(batch(seq, seq * 3, 3)));
  auto all = pending_all(st);
  REQUIRE(all.size() == 3);
  for (int64_t seq = 1; seq <= 3; ++seq) {
    CAPTURE(seq);
    auto& b = all[static_cast<size_t>(seq - 1)];
    auto want = batch(seq, seq * 3, 3);
    CHECK(b.stream == stream);
    CHECK(b.sequence == seq);
    CHECK(b.last_id == want.last_id);
    CHECK(b.points == 3);
    CHECK(b.created_ms == want.created_ms);
    CHECK(b.retry_count == 0);
    CHECK(b.body.size() == want.body.size());
    CHECK(b.body == want.body);
  }
  auto one = pending_all(st, 1);
  REQUIRE(one.size() == 1);
  CHECK(one[0].sequence == 1);
  auto other = st.pending("logs", 10);
  REQUIRE(other);
  CHECK(other->empty());
}

TEST_CASE("a real encoded request survives the queue byte for byte") {
  store_fixture f;
  auto st = f.open();
  auto xs = samples_from(clock_start_ms, 50);
  store_ok(st, xs);
  auto up = fetch_all(st);
  encode_settings es;
  es.device_id = "edge-01";
  es.sequence = up.next_sequence;
  es.now_ms = clock_start_ms;
  auto b = batch(up.next_sequence, up.last_id, 50);
  b.body = encode_metrics_request(es, up.samples);
  REQUIRE(is_zstd(b.body));
  REQUIRE(st.enqueue(b));
  auto queued = pending_all(st);
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].body == b.body);
  auto back = decode_request(queued[0].body, true, 1 << 20);
  REQUIRE(back);
  check_same_samples(back->samples, xs);
}

TEST_CASE("an ack that deletes its batch keeps the series session and its "
          "histories in the same transaction; a reopened store has them") {
  store_fixture f;
  std::string blob1 = std::string("\x01\0\x02", 3);
  std::string blob2 = blob1 + "more";
  {
    auto st = f.open();
    store_ok(st, samples_from(clock_start_ms, 9));
    for (int64_t seq = 1; seq <= 2; ++seq)
      REQUIRE(st.enqueue(batch(seq, seq * 3, 3)));
    auto empty = st.session(stream);
    REQUIRE(empty);
    CHECK(empty->series.empty());
    CHECK(empty->history.empty());
    metric_samples defs = {sample("a", {}, 0, 0), sample("b", {{"k", "v"}}, 0, 0)};
    REQUIRE(st.ack(stream, 1, 0, defs, blob1));
    auto s1 = st.session(stream);
    REQUIRE(s1);
    REQUIRE(s1->series.size() == 2);
    CHECK(s1->series[1].labels == label_map{{"k", "v"}});
    CHECK(s1->history == blob1);
    // An ack that deletes nothing (a duplicate) leaves the session alone.
    REQUIRE(st.ack(stream, 1, 2, {sample("x", {}, 0, 0)}, "junk"));
    CHECK(st.session(stream)->history == blob1);
    CHECK(st.session(stream)->series.size() == 2);
    REQUIRE(st.ack(stream, 2, 2, {sample("c", {}, 0, 0)}, blob2));
  }
  auto st = f.open();
  auto s2 = st.session(stream);
  REQUIRE(s2);
  REQUIRE(s2->series.size() == 3);
  CHECK(s2->series[0].name == "a");
  CHECK(s2->series[2].name == "c");
  CHECK(s2->history == blob2);
}

TEST_CASE("ack deletes up to and including the sequence and fetch does not "
          "return batched points") {
  store_fixture f;
  auto st = f.open();
  auto xs = samples_from(clock_start_ms, 9);
  store_ok(st, xs);
  for (int64_t seq = 1; seq <= 3; ++seq)
    REQUIRE(st.enqueue(batch(seq, seq * 3, 3)));
  auto deleted = st.ack(stream, 2, 0, {}, {});
  REQUIRE_MESSAGE(deleted, render(deleted.error()));
  CHECK(*deleted == 2);
  auto left = pending_all(st);
  REQUIRE(left.size() == 1);
  CHECK(left[0].sequence == 3);
  CHECK(left[0].body == body_for(3));
  // Acked and batched points never come back from fetch.
  auto more = samples_from(clock_start_ms + 100, 2);
  store_ok(st, more);
  auto up = fetch_all(st);
  check_same_samples(up.samples, more);
  CHECK(up.next_sequence == 4);
  SUBCASE("acking the same sequence again deletes nothing") {
    auto again = st.ack(stream, 2, 0, {}, {});
    REQUIRE(again);
    CHECK(*again == 0);
    CHECK(pending_all(st).size() == 1);
  }
  SUBCASE("an ack beyond every batch deletes what is there") {
    auto all = st.ack(stream, 10, 0, {}, {});
    REQUIRE(all);
    CHECK(*all == 1);
    CHECK(pending_all(st).empty());
    // The next batch is still numbered after the last one cut.
    CHECK(fetch_all(st).next_sequence == 4);
  }
  SUBCASE("an ack of another stream touches nothing") {
    auto other = st.ack("logs", 3, 0, {}, {});
    REQUIRE(other);
    CHECK(*other == 0);
    CHECK(pending_all(st).size() == 1);
  }
  CHECK(st.stats().counters["batches_acked"] >= 2);
}

TEST_CASE("rows stored after retention emptied a table are still synced: "
          "ids are never reused") {
  store_fixture f;
  auto st = f.open();
  auto limits = st.limits();
  limits.retention_ms = 3600 * 1000;
  limits.events_retention_ms = 3600 * 1000;
  st.set_limits(limits);
  store_ok(st, samples_from(clock_start_ms, 6));
  REQUIRE(st.store_logs({log_line{{{"job", "a"}}, clock_start_ms * 1000000,
                                  "old line"}}));
  REQUIRE(!st.record_event("boot", "old event"));
  // Every stream is batched and acked: the cloud holds all of it.
  for (auto s : {metrics_stream, logs_stream, events_stream}) {
    CAPTURE(s);
    auto up = st.fetch(s, 100);
    REQUIRE(up);
    REQUIRE(up->size() >= 1);
    queued_batch b;
    b.stream = s;
    b.sequence = up->next_sequence;
    b.last_id = up->last_id;
    b.points = static_cast<int64_t>(up->size());
    b.created_ms = f.clock->now_ms();
    b.body = body_for(1);
    REQUIRE(st.enqueue(b));
    REQUIRE(st.ack(s, b.sequence, 0, {}, {}));
  }
  // Two hours later retention empties every table.
  f.clock->advance(2 * 3600 * 1000);
  auto dropped = st.enforce_limits();
  REQUIRE(dropped);
  CHECK(*dropped >= 8);
  CHECK(st.stats().counters["metrics_rows"] == 0);
  CHECK(st.stats().counters["logs_rows"] == 0);
  // New rows must come back from fetch, not hide below the cursor.
  auto fresh = samples_from(f.clock->now_ms(), 3);
  store_ok(st, fresh);
  REQUIRE(st.store_logs({log_line{{{"job", "a"}}, f.clock->now_ms() * 1000000,
                                  "new line"}}));
  REQUIRE(!st.record_event("boot", "new event"));
  check_same_samples(fetch_all(st).samples, fresh);
  auto logs = st.fetch(logs_stream, 100);
  REQUIRE(logs);
  REQUIRE(logs->logs.size() == 1);
  CHECK(logs->logs[0].line == "new line");
  auto events = st.fetch(events_stream, 100);
  REQUIRE(events);
  bool found = false;
  for (auto& e : events->events)
    found = found || e.message == "new event";
  CHECK(found);
}

TEST_CASE("NaN with its payload, infinities and -0.0 are stored bit for bit "
          "and survive a reopen") {
  store_fixture f;
  auto xs = test::special_samples(clock_start_ms);
  {
    auto st = f.open();
    store_ok(st, xs);
    check_same_samples(fetch_all(st).samples, xs, true);
  }
  auto st = f.open();
  check_same_samples(fetch_all(st).samples, xs, true);
}

TEST_CASE("a store of the REAL-valued schema migrates with its rows, ids and "
          "id high-water mark") {
  store_fixture f;
  REQUIRE(f.dir.ok());
  // The first schema's metrics table; rows 1..3 kept, 4..5 deleted (synced).
  exec_beside(f.path,
              "CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT NOT "
              "NULL, labels BLOB NOT NULL, UNIQUE (name, labels));"
              "CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, "
              "series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL "
              "NOT NULL);"
              "INSERT INTO series VALUES (1, 'old', x'');"
              "INSERT INTO metrics (series_id, ts, value) VALUES "
              "(1, 1700000000001, 0.25), (1, 1700000000002, -1e300), "
              "(1, 1700000000003, 9e999), (1, 1700000000004, 4), "
              "(1, 1700000000005, 5);"
              "DELETE FROM metrics WHERE id > 3;");
  auto st = f.open();
  metric_samples want{sample("old", {}, ts(1), 0.25),
                      sample("old", {}, ts(2), -1e300),
                      sample("old", {}, ts(3), double_of(
                                                 0x7ff0000000000000ULL))};
  auto up = fetch_all(st);
  check_same_samples(up.samples, want, true);
  CHECK(up.last_id == 3);
  // A new row takes id 6, not 4: ids are never reused.
  auto xs = test::special_samples(ts(10));
  store_ok(st, xs);
  auto all = fetch_all(st);
  check_same_samples(all.samples, test::concat({want, xs}), true);
  CHECK(all.last_id == 5 + static_cast<int64_t>(xs.size()));
}

TEST_CASE("everything survives closing and reopening the same file") {
  store_fixture f;
  auto xs = samples_from(clock_start_ms, 10);
  {
    auto st = f.open();
    store_ok(st, xs);
    REQUIRE(st.enqueue(batch(1, 3, 3)));
    REQUIRE(st.enqueue(batch(2, 6, 3)));
    REQUIRE(st.ack(stream, 1, 0, {}, {}));
  }
  auto st = f.open();
  auto queued = pending_all(st);
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].sequence == 2);
  CHECK(queued[0].last_id == 6);
  CHECK(queued[0].points == 3);
  CHECK(queued[0].created_ms == clock_start_ms + 2);
  CHECK(queued[0].body == body_for(2));
  auto up = fetch_all(st);
  CHECK(up.next_sequence == 3);
  // Names and labels come from the series table read back at open.
  check_same_samples(up.samples, slice(xs, 6, 10));
  auto stats = st.stats();
  CHECK(stats.counters["series"] == 3);
  CHECK(stats.counters["metrics_rows"] == 10);
  CHECK(stats.counters["moved_aside"] == 0);
  // Known series are reused after the reopen, not inserted twice.
  auto more = samples_from(clock_start_ms + 100, 3);
  store_ok(st, more);
  CHECK(st.stats().counters["series"] == 3);
  REQUIRE(st.enqueue(batch(3, 10, 4)));
  auto tail = fetch_all(st);
  check_same_samples(tail.samples, more);
  CHECK(tail.next_sequence == 4);
}

TEST_CASE("a corrupt file is moved aside and a fresh store opens") {
  store_fixture f;
  {
    auto st = f.open();
    store_ok(st, samples_from(clock_start_ms, 4));
  }
  REQUIRE(fs::exists(f.path));
  REQUIRE_FALSE(fs::exists(f.path + "-wal"));
  const std::string garbage(4096, '\xAB');
  {
    std::ofstream out(f.path, std::ios::binary | std::ios::trunc);
    out << garbage;
    REQUIRE(out);
  }
  f.clock->advance(1234);
  auto st = f.open();
  auto aside = f.path + ".corrupt-" + std::to_string(clock_start_ms + 1234);
  INFO("directory holds: " << [&] {
    std::string out;
    for (auto& e : f.dir.entries())
      out += e + " ";
    return out;
  }());
  REQUIRE(fs::exists(aside));
  // Renamed, never rewritten: the operator gets the bytes as they were.
  {
    std::ifstream in(aside, std::ios::binary);
    std::string kept((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    CHECK(kept == garbage);
  }
  auto up = fetch_all(st);
  CHECK(up.samples.empty());
  CHECK(up.next_sequence == 1);
  CHECK(pending_all(st).empty());
  CHECK(st.stats().counters["moved_aside"] == 1);
  // The fresh store works and lives at the original path.
  auto xs = samples_from(clock_start_ms, 2);
  store_ok(st, xs);
  check_same_samples(fetch_all(st).samples, xs);
  REQUIRE(st.enqueue(batch(1, 2, 2)));
  CHECK(pending_all(st).size() == 1);
}

TEST_CASE("a file that is not a database at all is moved aside too") {
  store_fixture f;
  REQUIRE(f.dir.ok());
  {
    std::ofstream out(f.path, std::ios::trunc);
    out << "this is a text file, not SQLite\n";
  }
  auto st = f.open();
  CHECK(fs::exists(f.path + ".corrupt-" + std::to_string(clock_start_ms)));
  CHECK(fetch_all(st).samples.empty());
}

TEST_CASE("a path in a missing directory is an error, not a crash") {
  store_fixture f;
  REQUIRE(f.dir.ok());
  sqlite_store_config cfg = f.config();
  cfg.path = f.dir.file("no/such/dir/fleetd.db");
  auto st = sqlite_store::open(cfg);
  REQUIRE_FALSE(st);
  CHECK_FALSE(fs::exists(f.dir.file("no")));
}

TEST_CASE("a store that fails after adding a series forgets the series") {
  store_fixture f;
  auto st = f.open();
  store_ok(st, {sample("known", {}, ts(1), 1.0)});
  // A trigger (made on a second connection) fails the metric insert after
  // store() has inserted the new series row within the same transaction.
  exec_beside(f.path, "CREATE TRIGGER refuse BEFORE INSERT ON metrics "
                      "WHEN NEW.bits = 0x4084d00000000000 BEGIN "
                      "SELECT RAISE(ABORT, 'refused by test'); END;");
  auto failed = st.store({sample("ghost", {{"k", "v"}}, ts(2), 666.0)});
  REQUIRE_FALSE(failed);
  // A constraint cannot be cured by retrying: not a storage failure.
  CHECK(has_code(failed.error(), ec::invalid_record));
  auto stats = st.stats();
  CHECK(stats.counters["store_failures"] == 1);
  CHECK(stats.counters["series"] == 1);
  CHECK(stats.state.rfind("last error: ", 0) == 0);
  exec_beside(f.path, "DROP TRIGGER refuse");
  // The rolled-back series id is free again; a new series may take it, and
  // the failed one must then get an id of its own.
  metric_samples xs{sample("other", {{"x", "y"}}, ts(3), 3.0),
                    sample("ghost", {{"k", "v"}}, ts(4), 4.0),
                    sample("known", {}, ts(5), 5.0)};
  store_ok(st, {xs[0]});
  store_ok(st, {xs[1], xs[2]});
  auto want = metric_samples{sample("known", {}, ts(1), 1.0)};
  want.insert(want.end(), xs.begin(), xs.end());
  check_same_samples(fetch_all(st).samples, want);
  CHECK(st.stats().counters["series"] == 3);
  SUBCASE("and the file agrees after a reopen") {
    // Closing first: only one store per file.
    {
      auto moved = std::move(st);
    }
    auto again = f.open();
    check_same_samples(fetch_all(again).samples, want);
  }
}

namespace {

// A storage actor's store and fetch as the sync asks them, for its
// collected/stored declaration.
struct flow_fixture : store_fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;

  flow_fixture() {
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
  }

  void stored(storage_actor st, int64_t n, int64_t from_ms) {
    (*self)->request(st, 5s, store_atom::value, samples_from(from_ms, n))
      .receive([&](int64_t) {},
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
  }

  drop_declaration declared(storage_actor st) {
    unbatched_points up;
    (*self)->request(st, 5s, fetch_atom::value, stream, int64_t{1000},
                     int64_t{1} << 30)
      .receive([&](unbatched_points& x) { up = std::move(x); },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return up.declared;
  }

  drop_declaration declared_after(storage_actor st, int64_t n,
                                  int64_t from_ms) {
    stored(st, n, from_ms);
    return declared(st);
  }

  // A storage actor on the store file as it is now.
  storage_actor start() {
    return sys->spawn<caf::detached>(storage,
                                     std::make_shared<sqlite_store>(open()));
  }

  void stop(storage_actor st) {
    (*self)->send_exit(st, caf::exit_reason::user_shutdown);
    (*self)->wait_for(st);
  }
};

} // namespace

TEST_CASE("the storage actor declares what it collected, stored and "
          "refused; reopened on the same file it declares no less") {
  flow_fixture f;
  auto& self = *f.self;
  std::string origin;
  {
    auto store = std::make_shared<sqlite_store>(f.open());
    origin = store->epoch();
    auto st = f.sys->spawn<caf::detached>(storage, store);
    auto d = f.declared_after(st, 4, clock_start_ms);
    CHECK(d.origin == origin);
    CHECK(d.collected == 4);
    CHECK(d.stored == 4);
    CHECK(d.records.empty());
    // Refused before storage: a drop of the stream; hostile names are not.
    self->send(st, refused_atom::value, std::string{"metrics"},
               std::string{"bad_format"}, int64_t{2});
    self->send(st, refused_atom::value, std::string{"nope"},
               std::string{"bad_format"}, int64_t{5});
    self->send(st, refused_atom::value, std::string{"metrics"},
               std::string(200, 'x'), int64_t{5});
    self->send(st, refused_atom::value, std::string{"metrics"},
               std::string{"too_large"}, int64_t{-3});
    d = f.declared_after(st, 3, clock_start_ms + 100);
    CHECK(d.collected == 7);
    CHECK(d.stored == 7);
    CHECK(d.records
          == std::map<std::string, int64_t>{{"metrics_refused_bad_format", 2}});
    bool flushed = false;
    self->request(st, 5s, flush_atom::value)
      .receive([&](bool ok) { flushed = ok; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    CHECK(flushed);
    f.stop(st);
  }
  auto store = std::make_shared<sqlite_store>(f.open());
  REQUIRE(store->epoch() == origin);
  auto st = f.sys->spawn<caf::detached>(storage, store);
  auto d = f.declared_after(st, 1, clock_start_ms + 200);
  CHECK(d.origin == origin);
  CHECK(d.collected == 8);
  CHECK(d.stored == 8);
  CHECK(d.records.at("metrics_refused_bad_format") == 2);
  f.stop(st);
}

TEST_CASE("a clean stop keeps the collected and stored counts not yet "
          "declared") {
  flow_fixture f;
  {
    auto st = f.start();
    f.stored(st, 4, clock_start_ms);
    CHECK(f.declared(st).collected == 4);
    // Counted, never declared: no batch was cut before the stop.
    f.stored(st, 5, clock_start_ms + 100);
    f.stop(st);
  }
  auto st = f.start();
  f.stored(st, 1, clock_start_ms + 200);
  auto d = f.declared(st);
  CHECK(d.collected == 10);
  CHECK(d.stored == 10);
  f.stop(st);
}

TEST_CASE("the storage actor answers store, fetch, enqueue, pending, ack, "
          "flush and stats") {
  store_fixture f;
  auto store = std::make_shared<sqlite_store>(f.open());
  caf::actor_system_config cfg;
  register_messages(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto st = sys.spawn<caf::detached>(storage, store);
  auto xs = samples_from(clock_start_ms, 4);
  int64_t stored = -1;
  self->request(st, 5s, store_atom::value, xs)
    .receive([&](int64_t n) { stored = n; },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(stored == 4);
  unbatched_points up;
  self->request(st, 5s, fetch_atom::value, stream, int64_t{10},
                int64_t{1} << 30)
    .receive([&](unbatched_points& x) { up = std::move(x); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  check_same_samples(up.samples, xs);
  REQUIRE(up.next_sequence == 1);
  std::optional<caf::error> refused;
  self->request(st, 5s, enqueue_atom::value, batch(2, up.last_id, 4))
    .receive([&](int64_t) { refused = caf::error{}; },
             [&](caf::error& err) { refused = std::move(err); });
  REQUIRE(refused);
  CHECK_MESSAGE(has_code(*refused, ec::bad_sequence), render(*refused));
  int64_t seq = 0;
  self->request(st, 5s, enqueue_atom::value, batch(1, up.last_id, 4))
    .receive([&](int64_t n) { seq = n; },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(seq == 1);
  queued_batches queued;
  self->request(st, 5s, pending_atom::value, stream, int64_t{10})
    .receive([&](queued_batches& x) { queued = std::move(x); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].body == body_for(1));
  int64_t deleted = -1;
  self->request(st, 5s, ack_atom::value,
                acked_batch{stream, 1, 0, metric_samples{}, std::string{}})
    .receive([&](int64_t n) { deleted = n; },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(deleted == 1);
  bool flushed = false;
  self->request(st, 5s, flush_atom::value)
    .receive([&](bool ok) { flushed = ok; },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(flushed);
  actor_stats stats;
  self->request(st, 5s, stats_atom::value)
    .receive([&](actor_stats& x) { stats = std::move(x); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(stats.name == "storage");
  CHECK(stats.counters["points_stored"] == 4);
  CHECK(stats.counters["batches_enqueued"] == 1);
  CHECK(stats.counters["batches_acked"] == 1);
  CHECK(stats.counters["queued_batches"] == 0);
  CHECK(stats.counters["unbatched_points"] == 0);
  // The refusal is remembered for the console.
  CHECK(stats.state.find("bad_sequence") != std::string::npos);
  self->send_exit(st, caf::exit_reason::user_shutdown);
  self->wait_for(st);
}

namespace {

/// Rows of `sql`'s first column on a connection of its own (as integers).
int64_t count_in(const std::string& path, const std::string& sql) {
  auto db = sqlite::database::open(path);
  REQUIRE_MESSAGE(db, render(db.error()));
  auto st = db->prepare(sql);
  REQUIRE_MESSAGE(st, render(st.error()));
  auto row = st->step();
  REQUIRE((row && *row));
  return st->column_int(0);
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

} // namespace

TEST_CASE("a database locked by another connection is an error naming the "
          "file and the lock; nothing is moved aside") {
  store_fixture f;
  {
    auto st = f.open();
    store_ok(st, samples_from(clock_start_ms, 30));
    REQUIRE(st.enqueue(batch(1, 10, 10)));
  }
  auto before = file_bytes(f.path);
  auto holder = sqlite::database::open(f.path);
  REQUIRE(holder);
  REQUIRE(!holder->exec("BEGIN IMMEDIATE"));
  auto locked = sqlite_store::open(f.config());
  REQUIRE_FALSE(locked);
  CHECK(has_code(locked.error(), ec::storage_locked));
  auto text = render(locked.error());
  CHECK(text.find(f.path) != std::string::npos);
  CHECK(text.find("lock") != std::string::npos);
  CHECK(text.find("left as it is") != std::string::npos);
  // Untouched: same bytes, no file moved aside.
  CHECK(file_bytes(f.path) == before);
  for (auto& e : f.dir.entries())
    CHECK(e.find(".corrupt-") == std::string::npos);
  REQUIRE(!holder->exec("ROLLBACK"));
  holder->close();
  auto st = f.open();
  CHECK(st.stats().counters["moved_aside"] == 0);
  CHECK(pending_all(st).size() == 1);
  CHECK(fetch_all(st).samples.size() == 20);
}

TEST_CASE("a file that cannot be opened is an error, not a move aside") {
  store_fixture f;
  REQUIRE(f.dir.ok());
  // A directory where the file should be: SQLite cannot open it.
  fs::create_directory(f.path);
  auto st = sqlite_store::open(f.config());
  REQUIRE_FALSE(st);
  CHECK(has_code(st.error(), ec::io_error));
  CHECK(render(st.error()).find(f.path) != std::string::npos);
  CHECK(fs::is_directory(f.path));
  CHECK_FALSE(fs::exists(f.path + ".corrupt-" + std::to_string(clock_start_ms)));
}

TEST_CASE("a corrupt file is salvaged: readable unsynced rows, the queue and "
          "the cursors go on in the fresh store, the unreadable are counted") {
  store_fixture f;
  auto xs = samples_from(clock_start_ms, 3000);
  std::string epoch;
  {
    auto st = f.open();
    epoch = st.epoch();
    store_ok(st, xs);
    REQUIRE(st.enqueue(batch(1, 100, 100)));
    REQUIRE(st.enqueue(batch(2, 200, 100)));
    REQUIRE(st.ack(stream, 1, 0, {}, {}));
    REQUIRE(st.store_logs({log_line{{{"unit", "a"}}, 5, "kept line"}}));
  }
  // One leaf page of metrics, past the acked rows, turned to garbage.
  int64_t page_size = count_in(f.path, "PRAGMA page_size");
  int64_t pageno = 0;
  int64_t cells = 0;
  {
    auto db = sqlite::database::open(f.path);
    REQUIRE(db);
    auto st = db->prepare("SELECT pageno, ncell FROM dbstat WHERE name = "
                          "'metrics' AND pagetype = 'leaf' ORDER BY path");
    REQUIRE_MESSAGE(st, render(st.error()));
    std::vector<std::pair<int64_t, int64_t>> leaves;
    REQUIRE(!sqlite::each_row(*st, [&](sqlite::statement& r) {
      leaves.emplace_back(r.column_int(0), r.column_int(1));
    }));
    REQUIRE(leaves.size() > 4);
    std::tie(pageno, cells) = leaves[leaves.size() / 2];
  }
  {
    std::fstream io(f.path, std::ios::binary | std::ios::in | std::ios::out);
    io.seekp((pageno - 1) * page_size);
    io << std::string(static_cast<size_t>(page_size), '\xAB');
    REQUIRE(io);
  }
  f.clock->advance(7);
  auto st = f.open();
  auto aside = f.path + ".corrupt-" + std::to_string(clock_start_ms + 7);
  CHECK(fs::exists(aside));
  CHECK(st.stats().counters["moved_aside"] == 1);
  // Same numbering: the queued batch 2 goes on, the next cut is 3.
  CHECK(st.epoch() == epoch);
  auto queued = pending_all(st);
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].sequence == 2);
  CHECK(queued[0].body == body_for(2));
  auto up = fetch_all(st, 10000);
  CHECK(up.next_sequence == 3);
  // Every row past the acked cursor except the damaged page's.
  auto rows = count_in(f.path, "SELECT count(*) FROM metrics");
  CHECK(rows == 3000 - 100 - cells);
  CHECK(static_cast<int64_t>(up.samples.size()) == 3000 - 200 - cells);
  CHECK(st.drops()[drop_kind::metrics_unreadable] == cells);
  CHECK(st.drops()[drop_kind::batches_unreadable] == 0);
  // The unsynced log line came along.
  auto logs = st.fetch(logs_stream, 10);
  REQUIRE(logs);
  REQUIRE(logs->logs.size() == 1);
  CHECK(logs->logs[0].line == "kept line");
  CHECK(count_in(f.path, "SELECT count(*) FROM events WHERE kind = "
                         "'storage_salvaged'")
        == 1);
  // New rows get ids past every old one, so they are cut too.
  store_ok(st, samples_from(clock_start_ms + 5000, 3));
  CHECK(static_cast<int64_t>(fetch_all(st, 10000).samples.size())
        == 3000 - 200 - cells + 3);
}

TEST_CASE("the WAL stays under its bound, a small fraction of the cap, "
          "during a write burst") {
  store_fixture f;
  auto cfg = f.config();
  cfg.limits.max_bytes = 1000 * 1000;
  cfg.limits.reserve_bytes = 0;
  auto opened = sqlite_store::open(cfg);
  REQUIRE(opened);
  auto& st = *opened;
  CHECK(st.wal_bound() == 64 * 1024);
  int64_t largest = 0;
  for (int i = 0; i < 300; ++i) {
    store_ok(st, samples_from(clock_start_ms + i * 100, 100));
    largest = std::max<int64_t>(largest,
                                static_cast<int64_t>(fs::file_size(f.path
                                                                   + "-wal")));
  }
  INFO("largest WAL " << largest << " bytes");
  // One transaction past the autocheckpoint may overshoot by its own pages.
  CHECK(largest <= st.wal_bound() + 64 * 1024);
  CHECK(largest > 0);
  // The cap held too.
  CHECK(st.used_bytes() <= cfg.limits.max_bytes);
}

TEST_CASE("a store config that cannot work is refused with the option's name") {
  sqlite_store_config c;
  c.path = "/tmp/unused.db";
  CHECK(!validate(c));
  c.limits.reserve_bytes = -1;
  CHECK(render(validate(c)).find("storage.reserve-bytes") != std::string::npos);
  auto opened = sqlite_store::open(c);
  REQUIRE(!opened);
  CHECK(opened.error() == ec::bad_config);
  auto reason = test::exit_reason_of(storage, std::shared_ptr<store_backend>{});
  CHECK(reason == ec::bad_config);
}

TEST_CASE("a power cut at any write keeps every acknowledged record and "
          "leaves a sound file") {
  // Metrics, log lines and events stored in turn; the power goes out at a
  // random write (seeded), the store is dropped as a dead process would be,
  // and a fresh open must hold every record a call acknowledged.
  // Each run twice: commits into the tables, and into the rounds file.
  // The rounds file writes about three times a round where the tables
  // write ten: its cuts come from a shorter range, and a generator of
  // their own.
  std::mt19937_64 rng{20261205};
  std::mt19937_64 rounds_rng{20261206};
  for (int run = 0; run < 50; ++run) {
    test::scratch_dir dir{dir_prefix};
    auto disk = test::fault_disk::make();
    auto clock = std::make_shared<manual_clock>(clock_start_ms);
    sqlite_store_config cfg;
    cfg.path = dir.file("fleetd.db");
    cfg.clock = clock;
    cfg.disk = disk;
    cfg.limits.rounds_file = run % 2 == 1;
    auto cut_at = cfg.limits.rounds_file
                    ? static_cast<int64_t>(rounds_rng() % 550) + 1
                    : static_cast<int64_t>(rng() % 1500) + 1;
    CAPTURE(cfg.limits.rounds_file);
    CAPTURE(cut_at);
    int64_t points = 0, lines = 0, events = 0;
    {
      auto st = sqlite_store::open(cfg);
      REQUIRE(st);
      disk->cut_power_after_writes(cut_at);
      for (int round = 0; round < 200 && !disk->power_cut(); ++round) {
        clock->advance(1000);
        if (auto n = st->store(samples_from(clock->now_ms(), 30)))
          points += *n;
        if (auto n = st->store_logs(
              {log_line{{{"job", "t"}}, clock->now_ms() * 1000000, "line"}}))
          lines += *n;
        if (!st->record_event("mark", std::to_string(round)))
          ++events;
      }
      REQUIRE(disk->power_cut());
    }
    disk->revive();
    auto st = sqlite_store::open(cfg);
    REQUIRE_MESSAGE(st, render(st.error()));
    // Opened as it was: no verdict of corruption moved it aside.
    for (auto& name : dir.entries())
      CHECK(name.find(".corrupt") == std::string::npos);
    auto c = st->stats().counters;
    CHECK(c["metrics_rows"] >= points);
    CHECK(c["metrics_rows"] <= points + 30);
    CHECK(c["logs_rows"] >= lines);
    CHECK(c["logs_rows"] <= lines + 1);
    CHECK(c["unbatched_events"] >= events);
    CHECK(c["unbatched_events"] <= events + 1);
  }
}

TEST_CASE("the storage actor stores a request's events in one answer, with "
          "or without the rounds file, and after a reopen they are there") {
  for (bool rounds_file : {false, true}) {
    CAPTURE(rounds_file);
    store_fixture f;
    auto cfg = f.config();
    cfg.limits.rounds_file = rounds_file;
    event_records xs;
    for (int i = 0; i < 50; ++i)
      xs.push_back({0, "app.mark", std::to_string(i), {}});
    {
      auto opened = sqlite_store::open(cfg);
      REQUIRE(opened);
      caf::actor_system_config acfg;
      register_messages(acfg);
      caf::actor_system sys{acfg};
      caf::scoped_actor self{sys};
      auto st = sys.spawn<caf::detached>(
        storage, std::make_shared<sqlite_store>(std::move(*opened)));
      int64_t stored = -1;
      self->request(st, 10s, store_atom::value, xs)
        .receive([&](int64_t n) { stored = n; },
                 [&](caf::error& err) { FAIL_CHECK(render(err)); });
      CHECK(stored == 50);
      self->send_exit(st, caf::exit_reason::user_shutdown);
      self->wait_for(st);
    }
    auto again = sqlite_store::open(cfg);
    REQUIRE(again);
    auto up = again->fetch("events", 1000);
    REQUIRE(up);
    int64_t marks = 0;
    for (auto& e : up->events)
      marks += e.kind == "app.mark" ? 1 : 0;
    CHECK(marks == 50);
  }
}
