// fleetd debug storage|queue|capabilities and maintenance clean, against a
// running node (through its console) and against a stopped node's files:
// every number they print is compared with what the database holds.
#include <doctest/doctest.h>

#include <csignal>
#include <functional>
#include <map>

#include <sqlite3.h>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

std::pair<int, std::string> fleetd_cmd(const std::string& dir,
                                       std::vector<std::string> args) {
  args.push_back("--node.data-dir=" + dir);
  return run_to_end(program("fleetd"), args, 60s);
}

/// The part of `json` from `"key":` on (for nested objects).
std::string json_at(const std::string& json, const std::string& key) {
  auto i = json.find("\"" + key + "\":");
  return i == std::string::npos ? std::string{} : json.substr(i);
}

/// Runs `sql` on the file with a connection of the test's own.
void exec_on(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  char* msg = nullptr;
  auto rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &msg);
  INFO(sql << ": " << (msg ? msg : ""));
  sqlite3_free(msg);
  sqlite3_close(h);
  REQUIRE(rc == SQLITE_OK);
}

void check_storage_matches(const std::string& dir) {
  auto db = dir + "/fleetd.db";
  auto out = fleetd_out(dir, {"debug", "storage", "--json"});
  INFO(out);
  CHECK(json_int(out, "metrics_rows")
        == query_int(db, "SELECT count(*) FROM metrics"));
  CHECK(json_int(out, "series_rows")
        == query_int(db, "SELECT count(*) FROM series"));
  CHECK(json_int(out, "sync_queue_rows")
        == query_int(db, "SELECT count(*) FROM sync_queue"));
  CHECK(json_int(out, "events_rows")
        == query_int(db, "SELECT count(*) FROM events"));
  CHECK(json_int(out, "queued_points")
        == query_int(db, "SELECT coalesce(sum(points), 0) FROM sync_queue"));
  CHECK(json_int(out, "unbatched_points")
        == query_int(db, "SELECT count(*) FROM metrics WHERE id > coalesce("
                         "(SELECT batched_upto FROM stream_state WHERE "
                         "stream = 'metrics'), 0)"));
  CHECK(json_int(out, "oldest_ms")
        == query_int(db, "SELECT min(ts) FROM metrics"));
  CHECK(json_int(out, "newest_ms")
        == query_int(db, "SELECT max(ts) FROM metrics"));
  auto drops = json_at(out, "drops");
  for (auto& kind : query(db, "SELECT kind FROM drops"))
    CHECK(json_int(drops, kind)
          == query_int(db, "SELECT count FROM drops WHERE kind = '" + kind
                             + "'"));
}

void check_queue_matches(const std::string& dir) {
  auto db = dir + "/fleetd.db";
  auto out = fleetd_out(dir, {"debug", "queue", "--json"});
  INFO(out);
  CHECK(json_int(out, "batches")
        == query_int(db, "SELECT count(*) FROM sync_queue"));
  auto streams = json_at(out, "streams");
  for (auto& s : query(db, "SELECT DISTINCT stream FROM sync_queue")) {
    CAPTURE(s);
    auto one = json_at(streams, s);
    auto where = " FROM sync_queue WHERE stream = '" + s + "'";
    CHECK(json_int(one, "batches") == query_int(db, "SELECT count(*)" + where));
    CHECK(json_int(one, "first_sequence")
          == query_int(db, "SELECT min(sequence)" + where));
    CHECK(json_int(one, "last_sequence")
          == query_int(db, "SELECT max(sequence)" + where));
  }
  // Item by item, in (stream, sequence) order.
  auto retries = query(db, "SELECT retry_count FROM sync_queue ORDER BY "
                           "stream, sequence");
  auto next = query(db, "SELECT next_retry FROM sync_queue ORDER BY stream, "
                        "sequence");
  size_t at = out.find("\"items\":");
  for (size_t i = 0; i < retries.size(); ++i) {
    at = out.find("\"retry_count\":", at);
    REQUIRE(at != std::string::npos);
    CHECK(json_int(out, "retry_count", at) == std::stoll(retries[i]));
    CHECK(json_int(out, "next_retry_ms", at) == std::stoll(next[i]));
    ++at;
  }
}

