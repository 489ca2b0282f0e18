// Delivery accounting end to end: a real fleetd whose memory store (a ring
// of 1000 points) overflows while the fault proxy drops every connection
// declares what its cap dropped, what it collected and stored, and the
// events its local ingest refused; fleetd-cloud counts per device, stream
// and hour, and `fleetctl delivery --json` shows exactly the records
// received, collected, stored and declared, duplicates and missing
// sequences, with the ratio's formula. Hostile reports are refused.
#include <doctest/doctest.h>

#include <csignal>
#include <cstdio>
#include <memory>

#include "fault_proxy.hpp"
#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/http_client.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "delivery-dev";
constexpr int64_t load_series = 100;
constexpr int64_t load_rounds = 30;
constexpr int64_t ring_points = 1000;
constexpr int64_t batch_size = 100;

/// The sums of a device's rows of one stream in `fleetctl delivery --json`.
struct stream_delivery {
  int64_t rows = 0;
  int64_t received = 0;
  int64_t duplicates = 0;
  int64_t missing = 0;
  int64_t declared = 0;
  int64_t collected = 0;
  int64_t stored = 0;
};

stream_delivery sum_stream(const std::string& json, const std::string& device,
                           const std::string& stream) {
  stream_delivery out;
  auto key = "{\"device\":\"" + device + "\",\"stream\":\"" + stream + "\"";
  for (auto at = json.find(key); at != std::string::npos;
       at = json.find(key, at + 1)) {
    ++out.rows;
    out.received += json_int(json, "received", at);
    out.duplicates += json_int(json, "duplicates", at);
    out.missing += json_int(json, "missing", at);
    out.declared += json_int(json, "declared_drops", at);
    out.collected += json_int(json, "collected", at);
    out.stored += json_int(json, "stored", at);
  }
  return out;
}

/// The number after `"key":` in `json` from `from`, as a double.
double json_double(const std::string& json, const std::string& key,
                   size_t from) {
  auto at = json.find("\"" + key + "\":", from);
  REQUIRE(at != std::string::npos);
  return std::stod(json.substr(at + key.size() + 3));
}

/// POST /v1/sync of one point as batch `seq` of `device`, declaring
/// `dropped` metrics records lost since the store `origin` began, and
/// `collected` and `stored` records.
int post_point(uint16_t ingest, const std::string& device, int64_t seq,
               const std::string& origin, int64_t dropped,
               int64_t collected = 0, int64_t stored = 0) {
  drop_declaration d;
  d.origin = origin;
  d.records["metrics_unsynced"] = dropped;
  d.collected = collected;
  d.stored = stored;
  auto body = with_send_fields(one_point_sync(device, seq), 0, nullptr, &d);
  http_client client{"127.0.0.1", ingest, 10s, 1 << 20};
  auto res = client.post("/v1/sync", body,
                         {{"Content-Type", "application/x-protobuf"},
                          {"Content-Encoding", "zstd"}});
  if (!res)
    FAIL(render(res.error()));
  return res->status;
}

} // namespace

