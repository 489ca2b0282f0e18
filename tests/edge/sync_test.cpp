// The sync actor against a real in-process cloud: embedded store, ingest
// actor and ingest endpoint on 127.0.0.1, reached through a real cloud link.
#include "edge/sync.hpp"
#include "edge/backoff.hpp"
#include "messages/metrics_codec.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "cloud_fixture.hpp"
#include "helpers.hpp"

#include "cloud/cloud_store.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/ingest.hpp"
#include "cloud/ingest_endpoint.hpp"
#include "edge/cloud_link.hpp"
#include "edge/sqlite_store.hpp"
#include "edge/storage.hpp"
#include "messages/error.hpp"
#include "messages/register.hpp"
#include "messages/wire.hpp"
#include "runtime/http_client.hpp"
#include "ask.hpp"
#include "runtime/sqlite.hpp"
#include "check_samples.hpp"

using namespace fleetd;
using test::check_same_samples;
using test::concat;
using test::eventually;
using test::free_port;
using namespace std::chrono_literals;

namespace fs = std::filesystem;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;

constexpr const char* device_id = "sync-dev";

/// With base = cap = 1h this seed's first delays are long (checked below), so
/// the actor's own timer never fires during a test: only ticks move it.
constexpr uint64_t quiet_seed = 5;

constexpr auto quiet_backoff = std::chrono::milliseconds(std::chrono::hours(1));

metric_samples samples_from(int64_t first_ts, size_t n) {
  metric_samples out;
  for (size_t i = 0; i < n; ++i) {
    metric_sample s;
    s.name = i % 2 == 0 ? "cpu" : "mem.free";
    if (i % 2 == 0)
      s.labels = {{"core", std::to_string(i % 4)}, {"host", device_id}};
    s.timestamp_ms = first_ts + static_cast<int64_t>(i);
    s.value = static_cast<double>(i) * 1.5 - 7;
    out.push_back(std::move(s));
  }
  return out;
}

// -- a tap between the ingest endpoint and the real ingest actor --------------

/// What reached the cloud, byte for byte; optionally loses the cloud's reply
/// after the real ingest has stored the batch (an ack lost on the way back).
struct tap_log {
  std::mutex mtx;
  std::vector<std::string> bodies;
  std::atomic<bool> lose_replies{false};

  std::vector<std::string> seen() {
    std::lock_guard<std::mutex> guard{mtx};
    return bodies;
  }
};

struct tap_state {
  static inline const char* name = "tap";
};

