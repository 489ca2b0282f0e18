// The contract of cloud_store_backend, run against both backends: the
// embedded SQLite store and PostgreSQL (pg_store, behind PgBouncer in
// transaction pooling). The PostgreSQL cases skip when no server can run.
#include "cloud/embedded_store.hpp"
#include "cloud/pg_migrate.hpp"
#include "cloud/pg_store.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "check_samples.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/metrics_codec.hpp"
#include "messages/wire.hpp"
#include "pg_fixture.hpp"
#include "contract_case.hpp"
#include "pg_schema.hpp"
#include "scratch_dir.hpp"
#include "skip.hpp"
#include "store_batches.hpp"

using namespace fleetd;
using test::check_same_samples;
using test::concat;
using namespace std::chrono_literals;

namespace {

constexpr int64_t clock_start_ms = test::store_clock_start_ms;
using test::columnar_batch;
using test::of_series;
using test::samples;

// One backend's stores over one database: open() again is a restart (or a
// second node, for PostgreSQL).
struct backend {
  virtual ~backend() = default;
  virtual std::unique_ptr<cloud_store_backend> open() = 0;
  // Several stores may write the same database at once (nodes).
  virtual bool shared() const = 0;
  std::shared_ptr<manual_clock> clock
    = std::make_shared<manual_clock>(clock_start_ms);
};

struct embedded_backend : backend {
  test::scratch_dir dir{"fleetd-contract"};
  std::unique_ptr<cloud_store_backend> open() override {
    REQUIRE(dir.ok());
    auto st = embedded_store::open(dir.file("cloud.db"), clock);
    REQUIRE_MESSAGE(st, render(st.error()));
    return std::make_unique<embedded_store>(std::move(*st));
  }
  bool shared() const override {
    return false;
  }
};

struct pg_backend : backend {
  std::string why;
  std::optional<test::pg_database> db
    = test::migrated_pg_database("contract", why);
  std::unique_ptr<cloud_store_backend> open() override {
    auto st = pg_store::open(db->pooled_url, clock, test::pooled_options());
    REQUIRE_MESSAGE(st, render(st.error()));
    return std::make_unique<pg_store>(std::move(*st));
  }
  bool shared() const override {
    return true;
  }
};

ingest_batch batch(std::string device, int64_t seq, metric_samples xs,
                   std::string stream = metrics_stream) {
  ingest_batch b;
  b.device_id = std::move(device);
  b.stream = std::move(stream);
  b.epoch = "e1";
  b.sequence = seq;
  b.samples = std::move(xs);
  return b;
}

ingest_outcome write_ok(cloud_store_backend& st, const ingest_batch& b) {
  auto r = st.write(b);
  REQUIRE_MESSAGE(r, render(r.error()));
  return *r;
}

metric_samples points_of(cloud_store_backend& st, const std::string& dev) {
  auto r = st.points(dev);
  REQUIRE_MESSAGE(r, render(r.error()));
  return std::move(*r);
}

device_infos devices_of(cloud_store_backend& st) {
  auto r = st.devices();
  REQUIRE_MESSAGE(r, render(r.error()));
  return std::move(*r);
}

bool is(const caf::error& err, ec code) {
  return err.category() == caf::atom("fleetd")
         && err.code() == static_cast<uint8_t>(code);
}

const std::string dev_a = "acme/dev-a";
const std::string dev_b = "acme/dev-b";
const std::string other_org = "zenith/dev-a";

void stores_and_acks(backend& be) {
  auto st = be.open();
  auto xs = samples(4, 1);
  auto out = write_ok(*st, batch(dev_a, 1, xs));
  CHECK_FALSE(out.duplicate);
  CHECK(out.stored == 4);
  CHECK(out.last_acked == 1);
  out = write_ok(*st, batch(dev_a, 2, samples(2, 2)));
  CHECK(out.last_acked == 2);
  be.clock->advance(5000);
  out = write_ok(*st, batch(dev_a, 2, samples(7, 9)));
  CHECK(out.duplicate);
  CHECK(out.stored == 0);
  CHECK(out.last_acked == 2);
  // A gap is counted until the missing batch arrives.
  out = write_ok(*st, batch(dev_a, 4, samples(1, 4)));
  CHECK(out.last_acked == 4);
  auto ds = devices_of(*st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].device_id == dev_a);
  CHECK(ds[0].gaps == 1);
  CHECK(ds[0].duplicates == 1);
  CHECK(ds[0].last_seen_ms == clock_start_ms + 5000);
  out = write_ok(*st, batch(dev_a, 3, samples(1, 3)));
  CHECK(out.last_acked == 4);
  // A restart keeps points, counters and what is held.
  st = be.open();
  ds = devices_of(*st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].gaps == 0);
  CHECK(ds[0].batches_received == 4);
  CHECK(ds[0].points_received == 8);
  CHECK(ds[0].last_acked_sequence == 4);
  CHECK(write_ok(*st, batch(dev_a, 1, xs)).duplicate);
  check_same_samples(points_of(*st, dev_a),
                     concat({xs, samples(2, 2), samples(1, 4),
                             samples(1, 3)}));
  auto stats = st->stats();
  CHECK(stats.counters["duplicates"] == 1);
  CHECK(stats.counters["batches_stored"] == 0);
}