TEST_CASE("fleetctl delivery shows the records received, declared dropped "
          "by a full memory ring, duplicates and missing sequences") {
  temp_dir tmp;
  MESSAGE("temp dir ", tmp.path());
  auto cloud_dir = tmp.path() + "/cloud";
  auto dev_dir = tmp.path() + "/device";
  process cloud(program("fleetd-cloud"),
                {"--node.data-dir=" + cloud_dir, "--ingest.port=0",
                 "--console.port=0"},
                tmp.path() + "/cloud.log");
  auto ingest = port_from(cloud_dir + "/ingest.port");
  auto cloud_console = port_from(cloud_dir + "/console.port");
  REQUIRE_MESSAGE(ingest != 0, read_file(tmp.path() + "/cloud.log"));
  REQUIRE(cloud_console != 0);
  fault_proxy proxy(ingest);
  std::unique_ptr<process> device;
  uint16_t console = 0;
  auto storage = [&](const std::string& name) {
    auto st = console_status(console);
    return st ? std::max<int64_t>(counter(*st, "storage", name), 0) : -1;
  };
  // POST /events to the device's local ingest; replies the status.
  auto post_events = [&](const std::string& body) {
    auto st = console_status(console);
    REQUIRE(st);
    auto port = static_cast<uint16_t>(counter(*st, "local_ingest", "port"));
    http_client client{"127.0.0.1", port, 10s, 1 << 20};
    auto res = client.post("/events", body, {});
    REQUIRE_MESSAGE(res, render(res.error()));
    return res->status;
  };
  auto event_lines = [](int n) {
    std::string out;
    for (int i = 0; i < n; ++i)
      out += "{\"kind\":\"app\",\"message\":\"" + std::to_string(i)
             + "\"}\n";
    return out;
  };
  // One life of the device: started while the cloud is out of reach, so
  // its ring overflows, then drained once the proxy passes again; replies
  // (stored, dropped) as the device counted them.
  auto live = [&]() -> std::pair<int64_t, int64_t> {
    proxy.drop();
    std::remove((dev_dir + "/console.port").c_str());
    device = std::make_unique<process>(
      program("fleetd"),
      std::vector<std::string>{
        "--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
        "--cloud.port=" + std::to_string(proxy.port()), "--console.port=0",
        "--cloud.timeout=1s", "--tier.pin=1", "--storage.backend=memory",
        "--collector.rounds=1", "--load.series=" + std::to_string(load_series),
        "--load.interval=20ms", "--load.rounds=" + std::to_string(load_rounds),
        "--sync.interval=50ms",
        "--sync.batch-size=" + std::to_string(batch_size),
        "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms",
        "--ingest.listen=127.0.0.1:0", "--ingest.max-lines=20"},
      tmp.path() + "/device.log");
    console = port_from(dev_dir + "/console.port");
    REQUIRE_MESSAGE(console != 0, read_file(tmp.path() + "/device.log"));
    REQUIRE_MESSAGE(eventually(
                      [&] {
                        auto st = console_status(console);
                        return st
                               && counter(*st, "load_generator", "rounds")
                                    == load_rounds
                               && counter(*st, "system_collector", "rounds")
                                    == 1;
                      },
                      30s),
                    read_file(tmp.path() + "/device.log"));
    auto stored = storage("points_stored");
    auto dropped = storage("dropped_metrics_unsynced");
    MESSAGE("device stored ", stored, " points, its ring dropped ", dropped,
            " unsynced");
    CHECK(stored >= load_series * load_rounds);
    // The ring keeps 1000 and the queue one batch: the cap dropped the rest.
    CHECK(dropped >= stored - ring_points - batch_size);
    CHECK(proxy.stats().dropped > 0);
    // The local ingest refuses for good 3 bad lines of 5 (the 2 good ones
    // stored) and a body of 25 lines past ingest.max-lines whole.
    CHECK(post_events(event_lines(2) + "not json\n{\"kind\":1}\n[]\n") == 200);
    CHECK(post_events(event_lines(25)) == 413);
    CHECK(eventually(
      [&] {
        return storage("dropped_events_refused_bad_format") == 3
               && storage("dropped_events_refused_too_large") == 25;
      },
      10s));
    proxy.pass();
    REQUIRE(eventually(
      [&] {
        return storage("queued_batches") == 0
               && storage("unbatched_points") == 0;
      },
      30s));
    CHECK(storage("dropped_metrics_unsynced") == dropped);
    // Every metric collected was stored (the ring drops only afterwards).
    CHECK(storage("collected_metrics") == stored);
    CHECK(storage("stored_metrics") == stored);
    return {stored, dropped};
  };
  // `fleetctl delivery --json` once its metrics rows hold `total` records.
  auto json = [&](const std::string& device, int64_t total) {
    std::string out;
    // The last batch's ack may be ahead of our read of the table: poll.
    eventually(
      [&] {
        auto [rc, text] = fleetctl(tmp.path(), cloud_console,
                                   {"delivery", "--json", "--device=" + device});
        out = text;
        auto m = sum_stream(text, device, "metrics");
        return rc == 0 && m.received + m.declared == total;
      },
      10s);
    return out;
  };
  auto [stored, dropped] = live();
  auto text = json(device_id, stored);
  MESSAGE(text);
  auto m = sum_stream(text, device_id, "metrics");
  CHECK(m.rows >= 1);
  // Every record is received or declared, exactly once: the drops the
  // device counted, the rest delivered.
  CHECK(m.declared == dropped);
  CHECK(m.received == stored - dropped);
  CHECK(m.missing == 0);
  CHECK(m.duplicates == 0);
  // What the device declared it collected and stored, exactly.
  CHECK(m.collected == stored);
  CHECK(m.stored == stored);
  // Events: the refused lines are declared drops of the stream; received,
  // collected and stored as the device counted them.
  std::string last;
  CHECK_MESSAGE(eventually(
                  [&] {
                    auto [rc, out] = fleetctl(
                      tmp.path(), cloud_console,
                      {"delivery", "--json",
                       "--device=" + std::string(device_id)});
                    auto e = sum_stream(out, device_id, "events");
                    auto collected = storage("collected_events");
                    last = out + "; the device collected "
                           + std::to_string(collected);
                    return rc == 0 && e.declared >= 28
                           && e.collected == collected
                           && e.received == storage("stored_events");
                  },
                  10s),
                last);
  text = json(device_id, stored);
  auto e = sum_stream(text, device_id, "events");
  MESSAGE("events: received ", e.received, ", collected ", e.collected,
          ", stored ", e.stored, ", declared ", e.declared);
  CHECK(e.declared == 28 + storage("dropped_events_unsynced"));
  CHECK(e.collected == storage("collected_events"));
  CHECK(e.stored == storage("stored_events"));
  CHECK(e.stored >= 2);
  CHECK(e.received == e.stored);
  if (e.rows == 1) {
    auto at = text.find("\"stream\":\"events\"");
    CHECK(json_double(text, "ratio", at)
          == doctest::Approx(static_cast<double>(e.received)
                             / static_cast<double>(e.received + e.declared
                                                   + e.missing))
               .epsilon(1e-4));
  }
  if (m.rows == 1) {
    auto at = text.find("\"stream\":\"metrics\"");
    CHECK(json_double(text, "ratio", at)
          == doctest::Approx(static_cast<double>(m.received)
                             / static_cast<double>(m.received + m.declared))
               .epsilon(1e-4));
  }

  // Killed and started again, the memory store counts afresh under a new
  // origin: its drops add to those declared before, none counted twice.
  device->signal(SIGKILL);
  device->wait(10s);
  auto [stored2, dropped2] = live();
  text = json(device_id, stored + stored2);
  MESSAGE(text);
  m = sum_stream(text, device_id, "metrics");
  CHECK(m.declared == dropped + dropped2);
  CHECK(m.received == stored - dropped + stored2 - dropped2);
  // A new origin: its counts add to those of the first life.
  CHECK(m.collected == stored + stored2);
  CHECK(m.stored == stored + stored2);
  CHECK(m.missing == 0);
  CHECK(m.duplicates == 0);

  // Raw requests straight to the cloud: a resend is a duplicate whose
  // declaration adds nothing, a skipped sequence is missing.
  CHECK(post_point(ingest, "raw-dev", 1, "store-a", 5) == 200);
  CHECK(post_point(ingest, "raw-dev", 1, "store-a", 5) == 200);
  CHECK(post_point(ingest, "raw-dev", 3, "store-a", 7) == 200);
  // `fleetctl delivery --json` of one device, read once.
  auto json_now = [&](const std::string& device) {
    auto [rc, out] = fleetctl(tmp.path(), cloud_console,
                              {"delivery", "--json", "--device=" + device});
    CHECK(rc == 0);
    return out;
  };
  auto raw_text = json_now("raw-dev");
  MESSAGE(raw_text);
  auto r = sum_stream(raw_text, "raw-dev", "metrics");
  CHECK(r.received == 2);
  CHECK(r.duplicates == 1);
  CHECK(r.missing == 1);
  CHECK(r.declared == 7);
  CHECK(json_double(raw_text, "ratio", raw_text.find("\"totals\""))
        == doctest::Approx(2.0 / 10.0));
  // The table form: a header, the rows and a totals line.
  auto [rc, table] = fleetctl(tmp.path(), cloud_console,
                              {"delivery", "--device=raw-dev"});
  CHECK(rc == 0);
  MESSAGE(table);
  CHECK(table.find("RATIO") != std::string::npos);
  CHECK(table.find("total") != std::string::npos);
  CHECK(table.find("0.2000") != std::string::npos);
  CHECK(table.find("COLLECTED") != std::string::npos);
  CHECK(table.find("STORED") != std::string::npos);

  // Collected and stored of a raw device: the growth, once; a hostile or
  // garbled report is refused 400 (counted); in one that goes down within
  // its origin those counters add nothing (counted), its batch is stored.
  CHECK(post_point(ingest, "flow-dev", 1, "o", 1, 50, 40) == 200);
  CHECK(post_point(ingest, "flow-dev", 2, "o", 1, 80, 70) == 200);
  CHECK(post_point(ingest, "flow-dev", 3, "o", 1, -5, 0) == 400);
  CHECK(post_point(ingest, "flow-dev", 3, "o", 1, 5, 6) == 400);
  CHECK(post_point(ingest, "flow-dev", 3, "o", 1, int64_t{1} << 62, 0)
        == 400);
  CHECK(post_point(ingest, "flow-dev", 3, "o", 1, 60, 60) == 200);
  auto flow_text = json_now("flow-dev");
  MESSAGE(flow_text);
  auto fl = sum_stream(flow_text, "flow-dev", "metrics");
  CHECK(fl.received == 3);
  CHECK(fl.collected == 80);
  CHECK(fl.stored == 70);
  CHECK(fl.declared == 1);
  auto cst = console_status(cloud_console);
  REQUIRE(cst);
  CHECK(counter(*cst, "ingest", "rejected_decode_failed") == 3);
  CHECK(counter(*cst, "ingest", "delivery_reports_ignored") == 1);

  device->signal(SIGTERM);
  CHECK(device->wait(10s) == 0);
  cloud.signal(SIGTERM);
  CHECK(cloud.wait(10s) == 0);
}