ingest_actor::behavior_type tap(ingest_actor::stateful_pointer<tap_state> self,
                                ingest_actor real,
                                std::shared_ptr<tap_log> log) {
  return {
    [self, real, log](sync_atom,
                      sync_envelope& env) -> caf::result<http_reply> {
      {
        std::lock_guard<std::mutex> guard{log->mtx};
        log->bodies.push_back(env.body);
      }
      bool lose = log->lose_replies;
      auto rp = self->make_response_promise<http_reply>();
      self->request(real, 30s, sync_atom::value, std::move(env))
        .then(
          [rp, lose](http_reply& rep) mutable {
            if (lose) {
              sync_ack nack;
              nack.error_code = "reply_lost";
              nack.error_message = "the test lost the cloud's reply";
              rep.status = 503;
              rep.body = encode_response(nack);
            }
            rp.deliver(std::move(rep));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self, real](enroll_atom, sync_envelope& env) {
      return self->delegate(real, enroll_atom::value, std::move(env));
    },
    [](health_atom) { return std::string{"ok"}; },
    [](stats_atom) {
      actor_stats out;
      out.name = "tap";
      out.state = "ok";
      return out;
    },
  };
}

// -- the fixture --------------------------------------------------------------

struct sync_fixture : test::cloud_fixture {
  // The cloud.
  cloud_store_actor cloud_store_hdl;
  std::shared_ptr<tap_log> wire = std::make_shared<tap_log>();
  // The device.
  storage_actor storage_hdl;

  sync_fixture() : cloud_fixture("fleetd-sync", clock_start_ms) {
    open_storage("fleetd.db");
  }

  /// Opens (or creates) a device store in `file` and makes it the storage
  /// every later sync actor and query of the fixture uses.
  void open_storage(const std::string& file) {
    sqlite_store_config scfg;
    scfg.path = dir.file(file);
    scfg.clock = clock;
    auto store = sqlite_store::open(scfg);
    REQUIRE_MESSAGE(store, render(store.error()));
    storage_hdl = keep(sys->spawn<caf::detached>(
      storage, std::make_shared<sqlite_store>(std::move(*store))));
  }

  /// The cloud endpoint's limits and database file (start_cloud).
  http_limits limits;
  std::string cloud_file = "cloud.db";

  /// Starts the cloud: store, ingest, tap and endpoint on 127.0.0.1:port.
  uint16_t start_cloud(uint16_t port = 0) {
    cloud_store_hdl = spawn_cloud_store(dir.file(cloud_file));
    ingest_config icfg;
    icfg.store = cloud_store_hdl;
    icfg.anonymous = true;
    auto real = keep(sys->spawn(ingest, icfg));
    auto front = keep(sys->spawn(tap, real, wire));
    auto bound = open_endpoint(front, limits, port);
    if (port != 0)
      REQUIRE(bound == port);
    return bound;
  }

  cloud_link_actor spawn_link(uint16_t port) {
    cloud_link_config lcfg;
    lcfg.host = "127.0.0.1";
    lcfg.port = port;
    lcfg.timeout = 5s;
    lcfg.insecure = true;
    // A lone batch as its queued bytes (POST /v2/sync), so the wire shows
    // resends byte for byte; version 5's recoding is cloud_link_test's.
    lcfg.sync_version = 4;
    return keep(sys->spawn<caf::detached>(cloud_link, lcfg));
  }

  sync_config sync_cfg(cloud_link_actor link, int64_t batch_size) {
    sync_config c;
    c.device_id = device_id;
    c.stream = metrics_stream;
    // Only the first round and drains happen by themselves.
    c.interval = std::chrono::hours(1);
    c.batch_size = batch_size;
    c.request_timeout = 20s;
    c.clock = clock;
    backoff_config bc;
    bc.base = quiet_backoff;
    bc.cap = quiet_backoff;
    bc.seed = quiet_seed;
    bc.clock = clock;
    c.backoff = keep(sys->spawn(backoff, bc));
    c.storage = storage_hdl;
    c.link = std::move(link);
    return c;
  }

  sync_actor spawn_sync(sync_config c) {
    // Qualified: <unistd.h> declares ::sync() too.
    return keep(sys->spawn(fleetd::sync, std::move(c)));
  }

  void kill(const sync_actor& hdl) {
    (*self)->send_exit(hdl, caf::exit_reason::kill);
    (*self)->wait_for(hdl);
  }

  void store(const metric_samples& xs) {
    (*self)
      ->request(storage_hdl, 5s, store_atom::value, xs)
      .receive(
        [&](int64_t n) { CHECK(n == static_cast<int64_t>(xs.size())); },
        [&](caf::error& err) { FAIL_CHECK("store failed: " << render(err)); });
  }

  queued_batches pending() {
    return test::ask<queued_batches>(*self, storage_hdl, 5s,
                                     pending_atom::value,
                                     std::string{metrics_stream},
                                     int64_t{100});
  }


  unbatched_points unbatched() {
    return test::ask<unbatched_points>(*self, storage_hdl, 5s,
                                       fetch_atom::value,
                                       std::string{metrics_stream},
                                       int64_t{100000}, int64_t{1} << 30);
  }


  template <class Handle>
  actor_stats stats_of(const Handle& hdl) {
    actor_stats out;
    (*self)
      ->request(hdl, 5s, stats_atom::value)
      .receive([&](actor_stats& x) { out = std::move(x); },
               [&](caf::error& err) { out.state = "error: " + render(err); });
    return out;
  }

  metric_samples cloud_points() {
    return test::ask<metric_samples>(*self, cloud_store_hdl, 5s,
                                     points_atom::value,
                                     std::string{device_id});
  }


  device_infos cloud_devices() {
    return test::ask<device_infos>(*self, cloud_store_hdl, 5s,
                                   devices_atom::value);
  }


  /// Waits until `hdl` has acked `seq` and finished its round.
  bool drained_to(const sync_actor& hdl, int64_t seq) {
    return eventually(
      [&] {
        auto st = stats_of(hdl);
        return st.counters["last_acked_sequence"] == seq && st.state == "idle";
      },
      20s);
  }

  bool backing_off(const sync_actor& hdl) {
    return eventually(
      [&] { return stats_of(hdl).state.rfind("retrying", 0) == 0; }, 20s);
  }

  /// Ticks `hdl` until it dropped one refused batch; outside ticks take a
  /// refusal's retry now instead of after 1 s, 2 s.
  bool dropped_one(const sync_actor& hdl) {
    return eventually(
      [&] {
        (*self)->send(hdl, tick_atom::value);
        return stats_of(hdl).counters["batches_rejected"] == 1;
      },
      20s);
  }
};

/// Decodes a request body of the device; columnar metrics against the
/// session state it was encoded against: one the bodies decoded so far
/// built (an earlier body again: the state as it was when that one was
/// sent), newest first.
bool starts_with(const std::string& x, const std::string& prefix) {
  return x.compare(0, prefix.size(), prefix) == 0;
}

decoded_request decode(const std::string& body) {
  static std::vector<codec_context> states{codec_context{}};
  auto req = decode_request(body, is_zstd(body), 64 << 20);
  REQUIRE_MESSAGE(req, render(req.error()));
  if (!req->columnar.empty()) {
    caf::expected<metric_samples> xs{caf::error{}};
    for (auto i = states.rbegin(); i != states.rend(); ++i) {
      auto ctx = *i;
      xs = decode_columnar(req->columnar, ctx);
      if (xs) {
        states.push_back(std::move(ctx));
        break;
      }
    }
    REQUIRE_MESSAGE(xs, render(xs.error()));
    req->samples = std::move(*xs);
  }
  return std::move(*req);
}

} // namespace

TEST_CASE("the quiet backoff of these tests waits long after a failure") {
  // The premise of the actor tests below: the first delay is long.
  auto rng = make_jitter_rng(quiet_seed);
  CHECK(full_jitter_delay(quiet_backoff, quiet_backoff, 1, rng) >= 20min);
}

TEST_CASE("the sync actor drains every stored batch to a real cloud, "
          "numbered 1 to N") {
  sync_fixture f;
  auto port = f.start_cloud();
  constexpr int64_t batch_size = 10;
  constexpr int64_t batches = 5;
  metric_samples stored;
  // Stored in uneven chunks: batches are cut by size, not by store call.
  for (size_t chunk : {7, 13, 10, 1, 19}) {
    auto xs = samples_from(clock_start_ms + static_cast<int64_t>(stored.size()),
                           chunk);
    f.store(xs);
    stored.insert(stored.end(), xs.begin(), xs.end());
  }
  REQUIRE(static_cast<int64_t>(stored.size()) == batch_size * batches);
  auto s = f.spawn_sync(f.sync_cfg(f.spawn_link(port), batch_size));
  REQUIRE(f.drained_to(s, batches));
  check_same_samples(f.cloud_points(), stored);
  // On the wire: one request per batch, sequences 1..N in order.
  auto bodies = f.wire->seen();
  REQUIRE(bodies.size() == static_cast<size_t>(batches));
  for (int64_t i = 0; i < batches; ++i) {
    CAPTURE(i);
    auto req = decode(bodies[static_cast<size_t>(i)]);
    CHECK(req.device_id == device_id);
    CHECK(req.stream == metrics_stream);
    CHECK(req.sequence == i + 1);
    check_same_samples(req.samples,
                       metric_samples(stored.begin() + i * batch_size,
                                      stored.begin() + (i + 1) * batch_size));
  }
  auto devices = f.cloud_devices();
  REQUIRE(devices.size() == 1);
  CHECK(devices[0].device_id == device_id);
  CHECK(devices[0].stream == metrics_stream);
  CHECK(devices[0].batches_received == batches);
  CHECK(devices[0].points_received == batch_size * batches);
  CHECK(devices[0].last_acked_sequence == batches);
  CHECK(devices[0].gaps == 0);
  CHECK(devices[0].duplicates == 0);
  // Nothing left on the device, and the next batch would be N + 1.
  CHECK(f.pending().empty());
  auto left = f.unbatched();
  CHECK(left.samples.empty());
  CHECK(left.next_sequence == batches + 1);
  auto st = f.stats_of(s);
  CHECK(st.name == "sync_metrics");
  CHECK(st.counters["batches_sent"] == batches);
  CHECK(st.counters["batches_acked"] == batches);
  CHECK(st.counters["records_synced"] == batch_size * batches);
  CHECK(st.counters["send_failures"] == 0);
  SUBCASE("samples stored later go out on the next tick") {
    auto more = samples_from(clock_start_ms + 1000, 3);
    f.store(more);
    (*f.self)->send(s, tick_atom::value);
    REQUIRE(f.drained_to(s, batches + 1));
    stored.insert(stored.end(), more.begin(), more.end());
    check_same_samples(f.cloud_points(), stored);
    CHECK(f.pending().empty());
  }
}

TEST_CASE("batches cut at sync.batch-bytes go out one after the other, "
          "without waiting for the interval") {
  sync_fixture f;
  auto port = f.start_cloud();
  auto stored = samples_from(clock_start_ms, 50);
  f.store(stored);
  auto cfg = f.sync_cfg(f.spawn_link(port), 1000);
  // Ten samples a batch (sizes repeat every two); the count bound (1000)
  // never binds.
  cfg.batch_bytes = 1;
  for (size_t i = 0; i < 10; ++i)
    cfg.batch_bytes += record_bytes(stored[i]);
  auto s = f.spawn_sync(cfg);
  // The interval is an hour: only a cut that knows it is full drains on.
  // The last ten fit under the bound, so they wait like any partial batch.
  REQUIRE(f.drained_to(s, 4));
  CHECK(f.unbatched().samples.size() == 10);
  (*f.self)->send(s, tick_atom::value);
  REQUIRE(f.drained_to(s, 5));
  check_same_samples(f.cloud_points(), stored);
  auto bodies = f.wire->seen();
  REQUIRE(bodies.size() == 5);
  for (auto& body : bodies)
    CHECK(decode(body).samples.size() == 10);
  CHECK(f.unbatched().samples.empty());
}

TEST_CASE("the next batch continues the session: series by index, each "
          "column from the values the last batch ended with") {
  sync_fixture f;
  auto port = f.start_cloud();
  auto rounds = [](int64_t from) {
    metric_samples xs;
    for (int64_t r = from; r < from + 30; ++r)
      for (int i = 0; i < 10; ++i)
        xs.push_back(metric_sample{"c" + std::to_string(i), {{"k", "v"}},
                                   clock_start_ms + r * 10000,
                                   1000.0 * i + 7.0 * r});
    return xs;
  };
  auto first = rounds(0);
  f.store(first);
  auto s = f.spawn_sync(f.sync_cfg(f.spawn_link(port), 1000));
  REQUIRE(f.drained_to(s, 1));
  auto second = rounds(30);
  f.store(second);
  (*f.self)->send(s, tick_atom::value);
  REQUIRE(f.drained_to(s, 2));
  auto bodies = f.wire->seen();
  REQUIRE(bodies.size() == 2);
  std::vector<std::string> columnar;
  for (auto& body : bodies) {
    auto req = decode_request(body, is_zstd(body), 64 << 20);
    REQUIRE(req);
    REQUIRE_FALSE(req->columnar.empty());
    columnar.push_back(req->columnar);
  }
  // The cloud's session after the first batch; the second must be exactly
  // what the codec makes against it.
  codec_context cloud;
  REQUIRE(decode_columnar(columnar[0], cloud));
  CHECK(columnar_base(columnar[1]) == caf::expected<uint64_t>{10});
  CHECK(columnar[1] == encode_columnar(second, cloud));
  CHECK(f.stats_of(s).counters["session_resets"] == 0);
  CHECK(f.stats_of(s).counters["encode_fallbacks"] == 0);
}

TEST_CASE("an unreachable cloud makes the sync actor back off and lose "
          "nothing, and a tick after the cloud starts drains it") {
  sync_fixture f;
  auto port = free_port();
  constexpr int64_t batch_size = 10;
  auto stored = samples_from(clock_start_ms, 25);
  f.store(stored);
  auto s = f.spawn_sync(f.sync_cfg(f.spawn_link(port), batch_size));
  REQUIRE(f.backing_off(s));
  auto st = f.stats_of(s);
  INFO("sync state: " << st.state);
  CHECK(st.state.find("unreachable") != std::string::npos);
  CHECK(st.counters["send_failures"] == 1);
  CHECK(st.counters["batches_acked"] == 0);
  // Nothing lost: batch 1 waits in the queue, the rest is still unbatched.
  auto queued = f.pending();
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].sequence == 1);
  CHECK(queued[0].points == batch_size);
  check_same_samples(decode(queued[0].body).samples,
                     metric_samples(stored.begin(),
                                    stored.begin() + batch_size));
  check_same_samples(f.unbatched().samples,
                     metric_samples(stored.begin() + batch_size, stored.end()));
  // The failed send is counted on the queued batch (debug queue shows it).
  auto retries_are = [&](int64_t n) {
    return eventually(
      [&] {
        auto q = f.pending();
        return q.size() == 1 && q[0].retry_count == n;
      },
      20s);
  };
  CHECK(retries_are(1));
  // Sends of batch 1 before the one the cloud will see.
  int64_t sent_before = 1;
  SUBCASE("ticks while the cloud is still away resend the same batch") {
    sent_before = 2;
    // Past the backoff window: the tick's round is the half-open probe.
    f.clock->advance(quiet_backoff.count() + 1);
    (*f.self)->send(s, tick_atom::value);
    REQUIRE(eventually(
      [&] { return f.stats_of(s).counters["send_failures"] == 2; }, 20s));
    CHECK(retries_are(2));
    auto again = f.pending();
    REQUIRE(again.size() == 1);
    CHECK(again[0].sequence == 1);
    CHECK(again[0].body == queued[0].body);
  }
  // The cloud appears on the port the link was told about.
  f.start_cloud(port);
  f.clock->advance(2 * quiet_backoff.count() + 1);
  (*f.self)->send(s, tick_atom::value);
  REQUIRE(f.drained_to(s, 3));
  check_same_samples(f.cloud_points(), stored);
  auto bodies = f.wire->seen();
  REQUIRE(bodies.size() == 3);
  // The first request the cloud saw is the batch queued while it was away:
  // its queued bytes, then the send-time retry_count outside the checksum.
  CHECK(starts_with(bodies[0], queued[0].body));
  CHECK(decode(bodies[0]).retry_count == sent_before);
  CHECK(decode(bodies[1]).retry_count == 0);
  for (int64_t i = 0; i < 3; ++i)
    CHECK(decode(bodies[static_cast<size_t>(i)]).sequence == i + 1);
  CHECK(f.pending().empty());
  CHECK(f.unbatched().samples.empty());
  st = f.stats_of(s);
  CHECK(st.state == "idle");
  CHECK(st.counters["batches_acked"] == 3);
  CHECK(st.counters["records_synced"] == 25);
  auto devices = f.cloud_devices();
  REQUIRE(devices.size() == 1);
  CHECK(devices[0].duplicates == 0);
  CHECK(devices[0].gaps == 0);
}