void streams_orgs_and_epochs_apart(backend& be) {
  auto st = be.open();
  write_ok(*st, batch(dev_a, 1, samples(2, 1)));
  write_ok(*st, batch(dev_b, 1, samples(3, 2)));
  write_ok(*st, batch(other_org, 1, samples(1, 3)));
  auto lb = batch(dev_a, 1, {}, logs_stream);
  lb.logs = {{{{"unit", "sshd"}}, 1'700'000'000'000'000'001, "accepted"},
             {{}, 3, "two words \\ and \t tab"}};
  CHECK(write_ok(*st, lb).stored == 2);
  auto eb = batch(dev_a, 1, {}, events_stream);
  eb.events = {{clock_start_ms, "lifecycle", "started", {{"v", "1.2.3"}}}};
  CHECK(write_ok(*st, eb).stored == 1);
  CHECK(write_ok(*st, lb).duplicate);
  // A new epoch numbers from 1 again.
  auto e2 = batch(dev_a, 1, samples(1, 5));
  e2.epoch = "e2";
  auto out = write_ok(*st, e2);
  CHECK_FALSE(out.duplicate);
  CHECK(out.last_acked == 1);
  check_same_samples(points_of(*st, dev_b), samples(3, 2));
  check_same_samples(points_of(*st, other_org), samples(1, 3));
  check_same_samples(points_of(*st, dev_a),
                     concat({samples(2, 1), samples(1, 5)}));
  auto logs = st->logs(dev_a);
  REQUIRE(logs);
  REQUIRE(logs->size() == 2);
  CHECK((*logs)[1].line == lb.logs[1].line);
  CHECK((*logs)[0].labels == lb.logs[0].labels);
  CHECK((*logs)[0].timestamp_ns == lb.logs[0].timestamp_ns);
  auto evs = st->events(dev_a);
  REQUIRE(evs);
  REQUIRE(evs->size() == 1);
  CHECK((*evs)[0].attributes == eb.events[0].attributes);
  CHECK((*evs)[0].kind == "lifecycle");
  CHECK(st->logs(dev_b)->empty());
  CHECK(devices_of(*st).size() == 5);
}

void refuses_reused_and_far_sequences(backend& be) {
  auto st = be.open();
  auto b = batch(dev_a, 1, samples(3, 1));
  b.checksum = "aaaaaaaa";
  b.capability.tier = 1;
  b.capability.total_ram = 16'000'000'000;
  b.capability.has_sqlite = true;
  write_ok(*st, b);
  auto again = b;
  again.checksum = "bbbbbbbb";
  again.capability.tier = 3;
  auto r = st->write(again);
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::bad_sequence));
  auto far = b;
  far.sequence = 5'000'000;
  r = st->write(far);
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::bad_sequence));
  far.sequence = 1'000'001;
  write_ok(*st, far);
  CHECK(write_ok(*st, b).duplicate);
  CHECK(points_of(*st, dev_a).size() == 6);
  auto ds = devices_of(*st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].capability.tier == 1);
  CHECK(ds[0].capability.total_ram == 16'000'000'000);
  CHECK(ds[0].capability.has_sqlite);
  CHECK_FALSE(ds[0].capability.has_network);
  CHECK(st->stats().counters["failures"] == 2);
}

