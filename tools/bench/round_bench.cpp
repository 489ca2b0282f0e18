// fleetd-bench round-bytes: what one tier-3 sync round costs on the wire.
//
// A round is what a tier-3 device sends every 10 s when metrics, logs and
// events are all due: one metrics batch of --series node_exporter-like
// series (columnar, against the series session, no zstd: tier 3, unless
// --zstd-level), one logs batch of --log-lines lines and one events batch
// of --events events, each a SyncRequest as the sync actors encode it
// (send-time fields appended).
// The three requests go to the real cloud link (edge/cloud_link) at once,
// as three sync actors would, and the link carries them to an in-process
// cloud (embedded store, tenancy, ingest, endpoint) over plain HTTP on
// loopback with the device's key (Authorization: Bearer), through a relay
// that counts every byte both ways: request and status lines, headers,
// bodies. Every batch must be acked by its sequence.
//
// Rounds follow each other just past the link's quiet spell (on a device
// they are 10 s apart), so each waits for the other streams' batches.
//
// Two runs, same records: "v1" (cloud.sync-version=1: one POST /v1/sync per
// batch, as before version 2, less the User-Agent and Server headers this
// version dropped) and "v2" (POST /v2/sync: the batches of a round in one
// request). "before" is v1 plus those two headers (20 + 22 bytes per
// exchange), i.e. the bytes the previous code sent. Figures are per round
// after the first (which defines the series), and per sample; header bytes
// are wire bytes minus the bodies the link counted.
#include "tools/bench/round_bench.hpp"

#include <atomic>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/typed_event_based_actor.hpp>

#include "edge/cloud_link.hpp"
#include "messages/metrics_codec.hpp"
#include "messages/wire.hpp"
#include "tools/bench/bench_cloud.hpp"
#include "tools/bench/node_series.hpp"

namespace fleetd::bench {

const char* round_summary =
  "tier-3 sync rounds (metrics, logs, events all due) through the real "
  "cloud link,\n      one batch per POST /v1/sync vs one POST /v2/sync a "
  "round; wire bytes per round\n      and per sample, headers included";

std::string round_usage() {
  return "usage: fleetd-bench round-bytes [--rounds R] [--series N] "
         "[--log-lines L] [--events E] [--zstd-level Z] [--dir DIR]\n"
         "  --rounds     rounds measured after the first (default 30)\n"
         "  --series     samples in each round's metrics batch (default 10, "
         "tier 3's batch)\n"
         "  --log-lines  log lines a round (default 1)\n"
         "  --events     events a round (default 1)\n"
         "  --zstd-level each batch compressed at Z (default 0: tier 3; "
         "tier 1 is 3):\n               a third run at sync version 3 "
         "then sends POST /v3/sync,\n               the round compressed as "
         "a whole (v3_bytes_per_round), and a fourth at version 4\n"
         "               (POST /v4/sync, log timestamps as deltas: "
         "v4_bytes_per_round)\n"
         "  --dir        where the databases go (default: a fresh temp dir)\n";
}

namespace {

constexpr const char* device_id = "round-dev";
constexpr const char* org_name = "bench";
constexpr int64_t start_ms = 1700000000000;
constexpr int64_t round_ms = 10000;
// "User-Agent: fleetd\r\n" and "Server: fleetd-cloud\r\n", which every
// exchange carried before version 2.
constexpr int64_t dropped_header_bytes = 20 + 22;

struct round_options {
  int64_t rounds = 30;
  int64_t series = 10;
  int64_t log_lines = 1;
  int64_t events = 1;
  int64_t zstd_level = 0;
  std::string dir;
};

/// A TCP relay on 127.0.0.1 that counts the bytes it forwards both ways.
class counting_relay {
public:
  explicit counting_relay(uint16_t upstream) : upstream_(upstream) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (listener_ < 0
        || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0
        || ::listen(listener_, 8) != 0
        || ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len)
             != 0)
      fail("relay: cannot listen");
    port_ = ntohs(addr.sin_port);
    threads_.emplace_back([this] { accept_loop(); });
  }

  ~counting_relay() {
    ::shutdown(listener_, SHUT_RDWR);
    {
      std::lock_guard<std::mutex> guard{mtx_};
      for (int fd : fds_)
        ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : threads_)
      t.join();
    ::close(listener_);
    for (int fd : fds_)
      ::close(fd);
  }

  uint16_t port() const {
    return port_;
  }

