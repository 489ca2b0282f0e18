// fleetctl nodes and streams: rows from what a device and a cloud answer.
#include <doctest/doctest.h>

#include "tools/fleetctl_nodes.hpp"
#include "tools/fleetctl_streams.hpp"

using namespace fleetd;

namespace {

actor_stats actor(std::string name, std::string state,
                  std::map<std::string, int64_t> counters = {}) {
  actor_stats a;
  a.name = std::move(name);
  a.state = std::move(state);
  a.counters = std::move(counters);
  return a;
}

device_info stream(std::string device, std::string name, int64_t seen_ms) {
  device_info d;
  d.device_id = std::move(device);
  d.stream = std::move(name);
  d.points_received = 10;
  d.batches_received = 2;
  d.last_acked_sequence = 2;
  d.last_seen_ms = seen_ms;
  return d;
}

} // namespace

TEST_CASE("nodes on a device: itself and its cloud, as the link stands") {
  node_status x;
  x.role = "edge";
  x.node_id = "dev";
  x.version = "1.0";
  x.uptime_ms = 5000;
  x.actors = {actor("backoff", "online"),
              actor("cloud_link",
                    "connected to https://cloud:7480 (sync stream)")};
  auto rows = device_nodes(x);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].id == "dev");
  CHECK(rows[0].link == "self");
  CHECK(rows[0].detail == "fleetd 1.0, up 5s");
  CHECK(rows[1].role == "cloud");
  CHECK(rows[1].link == "online");
  CHECK(rows[1].address == "https://cloud:7480");
  // Offline: the link's state and its last error; the URL is not known.
  x.actors = {actor("backoff", "offline: connection refused"),
              actor("cloud_link", "failing: connection refused")};
  rows = device_nodes(x);
  CHECK(rows[1].link == "offline");
  CHECK(rows[1].detail == "connection refused");
  CHECK(rows[1].address.empty());
  // No link actors at all (a node without a cloud).
  x.actors.clear();
  CHECK(device_nodes(x)[1].link == "unknown");
}

TEST_CASE("nodes on a cloud: each device once, online by the node's clock") {
  node_status x;
  x.role = "cloud";
  x.node_id = "c";
  x.started_ms = 1'000'000;
  x.uptime_ms = 500'000; // the node's now: 1'500'000
  device_infos xs{stream("a", "metrics", 1'490'000),
                  stream("a", "logs", 1'400'000),
                  stream("b", "metrics", 1'000'000), stream("z", "logs", 0)};
  auto rows = cloud_nodes(x, xs, 60'000);
  REQUIRE(rows.size() == 4);
  CHECK(rows[0].link == "self");
  CHECK(rows[1].id == "a");
  CHECK(rows[1].link == "online");
  CHECK(rows[1].last_seen_ms == 1'490'000);
  CHECK(rows[1].detail == "2 streams");
  CHECK(rows[2].link == "offline");
  CHECK(rows[3].link == "offline"); // never heard from
  auto text = nodes_text(rows, 1'500'000);
  CHECK(text.find("10s ago") != std::string::npos);
  CHECK(text.find("8m ago") != std::string::npos);
  CHECK(text.find("never") != std::string::npos);
  CHECK(nodes_json(rows).find("{\"id\":\"a\",\"role\":\"device\",\"link\":"
                              "\"online\"")
        != std::string::npos);
}

TEST_CASE("streams on a device: sync actors with the storage's counters") {
  node_status x;
  x.role = "edge";
  x.node_id = "dev";
  x.actors = {
    actor("storage", "ok",
          {{"points_stored", 100}, {"unbatched_points", 7},
           {"logs_stored", 5}, {"unbatched_logs", 1},
           {"unbatched_events", 2}}),
    actor("sync_metrics", "idle",
          {{"batches_acked", 9}, {"last_acked_sequence", 9},
           {"duplicates_acked", 1}, {"send_failures", 3}}),
    actor("sync_events", "retrying: timeout", {{"last_acked_sequence", 0}}),
    // Not a stream: no sequence.
    actor("sync_config", "ok", {{"rounds", 1}})};
  auto rows = device_streams(x);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].stream == "metrics");
  CHECK(rows[0].records == 100);
  CHECK(rows[0].pending == 7);
  CHECK(rows[0].batches == 9);
  CHECK(rows[0].duplicates == 1);
  CHECK(rows[0].failures == 3);
  CHECK(rows[0].gaps == -1);
  CHECK(rows[1].stream == "events");
  CHECK(rows[1].records == -1); // the device does not count stored events
  CHECK(rows[1].pending == 2);
  CHECK(rows[1].state == "retrying: timeout");
  auto text = streams_text(rows);
  CHECK(text.rfind("DEVICE", 0) == 0);
  CHECK(text.find("retrying: timeout") != std::string::npos);
  CHECK(streams_json(rows).find("\"records\":-1") != std::string::npos);
}

TEST_CASE("streams on a cloud: one row per device stream") {
  auto rows = cloud_streams({stream("a", "metrics", 1000)}, 61'000);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].records == 10);
  CHECK(rows[0].pending == -1);
  CHECK(rows[0].state == "seen 60s ago");
  CHECK(streams_json({}) == "[]");
}