void values_exact(backend& be) {
  auto st = be.open();
  auto xs = samples(4, 1);
  xs[0].value = std::numeric_limits<double>::infinity();
  xs[1].value = -0.0;
  xs[2].value = double_of(0x7ff8'0000'dead'beefULL);
  xs[3].value = -std::numeric_limits<double>::infinity();
  write_ok(*st, batch(dev_a, 1, xs));
  check_same_samples(points_of(*st, dev_a), xs, true);
}

void config_versions(backend& be) {
  auto st = be.open();
  write_ok(*st, batch(dev_a, 1, samples(1, 1)));
  cloud_settings x;
  x.batch_size = 100;
  x.sync_interval_ms = 10'000;
  auto v = st->set_config(dev_a, {x, all_settings_fields, false});
  REQUIRE_MESSAGE(v, render(v.error()));
  CHECK(v->version == 1);
  auto r = st->set_config(dev_b, {x, all_settings_fields, false});
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::unknown_device));
  CHECK(st->set_config(dev_b, {x, all_settings_fields, true})->version == 1);
  x.batch_size = -1;
  CHECK_FALSE(st->set_config(dev_a, {x, field_batch_size, false}));
  x.batch_size = 200;
  CHECK(st->set_config(dev_a, {x, field_batch_size, false})->version == 2);
  auto b = batch(dev_a, 2, samples(1, 2));
  b.config_version = 1;
  auto out = write_ok(*st, b);
  CHECK(out.config.version == 2);
  CHECK(out.config.batch_size == 200);
  CHECK(out.config.sync_interval_ms == 10'000);
  b.config_version = 2;
  CHECK(write_ok(*st, b).config.version == 0);
  st = be.open();
  CHECK(st->set_config(dev_a, {x, field_batch_size, false})->version == 3);
  // Read without a change: the current version, nothing new stored.
  auto now = st->get_config(dev_a);
  REQUIRE_MESSAGE(now, render(now.error()));
  CHECK(now->version == 3);
  CHECK(now->batch_size == 200);
  CHECK(now->sync_interval_ms == 10'000);
  CHECK(st->get_config(dev_a)->version == 3);
  CHECK(st->get_config("acme/never-seen")->version == 0);
}

void columnar_sessions(backend& be) {
  auto st = be.open();
  codec_context dev;
  auto s1 = of_series({"cpu", "mem"}, 1);
  auto s2 = of_series({"mem", "disk", "net"}, 2);
  write_ok(*st, columnar_batch(dev_a, "e1", 1, encode_columnar(s1, dev)));
  REQUIRE(!commit_columnar(dev, s1));
  // Garbage and a table ahead of the store's are refused, nothing stored.
  auto b2 = encode_columnar(s2, dev);
  auto r = st->write(columnar_batch(dev_a, "e1", 2, b2 + '\0'));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::decode_failed));
  codec_context ahead = dev;
  REQUIRE(!commit_columnar(ahead, of_series({"x"}, 0)));
  r = st->write(columnar_batch(dev_a, "e1", 2, encode_columnar(s2, ahead)));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::session_out_of_sync));
  // A second store (a restart, or another node) goes on with the session.
  auto other = be.shared() ? be.open() : std::move(st);
  write_ok(*other, columnar_batch(dev_a, "e1", 2, b2));
  if (!be.shared())
    st = be.open();
  REQUIRE(!commit_columnar(dev, s2));
  auto s3 = of_series({"net", "cpu", "disk", "mem"}, 3);
  auto b3 = encode_columnar(s3, dev);
  REQUIRE(*columnar_base(b3) == 4);
  // The first store's cached session is behind the rows: it reloads them.
  CHECK(write_ok(*st, columnar_batch(dev_a, "e1", 3, b3)).stored == 4);
  check_same_samples(points_of(*st, dev_a), concat({s1, s2, s3}));
  // A new epoch has a table of its own, empty.
  r = st->write(columnar_batch(dev_a, "e2", 1, encode_columnar(s3, dev)));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::session_out_of_sync));
  write_ok(*st, columnar_batch(dev_a, "e2", 1,
                               encode_columnar(s3, codec_context{})));
}