TEST_CASE("a restarted sync actor resends exactly the queued bytes and the "
          "cloud keeps the points once") {
  sync_fixture f;
  auto port = f.start_cloud();
  auto link = f.spawn_link(port);
  auto first = samples_from(clock_start_ms, 10);
  f.store(first);
  // The cloud stores batch 1, but its ack never reaches the device.
  f.wire->lose_replies = true;
  auto s1 = f.spawn_sync(f.sync_cfg(link, 100));
  REQUIRE(f.backing_off(s1));
  auto s1_state = f.stats_of(s1).state;
  INFO("sync state: " << s1_state);
  CHECK(s1_state.find("reply_lost") != std::string::npos);
  auto queued = f.pending();
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].sequence == 1);
  REQUIRE(f.cloud_devices().size() == 1);
  CHECK(f.cloud_devices()[0].batches_received == 1);
  f.kill(s1);
  f.wire->lose_replies = false;
  // A new batch's encoding would differ: later samples and a later clock.
  auto later = samples_from(clock_start_ms + 500, 5);
  f.store(later);
  f.clock->advance(3'600'000);
  auto s2 = f.spawn_sync(f.sync_cfg(link, 100));
  REQUIRE(f.drained_to(s2, 2));
  auto bodies = f.wire->seen();
  REQUIRE(bodies.size() == 3);
  CHECK(starts_with(bodies[0], queued[0].body));
  CHECK(starts_with(bodies[1], queued[0].body));
  // The resend says how often the batch went out before; same checksum.
  CHECK(decode(bodies[0]).retry_count == 0);
  CHECK(decode(bodies[1]).retry_count == 1);
  CHECK(decode(bodies[1]).checksum == decode(bodies[0]).checksum);
  auto second = decode(bodies[2]);
  CHECK(second.sequence == 2);
  CHECK(second.retry_count == 0);
  check_same_samples(second.samples, later);
  // Stored once: the duplicate was acked, not written again.
  check_same_samples(f.cloud_points(), concat({first, later}));
  auto devices = f.cloud_devices();
  REQUIRE(devices.size() == 1);
  CHECK(devices[0].batches_received == 2);
  CHECK(devices[0].duplicates == 1);
  CHECK(devices[0].points_received == 15);
  CHECK(devices[0].last_acked_sequence == 2);
  CHECK(devices[0].gaps == 0);
  CHECK(f.pending().empty());
  auto st = f.stats_of(s2);
  CHECK(st.counters["batches_sent"] == 2);
  CHECK(st.counters["batches_acked"] == 2);
  CHECK(st.counters["send_failures"] == 0);
  CHECK(st.counters["bytes_sent"]
        == static_cast<int64_t>(bodies[1].size() + bodies[2].size()));
}