std::vector<std::string> device_args(const std::string& dir) {
  return {"--node.data-dir=" + dir,  "--device.id=dbg-dev",
          "--cloud.port=1",          "--console.port=0",
          "--collector.interval=50ms", "--collector.rounds=5",
          "--sync.interval=50ms",    "--sync.batch-size=10",
          "--sync.backoff-base=10ms", "--sync.backoff-cap=50ms"};
}

/// Runs fleetd on `dir` with `args` until `ready` holds, then stops it.
void run_until(const std::string& dir, const std::vector<std::string>& args,
               const std::function<bool()>& ready) {
  process device{program("fleetd"), args,
                 dir.substr(0, dir.rfind('/')) + "/device.log"};
  REQUIRE(eventually(ready, 30s));
  device.signal(SIGTERM);
  REQUIRE(device.wait(10s) == 0);
}

} // namespace

TEST_CASE("debug commands on a running node answer through its console") {
  temp_dir tmp;
  auto dir = tmp.path() + "/device";
  auto db = dir + "/fleetd.db";
  process device{program("fleetd"), device_args(dir),
                 tmp.path() + "/device.log"};
  REQUIRE(eventually([&] { return exists(dir + "/console.port"); }, 10s));
  // No cloud: the queued batch is retried, and each retry is counted.
  REQUIRE(eventually(
    [&] {
      return query_int(db, "SELECT max(retry_count) FROM sync_queue") >= 2;
    },
    30s));
  auto before = query_int(db, "SELECT max(retry_count) FROM sync_queue");
  auto out = fleetd_out(dir, {"debug", "queue", "--json"});
  auto after = query_int(db, "SELECT max(retry_count) FROM sync_queue");
  INFO(out);
  auto shown = json_int(out, "retry_count");
  CHECK(shown >= 0);
  CHECK(shown <= after);
  CHECK(query_int(db, "SELECT min(next_retry) FROM sync_queue WHERE "
                      "retry_count > 0")
        > 0);
  CHECK(before <= after);
  auto text = fleetd_out(dir, {"debug", "queue"});
  CHECK(text.find("NEXT RETRY") != std::string::npos);
  auto [rc, err] = fleetd_cmd(dir, {"debug", "storage"});
  CHECK(rc == 0);
  std::tie(rc, err) = fleetd_cmd(dir, {"maintenance", "clean"});
  CHECK(rc == 0);
  device.signal(SIGTERM);
  REQUIRE(device.wait(10s) == 0);
}

TEST_CASE("debug storage and queue on a stopped node print the database's "
          "numbers; retries are real") {
  temp_dir tmp;
  auto dir = tmp.path() + "/device";
  auto db = dir + "/fleetd.db";
  run_until(dir, device_args(dir), [&] {
    return query_int(db, "SELECT count(DISTINCT stream) FROM sync_queue "
                         "WHERE retry_count >= 2")
           >= 2;
  });
  check_storage_matches(dir);
  check_queue_matches(dir);
  CHECK(query_int(db, "SELECT min(retry_count) FROM sync_queue") >= 1);
}

TEST_CASE("debug capabilities on a stopped node shows the persisted cloud "
          "settings and the backend") {
  temp_dir tmp;
  auto dir = tmp.path() + "/device";
  auto db = dir + "/fleetd.db";
  run_until(dir, device_args(dir),
            [&] { return exists(dir + "/console.port"); });
  // What the operator set from the cloud (version, batch size, interval,
  // retention, zstd level), as the store persists it.
  exec_on(db, "INSERT OR REPLACE INTO meta (key, value) VALUES "
              "('cloud_settings', '7 123 45000 0 2')");
  auto out = fleetd_out(dir, {"debug", "capabilities", "--json"});
  INFO(out);
  auto settings = json_at(out, "settings");
  CHECK(json_int(settings, "batch_size") == 123);
  CHECK(json_int(settings, "sync_interval_ms") == 45000);
  CHECK(json_int(settings, "zstd_level") == 2);
  CHECK(out.find("\"sqlite\":true") != std::string::npos);
  CHECK(out.find("cloud settings version 7") != std::string::npos);
  auto text = fleetd_out(dir, {"debug", "capabilities"});
  CHECK(text.find("when SQLite is unusable") == std::string::npos);
  // The memory backend is what a start with it would run.
  out = fleetd_out(dir, {"debug", "capabilities", "--json",
                         "--storage.backend=memory"});
  CHECK(out.find("\"sqlite\":false") != std::string::npos);
  CHECK(out.find("storage.backend=memory") != std::string::npos);
}