// Series names and labels decoded from columnar bytes (in the store) follow
// the rule of every text field: UTF-8 without NUL, else invalid_record.
void columnar_text(backend& be) {
  auto st = be.open();
  for (auto bad : {std::string("c\0pu", 4), std::string("caf\xE9")}) {
    for (auto xs : {of_series({bad}, 1), of_series({"cpu"}, 1)}) {
      if (xs[0].name == "cpu")
        xs[0].labels = {{"host", bad}};
      auto r = st->write(columnar_batch(dev_a, "e1", 1,
                                        encode_columnar(xs, codec_context{})));
      REQUIRE_FALSE(r);
      CHECK(is(r.error(), ec::invalid_record));
    }
  }
  CHECK(points_of(*st, dev_a).empty());
  write_ok(*st, columnar_batch(dev_a, "e1", 1,
                               encode_columnar(of_series({"cpu"}, 1),
                                               codec_context{})));
}

// What ingest hands a store after repair_texts (NUL and bytes that are not
// UTF-8 as '?') is kept exactly, by either store.
void repaired_text(backend& be) {
  auto st = be.open();
  auto lb = batch(dev_a, 1, {}, logs_stream);
  lb.logs = {{{{"file", "caf\xE9"}}, 1, std::string("nul \0 caf\xE9", 10)}};
  auto eb = batch(dev_a, 1, {}, events_stream);
  eb.events = {{5, std::string("k\0", 2), "caf\xE9", {{"a", "\xFF"}}}};
  CHECK(repair_texts(lb) == 2);
  CHECK(repair_texts(eb) == 3);
  write_ok(*st, lb);
  write_ok(*st, eb);
  auto logs = st->logs(dev_a);
  REQUIRE(logs);
  REQUIRE(logs->size() == 1);
  CHECK((*logs)[0].line == "nul ? caf?");
  CHECK((*logs)[0].labels == label_map{{"file", "caf?"}});
  auto events = st->events(dev_a);
  REQUIRE(events);
  REQUIRE(events->size() == 1);
  CHECK((*events)[0].kind == "k?");
  CHECK((*events)[0].message == "caf?");
  CHECK((*events)[0].attributes == label_map{{"a", "?"}});
}

// A batch of `n` points declaring `dropped` records lost since `origin`.
ingest_batch declaring(const std::string& dev, int64_t seq, size_t n,
                       const std::string& origin, int64_t dropped) {
  auto b = batch(dev, seq, samples(n, static_cast<double>(seq)));
  b.declared.origin = origin;
  b.declared.records["metrics_unsynced"] = dropped;
  return b;
}

delivery_rows delivery_of(cloud_store_backend& st, const std::string& dev,
                          int64_t since_ms = 0) {
  auto r = st.delivery(dev, since_ms);
  REQUIRE_MESSAGE(r, render(r.error()));
  return std::move(*r);
}

void check_row(const delivery_row& x, int64_t hour_ms, int64_t received,
               int64_t duplicates, int64_t missing, int64_t declared) {
  CHECK(x.hour_ms == hour_ms);
  CHECK(x.received == received);
  CHECK(x.duplicates == duplicates);
  CHECK(x.missing == missing);
  CHECK(x.declared_drops == declared);
}

