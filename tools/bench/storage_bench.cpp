// fleetd-bench storage: the storage actor against a bare SQLite loop.
//
// Both sides get the same rows (100 node_exporter-like series, one scrape
// every 10 s, realistic float and integer values), in batches of 1000 rows
// per transaction (BEGIN IMMEDIATE ... COMMIT), on files opened with the same
// pragmas (sqlite::database::open(path, "FULL"), the call sqlite_store::open
// makes: WAL, synchronous=FULL) and the same schema: the bare database is
// created from the DDL (and page size) that sqlite_store itself wrote into a
// probe file, so a schema change in edge/storage.cpp reaches the baseline.
//
// ours: one request per batch from a scoped actor to a detached `storage`
//   actor, waiting for each reply (as the collector does, one in flight):
//   actor messaging, sqlite_store::store with its per-row series lookup and
//   its caps checks (sized so that nothing is dropped).
// bare: the raw sqlite3 API, one prepared INSERT reset and rebound per row,
//   run on a writer thread that the main thread hands one batch at a time
//   (same threading shape as ours, see lockstep_writer). Series ids are
//   resolved per row the way any writer fed metric_sample values must: the
//   canonical key (name NUL encode_labels) built in a reused buffer and
//   looked up in a hash map, a series row inserted on a miss (--bare-ids map,
//   the default: the fair baseline). --bare-ids precomputed resolves the ids
//   before the clock starts: the ceiling of SQLite alone.
// Each side gets fresh copies of the batches made before its clock starts
// and frees each batch while it runs (ours: the message does).
//
// Rounds alternate which side runs first; each run starts from a fresh
// database file. Reported: medians over rounds; ratio is the median of the
// per-round ratios (paired, so a noisy neighbour hurts both sides of a
// round). Wall time gives points_per_s; the CPU time of the process over the
// same span gives cpu_ns_per_point (steadier on a loaded machine).
#include "tools/bench/bench_util.hpp"
#include "tools/bench/storage_bench.hpp"
#include "tools/bench/node_series.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <iomanip>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <unistd.h>
#include <unordered_map>

#include <sqlite3.h>

#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "edge/sqlite_store.hpp"
#include "edge/storage.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "runtime/clock.hpp"
#include "runtime/sqlite.hpp"
#include "runtime/node.hpp"
#include "runtime/sqlite.hpp"