TEST_CASE("maintenance clean counts the WAL and applies retention to every "
          "table") {
  temp_dir tmp;
  auto dir = tmp.path() + "/device";
  auto db = dir + "/fleetd.db";
  auto args = device_args(dir);
  for (auto a : {"--load.series=3", "--load.log-lines=2", "--load.rounds=5",
                 "--load.interval=10ms"})
    args.push_back(a);
  run_until(dir, args, [&] {
    return query_int(db, "SELECT count(DISTINCT stream) FROM sync_queue") >= 2
           && query_int(db, "SELECT count(*) FROM logs") > 0;
  });
  // An event from 1970, far past the events' retention, left in the WAL by
  // a connection that stays open (no checkpoint on its close yet).
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  REQUIRE(sqlite3_exec(h,
                       "PRAGMA wal_autocheckpoint=0;"
                       "INSERT INTO events (ts, kind, message) VALUES "
                       "(1000, 'old', 'old event');",
                       nullptr, nullptr, nullptr)
          == SQLITE_OK);
  auto wal = file_size(db + "-wal");
  auto disk = file_size(db) + wal;
  REQUIRE(wal > 0);
  std::map<std::string, int64_t> before;
  for (auto& kind : query(db, "SELECT kind FROM drops"))
    before[kind] = query_int(db, "SELECT count FROM drops WHERE kind = '"
                                   + kind + "'");
  // A retention of 1 ms: every row of every table is past it.
  auto out = fleetd_out(dir, {"maintenance", "clean", "--json",
                              "--storage.retention=1ms"});
  INFO(out);
  sqlite3_close(h);
  CHECK(json_int(out, "wal_bytes_before") == wal);
  CHECK(json_int(out, "disk_bytes_before") == disk);
  CHECK(json_int(out, "wal_bytes_after")
        == std::max<int64_t>(0, file_size(db + "-wal")));
  CHECK(json_int(out, "disk_bytes_after")
        == file_size(db) + std::max<int64_t>(0, file_size(db + "-wal")));
  CHECK(query_int(db, "SELECT count(*) FROM metrics") == 0);
  CHECK(query_int(db, "SELECT count(*) FROM logs") == 0);
  CHECK(query_int(db, "SELECT count(*) FROM sync_queue") == 0);
  CHECK(query_int(db, "SELECT count(*) FROM events WHERE ts = 1000") == 0);
  auto by_kind = json_at(out, "dropped_by_kind");
  for (auto kind : {"metrics_unsynced", "logs_unsynced", "batches_unsynced",
                    "events"}) {
    CAPTURE(kind);
    auto now = query_int(db, std::string("SELECT count FROM drops WHERE "
                                         "kind = '") + kind + "'");
    CHECK(now > before[kind]);
    CHECK(json_int(by_kind, kind) == now - before[kind]);
  }
}

TEST_CASE("debug commands name a missing data directory and bad commands") {
  auto [rc, err] = fleetd_cmd("/nonexistent/fleetd", {"debug", "storage"});
  CHECK(rc == 1);
  CHECK(err.find("no data directory") != std::string::npos);
  std::tie(rc, err) = fleetd_cmd("/nonexistent/fleetd", {"debug", "bogus"});
  CHECK(rc == 2);
  std::tie(rc, err) = fleetd_cmd("/nonexistent/fleetd",
                                 {"debug", "capabilities"});
  CHECK(rc == 0);
  CHECK(err.find("tier") != std::string::npos);
}
