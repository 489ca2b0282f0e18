// fleetd-bench storage-writes: bytes written to disk per metric sample stored.
//
// A real sqlite_store on a manual clock gets, round after round, what the
// device's actors ask of it at tier-1 defaults: the collector's log lines of
// the round (one a second) and its 100 samples, each a store call; every sync
// interval each stream is fetched, cut into batches of `batch` records,
// encoded, enqueued and acked, as the sync actors do. The process's
// write_bytes (/proc/self/io: what reached the block layer's accounting,
// every fsync'd commit included) over the rounds, divided by the samples
// stored, is bytes_per_sample.
//
// The measured side groups each round's stores into one commit, as the
// storage actor does (storage.group-window; --group 0 turns that off), and
// with --rounds-file 1 appends it to the rounds file (storage.rounds-file).
// baseline: the same rounds on a store committing every store on its own
// (storage.commit-interval 0, no group), in the same run. Runs alternate which side goes first, each
// on a fresh file; reported are medians.
#include "tools/bench/storage_writes_bench.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <unistd.h>

#include "edge/capability.hpp"
#include "edge/sqlite_store.hpp"
#include "messages/wire.hpp"
#include "runtime/clock.hpp"
#include "tools/bench/bench_util.hpp"
#include "tools/bench/node_series.hpp"