  int64_t bytes() const {
    return bytes_;
  }

private:
  void accept_loop() {
    for (;;) {
      int client = ::accept(listener_, nullptr, nullptr);
      if (client < 0)
        return;
      int server = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(upstream_);
      if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
          != 0)
        fail("relay: cannot reach the cloud");
      std::lock_guard<std::mutex> guard{mtx_};
      fds_.push_back(client);
      fds_.push_back(server);
      threads_.emplace_back([this, client, server] { pump(client, server); });
      threads_.emplace_back([this, client, server] { pump(server, client); });
    }
  }

  void pump(int from, int to) {
    char buf[16384];
    for (;;) {
      auto n = ::read(from, buf, sizeof(buf));
      if (n <= 0 || ::write(to, buf, static_cast<size_t>(n)) != n)
        break;
      bytes_ += n;
    }
    ::shutdown(to, SHUT_RDWR);
  }

  uint16_t upstream_;
  uint16_t port_ = 0;
  int listener_ = -1;
  std::atomic<int64_t> bytes_{0};
  std::mutex mtx_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
};

/// One round's three SyncRequest bodies, as the sync actors encode them.
struct round_source {
  std::mt19937_64 rng{42};
  std::vector<series_def> defs;
  std::unique_ptr<node_values> values;
  codec_context session;
  codec_context after;
  int64_t round = 0;

  explicit round_source(int64_t series) {
    defs = node_exporter_series(rng, start_ms);
    defs.resize(std::min<size_t>(defs.size(), static_cast<size_t>(series)));
    values = std::make_unique<node_values>(defs);
  }

  encode_settings settings(const round_options& opt) const {
    encode_settings es;
    es.device_id = device_id;
    es.sequence = round + 1;
    es.epoch = "0123456789abcdef";
    es.now_ms = start_ms + round * round_ms;
    es.zstd_level = static_cast<int>(opt.zstd_level);
    return es;
  }

  std::vector<std::string> next(const round_options& opt) {
    auto es = settings(opt);
    values->step(rng);
    metric_samples xs;
    for (size_t i = 0; i < defs.size(); ++i)
      xs.push_back({defs[i].name, defs[i].labels, es.now_ms,
                    values->values()[i]});
    auto columnar = encode_columnar(xs, session);
    after = session;
    if (!decode_columnar(columnar, after))
      fail("a columnar batch does not read back");
    log_lines lines;
    for (int64_t i = 0; i < opt.log_lines; ++i)
      lines.push_back({{{"unit", "sensor"}}, es.now_ms * 1000000 + i,
                       "reading " + std::to_string(round) + " ok"});
    event_records events;
    for (int64_t i = 0; i < opt.events; ++i)
      events.push_back({es.now_ms + i, "load_mark",
                        "round " + std::to_string(round), {}});
    ++round;
    return {with_send_fields(encode_columnar_request(es, columnar), 0, nullptr),
            with_send_fields(encode_logs_request(es, lines), 0, nullptr),
            with_send_fields(encode_events_request(es, events), 0, nullptr)};
  }
};

struct run_result {
  int64_t wire_bytes = 0;
  int64_t body_bytes = 0;
  int64_t requests = 0;
};

int64_t body_bytes(const actor_stats& st) {
  return st.counters.at("bytes_sent") + st.counters.at("bytes_received");
}

// Rounds through the cloud link at `version`; traffic after the first.
run_result run(const round_options& opt, int64_t version) {
  auto dir = opt.dir + "/v" + std::to_string(version);
  std::string err;
  bool own = false;
  if (err = prepare_dir(dir, own); !err.empty())
    fail(err);
  world w;
  auto clock = make_system_clock();
  auto t = make_transport(dir, true, 0, clock, device_id, org_name, true);
  counting_relay relay(w.start_cloud(dir + "/cloud.db", clock, 0, t));
  cloud_link_config lcfg;
  lcfg.host = "127.0.0.1";
  lcfg.port = relay.port();
  lcfg.insecure = true;
  lcfg.key_file = t.key_file;
  lcfg.device_id = device_id;
  lcfg.sync_version = version;
  auto link = w.keep("cloud_link",
                     w.sys.spawn<caf::detached>(cloud_link, lcfg));
  round_source src(opt.series);
  run_result first;
  for (int64_t r = 0; r <= opt.rounds; ++r) {
    // Rounds are 10 s apart on a device: the link sees each after a quiet
    // spell, not as a drain.
    std::this_thread::sleep_for(coalesce_quiet_spell
                                + std::chrono::milliseconds(20));
    if (r == 1)
      first = {relay.bytes(), body_bytes(w.stats(link)),
               w.stats(link).counters.at("requests")};
    auto seq = src.round + 1;
    auto ask = [&](std::string body) {
      return w.self->request(link, std::chrono::seconds(60),
                             sync_atom::value, std::move(body));
    };
    // All three at once, as the three sync actors send them.
    std::vector<decltype(ask(std::string{}))> handles;
    for (auto& body : src.next(opt))
      handles.push_back(ask(std::move(body)));
    for (auto& h : handles)
      h.receive(
        [&](sync_ack& ack) {
          if (!ack.success || ack.last_sequence_ack != seq)
            fail("batch " + std::to_string(seq) + " not acked: "
                 + ack.error_code + " " + ack.error_message);
        },
        [&](caf::error& e) { fail(render(e)); });
    src.session = src.after;
  }
  auto st = w.stats(link);
  return {relay.bytes() - first.wire_bytes, body_bytes(st) - first.body_bytes,
          st.counters.at("requests") - first.requests};
}

