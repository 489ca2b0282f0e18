// Delivery accounting end to end: a real fleetd whose memory store (a ring
// of 1000 points) overflows while the fault proxy drops every connection
// declares what its cap dropped; fleetd-cloud counts per device, stream and
// hour, and `fleetctl delivery --json` shows exactly the records received
// and declared, duplicates and missing sequences, with the ratio's formula.
#include <doctest/doctest.h>

#include <csignal>
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
/// `dropped` metrics records lost since the store `origin` began.
int post_point(uint16_t ingest, const std::string& device, int64_t seq,
               const std::string& origin, int64_t dropped) {
  drop_declaration d;
  d.origin = origin;
  d.records["metrics_unsynced"] = dropped;
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
  // The cloud is out of reach from the start: the ring overflows.
  proxy.drop();
  process device(
    program("fleetd"),
    {"--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
     "--cloud.port=" + std::to_string(proxy.port()), "--console.port=0",
     "--cloud.timeout=1s", "--tier.pin=1", "--storage.backend=memory",
     "--collector.rounds=1", "--load.series=" + std::to_string(load_series),
     "--load.interval=20ms", "--load.rounds=" + std::to_string(load_rounds),
     "--sync.interval=50ms", "--sync.batch-size=" + std::to_string(batch_size),
     "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms"},
    tmp.path() + "/device.log");
  auto console = port_from(dev_dir + "/console.port");
  REQUIRE_MESSAGE(console != 0, read_file(tmp.path() + "/device.log"));
  auto storage = [&](const std::string& name) {
    auto st = console_status(console);
    return st ? std::max<int64_t>(counter(*st, "storage", name), 0) : -1;
  };
  REQUIRE_MESSAGE(eventually(
                    [&] {
                      auto st = console_status(console);
                      return st
                             && counter(*st, "load_generator", "rounds")
                                  == load_rounds
                             && counter(*st, "system_collector", "rounds") == 1;
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

  proxy.pass();
  REQUIRE(eventually(
    [&] {
      return storage("queued_batches") == 0
             && storage("unbatched_points") == 0;
    },
    30s));
  auto json = [&](const std::string& device) {
    std::string out;
    // The last batch's ack may be ahead of our read of the table: poll.
    eventually(
      [&] {
        auto [rc, text] = fleetctl(tmp.path(), cloud_console,
                                   {"delivery", "--json", "--device=" + device});
        out = text;
        return rc == 0
               && sum_stream(text, device, "metrics").received
                    + sum_stream(text, device, "metrics").declared
                    == stored;
      },
      10s);
    return out;
  };
  auto text = json(device_id);
  MESSAGE(text);
  auto m = sum_stream(text, device_id, "metrics");
  CHECK(m.rows >= 1);
  // Every record is received or declared, exactly once: the drops the
  // device counted, the rest delivered.
  CHECK(m.declared == storage("dropped_metrics_unsynced"));
  CHECK(m.declared == dropped);
  CHECK(m.received == stored - dropped);
  CHECK(m.missing == 0);
  CHECK(m.duplicates == 0);
  if (m.rows == 1) {
    auto at = text.find("\"stream\":\"metrics\"");
    CHECK(json_double(text, "ratio", at)
          == doctest::Approx(static_cast<double>(m.received)
                             / static_cast<double>(m.received + m.declared))
               .epsilon(1e-4));
  }

  // Raw requests straight to the cloud: a resend is a duplicate whose
  // declaration adds nothing, a skipped sequence is missing.
  CHECK(post_point(ingest, "raw-dev", 1, "store-a", 5) == 200);
  CHECK(post_point(ingest, "raw-dev", 1, "store-a", 5) == 200);
  CHECK(post_point(ingest, "raw-dev", 3, "store-a", 7) == 200);
  auto raw_text = [&] {
    auto [rc, out] = fleetctl(tmp.path(), cloud_console,
                              {"delivery", "--json", "--device=raw-dev"});
    CHECK(rc == 0);
    return out;
  }();
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

  device.signal(SIGTERM);
  CHECK(device.wait(10s) == 0);
  cloud.signal(SIGTERM);
  CHECK(cloud.wait(10s) == 0);
}