TEST_CASE("a device whose store was replaced by a fresh one still gets its "
          "new points into the cloud") {
  // A corrupt store is moved aside and a fresh one starts (see storage_test);
  // the fresh store numbers its batches from 1 again, while the cloud still
  // remembers sequences 1..N of the same device and stream.
  sync_fixture f;
  auto port = f.start_cloud();
  auto link = f.spawn_link(port);
  auto before = samples_from(clock_start_ms, 30);
  f.store(before);
  auto s1 = f.spawn_sync(f.sync_cfg(link, 10));
  REQUIRE(f.drained_to(s1, 3));
  f.kill(s1);
  f.open_storage("fresh.db");
  REQUIRE(f.unbatched().next_sequence == 1);
  auto after = samples_from(clock_start_ms + 10'000, 20);
  f.store(after);
  auto s2 = f.spawn_sync(f.sync_cfg(link, 10));
  // The device considers both new batches delivered...
  REQUIRE(eventually(
    [&] {
      auto st = f.stats_of(s2);
      return st.state == "idle" && st.counters["records_synced"] == 20;
    },
    20s));
  CHECK(f.pending().empty());
  CHECK(f.unbatched().samples.empty());
  // ...so the cloud must hold them, or they are lost without a trace.
  auto all = concat({before, after});
  auto got = f.cloud_points();
  CHECK_MESSAGE(got.size() == all.size(),
                "the cloud holds " << got.size() << " of " << all.size()
                                   << " points; the fresh store's batches 1 "
                                      "and 2 were acked as duplicates");
  if (got.size() == all.size())
    check_same_samples(got, all);
}

TEST_CASE("a batch the cloud refuses for good is dropped after max_rejections, "
          "counted, and the stream moves on") {
  sync_fixture f;
  // Only the HTTP server sees this batch: its body limit answers 413 in
  // plain text, before any SyncResponse exists.
  f.limits.max_body_bytes = 600;
  auto port = f.start_cloud();
  metric_samples big;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10; ++i) {
    metric_sample x;
    x.name = "noise";
    // Random label values: zstd cannot shrink them under the limit (with
    // three numbers a label the body was 592-610 bytes, the epoch varying
    // it, and went through now and then; with six it is about 900).
    std::string id;
    for (int k = 0; k < 6; ++k)
      id += std::to_string(rng());
    x.labels = {{"id", id}};
    x.timestamp_ms = clock_start_ms + i;
    x.value = static_cast<double>(rng());
    big.push_back(std::move(x));
  }
  f.store(big);
  auto cfg = f.sync_cfg(f.spawn_link(port), 10);
  cfg.max_rejections = 3;
  auto s = f.spawn_sync(cfg);
  REQUIRE(f.dropped_one(s));
  CHECK(f.pending().empty());
  auto st = f.stats_of(s);
  CHECK(st.counters["batches_sent"] == 3);
  CHECK(st.counters["batches_acked"] == 0);
  // The drop is counted by kind, and the records as lost.
  debug_report report;
  (*f.self)
    ->request(f.storage_hdl, 5s, debug_atom::value, std::string{"storage"})
    .receive([&](debug_report& r) { report = std::move(r); },
             [&](caf::error& err) { FAIL(render(err)); });
  INFO(report.text);
  CHECK(report.json.find("\"batches_rejected\":1") != std::string::npos);
  CHECK(report.json.find("\"metrics_unsynced\":10") != std::string::npos);
  // The stream is not blocked: the next batch is delivered.
  auto small = samples_from(clock_start_ms + 100, 1);
  f.store(small);
  (*f.self)->send(s, tick_atom::value);
  REQUIRE(f.drained_to(s, 2));
  check_same_samples(f.cloud_points(), small);
  auto devices = f.cloud_devices();
  REQUIRE(devices.size() == 1);
  // The cloud knows it never got batch 1.
  CHECK(devices[0].gaps == 1);
}