std::string parse(const std::vector<std::string>& args, round_options& opt) {
  arg_cursor cur(args);
  while (cur.next()) {
    std::string v;
    int64_t* target = cur.name() == "--rounds"      ? &opt.rounds
                      : cur.name() == "--series"    ? &opt.series
                      : cur.name() == "--log-lines" ? &opt.log_lines
                      : cur.name() == "--events"    ? &opt.events
                      : cur.name() == "--zstd-level" ? &opt.zstd_level
                                                    : nullptr;
    if (cur.name() == "--dir") {
      if (!cur.value(opt.dir))
        return "--dir needs a value";
    } else if (target == nullptr) {
      return "unknown argument " + cur.name();
    } else if (target == &opt.zstd_level) {
      if (!cur.value(v) || !parse_int(v, *target) || *target < 0
          || *target > 19)
        return "--zstd-level needs a whole number 0..19";
    } else if (!cur.value(v) || !parse_int(v, *target) || *target < 1
               || *target > 100000) {
      return cur.name() + " needs a whole number 1..100000";
    }
  }
  return {};
}

} // namespace

int run_round_bench(const std::vector<std::string>& args) {
  round_options opt;
  if (auto err = parse(args, opt); !err.empty()) {
    std::cerr << err << "\n" << round_usage();
    return 2;
  }
  try {
    bool own = false;
    if (auto err = prepare_dir(opt.dir, own); !err.empty())
      fail(err);
    auto v1 = run(opt, 1);
    auto v2 = run(opt, 2);
    // Version 3 differs only for compressed batches.
    auto v3 = opt.zstd_level > 0 ? run(opt, 3) : v2;
    // Version 4 adds log timestamps as deltas, to compressed bundles too.
    auto v4 = opt.zstd_level > 0 ? run(opt, 4) : v2;
    auto rounds = static_cast<double>(opt.rounds);
    auto samples = rounds * static_cast<double>(opt.series);
    auto before = v1.wire_bytes + v1.requests * dropped_header_bytes;
    auto share = [](int64_t wire, int64_t body) {
      return static_cast<double>(wire - body) / static_cast<double>(wire);
    };
    std::cout << "BENCH round-bytes rounds=" << opt.rounds
              << " series=" << opt.series << " log_lines=" << opt.log_lines
              << " events=" << opt.events
              << " zstd_level=" << opt.zstd_level
              << " before_bytes_per_round=" << format(before / rounds, 1)
              << " v1_bytes_per_round=" << format(v1.wire_bytes / rounds, 1)
              << " after_bytes_per_round=" << format(v2.wire_bytes / rounds, 1)
              << " v3_bytes_per_round=" << format(v3.wire_bytes / rounds, 1)
              << " v4_bytes_per_round=" << format(v4.wire_bytes / rounds, 1)
              << " before_requests_per_round="
              << format(v1.requests / rounds, 2)
              << " after_requests_per_round=" << format(v2.requests / rounds, 2)
              << " before_bytes_per_sample=" << format(before / samples, 1)
              << " after_bytes_per_sample="
              << format(v2.wire_bytes / samples, 1)
              << " before_header_share=" << format(share(before, v1.body_bytes), 3)
              << " after_header_share="
              << format(share(v2.wire_bytes, v2.body_bytes), 3)
              << " ratio=" << format(static_cast<double>(v2.wire_bytes)
                                       / static_cast<double>(before), 3)
              << "\n";
    if (own)
      std::filesystem::remove_all(opt.dir);
    return 0;
  } catch (const bench_failure& e) {
    std::cerr << "round-bytes: " << e.what << "\n";
    return 1;
  }
}

} // namespace fleetd::bench