namespace fleetd::bench {

const char* storage_summary =
  "metrics inserted through the storage actor vs a bare SQLite "
  "prepared-statement loop\n      (same rows, schema, pragmas, 1000 rows per "
  "transaction); points/s, ratio, bytes/point";

namespace {

using std::chrono::steady_clock;

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

// Wall time, plus the CPU time of the whole process over the same span:
// while the clock runs only the measured side works (the main thread waits
// for the actor's reply), so CPU time is that side's work without the time
// spent waiting for a core or for fsync -- steadier on a shared machine.
struct stopwatch {
  double wall = 0;
  double cpu = 0;
  steady_clock::time_point wall0;
  double cpu0 = 0;
  void start() {
    cpu0 = process_cpu_seconds();
    wall0 = steady_clock::now();
  }
  void stop() {
    wall += std::chrono::duration<double>(steady_clock::now() - wall0).count();
    cpu += process_cpu_seconds() - cpu0;
  }
};

constexpr int64_t batch_size = 1000;
constexpr int64_t scrape_interval_ms = 10000;
// 2023-11-14T22:13:20Z; fixed so every run stores identical rows.
constexpr int64_t first_scrape_ms = 1700000000000;

struct options {
  int64_t points = 300000;
  int64_t rounds = 7;
  std::string dir;
  bool precomputed_ids = false;
};

// -- rows ---------------------------------------------------------------------

// The same `points` rows every time, cut into batches of batch_size: one
// scrape of every series per 10 s, series in a fixed order.
std::vector<metric_samples> make_batches(int64_t points, size_t& series) {
  std::mt19937_64 rng{20240611};
  auto defs = node_exporter_series(rng, first_scrape_ms);
  series = defs.size();
  std::vector<double> current(defs.size());
  for (size_t i = 0; i < defs.size(); ++i)
    current[i] = defs[i].start;
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> noise(0, 1);
  std::uniform_int_distribution<int64_t> jitter_ms(0, 40);
  std::vector<metric_samples> out;
  metric_samples batch;
  batch.reserve(batch_size);
  int64_t made = 0;
  for (int64_t scrape = 0; made < points; ++scrape) {
    auto ts = first_scrape_ms + scrape * scrape_interval_ms + jitter_ms(rng);
    for (size_t i = 0; i < defs.size() && made < points; ++i, ++made) {
      auto& d = defs[i];
      double v = 0;
      switch (d.k) {
        case kind::counter:
          v = current[i] += d.step * 2 * u(rng);
          break;
        case kind::int_counter:
          v = current[i] += std::floor(d.step * 2 * u(rng));
          break;
        case kind::gauge:
          v = std::max(0.0, d.start + d.step * noise(rng));
          if (d.name == "node_timex_offset_seconds")
            v = d.step * noise(rng);
          break;
        case kind::int_gauge:
          v = std::max(0.0, std::round(d.start + d.step * noise(rng)));
          break;
      }
      batch.push_back({d.name, d.labels, ts, v});
      if (static_cast<int64_t>(batch.size()) == batch_size) {
        out.push_back(std::move(batch));
        batch = metric_samples{};
        batch.reserve(batch_size);
      }
    }
  }
  if (!batch.empty())
    out.push_back(std::move(batch));
  return out;
}

int64_t last_timestamp(const std::vector<metric_samples>& batches) {
  return batches.empty() ? first_scrape_ms : batches.back().back().timestamp_ms;
}

// -- files --------------------------------------------------------------------

void remove_db(const std::string& path) {
  for (auto suffix : {"", "-wal", "-shm", "-journal", ".reserve"})
    unlink((path + suffix).c_str());
}

// Pages in use after the run: (page_count - freelist_count) * page_size.
int64_t used_bytes_of(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr)
      != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    fail("cannot open " + path + ": " + msg);
  }
  auto pragma = [&](const char* sql) -> int64_t {
    sqlite3_stmt* st = nullptr;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK
        && sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  };
  auto pages = pragma("PRAGMA page_count");
  auto free_pages = pragma("PRAGMA freelist_count");
  auto page_size = pragma("PRAGMA page_size");
  sqlite3_close(db);
  if (pages < 0 || free_pages < 0 || page_size < 0)
    fail("cannot read the page counts of " + path);
  return (pages - free_pages) * page_size;
}

int64_t count_rows(const std::string& path) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM metrics", -1, &st, nullptr)
        == SQLITE_OK
      && sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

// What sqlite_store::open leaves in a fresh file: its DDL and the file-level
// pragmas that must be set before the first table exists.
struct store_layout {
  std::vector<std::string> ddl;
  int64_t page_size = 4096;
  int64_t auto_vacuum = 0;
};

sqlite_store_config make_store_config(const std::string& path,
                                   const std::vector<metric_samples>& batches,
                                   int64_t points) {
  sqlite_store_config cfg;
  cfg.path = path;
  // "Now" is the last scrape: nothing is past retention.
  cfg.clock = std::make_shared<manual_clock>(last_timestamp(batches)
                                             + scrape_interval_ms);
  // The caps stay on (their per-write checks are part of the cost) but are
  // sized so that they never drop a row of the benchmark.
  auto span = last_timestamp(batches) - first_scrape_ms;
  cfg.limits.retention_ms = std::max<int64_t>(cfg.limits.retention_ms,
                                              span + 24 * 3600 * 1000LL);
  cfg.limits.max_bytes = std::max<int64_t>(cfg.limits.max_bytes, points * 200);
  return cfg;
}

store_layout probe_layout(const std::string& dir) {
  auto path = dir + "/schema-probe.db";
  remove_db(path);
  sqlite_store_config cfg;
  cfg.path = path;
  cfg.clock = std::make_shared<manual_clock>(first_scrape_ms);
  cfg.limits.reserve_bytes = 0;
  {
    auto store = sqlite_store::open(cfg);
    if (!store)
      fail("sqlite_store::open(" + path + "): " + render(store.error()));
  }
  store_layout out;
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db,
                         "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
                         "AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
                         -1, &st, nullptr)
      != SQLITE_OK) {
    sqlite3_close(db);
    fail("cannot read the schema of " + path);
  }
  while (sqlite3_step(st) == SQLITE_ROW)
    out.ddl.emplace_back(
      reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  sqlite3_finalize(st);
  auto pragma = [&](const char* sql) {
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK
        && sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  };
  out.page_size = pragma("PRAGMA page_size");
  out.auto_vacuum = pragma("PRAGMA auto_vacuum");
  sqlite3_close(db);
  remove_db(path);
  if (out.ddl.empty())
    fail("sqlite_store created no tables in " + path);
  return out;
}