TEST_CASE("forged batches in the device's numbering cannot make it drop "
          "anything: a conflicting batch is sent again under a new epoch") {
  sync_fixture f;
  auto port = f.start_cloud();
  // Someone else sends batches 1..3 in the device's own epoch first.
  auto epoch = f.unbatched().epoch;
  REQUIRE_FALSE(epoch.empty());
  http_client forger{"127.0.0.1", port, 5s, 1 << 20};
  for (int64_t seq = 1; seq <= 3; ++seq) {
    encode_settings es;
    es.device_id = device_id;
    es.sequence = seq;
    es.epoch = epoch;
    es.now_ms = clock_start_ms;
    metric_sample forged;
    forged.name = "forged";
    forged.timestamp_ms = clock_start_ms + seq;
    auto res = forger.post("/v1/sync", encode_metrics_request(es, {forged}),
                           {{"Content-Type", protobuf_type}});
    REQUIRE(res);
    REQUIRE(res->status == 200);
  }
  auto real = samples_from(clock_start_ms + 1000, 50);
  f.store(real);
  auto cfg = f.sync_cfg(f.spawn_link(port), 10);
  cfg.max_rejections = 1;
  auto s = f.spawn_sync(cfg);
  REQUIRE(f.drained_to(s, 5));
  auto st = f.stats_of(s);
  CHECK(st.counters["batches_rejected"] == 0);
  CHECK(st.counters["records_synced"] == 50);
  // One new epoch: the batches after the first conflict carry it too.
  CHECK(st.counters["reepochs"] == 1);
  CHECK(f.pending().empty());
  metric_samples genuine;
  for (auto& x : f.cloud_points())
    if (x.name != "forged")
      genuine.push_back(x);
  check_same_samples(genuine, real);
}

