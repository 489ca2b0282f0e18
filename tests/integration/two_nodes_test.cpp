// Two fleetd-cloud nodes on one PostgreSQL (through PgBouncer), sharing the
// tenancy secret, and one device whose cloud.endpoints lists both. Mid-stream
// the nodes are killed (SIGKILL) and restarted in turn at seeded random
// moments, and once both receive the same real batch at the same moment:
// one stores it, the other answers it as a duplicate. At the end every
// record the device collected is stored once and in order, and each
// (device, stream, epoch) holds batches 1..N. Rerun a plan with
// FLEETD_TWO_NODES_SEED=<the printed seed>.
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <random>
#include <thread>

#include "messages/wire.hpp"
#include "recording_proxy.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "two-dev";
constexpr int kills = 4;
constexpr int64_t load_rounds = 400; // 8 s of load at 20 ms

/// One fleetd-cloud on the shared database, restarted on its port.
struct node {
  std::string name;
  std::string dir;
  std::string log;
  uint16_t ingest = 0;
  uint16_t console = 0;
  std::unique_ptr<process> proc;

  void start(const cloud_backend& backend) {
    std::remove((dir + "/ingest.port").c_str());
    std::remove((dir + "/console.port").c_str());
    std::vector<std::string> args{"--node.data-dir=" + dir,
                                  "--ingest.port=" + std::to_string(ingest),
                                  "--console.port=0", "--log.level=debug"};
    auto flags = backend.node_flags();
    args.insert(args.end(), flags.begin(), flags.end());
    proc = std::make_unique<process>(program("fleetd-cloud"), args, log);
    auto port = port_from(dir + "/ingest.port", 20s);
    REQUIRE_MESSAGE(port != 0, name, ": ", read_file(log));
    REQUIRE((ingest == 0 || port == ingest));
    ingest = port;
    console = port_from(dir + "/console.port");
    REQUIRE(console != 0);
  }

  void kill() {
    proc->signal(SIGKILL);
    REQUIRE(proc->wait(5s) == 128 + SIGKILL);
  }

  /// A counter of the node's ingest actor; -1 when it does not answer.
  int64_t ingest_counter(const std::string& name) {
    auto st = console_status(console);
    return st ? counter(*st, "ingest", name) : -1;
  }
};

struct rig {
  temp_dir tmp;
  cloud_backend backend;
  cloud_store store;
  node a;
  node b;
  std::unique_ptr<recording_proxy> door; // the device's way to node a
  std::unique_ptr<process> device;
  uint16_t console = 0; // the device's
  std::string dev_dir = tmp.path() + "/device";
  std::string dev_db = dev_dir + "/fleetd.db";

  explicit rig(cloud_backend be)
    : backend(std::move(be)), store(backend.store("")) {
    MESSAGE("temp dir ", tmp.path());
    for (auto [n, name] : {std::pair{&a, "a"}, std::pair{&b, "b"}}) {
      n->name = name;
      n->dir = tmp.path() + "/" + name;
      n->log = n->dir + ".log";
    }
    a.start(backend);
    b.start(backend);
    door = std::make_unique<recording_proxy>(a.ingest);
  }

  void start_device() {
    std::vector<std::string> args{
      "--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
      "--cloud.endpoints=127.0.0.1:" + std::to_string(door->port())
        + ",127.0.0.1:" + std::to_string(b.ingest),
      "--console.port=0", "--cloud.timeout=2s", "--tier.pin=1",
      "--collector.rounds=1", "--load.series=20", "--load.interval=20ms",
      "--load.rounds=" + std::to_string(load_rounds), "--load.log-lines=2",
      "--load.event-every=10", "--sync.interval=50ms", "--sync.batch-size=50",
      "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms",
      // One batch per request: the replay below is of one batch's request.
      "--cloud.sync-version=1"};
    // Enrolled through node a: the key lives in PostgreSQL, b knows it too.
    auto enroll = backend.device_flags(tmp.path(), a.console);
    args.insert(args.end(), enroll.begin(), enroll.end());
    device = std::make_unique<process>(program("fleetd"), args,
                                       tmp.path() + "/device.log");
  }

  /// The device's failovers so far; -1 when its console does not answer.
  int64_t failovers() {
    if (console == 0)
      console = port_from(dev_dir + "/console.port");
    auto st = console_status(console);
    return st ? counter(*st, "cloud_link", "failovers") : -1;
  }

  /// The node the device sends to (through the door for a).
  node& in_use() {
    std::string state;
    auto door_url = ":" + std::to_string(door->port());
    auto b_url = ":" + std::to_string(b.ingest);
    auto ends_with = [&](const std::string& tail) {
      return state.size() >= tail.size()
             && state.compare(state.size() - tail.size(), tail.size(), tail)
                  == 0;
    };
    REQUIRE(eventually(
      [&] {
        auto st = console_status(console);
        state = st ? state_of(*st, "cloud_link") : "";
        return state.rfind("connected to ", 0) == 0
               && (ends_with(door_url) || ends_with(b_url));
      },
      10s));
    return ends_with(b_url) ? b : a;
  }

  /// Batches PostgreSQL holds for the device, over all streams.
  int64_t stored() {
    return static_cast<int64_t>(
      store.rows(cloud_store::table::batches, device_id).size());
  }

  int64_t stream_state(const std::string& stream, const std::string& column) {
    return query_int(dev_db, "SELECT " + column + " FROM stream_state WHERE "
                             "stream = '" + stream + "'");
  }
};