// -- ours: the storage actor --------------------------------------------------

struct run_result {
  double seconds = 0;
  double cpu_seconds = 0;
  int64_t points = 0;
  int64_t bytes = 0;
  double points_per_s() const {
    return seconds > 0 ? points / seconds : 0;
  }
  double cpu_ns_per_point() const {
    return points > 0 ? cpu_seconds * 1e9 / points : 0;
  }
  double bytes_per_point() const {
    return points > 0 ? static_cast<double>(bytes) / points : 0;
  }
};

run_result run_ours(caf::actor_system& sys, const std::string& path,
                    const std::vector<metric_samples>& batches,
                    int64_t points) {
  remove_db(path);
  auto store = sqlite_store::open(make_store_config(path, batches, points));
  if (!store)
    fail("sqlite_store::open(" + path + "): " + render(store.error()));
  run_result out;
  caf::error failure;
  {
    caf::scoped_actor self{sys};
    auto st = sys.spawn<caf::detached>(
      storage, std::make_shared<sqlite_store>(std::move(*store)));
    // Fresh copies made before the clock starts; each message owns its
    // batch and frees it on the actor thread.
    auto copies = batches;
    stopwatch sw;
    sw.start();
    for (auto& batch : copies) {
      self->request(st, caf::infinite, store_atom::value, std::move(batch))
        .receive([&](int64_t n) { out.points += n; },
                 [&](caf::error& err) { failure = std::move(err); });
      if (failure)
        break;
    }
    sw.stop();
    out.seconds = sw.wall;
    out.cpu_seconds = sw.cpu;
    self->send_exit(st, caf::exit_reason::user_shutdown);
    self->wait_for(st);
  }
  if (failure)
    fail("storage actor: " + render(failure));
  out.bytes = used_bytes_of(path);
  if (auto rows = count_rows(path); rows != points)
    fail("storage actor kept " + std::to_string(rows) + " of "
         + std::to_string(points) + " rows");
  remove_db(path);
  return out;
}

// -- bare: a prepared-statement loop ------------------------------------------

void check(sqlite3* db, int rc, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    fail(std::string("bare ") + what + ": " + sqlite3_errmsg(db));
}

void exec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  auto rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
  std::string text = msg ? msg : "";
  sqlite3_free(msg);
  if (rc != SQLITE_OK)
    fail("bare " + sql.substr(0, 40) + ": " + text);
}

// Creates the file with sqlite_store's page size and schema, then reopens it
// the way sqlite_store::open does (WAL, synchronous=FULL).
sqlite::database open_bare(const std::string& path,
                           const store_layout& layout) {
  remove_db(path);
  {
    sqlite3* raw = nullptr;
    if (sqlite3_open_v2(path.c_str(), &raw,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr)
        != SQLITE_OK) {
      sqlite3_close(raw);
      fail("cannot create " + path);
    }
    exec(raw, "PRAGMA page_size=" + std::to_string(layout.page_size));
    exec(raw, "PRAGMA auto_vacuum=" + std::to_string(layout.auto_vacuum));
    for (auto& sql : layout.ddl)
      exec(raw, sql);
    sqlite3_close(raw);
  }
  auto db = sqlite::database::open(path, "FULL");
  if (!db)
    fail("sqlite::database::open(" + path + "): " + render(db.error()));
  return std::move(*db);
}

struct statement_guard {
  sqlite3_stmt* st = nullptr;
  ~statement_guard() {
    sqlite3_finalize(st);
  }
};