TEST_CASE("a batch the cloud's store refuses (422 invalid_record) counts "
          "against max_rejections, not as a link failure; the stream moves "
          "on") {
  sync_fixture f;
  auto port = f.start_cloud();
  {
    // The cloud's store refuses one point by a constraint: no retry cures it.
    auto db = sqlite::database::open(f.dir.file(f.cloud_file));
    REQUIRE(db);
    REQUIRE_FALSE(db->exec("CREATE TRIGGER refuse BEFORE INSERT ON points "
                           "WHEN NEW.ts = "
                           + std::to_string(clock_start_ms + 42)
                           + " BEGIN SELECT RAISE(ABORT, 'refused by test'); "
                             "END;"));
  }
  metric_sample bad;
  bad.name = "refused";
  bad.timestamp_ms = clock_start_ms + 42;
  f.store({bad});
  auto cfg = f.sync_cfg(f.spawn_link(port), 10);
  cfg.max_rejections = 3;
  auto s = f.spawn_sync(cfg);
  REQUIRE(f.dropped_one(s));
  auto st = f.stats_of(s);
  CHECK(st.counters["batches_sent"] == 3);
  CHECK(st.counters["batches_acked"] == 0);
  CHECK(f.pending().empty());
  auto small = samples_from(clock_start_ms + 100, 1);
  f.store(small);
  (*f.self)->send(s, tick_atom::value);
  REQUIRE(f.drained_to(s, 2));
  check_same_samples(f.cloud_points(), small);
}