// Per device, stream and hour: records received, duplicates absorbed (the
// held batch's records), skipped sequences, and the growth of the declared
// counters; a resend or a restarted device adds nothing twice.
void delivery_table(backend& be) {
  auto st = be.open();
  const int64_t hour1 = 1'699'999'200'000; // the hour of clock_start_ms
  const int64_t hour2 = hour1 + 3'600'000;
  write_ok(*st, declaring(dev_a, 1, 3, "store-1", 4));
  // A resend: a duplicate of 3 records, its report already counted.
  CHECK(write_ok(*st, declaring(dev_a, 1, 3, "store-1", 4)).duplicate);
  write_ok(*st, batch(other_org, 1, samples(1, 9)));
  be.clock->advance(3'600'000);
  // Skips sequence 2; the counters grew by 2.
  write_ok(*st, declaring(dev_a, 3, 2, "store-1", 6));
  if (!be.shared())
    st = be.open();
  // A device restarted on the same store reports the same counters: +0;
  // an older report never lowers them.
  write_ok(*st, declaring(dev_a, 4, 1, "store-1", 6));
  write_ok(*st, declaring(dev_a, 5, 1, "store-1", 5));
  // A store started afresh counts from 0 under a new origin: all of it.
  write_ok(*st, declaring(dev_a, 6, 1, "store-2", 3));
  auto xs = delivery_of(*st, dev_a);
  REQUIRE(xs.size() == 2);
  CHECK(xs[0].device == dev_a);
  CHECK(xs[0].stream == "metrics");
  check_row(xs[0], hour1, 3, 3, 0, 4);
  check_row(xs[1], hour2, 5, 0, 1, 5);
  // A batch the device declares lost is no missing sequence: sequence 3
  // skips 2, declared with its 4 records.
  auto lost = declaring(dev_b, 1, 1, "store-b", 0);
  write_ok(*st, lost);
  lost = declaring(dev_b, 3, 1, "store-b", 4);
  lost.declared.records["metrics_batches"] = 1;
  write_ok(*st, lost);
  auto bs = delivery_of(*st, dev_b);
  REQUIRE(bs.size() == 1);
  check_row(bs[0], hour2, 2, 0, 0, 4);
  // The gap filled late is missing no more.
  write_ok(*st, declaring(dev_a, 2, 1, "store-2", 3));
  xs = delivery_of(*st, dev_a, hour2 + 10);
  REQUIRE(xs.size() == 1);
  check_row(xs[0], hour2, 6, 0, 0, 5);
  auto t = delivery_total(delivery_of(*st, dev_a));
  CHECK(delivery_ratio(t.received, t.declared_drops, t.missing)
        == doctest::Approx(9.0 / 18.0));
  // Every org's devices, each with its own rows; by name alone too.
  auto all = delivery_of(*st, "");
  REQUIRE(all.size() == 4);
  CHECK(all[3].device == other_org);
  check_row(all[3], hour1, 1, 0, 0, 0);
  CHECK(delivery_of(*st, "dev-a").size() == 3);
  CHECK(delivery_of(*st, "acme/dev-c").empty());
  // One org's devices (a console scoped to an org).
  CHECK(delivery_of(*st, "acme/").size() == 3);
  CHECK(delivery_of(*st, "zenith/").size() == 1);
}

// What a device declares collected and stored: the growth per hour, once;
// a report going down within its origin is flagged and adds nothing.
void delivery_flow(backend& be) {
  auto st = be.open();
  const int64_t hour1 = 1'699'999'200'000; // the hour of clock_start_ms
  auto flowing = [](int64_t seq, const std::string& origin,
                    int64_t collected, int64_t stored) {
    auto b = declaring(dev_a, seq, 1, origin, 1);
    b.declared.collected = collected;
    b.declared.stored = stored;
    return b;
  };
  CHECK_FALSE(write_ok(*st, flowing(1, "o1", 10, 9)).report_decreased);
  CHECK_FALSE(write_ok(*st, flowing(1, "o1", 10, 9)).report_decreased);
  CHECK_FALSE(write_ok(*st, flowing(2, "o1", 25, 20)).report_decreased);
  if (!be.shared())
    st = be.open();
  // Lower within o1: stored, flagged, the counts stay.
  CHECK(write_ok(*st, flowing(3, "o1", 24, 20)).report_decreased);
  CHECK_FALSE(write_ok(*st, flowing(4, "o2", 4, 4)).report_decreased);
  auto xs = delivery_of(*st, dev_a);
  REQUIRE(xs.size() == 1);
  check_row(xs[0], hour1, 4, 1, 0, 2);
  CHECK(xs[0].collected == 29);
  CHECK(xs[0].stored == 24);
  auto t = delivery_total(xs);
  CHECK(t.collected == 29);
  CHECK(t.stored == 24);
}