// A thread that runs one job at a time while the caller waits for it: the
// bare loop gets the threading shape of ours (a main thread waiting for a
// detached actor's reply). Without it, on a loaded machine the scheduler
// favours ours: its writer thread sleeps between batches and so is placed
// ahead of CPU hogs when it wakes, while a single-thread loop competes as
// one. The hand-off costs a few microseconds per 1000-row batch.
class lockstep_writer {
public:
  lockstep_writer() : thread_([this] { loop(); }) {
    // nop
  }

  ~lockstep_writer() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  /// Runs `job` on the writer thread and returns when it is done.
  void run(std::function<void()> job) {
    std::unique_lock<std::mutex> lock{mtx_};
    job_ = std::move(job);
    cv_.notify_all();
    cv_.wait(lock, [this] { return !job_; });
  }

  bool ok() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return error_.empty();
  }

  std::string error() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return error_;
  }

private:
  void loop() {
    std::unique_lock<std::mutex> lock{mtx_};
    for (;;) {
      cv_.wait(lock, [this] { return quit_ || job_; });
      if (quit_)
        return;
      auto job = std::move(job_);
      lock.unlock();
      std::string err;
      try {
        job();
      } catch (const bench_failure& x) {
        err = x.what;
      }
      lock.lock();
      if (!err.empty() && error_.empty())
        error_ = err;
      job_ = nullptr;
      cv_.notify_all();
    }
  }

  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool quit_ = false;
  std::string error_;
  std::thread thread_; // last: starts after the members above exist
};

// One transaction of the bare loop (a function of its own so that profilers
// show its cost apart from setup). `ids` empty: resolve per row.
template <class Resolve>
[[gnu::noinline]] void bare_batch(sqlite3* h, sqlite3_stmt* ins,
                                  const metric_samples& batch,
                                  const std::vector<int64_t>& ids,
                                  Resolve& resolve) {
  exec(h, "BEGIN IMMEDIATE");
  for (size_t i = 0; i < batch.size(); ++i) {
    auto& x = batch[i];
    auto sid = ids.empty() ? resolve(x) : ids[i];
    sqlite3_reset(ins);
    sqlite3_bind_int64(ins, 1, sid);
    sqlite3_bind_int64(ins, 2, x.timestamp_ms);
    sqlite3_bind_int64(ins, 3, static_cast<int64_t>(bits_of(x.value)));
    check(h, sqlite3_step(ins), "metrics insert");
  }
  exec(h, "COMMIT");
}

run_result run_bare(const std::string& path, const store_layout& layout,
                    const std::vector<metric_samples>& batches,
                    bool precomputed_ids) {
  run_result out;
  {
    auto db = open_bare(path, layout);
    auto h = db.handle();
    statement_guard ins;
    statement_guard ser;
    check(h,
          sqlite3_prepare_v2(h,
                             "INSERT INTO metrics (series_id, ts, bits) "
                             "VALUES (?1, ?2, ?3)",
                             -1, &ins.st, nullptr),
          "prepare metrics insert");
    check(h,
          sqlite3_prepare_v2(h,
                             "INSERT INTO series (name, labels) VALUES "
                             "(?1, ?2)",
                             -1, &ser.st, nullptr),
          "prepare series insert");
    std::unordered_map<std::string, int64_t> ids;
    std::string key;
    // The canonical key a writer must derive from (name, labels): name NUL
    // encode_labels(labels), built in a reused buffer (no allocation per
    // row), looked up in a hash map; the label blob is encoded on a miss only.
    auto resolve = [&](const metric_sample& x) -> int64_t {
      key.assign(x.name);
      key += '\0';
      for (auto& kv : x.labels) {
        key += kv.first;
        key += '\0';
        key += kv.second;
        key += '\0';
      }
      if (auto i = ids.find(key); i != ids.end())
        return i->second;
      auto labels = encode_labels(x.labels);
      sqlite3_reset(ser.st);
      sqlite3_bind_text(ser.st, 1, x.name.data(),
                        static_cast<int>(x.name.size()), SQLITE_TRANSIENT);
      sqlite3_bind_blob(ser.st, 2, labels.data(),
                        static_cast<int>(labels.size()), SQLITE_TRANSIENT);
      check(h, sqlite3_step(ser.st), "series insert");
      auto id = sqlite3_last_insert_rowid(h);
      ids.emplace(key, id);
      return id;
    };
    std::vector<std::vector<int64_t>> pre;
    if (precomputed_ids) {
      exec(h, "BEGIN IMMEDIATE");
      for (auto& batch : batches) {
        pre.emplace_back();
        for (auto& x : batch)
          pre.back().push_back(resolve(x));
      }
      exec(h, "COMMIT");
    }
    static const std::vector<int64_t> no_ids;
    // Like ours: fresh copies made before the clock starts, each batch
    // consumed and freed while it runs, on a writer thread of its own.
    auto copies = batches;
    lockstep_writer writer;
    stopwatch sw;
    sw.start();
    for (size_t b = 0; b < copies.size() && writer.ok(); ++b) {
      writer.run([&, b] {
        bare_batch(h, ins.st, copies[b], precomputed_ids ? pre[b] : no_ids,
                   resolve);
        metric_samples{}.swap(copies[b]);
      });
      out.points += static_cast<int64_t>(batches[b].size());
    }
    sw.stop();
    if (!writer.ok())
      fail(writer.error());
    out.seconds = sw.wall;
    out.cpu_seconds = sw.cpu;
  }
  out.bytes = used_bytes_of(path);
  if (auto rows = count_rows(path); rows != out.points)
    fail("bare loop kept " + std::to_string(rows) + " of "
         + std::to_string(out.points) + " rows");
  remove_db(path);
  return out;
}

