#include "tools/bench/journal_lag_bench.hpp"

#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>

#include "cloud/embedded_journal.hpp"
#include "cloud/pg_journal.hpp"
#include "cloud/pg_migrate.hpp"
#include "messages/error.hpp"
#include "runtime/sqlite.hpp"
#include "tools/bench/bench_util.hpp"
#include "tools/pg_server/pg_server.hpp"

namespace fleetd::bench {

const char* journal_lag_summary =
  "cost of a sink's lag (its stats call) with a large unread backlog: the "
  "index lookups it makes against the count(*) it replaced, embedded or "
  "PostgreSQL";

std::string journal_lag_usage() {
  return "usage: fleetd-bench journal-lag [--store embedded|postgresql] "
         "[--rows N] [--rounds R]\n"
         "  BENCH journal_lag store=... rows=N lag_us=... count_us=... "
         "speedup=... rounds=R\n";
}

namespace {

constexpr int64_t start_ms = 1'700'000'000'000;

struct lag_options {
  std::string store = "embedded";
  int64_t rows = 1'000'000;
  int64_t rounds = 5;
};

// The two ways to answer "how far behind": each returns the entries.
struct contenders {
  std::function<int64_t()> lag;
  std::function<int64_t()> count;
  std::shared_ptr<void> keep;
};

double time_us(const std::function<int64_t()>& f, int64_t want) {
  auto t0 = std::chrono::steady_clock::now();
  auto got = f();
  std::chrono::duration<double, std::micro> d
    = std::chrono::steady_clock::now() - t0;
  if (got != want)
    fail("lag " + std::to_string(got) + ", expected " + std::to_string(want));
  return d.count();
}

contenders embedded(const std::string& path, int64_t rows) {
  journal_config cfg;
  auto j = embedded_journal::open(path, make_system_clock(), cfg);
  if (!j)
    fail(path + ": " + render(j.error()));
  auto db = sqlite::database::open(path);
  if (!db)
    fail(path + ": " + render(db.error()));
  if (auto err = db->exec(
        "BEGIN; INSERT INTO journal (received_ms, org, device, entry) WITH "
        "RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < "
        + std::to_string(rows) + ") SELECT " + std::to_string(start_ms)
        + " + i, 'bench', 'dev', randomblob(200) FROM n; COMMIT"))
    fail("fill: " + render(err));
  auto jp = std::make_shared<embedded_journal>(std::move(*j));
  auto dp = std::make_shared<sqlite::database>(std::move(*db));
  contenders out;
  out.lag = [jp] {
    auto l = jp->lag({});
    return l ? l->entries : -1;
  };
  out.count = [dp] {
    auto st = dp->prepare("SELECT count(*), coalesce(min(received_ms), 0) "
                          "FROM journal WHERE id > 0");
    auto row = st ? st->step() : caf::expected<bool>{false};
    return row && *row ? st->column_int(0) : -1;
  };
  out.keep = std::make_shared<std::pair<decltype(jp), decltype(dp)>>(jp, dp);
  return out;
}

contenders postgresql(pg_server& s, int64_t rows) {
  auto db = s.create_database("bench_lag");
  if (!db)
    fail("CREATE DATABASE: " + render(db.error()));
  auto owner = pg::connection::open(db->owner_url);
  if (!owner || !migrate(*owner))
    fail("migrations of bench_lag");
  // The rows spread over a day of hourly partitions, vacuumed: the
  // count's best case (index-only scans).
  auto hour = start_ms / 3'600'000;
  auto step = 86'400'000 / rows + 1;
  auto must = [&](const std::string& sql, pg::params ps) {
    if (auto r = owner->exec(sql, std::move(ps)); !r)
      fail(sql.substr(0, 40) + ": " + render(r.error()));
  };
  must("SELECT fleetd_ensure_journal_partitions($1, 26)", {hour});
  // One transaction's million updates of one size slot grow quadratically:
  // the size is set once instead (the lag does not read it).
  must("ALTER TABLE journal DISABLE TRIGGER journal_added", {});
  must("INSERT INTO journal (received_ms, org, device, entry) SELECT "
       "$1::bigint * 3600000 + i * $2::bigint, 'bench', 'dev', "
       "decode(repeat('ab', 200), 'hex') FROM generate_series(1, $3) i",
       {hour, step, rows});
  must("ALTER TABLE journal ENABLE TRIGGER journal_added", {});
  must("UPDATE journal_size SET bytes = (SELECT sum(octet_length(entry)) "
       "FROM journal) WHERE slot = 0", {});
  must("VACUUM ANALYZE journal", {});
  journal_config cfg;
  auto j = pg_journal::open(db->app_url, make_system_clock(), cfg);
  if (!j)
    fail("pg_journal: " + render(j.error()));
  auto jp = std::make_shared<pg_journal>(std::move(*j));
  auto op = std::make_shared<pg::connection>(std::move(*owner));
  contenders out;
  out.lag = [jp] {
    auto l = jp->lag({});
    return l ? l->entries : -1;
  };
  out.count = [op] {
    auto r = op->exec("SELECT count(*), coalesce(min(j.received_ms), 0) "
                      "FROM journal j WHERE (j.xid, j.id) > ('0'::xid8, 0)");
    return r ? r->int64(0, 0) : -1;
  };
  out.keep = std::make_shared<std::pair<decltype(jp), decltype(op)>>(jp, op);
  return out;
}

// The options from `args`; an error message, empty when they parse.
std::string parse(const std::vector<std::string>& args, lag_options& o) {
  arg_cursor cur(args);
  while (cur.next()) {
    auto arg = cur.name();
    std::string v;
    if (!cur.value(v))
      return arg + ": missing value";
    int64_t n = 0;
    if (arg == "--store" && (v == "embedded" || v == "postgresql"))
      o.store = v;
    else if ((arg == "--rows" || arg == "--rounds") && parse_int(v, n)
             && n > 0 && n <= 100'000'000)
      (arg == "--rows" ? o.rows : o.rounds) = n;
    else
      return arg + ": unknown, or a bad value '" + v + "'";
  }
  return {};
}

// The journal to time, in a fresh directory or a throwaway PostgreSQL.
contenders prepare(const lag_options& o, std::string& dir, bool& own,
                   std::shared_ptr<pg_server>& server) {
  if (auto err = prepare_dir(dir, own); !err.empty())
    fail(err);
  if (o.store == "embedded")
    return embedded(dir + "/lag.db", o.rows);
  pg_server::failure why;
  server = pg_server::start(why);
  if (!server)
    fail("PostgreSQL: " + why.why);
  return postgresql(*server, o.rows);
}

} // namespace

int run_journal_lag_bench(const std::vector<std::string>& args) {
  lag_options o;
  if (auto why = parse(args, o); !why.empty()) {
    std::cerr << "fleetd-bench journal-lag: " << why << "\n"
              << journal_lag_usage();
    return 2;
  }
  std::string dir;
  bool own = false;
  std::shared_ptr<pg_server> server;
  auto t0 = std::chrono::steady_clock::now();
  auto c = prepare(o, dir, own, server);
  std::chrono::duration<double> fill = std::chrono::steady_clock::now() - t0;
  std::cerr << o.rows << " rows in " << format(fill.count(), 1) << " s\n";
  std::vector<double> lag, count;
  for (int64_t r = 0; r < o.rounds; ++r) {
    count.push_back(time_us(c.count, o.rows));
    lag.push_back(time_us(c.lag, o.rows));
    std::cerr << "round " << r << ": lag " << format(lag.back(), 1)
              << " us, count(*) " << format(count.back(), 1) << " us\n";
  }
  auto a = median(lag), b = median(count);
  std::cout << "BENCH journal_lag store=" << o.store << " rows=" << o.rows
            << " lag_us=" << format(a, 1) << " count_us=" << format(b, 1)
            << " speedup=" << format(b / a, 1) << " rounds=" << o.rounds
            << std::endl;
  c = contenders{};
  server.reset();
  if (own)
    std::filesystem::remove_all(dir);
  return 0;
}

} // namespace fleetd::bench
