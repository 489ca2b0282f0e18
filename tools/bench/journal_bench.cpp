#include "tools/bench/journal_bench.hpp"

#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>

#include "cloud/embedded_store.hpp"
#include "cloud/pg_migrate.hpp"
#include "cloud/pg_store.hpp"
#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "tools/bench/bench_util.hpp"
#include "tools/pg_server/pg_server.hpp"

namespace fleetd::bench {

const char* journal_summary =
  "cost of the ingest journal per accepted batch: the cloud store with and "
  "without journal rows (same batches, alternating rounds), embedded or "
  "PostgreSQL";

std::string journal_usage() {
  return "usage: fleetd-bench journal [--store embedded|postgresql] "
         "[--batches N] [--points P] [--rounds R]\n"
         "  BENCH journal store=... batches=N points=P us_per_batch=... "
         "baseline_us_per_batch=... overhead_pct=... rounds=R\n";
}

namespace {

struct journal_options {
  std::string store = "embedded";
  int64_t batches = 500;
  int64_t points = 100;
  int64_t rounds = 5;
};

using writer = std::function<caf::expected<ingest_outcome>(const ingest_batch&)>;

ingest_batch make_batch(int64_t round, int64_t i, int64_t points) {
  ingest_batch b;
  b.device_id = "bench/dev-" + std::to_string(i % 50);
  b.stream = metrics_stream;
  b.epoch = "r" + std::to_string(round);
  b.sequence = i / 50 + 1;
  b.checksum = "c" + std::to_string(round) + "-" + std::to_string(i);
  for (int64_t k = 0; k < points; ++k)
    b.samples.push_back(metric_sample{"m" + std::to_string(k % 20),
                                      {{"host", "h1"}, {"k", std::to_string(k)}},
                                      1'700'000'000'000 + k, 0.5 * k});
  return b;
}

// Microseconds per batch for one round of `o.batches` into `w`.
double round_us(const writer& w, int64_t round, const journal_options& o) {
  std::vector<ingest_batch> bs;
  for (int64_t i = 0; i < o.batches; ++i)
    bs.push_back(make_batch(round, i, o.points));
  auto t0 = std::chrono::steady_clock::now();
  for (auto& b : bs)
    if (auto r = w(b); !r)
      fail("write: " + render(r.error()));
  std::chrono::duration<double, std::micro> d
    = std::chrono::steady_clock::now() - t0;
  return d.count() / static_cast<double>(o.batches);
}

writer embedded_writer(const std::string& path, bool journal) {
  journal_config j;
  j.enabled = journal;
  auto st = embedded_store::open(path, make_system_clock(), j);
  if (!st)
    fail(path + ": " + render(st.error()));
  auto p = std::make_shared<embedded_store>(std::move(*st));
  return [p](const ingest_batch& b) { return p->write(b); };
}

writer pg_writer(pg_server& s, const std::string& name, bool journal) {
  auto db = s.create_database(name);
  if (!db)
    fail("CREATE DATABASE: " + render(db.error()));
  auto owner = pg::connection::open(db->owner_url);
  if (!owner || !migrate(*owner))
    fail("migrations of " + name);
  journal_config j;
  j.enabled = journal;
  pg::connect_options opts;
  opts.statement_timeout_ms = 30000;
  auto st = pg_store::open(db->app_url, make_system_clock(), opts, 1, j);
  if (!st)
    fail(name + ": " + render(st.error()));
  auto p = std::make_shared<pg_store>(std::move(*st));
  return [p](const ingest_batch& b) { return p->write(b); };
}

bool parse(const std::vector<std::string>& args, journal_options& o) {
  for (size_t i = 0; i + 1 < args.size(); i += 2) {
    auto& k = args[i];
    auto& v = args[i + 1];
    bool ok = k == "--store"     ? (o.store = v, v == "embedded" || v == "postgresql")
              : k == "--batches" ? parse_int(v, o.batches) && o.batches > 0
              : k == "--points"  ? parse_int(v, o.points) && o.points > 0
              : k == "--rounds"  ? parse_int(v, o.rounds) && o.rounds > 0
                                 : false;
    if (!ok)
      return false;
  }
  return args.size() % 2 == 0;
}

} // namespace

int run_journal_bench(const std::vector<std::string>& args) {
  journal_options o;
  if (!parse(args, o)) {
    std::cerr << journal_usage();
    return 2;
  }
  std::string dir;
  bool own = false;
  if (auto err = prepare_dir(dir, own); !err.empty())
    fail(err);
  std::shared_ptr<pg_server> server;
  writer with, without;
  if (o.store == "embedded") {
    with = embedded_writer(dir + "/journal.db", true);
    without = embedded_writer(dir + "/plain.db", false);
  } else {
    pg_server::failure why;
    server = pg_server::start(why);
    if (!server)
      fail("PostgreSQL: " + why.why);
    with = pg_writer(*server, "bench_journal", true);
    without = pg_writer(*server, "bench_plain", false);
  }
  std::vector<double> on, off;
  for (int64_t r = 0; r < o.rounds; ++r) {
    off.push_back(round_us(without, r, o));
    on.push_back(round_us(with, r, o));
    std::cerr << "round " << r << ": journal " << format(on.back(), 1)
              << " us/batch, without " << format(off.back(), 1) << "\n";
  }
  auto a = median(on), b = median(off);
  std::cout << "BENCH journal store=" << o.store << " batches=" << o.batches
            << " points=" << o.points << " us_per_batch=" << format(a, 1)
            << " baseline_us_per_batch=" << format(b, 1)
            << " overhead_pct=" << format(100.0 * (a - b) / b, 1)
            << " rounds=" << o.rounds << std::endl;
  if (own)
    std::filesystem::remove_all(dir);
  return 0;
}

} // namespace fleetd::bench