// -- driver -------------------------------------------------------------------

// Returns an error message, empty when the arguments are fine.
std::string parse(const std::vector<std::string>& args, options& opt) {
  arg_cursor cur(args);
  while (cur.next()) {
    auto arg = cur.name();
    std::string value;
    auto need_value = [&] { return cur.value(value); };
    if (arg == "--points" || arg == "--rounds") {
      int64_t v = 0;
      if (!need_value())
        return arg + ": missing value";
      if (!parse_int(value, v) || v < 1)
        return arg + ": expected a positive integer, got '" + value + "'";
      (arg == "--points" ? opt.points : opt.rounds) = v;
    } else if (arg == "--dir") {
      if (!need_value() || value.empty())
        return "--dir: missing value";
      opt.dir = value;
    } else if (arg == "--bare-ids") {
      if (!need_value())
        return "--bare-ids: missing value";
      if (value != "map" && value != "precomputed")
        return "--bare-ids: expected map or precomputed, got '" + value + "'";
      opt.precomputed_ids = value == "precomputed";
    } else {
      return "unknown argument '" + arg + "'";
    }
  }
  return {};
}

} // namespace

std::string storage_usage() {
  return "usage: fleetd-bench storage [--points N] [--rounds R] [--dir DIR]\n"
         "                            [--bare-ids map|precomputed]\n\n"
         "Inserts N metric points (100 node_exporter-like series, one scrape "
         "every 10 s)\nin batches of 1000 per transaction through the "
         "storage actor (\"ours\") and\nthrough a bare SQLite "
         "prepared-statement loop (\"bare\") with the same rows,\nschema "
         "(copied from the file sqlite_store creates) and pragmas (WAL,\n"
         "synchronous=FULL). R rounds alternate which side runs first; every "
         "run starts\nfrom a fresh database. Prints one line on stdout:\n\n"
         "  BENCH storage points=N batch=1000 series=100 rounds=R "
         "stat=median\n"
         "    bare_ids=map points_per_s=.. bare_points_per_s=.. ratio=..\n"
         "    bytes_per_point=.. bare_bytes_per_point=..\n\n"
         "points_per_s and bare_points_per_s are medians over the rounds; "
         "ratio is the\nmedian of the per-round ours/bare ratios; "
         "bytes_per_point is (page_count -\nfreelist_count) * page_size / N "
         "after a run (median). Per-round figures go\nto stderr.\n\n"
         "options:\n"
         "  --points N    points per run (default 300000)\n"
         "  --rounds R    rounds, each one run of ours and one of bare "
         "(default 7)\n"
         "  --dir DIR     where the database files go (created if missing; "
         "default a\n"
         "                fresh directory under $TMPDIR or /var/tmp, removed "
         "afterwards).\n"
         "                Use a directory on the disk you care about: fsync "
         "cost\n"
         "                depends on it (tmpfs makes it free).\n"
         "  --bare-ids    how the bare loop gets series ids: map (default) "
         "looks up\n"
         "                name+labels in a hash map per row, as any writer "
         "fed samples\n"
         "                must; precomputed resolves them before the clock "
         "starts\n"
         "                (the SQLite ceiling)\n";
}