namespace fleetd::bench {

const char* storage_writes_summary =
  "bytes written to disk per metric sample stored by the device's SQLite "
  "store\n      (tier-1 rounds on an injected clock, /proc/self/io) vs its "
  "former write layout";

namespace {

// 2023-11-14T22:13:20Z; fixed so every run stores identical rows.
constexpr int64_t first_round_ms = 1700000000000;

struct options {
  int64_t rounds = 1080; // three hours of 10 s rounds
  int64_t runs = 3;
  int64_t round_ms = 10000;
  int64_t sync_ms = defaults_for_tier(1).sync_interval_ms;
  int64_t batch = defaults_for_tier(1).batch_size;
  int64_t log_lines = 10;   // one a second
  int64_t commit_interval_ms = 0;
  int64_t group = 1;
  int64_t rounds_file = 0;
  std::string dir;
};

int64_t write_bytes() {
  std::ifstream in("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (in >> key >> value)
    if (key == "write_bytes:")
      return value;
  fail("cannot read write_bytes from /proc/self/io");
}

template <class T>
T must(caf::expected<T> x, const char* what) {
  if (!x)
    fail(std::string(what) + ": " + caf::to_string(x.error()));
  return std::move(*x);
}

// The sync actors' cycle for one stream: cut, persist, (send,) ack.
void sync_stream(sqlite_store& st, const std::string& stream, int64_t batch,
                 int64_t now_ms, int64_t& defined) {
  for (;;) {
    auto up = must(st.fetch(stream, batch), "fetch");
    if (up.size() == 0)
      return;
    encode_settings es;
    es.device_id = "bench";
    es.sequence = up.next_sequence;
    es.epoch = up.epoch;
    es.now_ms = now_ms;
    queued_batch b;
    b.stream = stream;
    b.sequence = up.next_sequence;
    b.last_id = up.last_id;
    b.points = static_cast<int64_t>(up.size());
    b.created_ms = now_ms;
    b.body = !up.logs.empty()     ? encode_logs_request(es, up.logs)
             : !up.events.empty() ? encode_events_request(es, up.events)
                                  : encode_metrics_request(es, up.samples);
    must(st.enqueue(b), "enqueue");
    // The first metrics batch defines the series; later ones none.
    metric_samples defs;
    if (stream == "metrics" && defined == 0)
      for (auto& x : up.samples)
        if (defs.size() < 100)
          defs.push_back(metric_sample{x.name, x.labels, 0, 0});
    must(st.ack(stream, b.sequence, defined, defs, std::string{}), "ack");
    defined += static_cast<int64_t>(defs.size());
  }
}

struct run_result {
  int64_t bytes = 0;
  int64_t samples = 0;
  double per_sample() const {
    return samples > 0 ? static_cast<double>(bytes) / samples : 0;
  }
};

run_result run(const options& opt, const std::string& path, bool legacy) {
  for (auto suffix : {"", "-wal", "-shm", ".reserve", "-rounds"})
    unlink((path + suffix).c_str());
  auto clk = std::make_shared<manual_clock>(first_round_ms);
  sqlite_store_config cfg;
  cfg.path = path;
  cfg.clock = clk;
  cfg.limits.commit_interval_ms = legacy ? 0 : opt.commit_interval_ms;
  cfg.limits.rounds_file = !legacy && opt.rounds_file != 0;
  bool group = !legacy && opt.group != 0;
  auto st = must(sqlite_store::open(cfg), "open");
  std::mt19937_64 rng{20240611};
  auto defs = node_exporter_series(rng, first_round_ms);
  node_values values{defs};
  int64_t defined = 0;
  int64_t last_sync = first_round_ms;
  run_result out;
  auto before = write_bytes();
  for (int64_t r = 0; r < opt.rounds; ++r) {
    clk->advance(opt.round_ms);
    auto now = clk->now_ms();
    log_lines lines;
    for (int64_t i = 0; i < opt.log_lines; ++i)
      lines.push_back(log_line{{{"unit", "sensor.service"}},
                               (now - (opt.log_lines - i) * 1000) * 1000000,
                               "sensor: read " + std::to_string(rng() % 100000)
                                 + " ok, queue depth 0"});
    if (group)
      st.begin_group();
    must(st.store_logs(lines), "store_logs");
    values.step(rng);
    metric_samples xs;
    for (size_t i = 0; i < defs.size(); ++i)
      xs.push_back(metric_sample{defs[i].name, defs[i].labels, now,
                                 values.values()[i]});
    out.samples += must(st.store(xs), "store");
    if (group)
      if (auto err = st.end_group())
        fail("commit of a round: " + render(err));
    if (now - last_sync >= opt.sync_ms) {
      last_sync = now;
      for (auto stream : {"metrics", "logs", "events"})
        sync_stream(st, stream, opt.batch, now, defined);
    }
  }
  out.bytes = write_bytes() - before;
  return out;
}

std::string parse(const std::vector<std::string>& args, options& opt) {
  arg_cursor cur{args};
  while (cur.next()) {
    std::string v;
    int64_t* target = cur.name() == "--rounds"            ? &opt.rounds
                      : cur.name() == "--runs"            ? &opt.runs
                      : cur.name() == "--sync-ms"         ? &opt.sync_ms
                      : cur.name() == "--commit-interval" ? &opt.commit_interval_ms
                      : cur.name() == "--group"           ? &opt.group
                      : cur.name() == "--rounds-file"     ? &opt.rounds_file
                                                          : nullptr;
    if (cur.name() == "--dir") {
      if (!cur.value(opt.dir))
        return "--dir needs a value";
      continue;
    }
    if (!target)
      return "unknown option " + cur.name();
    if (!cur.value(v) || !parse_int(v, *target) || *target < 0)
      return cur.name() + " needs a whole number >= 0";
  }
  if (opt.rounds < 1 || opt.runs < 1)
    return "--rounds and --runs must be at least 1";
  return {};
}

} // namespace

std::string storage_writes_usage() {
  return "usage: fleetd-bench storage-writes [OPTIONS]\n\n"
         "  --rounds N           10 s rounds of 100 samples and 10 log lines "
         "(default 1080)\n"
         "  --runs R             runs of each side, medians reported "
         "(default 3)\n"
         "  --sync-ms MS         sync interval: fetch, enqueue, ack "
         "(default 300000, tier 1)\n"
         "  --commit-interval MS storage.commit-interval of the measured "
         "side (default 0)\n"
         "  --group 0|1          the measured side commits each round's "
         "stores as one group,\n"
         "                       as storage.group-window does (default 1)\n"
         "  --rounds-file 0|1    the measured side appends them to the "
         "rounds file\n"
         "                       (storage.rounds-file; default 0)\n"
         "  --dir DIR            where the databases go (default a fresh "
         "directory)\n";
}

int run_storage_writes_bench(const std::vector<std::string>& args) {
  options opt;
  if (auto err = parse(args, opt); !err.empty()) {
    std::cerr << "fleetd-bench storage-writes: " << err
              << "; see fleetd-bench storage-writes --help" << std::endl;
    return 2;
  }
  bool own_dir = false;
  if (auto err = prepare_dir(opt.dir, own_dir); !err.empty()) {
    std::cerr << "fleetd-bench storage-writes: " << err << std::endl;
    return 1;
  }
  int rc = 0;
  auto path = opt.dir + "/writes.db";
  try {
    std::vector<double> ours;
    std::vector<double> base;
    std::vector<double> ratios;
    for (int64_t r = 0; r < opt.runs; ++r) {
      bool ours_first = r % 2 == 0;
      auto a = run(opt, path, !ours_first);
      auto b = run(opt, path, ours_first);
      auto& o = ours_first ? a : b;
      auto& l = ours_first ? b : a;
      ours.push_back(o.per_sample());
      base.push_back(l.per_sample());
      ratios.push_back(o.per_sample() / l.per_sample());
      std::cerr << "run " << (r + 1) << "/" << opt.runs << ": ours "
                << format(o.per_sample(), 1) << " bytes/sample ("
                << o.bytes << " bytes), baseline "
                << format(l.per_sample(), 1) << " (" << l.bytes << ")"
                << std::endl;
    }
    std::cout << "BENCH storage_writes rounds=" << opt.rounds
              << " runs=" << opt.runs << " stat=median series=100"
              << " log_lines_per_round=" << opt.log_lines
              << " sync_ms=" << opt.sync_ms
              << " commit_interval_ms=" << opt.commit_interval_ms
              << " group=" << opt.group
              << " rounds_file=" << opt.rounds_file
              << " bytes_per_sample=" << format(median(ours), 1)
              << " baseline=" << format(median(base), 1)
              << " ratio=" << format(median(ratios), 3) << std::endl;
  } catch (const bench_failure& x) {
    std::cerr << "fleetd-bench storage-writes: " << x.what << std::endl;
    rc = 1;
  }
  for (auto suffix : {"", "-wal", "-shm", ".reserve", "-rounds"})
    unlink((path + suffix).c_str());
  if (own_dir)
    rmdir(opt.dir.c_str());
  return rc;
}

} // namespace fleetd::bench