/// Replays the held request to both nodes at once; checks one stored it and
/// the other answered it as a duplicate, both with a success ack.
void same_batch_to_both(rig& r) {
  r.door->arm("/v1/sync");
  REQUIRE(eventually([&] { return r.door->held().has_value(); }, 20s));
  auto raw = *r.door->held();
  auto before = r.stored();
  auto a0 = r.a.ingest_counter("accepted");
  auto b0 = r.b.ingest_counter("accepted");
  auto ad0 = r.a.ingest_counter("duplicates");
  auto bd0 = r.b.ingest_counter("duplicates");
  std::atomic<int> connected{0};
  auto line_up = [&] {
    ++connected;
    while (connected < 2)
      std::this_thread::yield();
  };
  std::pair<int, std::string> to_a;
  std::pair<int, std::string> to_b;
  std::thread ta([&] { to_a = http_exchange(r.a.ingest, raw, line_up); });
  std::thread tb([&] { to_b = http_exchange(r.b.ingest, raw, line_up); });
  ta.join();
  tb.join();
  CHECK(to_a.first == 200);
  CHECK(to_b.first == 200);
  auto ack_a = decode_response(to_a.second);
  auto ack_b = decode_response(to_b.second);
  REQUIRE(ack_a);
  REQUIRE(ack_b);
  CHECK(ack_a->success);
  CHECK(ack_b->success);
  CHECK(ack_a->last_sequence_ack == ack_b->last_sequence_ack);
  auto accepted = (r.a.ingest_counter("accepted") - a0)
                  + (r.b.ingest_counter("accepted") - b0);
  auto duplicates = (r.a.ingest_counter("duplicates") - ad0)
                    + (r.b.ingest_counter("duplicates") - bd0);
  MESSAGE("one batch (", raw.size(), " bytes, acked up to ",
          ack_a->last_sequence_ack, ") to both nodes: ", accepted,
          " accepted, ", duplicates, " duplicate");
  CHECK(accepted == 1);
  CHECK(duplicates == 1);
  CHECK(r.stored() == before + 1);
  // The device's own copy fails now; it resends it to b: a duplicate.
  r.door->release();
}

/// Waits for the drain, stops everything, compares the device's file with
/// PostgreSQL record by record.
void check_drained_and_exactly_once(rig& r) {
  auto console = port_from(r.dev_dir + "/console.port");
  REQUIRE(console != 0);
  REQUIRE_MESSAGE(device_synced_all(console, r.dev_db, load_rounds, 30s),
                  read_file(r.tmp.path() + "/device.log"));
  auto st = console_status(console);
  REQUIRE(st);
  // Each kill hit the node in use.
  auto failovers = counter(*st, "cloud_link", "failovers");
  CHECK(failovers >= kills);
  r.device->signal(SIGTERM);
  REQUIRE(r.device->wait(10s) == 0);
  for (auto* n : {&r.a, &r.b}) {
    n->proc->signal(SIGTERM);
    REQUIRE(n->proc->wait(10s) == 0);
  }
  r.door->stop();
  auto n = check_records_exactly_once(r.dev_db, r.store, device_id);
  MESSAGE("summary: ", kills, " kills, ", failovers, " failovers; ", n.points,
          " points, ", n.log_lines, " log lines, ", n.events,
          " events checked in ", n.batches, " batches");
  CHECK(n.points >= static_cast<size_t>(load_rounds * 20));
  CHECK(n.log_lines == static_cast<size_t>(load_rounds * 2));
}

} // namespace

TEST_CASE("two nodes on one PostgreSQL, killed in turn and sent one batch "
          "at once, store every record exactly once") {
  on_postgresql("two_nodes", [](const cloud_backend& backend) {
    uint32_t seed = std::random_device{}();
    if (auto env = std::getenv("FLEETD_TWO_NODES_SEED"))
      seed = static_cast<uint32_t>(std::strtoul(env, nullptr, 10));
    MESSAGE("seed ", seed, " (rerun with FLEETD_TWO_NODES_SEED=", seed, ")");
    std::mt19937 rng(seed);
    auto pick = [&](int lo, int hi) {
      return std::uniform_int_distribution<int>(lo, hi)(rng);
    };
    rig r(backend);
    r.start_device();
    REQUIRE(eventually([&] { return r.stored() >= 3; }, 20s));
    same_batch_to_both(r);
    REQUIRE(r.failovers() >= 0);
    // Each kill hits the node in use; the device then moves to the other,
    // so the victims alternate.
    std::string plan;
    node* last = nullptr;
    for (int i = 0; i < kills; ++i) {
      auto& victim = r.in_use();
      CHECK(&victim != last);
      last = &victim;
      auto target = r.stored() + pick(1, 8);
      auto jitter = pick(0, 30);
      REQUIRE(eventually([&] { return r.stored() >= target; }, 20s));
      // The random moment: this pause is the plan, not a wait for anything.
      std::this_thread::sleep_for(std::chrono::milliseconds(jitter));
      auto moved = r.failovers();
      victim.kill();
      plan += victim.name + "@" + std::to_string(target) + "+"
              + std::to_string(jitter) + "ms ";
      // The device moves to the other node and syncs there meanwhile.
      auto held = r.stored();
      REQUIRE(eventually(
        [&] { return r.failovers() > moved && r.stored() > held; }, 20s));
      victim.start(backend);
    }
    MESSAGE("kills (node@batches+ms): ", plan);
    check_drained_and_exactly_once(r);
  });
}