int run_storage_bench(const std::vector<std::string>& args) {
  options opt;
  if (auto err = parse(args, opt); !err.empty()) {
    std::cerr << "fleetd-bench storage: " << err
              << "; see fleetd-bench storage --help" << std::endl;
    return 2;
  }
  bool own_dir = false;
  if (auto err = prepare_dir(opt.dir, own_dir); !err.empty()) {
    std::cerr << "fleetd-bench storage: " << err << std::endl;
    return 1;
  }
  int rc = 0;
  try {
    size_t series = 0;
    auto batches = make_batches(opt.points, series);
    auto layout = probe_layout(opt.dir);
    node_config cfg;
    caf::actor_system sys{cfg};
    std::vector<double> ours_pps;
    std::vector<double> bare_pps;
    std::vector<double> ratios;
    std::vector<double> cpu_ratios;
    std::vector<double> ours_cpu;
    std::vector<double> bare_cpu;
    std::vector<double> ours_bpp;
    std::vector<double> bare_bpp;
    auto ours_path = opt.dir + "/ours.db";
    auto bare_path = opt.dir + "/bare.db";
    for (int64_t r = 0; r < opt.rounds; ++r) {
      run_result ours;
      run_result bare;
      bool ours_first = r % 2 == 0;
      if (ours_first) {
        ours = run_ours(sys, ours_path, batches, opt.points);
        bare = run_bare(bare_path, layout, batches, opt.precomputed_ids);
      } else {
        bare = run_bare(bare_path, layout, batches, opt.precomputed_ids);
        ours = run_ours(sys, ours_path, batches, opt.points);
      }
      auto ratio = ours.points_per_s() / bare.points_per_s();
      ours_pps.push_back(ours.points_per_s());
      bare_pps.push_back(bare.points_per_s());
      ratios.push_back(ratio);
      auto cpu_ratio = bare.cpu_ns_per_point() / ours.cpu_ns_per_point();
      cpu_ratios.push_back(cpu_ratio);
      ours_cpu.push_back(ours.cpu_ns_per_point());
      bare_cpu.push_back(bare.cpu_ns_per_point());
      ours_bpp.push_back(ours.bytes_per_point());
      bare_bpp.push_back(bare.bytes_per_point());
      std::cerr << "round " << (r + 1) << "/" << opt.rounds << " ("
                << (ours_first ? "ours" : "bare") << " first): ours "
                << format(ours.points_per_s(), 0) << " points/s, bare "
                << format(bare.points_per_s(), 0) << " points/s, ratio "
                << format(ratio, 3) << "; cpu ns/point ours "
                << format(ours.cpu_ns_per_point(), 0) << " bare "
                << format(bare.cpu_ns_per_point(), 0) << " ratio "
                << format(cpu_ratio, 3) << "; bytes/point ours "
                << format(ours.bytes_per_point(), 1) << " bare "
                << format(bare.bytes_per_point(), 1) << std::endl;
    }
    std::cout << "BENCH storage points=" << opt.points
              << " batch=" << batch_size << " series=" << series
              << " rounds=" << opt.rounds << " stat=median"
              << " bare_ids=" << (opt.precomputed_ids ? "precomputed" : "map")
              << " points_per_s=" << format(median(ours_pps), 0)
              << " bare_points_per_s=" << format(median(bare_pps), 0)
              << " ratio=" << format(median(ratios), 3)
              << " bytes_per_point=" << format(median(ours_bpp), 1)
              << " bare_bytes_per_point=" << format(median(bare_bpp), 1)
              << " cpu_ns_per_point=" << format(median(ours_cpu), 0)
              << " bare_cpu_ns_per_point=" << format(median(bare_cpu), 0)
              << " cpu_ratio=" << format(median(cpu_ratios), 3) << std::endl;
  } catch (const bench_failure& x) {
    std::cerr << "fleetd-bench storage: " << x.what << std::endl;
    rc = 1;
  }
  if (own_dir)
    rmdir(opt.dir.c_str());
  return rc;
}

} // namespace fleetd::bench