using contract = void (*)(backend&);

void run_embedded(contract fn) {
  embedded_backend be;
  fn(be);
}

void run_pg(contract fn) {
  pg_backend be;
  if (!be.db)
    return test::skip(be.why);
  fn(be);
}

} // namespace


TEST_CASE("postgresql: a batch another node accepts while this one writes it "
          "is answered as a duplicate, stored once") {
  pg_backend be;
  if (!be.db)
    return test::skip(be.why);
  auto st = be.open();
  // The other node: its batch row is in, its transaction still open.
  auto other = test::pg_connect(be.db->app_url);
  REQUIRE_FALSE(other.begin("acme"));
  test::pg_must(other, "INSERT INTO batches (org, device, stream, epoch, "
                       "sequence, checksum, points, received_at) VALUES "
                       "('acme', 'dev-a', 'metrics', 'e1', 1, '\\x', 2, 0)");
  caf::expected<ingest_outcome> out = make_error(ec::timeout);
  std::thread writer{[&] { out = st->write(batch(dev_a, 1, samples(2, 1))); }};
  // This node has not seen the row, so it inserts its own and waits on the
  // key; then the other commits and this insert fails unique_violation.
  auto admin = test::pg_connect(be.db->admin_url);
  bool waiting = test::eventually(
    [&] {
      return test::pg_must(admin, "SELECT 1 FROM pg_stat_activity WHERE "
                                  "wait_event_type = 'Lock' AND query LIKE "
                                  "'INSERT INTO batches%'")
               .rows()
             > 0;
    },
    20s);
  CHECK(waiting);
  CHECK_FALSE(other.commit());
  writer.join();
  REQUIRE_MESSAGE(out, render(out.error()));
  CHECK(out->duplicate);
  CHECK(out->stored == 0);
  CHECK(out->last_acked == 1);
  CHECK(st->stats().counters["lost_races"] == 1);
  CHECK(points_of(*st, dev_a).empty());
}

TEST_CASE("postgresql: two nodes racing on the same sequences through "
          "PgBouncer accept each batch exactly once") {
  pg_backend be;
  if (!be.db)
    return test::skip(be.why);
  auto a = be.open();
  auto b = be.open();
  constexpr int64_t batches = 20;
  std::vector<ingest_outcome> outs[2];
  std::string errors;
  auto race = [&](cloud_store_backend& st, std::vector<ingest_outcome>& out) {
    for (int64_t seq = 1; seq <= batches; ++seq) {
      auto r = st.write(batch(dev_a, seq, samples(3, seq * 10)));
      if (!r)
        errors += render(r.error()) + "\n";
      out.push_back(r ? *r : ingest_outcome{});
    }
  };
  std::thread other{[&] { race(*b, outs[1]); }};
  race(*a, outs[0]);
  other.join();
  REQUIRE_MESSAGE(errors.empty(), errors);
  for (size_t i = 0; i < static_cast<size_t>(batches); ++i) {
    auto& x = outs[0][i];
    auto& y = outs[1][i];
    // One stored it, the other was answered as for a duplicate.
    CHECK(x.stored + y.stored == 3);
    CHECK(x.duplicate != y.duplicate);
    CHECK(x.last_acked >= static_cast<int64_t>(i) + 1);
    CHECK(y.last_acked >= static_cast<int64_t>(i) + 1);
  }
  CHECK(points_of(*a, dev_a).size() == 3 * batches);
  auto info = devices_of(*a);
  REQUIRE(info.size() == 1);
  CHECK(info[0].last_acked_sequence == batches);
  CHECK(info[0].batches_received == batches);
  CHECK(info[0].gaps == 0);
}