TEST_CASE("tier 3 forwards what was stored at once") {
  sync_fixture f;
  auto port = f.start_cloud();
  auto link = f.spawn_link(port);
  auto first = samples_from(clock_start_ms, 3);
  f.store(first);
  auto cfg = f.sync_cfg(link, 10);
  cfg.forward_immediately = true;
  auto s = f.spawn_sync(cfg);
  // The first round starts at spawn and sends what is there.
  REQUIRE(f.drained_to(s, 1));
  auto more = samples_from(clock_start_ms + 100, 2);
  f.store(more);
  // A store notification, no tick: with the interval at an hour, only
  // forwarding at once can send it.
  (*f.self)->send(s, store_atom::value);
  REQUIRE(f.drained_to(s, 2));
  check_same_samples(f.cloud_points(), concat({first, more}));
}

TEST_CASE("a cloud that lost the device's series table gets the same points "
          "again, self-contained") {
  sync_fixture f;
  auto port = f.start_cloud();
  auto link = f.spawn_link(port);
  auto first = samples_from(clock_start_ms, 6);
  f.store(first);
  auto s = f.spawn_sync(f.sync_cfg(link, 100));
  REQUIRE(f.drained_to(s, 1));
  REQUIRE(f.stats_of(s).counters["session_series"] > 0);
  // A cloud with a fresh database (its series table gone) on the same port.
  f.endpoint->stop();
  f.cloud_file = "cloud-after-loss.db";
  f.start_cloud(port);
  // Later points of the same series: batch 2 refers to them by number.
  auto second = samples_from(clock_start_ms + 100, 6);
  f.store(second);
  (*f.self)->send(s, tick_atom::value);
  REQUIRE(f.drained_to(s, 2));
  auto st = f.stats_of(s);
  CHECK(st.counters["session_resets"] == 1);
  CHECK(st.counters["batches_rejected"] == 0);
  check_same_samples(f.cloud_points(), second);
  // The re-encoded batch defined every series again, for both sides.
  auto third = samples_from(clock_start_ms + 200, 6);
  f.store(third);
  (*f.self)->send(s, tick_atom::value);
  REQUIRE(f.drained_to(s, 3));
  check_same_samples(f.cloud_points(), concat({second, third}));
  CHECK(f.stats_of(s).counters["session_resets"] == 1);
}