TEST_CASE("postgresql: a log line PostgreSQL text cannot hold is refused as "
          "the batch's fault; the store goes on") {
  pg_backend be;
  if (!be.db)
    return test::skip(be.why);
  auto st = be.open();
  auto lb = batch(dev_a, 1, {}, logs_stream);
  lb.logs = {{{}, 1, std::string("nul \0 byte", 10)}};
  auto r = st->write(lb);
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::invalid_record));
  lb.logs = {{{}, 1, "not utf-8 \xff"}};
  r = st->write(lb);
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::invalid_record));
  // Several lines, the bad one last: none of them is kept.
  lb.logs = {{{}, 1, "first"}, {{}, 2, std::string("\0", 1)}};
  r = st->write(lb);
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::invalid_record));
  auto eb = batch(dev_a, 1, {}, events_stream);
  eb.events = {{1, "kind", "bad \xc3\x28 utf-8", {}}};
  r = st->write(eb);
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::invalid_record));
  lb.logs = {{{}, 1, "fine"}};
  CHECK(write_ok(*st, lb).stored == 1);
  auto kept = st->logs(dev_a);
  REQUIRE(kept);
  REQUIRE(kept->size() == 1);
  CHECK(kept->front().line == "fine");
  auto events = st->events(dev_a);
  REQUIRE(events);
  CHECK(events->empty());
  // The refused batches left no ack behind: sequence 1 is free for events.
  eb.events = {{1, "kind", "fine", {}}};
  CHECK(write_ok(*st, eb).stored == 1);
}

TEST_CASE("postgresql: a day whose partition went missing is made again; "
          "the batch is stored, not refused") {
  pg_backend be;
  if (!be.db)
    return test::skip(be.why);
  auto st = be.open();
  write_ok(*st, batch(dev_a, 1, samples(2, 1)));
  // Gone behind the store's back (it made the day at its first write).
  auto owner = test::pg_connect(be.db->owner_url);
  test::pg_must(owner, "DROP TABLE points_20231114");
  auto out = write_ok(*st, batch(dev_a, 2, samples(3, 2)));
  CHECK(out.stored == 3);
  CHECK(points_of(*st, dev_a).size() == 3);
  CHECK(st->stats().counters["failures"] == 0);
}

TEST_CASE("postgresql: a server connection lost between writes is made "
          "again by the next write, which is stored") {
  pg_backend be;
  if (!be.db)
    return test::skip(be.why);
  pg::connect_options opts;
  opts.statement_timeout_ms = 30000; // as fleetd-cloud does
  auto st = pg_store::open(be.db->app_url, be.clock, opts);
  REQUIRE_MESSAGE(st, render(st.error()));
  write_ok(*st, batch(dev_a, 1, samples(2, 1)));
  auto admin = test::pg_connect(be.db->admin_url);
  auto killed = test::pg_must(admin, "SELECT pg_terminate_backend(pid) FROM "
                                     "pg_stat_activity WHERE usename = "
                                     "'fleetd_node' AND datname = $1",
                              {be.db->name});
  REQUIRE(killed.rows() == 1);
  auto out = write_ok(*st, batch(dev_a, 2, samples(3, 2)));
  CHECK(out.stored == 3);
  CHECK(st->stats().counters["reconnects"] == 1);
  CHECK(points_of(*st, dev_a).size() == 5);
}

CONTRACT_CASE("a batch is stored once: ack, duplicates, gaps, restart",
              stores_and_acks)
CONTRACT_CASE("devices, orgs, streams and epochs keep their own sequences; "
              "logs and events round-trip",
              streams_orgs_and_epochs_apart)
CONTRACT_CASE("a sequence reused with other content or far ahead is refused; "
              "the capability kept",
              refuses_reused_and_far_sequences)
CONTRACT_CASE("NaN payloads, infinities and -0.0 are stored bit for bit",
              values_exact)
CONTRACT_CASE("set_config numbers versions; write returns the newer config",
              config_versions)
CONTRACT_CASE("columnar sessions: refused bytes store nothing, a second "
              "store continues the session, epochs apart",
              columnar_sessions)
CONTRACT_CASE("a columnar series name or label that is not UTF-8 text is "
              "refused invalid_record, nothing stored",
              columnar_text)
CONTRACT_CASE("text repaired by ingest is kept exactly", repaired_text)
CONTRACT_CASE("delivery per device, stream and hour: received, duplicates, "
              "missing, declared drops counted once", delivery_table)
CONTRACT_CASE("delivery: collected and stored counted once per origin, a "
              "decreasing report flagged", delivery_flow)