TEST_CASE("the capability goes with the first request, not the next, and "
          "again after a change; the cloud keeps the latest") {
  sync_fixture f;
  auto port = f.start_cloud();
  auto cfg = f.sync_cfg(f.spawn_link(port), 10);
  // A report that changes none of the sync settings the test runs with.
  capability_report r;
  r.settings.tier = 1;
  r.settings.sqlite = true;
  r.settings.sync_interval_ms = cfg.interval.count();
  r.settings.batch_size = cfg.batch_size;
  r.settings.zstd_level = cfg.zstd_level;
  r.hw.total_ram = 16'000'000'000;
  r.hw.cpu_cores = 8;
  auto s = f.spawn_sync(cfg);
  (*f.self)->send(s, capabilities_atom::value, r);
  auto round = [&](int64_t seq) {
    f.store(samples_from(clock_start_ms + seq * 100, 10));
    (*f.self)->send(s, tick_atom::value);
    REQUIRE(f.drained_to(s, seq));
  };
  round(1);
  round(2);
  // The capability actor reports only changes: a smaller machine.
  r.settings.tier = 2;
  r.hw.total_ram = 268'435'456;
  r.hw.cpu_cores = 1;
  (*f.self)->send(s, capabilities_atom::value, r);
  round(3);
  round(4);
  auto bodies = f.wire->seen();
  REQUIRE(bodies.size() == 4);
  auto first = decode(bodies[0]).capability;
  CHECK(first.tier == 1);
  CHECK(first.total_ram == 16'000'000'000);
  CHECK(first.cpu_cores == 8);
  CHECK(first.has_sqlite);
  CHECK(decode(bodies[1]).capability.tier == 0);
  auto changed = decode(bodies[2]).capability;
  CHECK(changed.tier == 2);
  CHECK(changed.total_ram == 268'435'456);
  CHECK(changed.cpu_cores == 1);
  CHECK(decode(bodies[3]).capability.tier == 0);
  auto devices = f.cloud_devices();
  REQUIRE(devices.size() == 1);
  CHECK(devices[0].capability.tier == 2);
  CHECK(devices[0].capability.total_ram == 268'435'456);
}

TEST_CASE("a sync or cloud link actor spawned with a bad config stops with "
          "the option's name") {
  sync_config y;
  y.device_id = "d";
  y.stream = metrics_stream;
  CHECK(!validate(y));
  auto bad = y;
  bad.device_id.clear();
  auto reason = test::exit_reason_of(fleetd::sync, bad);
  CHECK(reason == ec::bad_config);
  CHECK(render(reason).find("device.id") != std::string::npos);
  bad = y;
  bad.stream = "traces";
  CHECK(test::exit_reason_of(fleetd::sync, bad) == ec::bad_config);
  bad = y;
  bad.max_rejections = 0;
  CHECK(render(validate(bad)).find("sync.max-rejections") != std::string::npos);
  bad = y;
  bad.batch_size = 0;
  CHECK(render(validate(bad)).find("sync.batch-size") != std::string::npos);
  cloud_link_config l;
  l.host = "127.0.0.1";
  l.port = 7480;
  CHECK(!validate(l));
  l.port = 70000;
  reason = test::exit_reason_of(cloud_link, l);
  CHECK(reason == ec::bad_config);
  CHECK(render(reason).find("cloud.port") != std::string::npos);
  l.port = 7480;
  l.host.clear();
  CHECK(render(validate(l)).find("cloud.host") != std::string::npos);
}
