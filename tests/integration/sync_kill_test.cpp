// fleetd and fleetd-cloud killed with SIGKILL at random moments during sync,
// again and again, on the same data directories and port: once everything
// has drained, the cloud holds every record the device ever committed, of
// every stream (metrics, logs, events), exactly once and in the device's
// order, and each (device, stream, epoch) holds batches 1..N.
//
// "Committed" is what a reader of the device's SQLite file sees: the file is
// read (read-only; WAL lets a reader run beside the writer) right after each
// SIGKILL of the device, before it restarts, and once more at the end; the
// union of every record seen is what the cloud must hold. Samples, log lines
// and events the device had only in memory when it died are allowed to be
// lost.
//
// Order: the device numbers a stream's rows (INTEGER PRIMARY KEY, max + 1) when
// it commits them, and never deletes a row here (no cap is reached), so a row
// lost with a killed device never held an id, and the committed rows, seen
// across all snapshots, form one sequence in id order with no holes that a
// later commit could fill. The union of snapshots is kept by row id (a row id
// seen twice with different contents is a failure: a committed row was
// replaced). The cloud's rows of the stream in arrival order (rowid) must be
// exactly that sequence.
//
// Events: the device records events of its own (link_offline/link_online,
// capability_change, storage drops, batch_rejected) at any time, also after
// the final drain check and while it stops; those may be unsynced when it
// exits. So for events the cloud must hold exactly the device's events in id
// order up to some row L, where L is at least the last row the device saw
// acked (at least every event committed before the drain check) and at most
// the last row it put in a batch (a batch may be stored by the cloud with
// its ack lost in the final shutdown). Metrics and log lines are written only
// by the load generator and the collector, both done before the drain check:
// every committed row must arrive.
//
// A seed fixes the plan (which side dies, at which progress point, after
// which delay), not the exact interleaving of the processes. Rerun a failing
// plan with FLEETD_KILL_SEED=<the printed seed>; FLEETD_KEEP_TEMP=1 keeps the
// data directories and logs.
//
// The "postgresql:" case runs it all with the cloud on PostgreSQL through
// PgBouncer, the device enrolled into an org (sync_kill_test.pg).
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include <sqlite3.h>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int kills_per_side = 40; // 80 SIGKILLs in all
// On PostgreSQL the backlog drains slower: fewer kills keep it near 30 s.
constexpr int pg_kills_per_side = 25;
constexpr const char* device_id = "kill-dev";
// 100 series every 20 ms in batches of 25: about 200 batches a second, about
// what one device and cloud manage here, so sync is busy nearly all the time.
constexpr int64_t load_series = 100;
// And per round a few log lines (one batch of 25 per 5 rounds), and every few
// rounds a "load_mark" event besides the device's own.
constexpr int64_t load_log_lines = 5;
constexpr int64_t load_event_every = 4;
constexpr int64_t final_load_rounds = 5;

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// -- reading the SQLite files ------------------------------------------------

/// Runs `sql` on a database opened read-only and calls `row` for each result
/// row; false when the file cannot be opened or the query fails.
bool each_row(const std::string& path, const std::string& sql,
              const std::function<void(sqlite3_stmt*)>& row) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr)
      != SQLITE_OK) {
    sqlite3_close(db);
    return false;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  bool ok = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK;
  if (ok) {
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      row(st);
    ok = rc == SQLITE_DONE;
  }
  if (!ok)
    fprintf(stderr, "sync_kill_test: %s: %s: %s\n", path.c_str(), sql.c_str(),
            sqlite3_errmsg(db));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return ok;
}

std::string text_col(sqlite3_stmt* st, int i) {
  auto p = sqlite3_column_blob(st, i);
  auto n = sqlite3_column_bytes(st, i);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n))
           : std::string{};
}

/// Encoded labels (key NUL value NUL ...) as `k="v",...`, escaped so that
/// the rendering stays one to one, like the encoding.
std::string render_labels(const std::string& blob) {
  auto escape = [](const std::string& x) {
    std::string out;
    for (char c : x) {
      if (c == '\\' || c == '"' || c == ',' || c == '=')
        out += '\\';
      out += c;
    }
    return out;
  };
  std::string out;
  size_t pos = 0;
  bool key = true;
  while (pos < blob.size()) {
    auto end = blob.find('\0', pos);
    if (end == std::string::npos)
      end = blob.size();
    auto part = escape(blob.substr(pos, end - pos));
    if (key)
      out += (out.empty() ? "" : ",") + part + "=";
    else
      out += "\"" + part + "\"";
    key = !key;
    pos = end + 1;
  }
  return out;
}

/// A double rendered exactly: its decimal form for reading, its bits to compare.
std::string exact(double x) {
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  char buf[64];
  snprintf(buf, sizeof(buf), "%.17g/%016llx", x,
           static_cast<unsigned long long>(bits));
  return buf;
}

/// Single integer (first column of the first row); `fallback` when none.
int64_t scalar(const std::string& path, const std::string& sql,
               int64_t fallback = -1) {
  int64_t out = fallback;
  bool first = true;
  each_row(path, sql, [&](sqlite3_stmt* st) {
    if (first && sqlite3_column_type(st, 0) != SQLITE_NULL)
      out = sqlite3_column_int64(st, 0);
    first = false;
  });
  return out;
}

// -- streams -------------------------------------------------------------------

/// One record of a stream: `key` names it for the diagnostics (it need not
/// be unique), `value` is the rest of what must arrive unchanged; `id` is the
/// device's row id, which orders the stream (0 for the cloud's rows).
struct record {
  int64_t id = 0;
  std::string key;
  std::string value;
};

bool same_content(const record& a, const record& b) {
  return a.key == b.key && a.value == b.value;
}

/// The record `make` builds of each result row of `sql` on `db`.
std::vector<record> records(const std::string& db, const std::string& sql,
                            const std::function<record(sqlite3_stmt*)>& make) {
  std::vector<record> out;
  each_row(db, sql, [&](sqlite3_stmt* st) { out.push_back(make(st)); });
  return out;
}

/// How to read one synced stream on both sides.
struct stream_spec {
  std::string name;
  /// The device table holding the stream's rows (id = the batching cursor).
  std::string device_table;
  /// The device keeps recording rows after the final drain check (events):
  /// rows past the last one the device saw acked may be missing.
  bool records_after_drain = false;
  /// The device's records with id > `after`, in id order.
  std::function<std::vector<record>(const std::string& device_db,
                                    int64_t after)>
    device_records;
  /// Every record the cloud holds for a device, in arrival order (rowid).
  std::function<std::vector<record>(const cloud_store& cloud,
                                    const std::string& device)>
    cloud_records;
};

std::string metric_key(const std::string& name, const std::string& labels,
                       int64_t ts) {
  return name + "{" + render_labels(labels) + "}@" + std::to_string(ts);
}

stream_spec metrics_spec() {
  stream_spec s;
  s.name = "metrics";
  s.device_table = "metrics";
  s.device_records = [](const std::string& db, int64_t after) {
    return records(db,
                   "SELECT m.id, s.name, s.labels, m.ts, m.bits "
                   "FROM metrics m JOIN series s ON s.id = m.series_id "
                   "WHERE m.id > "
                     + std::to_string(after) + " ORDER BY m.id",
                   [](sqlite3_stmt* st) {
                     return record{sqlite3_column_int64(st, 0),
                                   metric_key(text_col(st, 1), text_col(st, 2),
                                              sqlite3_column_int64(st, 3)),
                                   exact(double_of(static_cast<uint64_t>(
                                     sqlite3_column_int64(st, 4))))};
                   });
  };
  s.cloud_records = [](const cloud_store& cloud, const std::string& device) {
    std::vector<record> out;
    for (auto& r : cloud.rows(cloud_store::table::points, device))
      out.push_back({0, metric_key(r[0], r[1], std::stoll(r[2])),
                     exact(double_of(static_cast<uint64_t>(std::stoll(r[3]))))});
    return out;
  };
  return s;
}

/// A log line: labels and timestamp (ns) name it, the line is its value.
std::string log_key(const std::string& labels, int64_t ts_ns) {
  return "{" + render_labels(labels) + "}@" + std::to_string(ts_ns);
}

stream_spec logs_spec() {
  stream_spec s;
  s.name = "logs";
  s.device_table = "logs";
  s.device_records = [](const std::string& db, int64_t after) {
    return records(db,
                   "SELECT id, labels, ts, line FROM logs WHERE id > "
                     + std::to_string(after) + " ORDER BY id",
                   [](sqlite3_stmt* st) {
                     return record{sqlite3_column_int64(st, 0),
                                   log_key(text_col(st, 1),
                                           sqlite3_column_int64(st, 2)),
                                   text_col(st, 3)};
                   });
  };
  s.cloud_records = [](const cloud_store& cloud, const std::string& device) {
    std::vector<record> out;
    for (auto& r : cloud.rows(cloud_store::table::logs, device))
      out.push_back({0, log_key(r[0], std::stoll(r[1])), r[2]});
    return out;
  };
  return s;
}

/// An event: kind and timestamp (ms) name it, the message is its value (the
/// device stores no attributes; any the cloud holds are a difference).
std::string event_key(const std::string& kind, int64_t ts_ms) {
  return kind + "@" + std::to_string(ts_ms);
}

stream_spec events_spec() {
  stream_spec s;
  s.name = "events";
  s.device_table = "events";
  s.records_after_drain = true;
  s.device_records = [](const std::string& db, int64_t after) {
    return records(db,
                   "SELECT id, kind, ts, message FROM events WHERE id > "
                     + std::to_string(after) + " ORDER BY id",
                   [](sqlite3_stmt* st) {
                     return record{sqlite3_column_int64(st, 0),
                                   event_key(text_col(st, 1),
                                             sqlite3_column_int64(st, 2)),
                                   text_col(st, 3)};
                   });
  };
  s.cloud_records = [](const cloud_store& cloud, const std::string& device) {
    std::vector<record> out;
    for (auto& r : cloud.rows(cloud_store::table::events, device)) {
      auto value = r[2];
      if (!r[3].empty())
        value += " [attributes " + render_labels(r[3]) + "]";
      out.push_back({0, event_key(r[0], std::stoll(r[1])), value});
    }
    return out;
  };
  return s;
}

std::vector<stream_spec> streams() {
  return {metrics_spec(), logs_spec(), events_spec()};
}

/// The union of every record of one stream ever seen in the device's file,
/// by row id: a row, once committed, keeps its id and contents.
struct ledger {
  stream_spec spec;
  int64_t max_id = 0;
  /// row id -> record
  std::map<int64_t, record> committed;
  /// Row ids seen with two contents: the device replaced a committed row
  /// (deleted it and reused its id), which breaks "committed rows form one
  /// ordered sequence" and would hide a loss.
  std::vector<std::string> conflicts;

  /// Adds what the file holds now; `full` re-reads every row, not only the
  /// ones after the highest id seen so far.
  void observe(const std::string& device_db, bool full) {
    for (auto& r : spec.device_records(device_db, full ? 0 : max_id)) {
      max_id = std::max(max_id, r.id);
      auto [i, added] = committed.emplace(r.id, r);
      if (!added && !same_content(i->second, r))
        conflicts.push_back("row " + std::to_string(r.id) + ": "
                            + i->second.key + " = " + i->second.value
                            + ", later " + r.key + " = " + r.value);
    }
  }
};

/// What the record-by-record comparison of one stream found.
struct stream_result {
  size_t committed = 0;    // rows the device ever committed
  size_t required = 0;     // ... of them, the ones that must be in the cloud
  size_t allowed = 0;      // ... and the ones that may be
  size_t expected = 0;     // the length of the prefix compared
  size_t cloud_rows = 0;
  size_t common_prefix = 0; // cloud rows equal to the device's, from the first
  bool equal = false;       // the cloud's rows are exactly the prefix, in order
  std::vector<std::string> duplicated; // in the cloud more often than committed
  std::vector<std::string> lost;       // committed, missing in the cloud
  std::vector<std::string> changed;    // in the cloud with another value
  std::vector<std::string> unknown;    // in the cloud, not a row it may hold
  std::vector<std::string> order;      // the first place the orders differ
};

/// Compares the cloud's rows of `l`'s stream with the device's committed
/// rows: the rows with id <= `must_upto` must be there, those up to
/// `may_upto` may be, as one prefix of the device's rows in id order.
stream_result compare(const ledger& l, const cloud_store& cloud_db,
                      int64_t must_upto, int64_t may_upto) {
  stream_result out;
  std::vector<const record*> device;
  for (auto& kv : l.committed) {
    device.push_back(&kv.second);
    if (kv.first <= must_upto)
      ++out.required;
    if (kv.first <= may_upto)
      ++out.allowed;
  }
  out.committed = device.size();
  auto cloud = l.spec.cloud_records(cloud_db, device_id);
  out.cloud_rows = cloud.size();
  out.expected = std::min(std::max(cloud.size(), out.required), out.allowed);
  while (out.common_prefix < std::min(out.expected, cloud.size())
         && same_content(*device[out.common_prefix], cloud[out.common_prefix]))
    ++out.common_prefix;
  out.equal = out.common_prefix == out.expected
              && cloud.size() == out.expected;
  if (out.equal)
    return out;
  // Record by record: each key's values on either side, as multisets.
  std::map<std::string, std::pair<std::vector<std::string>,
                                  std::vector<std::string>>>
    by_key; // key -> (device values, cloud values)
  std::map<std::string, std::vector<int64_t>> ids; // key -> device row ids
  for (size_t i = 0; i < out.expected; ++i) {
    by_key[device[i]->key].first.push_back(device[i]->value);
    ids[device[i]->key].push_back(device[i]->id);
  }
  for (auto& r : cloud)
    by_key[r.key].second.push_back(r.value);
  auto beyond = [&](const std::string& key) {
    // A row of the device the cloud must not have (never batched).
    for (size_t i = out.expected; i < device.size(); ++i)
      if (device[i]->key == key)
        return " (device row " + std::to_string(device[i]->id)
               + ", past the last row the cloud may hold)";
    return std::string(" (no such device row)");
  };
  for (auto& [key, sides] : by_key) {
    auto& [dv, cv] = sides;
    auto row = ids.count(key) ? " (device row "
                                  + std::to_string(ids[key].front()) + ")"
                              : std::string{};
    if (dv.empty())
      out.unknown.push_back(key + " = " + cv.front() + beyond(key));
    else if (cv.empty())
      out.lost.push_back(key + " = " + dv.front() + row);
    else if (cv.size() > dv.size())
      out.duplicated.push_back(key + " = " + cv.front() + row + " x"
                               + std::to_string(cv.size()) + " (device x"
                               + std::to_string(dv.size()) + ")");
    else if (cv.size() < dv.size())
      out.lost.push_back(key + " = " + dv.front() + row + ": device x"
                         + std::to_string(dv.size()) + ", cloud x"
                         + std::to_string(cv.size()));
    else {
      auto a = dv, b = cv;
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      if (a != b)
        out.changed.push_back(key + row + ": device " + dv.front()
                              + ", cloud " + cv.front());
    }
  }
  // Where the two sequences part: a few rows of each from there on.
  auto i = out.common_prefix;
  std::string at = "cloud row " + std::to_string(i + 1) + " of "
                   + std::to_string(cloud.size()) + ", device row "
                   + std::to_string(i + 1) + " of "
                   + std::to_string(out.expected) + ":";
  for (size_t k = i; k < i + 3; ++k) {
    at += "\n    device ";
    at += k < out.expected ? "#" + std::to_string(device[k]->id) + " "
                               + device[k]->key + " = " + device[k]->value
                           : std::string("(end)");
    at += "\n    cloud  ";
    at += k < cloud.size() ? cloud[k].key + " = " + cloud[k].value
                           : std::string("(end)");
  }
  out.order.push_back(at);
  return out;
}

std::string first_few(const std::vector<std::string>& xs, size_t n = 5) {
  std::string out;
  for (size_t i = 0; i < xs.size() && i < n; ++i)
    out += "\n  " + xs[i];
  if (xs.size() > n)
    out += "\n  ... " + std::to_string(xs.size() - n) + " more";
  return out;
}

// -- the two processes -----------------------------------------------------

/// The last `n` bytes of a log, for failure messages.
std::string tail_of(const std::string& path, size_t n = 3000) {
  auto text = read_file(path);
  return text.size() > n ? "..." + text.substr(text.size() - n) : text;
}

struct rig {
  explicit rig(cloud_backend b) : backend(std::move(b)) {
  }

  temp_dir tmp;
  cloud_backend backend;
  std::string cloud_dir = tmp.path() + "/cloud";
  std::string dev_dir = tmp.path() + "/device";
  cloud_store cloud_db = backend.store(cloud_dir);
  // fleetd's flags to be let in (an enrollment token on PostgreSQL).
  std::vector<std::string> enroll;
  std::string dev_db = dev_dir + "/fleetd.db";
  std::string cloud_log = tmp.path() + "/cloud.log";
  std::string dev_log = tmp.path() + "/device.log";
  int ingest_port = 0; // 0 until the first start picked one
  std::unique_ptr<process> cloud;
  std::unique_ptr<process> device;

  /// Starts fleetd-cloud on the data dir and port of the last run; returns
  /// once its ingest endpoint listens (it writes ingest.port after binding).
  void start_cloud() {
    auto port_file = cloud_dir + "/ingest.port";
    std::remove(port_file.c_str());
    std::vector<std::string> args{"--node.data-dir=" + cloud_dir,
                                  "--ingest.port="
                                    + std::to_string(ingest_port),
                                  "--console.port=0", "--log.level=debug"};
    auto flags = backend.node_flags();
    args.insert(args.end(), flags.begin(), flags.end());
    cloud = std::make_unique<process>(program("fleetd-cloud"), args,
                                      cloud_log);
    INFO("cloud log: ", tail_of(cloud_log));
    REQUIRE(eventually(
      [&] { return exists(port_file) || !cloud->running(); }, 20s));
    REQUIRE(cloud->running());
    auto port = std::stoi(read_file(port_file));
    if (ingest_port == 0)
      ingest_port = port;
    REQUIRE(port == ingest_port);
    if (enroll.empty() && backend.pg)
      enroll = backend.device_flags(tmp.path(),
                                    port_from(cloud_dir + "/console.port"));
  }

  /// Starts fleetd on its data dir; `load_rounds` 0: load until killed.
  /// Returns once its console listens, i.e. it runs with its signals handled.
  void start_device(int64_t load_rounds) {
    auto port_file = dev_dir + "/console.port";
    std::remove(port_file.c_str());
    std::vector<std::string> args{
        "--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
        "--cloud.port=" + std::to_string(ingest_port), "--console.port=0",
        "--log.level=debug", "--tier.pin=1", "--cloud.timeout=1s",
        // One round of system metrics per start; the load is the stream.
        "--collector.interval=1h", "--collector.rounds=1",
        "--load.series=" + std::to_string(load_series),
        "--load.interval=20ms", "--load.rounds=" + std::to_string(load_rounds),
        "--load.log-lines=" + std::to_string(load_log_lines),
        "--load.event-every=" + std::to_string(load_event_every),
        "--sync.interval=20ms", "--sync.batch-size=25",
        "--sync.backoff-base=10ms", "--sync.backoff-cap=200ms"};
    args.insert(args.end(), enroll.begin(), enroll.end());
    device = std::make_unique<process>(program("fleetd"), args, dev_log);
    INFO("device log: ", tail_of(dev_log));
    REQUIRE(eventually(
      [&] { return exists(port_file) || !device->running(); }, 20s));
    REQUIRE(device->running());
  }

  /// The highest sequence the cloud acked, summed over the device's streams.
  int64_t cloud_acked() {
    int64_t sum = 0;
    for (auto& row : cloud_db.rows(cloud_store::table::streams, device_id))
      sum += std::stoll(row[1]);
    return sum;
  }

  /// Batches the device has cut (persisted in sync_queue) over all streams.
  int64_t device_cut() {
    return scalar(dev_db,
                  "SELECT coalesce(sum(next_sequence - 1), 0) FROM "
                  "stream_state",
                  0);
  }

  /// Rows of a stream the device has not put in a batch yet.
  int64_t unbatched(const stream_spec& spec) {
    return scalar(dev_db, "SELECT count(*) FROM " + spec.device_table
                            + " WHERE id > coalesce((SELECT batched_upto FROM "
                              "stream_state WHERE stream = '"
                            + spec.name + "'), 0)");
  }

  /// A column of a stream's stream_state row; 0 when it has none.
  int64_t stream_state(const std::string& stream, const std::string& column) {
    return scalar(dev_db,
                  "SELECT " + column + " FROM stream_state WHERE stream = '"
                    + stream + "'",
                  0);
  }

  /// The device's sync state, for failure messages: its stream_state and
  /// sync_queue rows and, when its console answers, the sync-related actors.
  std::string sync_report(uint16_t console) {
    std::string out = "\n  stream_state (stream next_sequence batched_upto "
                      "acked_sequence acked_upto):";
    for (auto& row : query(dev_db, "SELECT stream || ' ' || next_sequence || "
                                   "' ' || batched_upto || ' ' || "
                                   "acked_sequence || ' ' || acked_upto FROM "
                                   "stream_state"))
      out += "\n    " + row;
    out += "\n  max ids:";
    for (auto t : {"metrics", "logs", "events"})
      out += std::string(" ") + t + "="
             + std::to_string(scalar(dev_db,
                                     std::string("SELECT max(id) FROM ") + t));
    out += "\n  sync_queue (stream sequence last_id points retry_count):";
    for (auto& row : query(dev_db, "SELECT stream || ' ' || sequence || ' ' || "
                                   "last_id || ' ' || points || ' ' || "
                                   "retry_count FROM sync_queue ORDER BY "
                                   "stream, sequence"))
      out += "\n    " + row;
    out += "\n  cloud streams (stream last_sequence batches duplicates):";
    for (auto& row : cloud_db.rows(cloud_store::table::streams, device_id))
      out += "\n    " + row[0] + " " + row[1] + " " + row[2] + " " + row[3];
    auto st = console_status(console);
    if (!st)
      return out + "\n  console: no answer";
    for (auto& a : st->actors) {
      if (a.name.rfind("sync_", 0) != 0 && a.name != "backoff"
          && a.name != "load_generator" && a.name != "system_collector"
          && a.name != "storage")
        continue;
      out += "\n  " + a.name + ": " + a.state + ";";
      for (auto& kv : a.counters)
        out += " " + kv.first + "=" + std::to_string(kv.second);
    }
    return out;
  }

  /// Batches the device has seen acked, over all streams.
  int64_t device_acked() {
    return scalar(dev_db,
                  "SELECT coalesce(sum(acked_sequence), 0) FROM stream_state",
                  0);
  }
};

/// The exit status of `p` within `timeout`; -1 while it still runs.
int exit_status(process& p, std::chrono::milliseconds timeout) {
  auto st = p.wait(timeout);
  return st ? *st : -1;
}

/// Polls `value` (tightly: a kill should follow the event closely) until it
/// reaches `target`; false when the deadline passes or `alive` turns false.
bool reaches(const std::function<int64_t()>& value, int64_t target,
             const std::function<bool()>& alive,
             std::chrono::milliseconds deadline = 20s) {
  auto end = clock_type::now() + deadline;
  while (clock_type::now() < end) {
    if (value() >= target)
      return true;
    if (!alive())
      return false;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

/// The value of `"name":N` in the first JSON object naming `stream`; -1 when
/// absent. Enough for fleetctl devices --json, one object per stream.
int64_t json_field(const std::string& json, const std::string& stream,
                   const std::string& name) {
  auto at = json.find("\"stream\":\"" + stream + "\"");
  if (at == std::string::npos)
    return -1;
  auto begin = json.rfind('{', at);
  auto end = json.find('}', at);
  auto obj = json.substr(begin, end - begin);
  auto k = obj.find("\"" + name + "\":");
  if (k == std::string::npos)
    return -1;
  return std::atoll(obj.c_str() + k + name.size() + 3);
}

void kill_either_side(const cloud_backend& backend) {
  auto t0 = clock_type::now();
  uint32_t seed = std::random_device{}();
  if (auto env = std::getenv("FLEETD_KILL_SEED"))
    seed = static_cast<uint32_t>(std::strtoul(env, nullptr, 10));
  rig r(backend);
  MESSAGE(backend.name(), ": seed ", seed, " (rerun with FLEETD_KILL_SEED=", seed,
          "), temp dir ", r.tmp.path());
  std::mt19937 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  std::vector<ledger> ledgers;
  for (auto& s : streams()) {
    ledgers.emplace_back();
    ledgers.back().spec = s;
  }
  auto observe_device = [&](bool full) {
    for (auto& l : ledgers)
      l.observe(r.dev_db, full);
  };

  r.start_cloud();
  r.start_device(0);
  auto both_up = [&] { return r.cloud->running() && r.device->running(); };
  // Sync works before the first kill.
  REQUIRE(reaches([&] { return r.cloud_acked(); }, 3, both_up));

  // Which side dies at each of the kills: balanced, in random order.
  auto per_side = backend.pg ? pg_kills_per_side : kills_per_side;
  std::vector<bool> kill_device(2 * per_side, false);
  std::fill(kill_device.begin(), kill_device.begin() + per_side, true);
  std::shuffle(kill_device.begin(), kill_device.end(), rng);

  int device_kills = 0;
  int cloud_kills = 0;
  int device_kills_in_flight = 0; // a cut batch not yet acked when it died
  int device_kills_ack_lost = 0;   // ... which the cloud had stored
  int cloud_kills_in_flight = 0;  // a cut batch not yet stored when it died
  std::string log;
  for (size_t i = 0; i < kill_device.size(); ++i) {
    CAPTURE(i);
    bool dev = kill_device[i];
    // The moment: a random point of sync progress (batches stored by the
    // cloud, acked to the device, or cut by the device), then either a
    // random 0-30 ms more, so the kill lands anywhere in the fetch / cut /
    // send / store / ack cycle, or ("in-flight") the first moment the
    // victim has a batch cut but not yet stored (cloud) or acked (device),
    // or ("ack-lost", device only) the first moment the cloud has stored a
    // batch whose ack the device has not recorded yet.
    int how = static_cast<int>(pick(0, 4));
    int64_t steps = pick(1, 8);
    std::function<int64_t()> progress;
    std::string what;
    switch (how) {
      case 1:
        progress = [&] { return r.device_acked(); };
        what = "device-acked";
        break;
      case 2:
        progress = [&] { return r.device_cut(); };
        what = "device-cut";
        break;
      default:
        progress = [&] { return r.cloud_acked(); };
        what = "cloud-acked";
        break;
    }
    auto target = progress() + steps;
    INFO("waiting for ", what, " to reach ", target);
    REQUIRE(reaches(progress, target, both_up));
    int64_t jitter = 0;
    if (how == 4 && dev) {
      what = "ack-lost";
      // The cloud's count is read first: a later device count that is
      // still lower means an ack the device has not recorded.
      auto unrecorded = [&] {
        auto stored = r.cloud_acked();
        return stored - r.device_acked();
      };
      // A short window; when missed, the kill still lands mid-sync.
      reaches(unrecorded, 1, both_up, 5s);
      REQUIRE(both_up());
    } else if (how >= 3) {
      what = "in-flight";
      auto unconfirmed = [&] {
        return r.device_cut() - (dev ? r.device_acked() : r.cloud_acked());
      };
      REQUIRE(reaches(unconfirmed, 1, both_up));
    } else {
      jitter = pick(0, 30);
      if (jitter > 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(jitter));
    }
    auto& victim = dev ? r.device : r.cloud;
    victim->signal(SIGKILL);
    REQUIRE(exit_status(*victim, 5s) == 128 + SIGKILL);
    log += std::string(dev ? "D" : "C") + "(" + what + "+"
           + std::to_string(steps) + ",+" + std::to_string(jitter) + "ms) ";
    if (dev) {
      ++device_kills;
      // What was committed when it died: the WAL holds every commit.
      observe_device(false);
      if (r.device_cut() > r.device_acked()) {
        ++device_kills_in_flight;
        // The cloud has one already: the restarted device must resend it
        // and the cloud must recognise it.
        if (r.cloud_acked() > r.device_acked())
          ++device_kills_ack_lost;
      }
      r.start_device(0);
    } else {
      ++cloud_kills;
      if (r.device_cut() > r.cloud_acked())
        ++cloud_kills_in_flight;
      r.start_cloud();
    }
  }
  MESSAGE("kills: ", log);

  // Stop the endless load (SIGTERM: a clean stop in the middle of sync),
  // then a last run with a few load rounds that must all drain.
  r.device->signal(SIGTERM);
  REQUIRE(exit_status(*r.device, 15s) == 0);
  observe_device(false);
  std::string backlog;
  for (auto& l : ledgers)
    backlog += " " + l.spec.name + " "
               + std::to_string(r.unbatched(l.spec)) + " unbatched, "
               + std::to_string(scalar(r.dev_db,
                                       "SELECT count(*) FROM sync_queue "
                                       "WHERE stream = '"
                                         + l.spec.name + "'"))
               + " queued;";
  auto drain_t0 = clock_type::now();
  r.start_device(final_load_rounds);
  auto console =
    static_cast<uint16_t>(std::stoi(read_file(r.dev_dir + "/console.port")));
  bool drained = eventually(
    [&] {
      auto st = console_status(console);
      if (!st || state_of(*st, "system_collector") != "done"
          || state_of(*st, "load_generator") != "done")
        return false;
      // Read after the generators were done: nothing left to batch, every
      // cut batch acked and gone from the queue.
      for (auto& l : ledgers)
        if (r.unbatched(l.spec) != 0)
          return false;
      return r.device_cut() == r.device_acked()
             && scalar(r.dev_db, "SELECT count(*) FROM sync_queue") == 0;
    },
    45s);
  {
    INFO("device log: ", tail_of(r.dev_log));
    INFO("cloud log: ", tail_of(r.cloud_log));
    INFO("device state: ", r.sync_report(console));
    REQUIRE(drained);
  }
  MESSAGE("drained in ", seconds_since(drain_t0), " s; backlog before:",
          backlog);
  // Every event recorded before the drain check is in an acked batch now;
  // events with a higher id were recorded after it.
  auto events_drained_upto = r.stream_state("events", "acked_upto");

  // The cloud's own view: no gaps in any stream of the device.
  auto cloud_console =
    static_cast<uint16_t>(std::stoi(read_file(r.cloud_dir + "/console.port")));
  auto ctl = run_to_end(program("fleetctl"),
                        {"--node", "127.0.0.1:" + std::to_string(cloud_console),
                         "devices", "--json"},
                        30s);
  int64_t cloud_duplicates = 0;
  {
    INFO("fleetctl devices: ", ctl.second);
    REQUIRE(ctl.first == 0);
    for (auto& l : ledgers) {
      CAPTURE(l.spec.name);
      CHECK(json_field(ctl.second, l.spec.name, "gaps") == 0);
      cloud_duplicates += json_field(ctl.second, l.spec.name, "duplicates");
    }
  }

  r.device->signal(SIGTERM);
  REQUIRE(exit_status(*r.device, 15s) == 0);
  r.cloud->signal(SIGTERM);
  REQUIRE(exit_status(*r.cloud, 15s) == 0);
  observe_device(true);

  // Only events (recorded after the drain check) may still wait in the queue.
  CHECK(scalar(r.dev_db,
               "SELECT count(*) FROM sync_queue WHERE stream != 'events'")
        == 0);
  CHECK(query(r.dev_db, "PRAGMA integrity_check")
        == std::vector<std::string>{"ok"});
  if (r.cloud_db.embedded())
    CHECK(query(r.cloud_dir + "/cloud.db", "PRAGMA integrity_check")
          == std::vector<std::string>{"ok"});

  // Record by record, stream by stream, in order.
  size_t checked = 0;
  for (auto& l : ledgers) {
    CAPTURE(l.spec.name);
    {
      INFO("device rows seen with two contents:", first_few(l.conflicts));
      CHECK(l.conflicts.empty());
    }
    // Read after the device stopped: what it saw acked, what it batched.
    auto acked_upto = r.stream_state(l.spec.name, "acked_upto");
    auto batched_upto = r.stream_state(l.spec.name, "batched_upto");
    auto everything = std::numeric_limits<int64_t>::max();
    auto res = l.spec.records_after_drain
                 ? compare(l, r.cloud_db, acked_upto, batched_upto)
                 : compare(l, r.cloud_db, everything, everything);
    checked += res.expected;
    MESSAGE(l.spec.name, ": ", res.committed, " committed records, ",
            res.required, " of them required, ", res.allowed,
            " allowed in the cloud; cloud ", res.cloud_rows, " rows, ",
            res.common_prefix, " of them equal to the device's in order");
    if (l.spec.records_after_drain) {
      // What the device recorded after the drain check, and what of that
      // reached the cloud all the same.
      size_t late = 0;
      for (auto& kv : l.committed)
        late += kv.first > events_drained_upto ? 1 : 0;
      MESSAGE(l.spec.name, ": drained up to row ", events_drained_upto,
              ", acked up to ", acked_upto, ", batched up to ", batched_upto,
              ", ", late, " recorded after the drain check, ",
              res.expected - std::min(res.expected, res.committed - late),
              " of those in the cloud");
      CHECK(acked_upto >= events_drained_upto);
    }
    CHECK(res.committed > 0);
    {
      INFO("duplicated in the cloud:", first_few(res.duplicated));
      CHECK(res.duplicated.empty());
    }
    {
      INFO("committed on the device, missing in the cloud:",
           first_few(res.lost));
      CHECK(res.lost.empty());
    }
    {
      INFO("in the cloud with another value:", first_few(res.changed));
      CHECK(res.changed.empty());
    }
    {
      // Every record the cloud has was once a committed row of the device.
      INFO("in the cloud, not a row of the device it may hold:",
           first_few(res.unknown));
      CHECK(res.unknown.empty());
    }
    {
      // The cloud's rows in arrival order are the device's in id order.
      INFO("the cloud's rows part from the device's at", first_few(res.order));
      CHECK(res.equal);
    }
  }

  // Batch sequences, for every stream either side knows: the cloud holds
  // 1..N of the device's epoch, N = the batches the device cut, and no other
  // epoch (the device's store was never moved aside and started afresh). For
  // events (recorded after the drain check too), 1..N with N at least the
  // last sequence the device saw acked and at most the last it cut.
  auto epoch = query(r.dev_db, "SELECT value FROM meta WHERE key = 'epoch'");
  REQUIRE(epoch.size() == 1);
  std::map<std::string, int64_t> cut;    // stream -> last sequence cut
  std::map<std::string, int64_t> acked;  // stream -> last sequence acked
  each_row(r.dev_db,
           "SELECT stream, next_sequence - 1, acked_sequence FROM "
           "stream_state",
           [&](sqlite3_stmt* st) {
             cut[text_col(st, 0)] = sqlite3_column_int64(st, 1);
             acked[text_col(st, 0)] = sqlite3_column_int64(st, 2);
           });
  std::map<std::string, std::map<std::string, std::vector<int64_t>>> seqs;
  for (auto& row : r.cloud_db.rows(cloud_store::table::batches, device_id))
    seqs[row[0]][row[1]].push_back(std::stoll(row[2]));
  for (auto& kv : seqs)
    cut.emplace(kv.first, 0); // a stream only the cloud knows: cut nothing
  int64_t batches = 0;
  std::string stream_names;
  for (auto& [stream, cut_n] : cut) {
    CAPTURE(stream);
    auto n = cut_n;
    if (stream == "events") {
      // Batches past the acked one may or may not have been stored.
      auto stored = static_cast<int64_t>(seqs[stream][epoch.front()].size());
      CHECK(stored >= acked[stream]);
      n = std::max(acked[stream], std::min(stored, cut_n));
    }
    stream_names += " " + stream;
    auto& by_epoch = seqs[stream];
    for (auto& kv : by_epoch) {
      INFO("epoch ", kv.first, " of the device's ", epoch.front());
      CHECK(kv.first == epoch.front());
    }
    auto& xs = by_epoch[epoch.front()];
    batches += static_cast<int64_t>(xs.size());
    // xs is sorted: 1..n exactly when each is there once and nothing else.
    std::vector<std::string> wrong;
    int64_t expected = 1;
    for (auto x : xs) {
      for (; expected < x && expected <= n; ++expected)
        wrong.push_back(std::to_string(expected) + " missing");
      if (x < expected)
        wrong.push_back(std::to_string(x) + " stored twice");
      else if (x > n)
        wrong.push_back(std::to_string(x) + " beyond the " + std::to_string(n)
                        + " the device cut");
      else
        ++expected;
    }
    for (; expected <= n; ++expected)
      wrong.push_back(std::to_string(expected) + " missing");
    INFO("batch sequences:", first_few(wrong));
    CHECK(static_cast<int64_t>(xs.size()) == n);
    CHECK(wrong.empty());
  }
  MESSAGE("streams with batches:", stream_names, "; records compared for ",
          ledgers.size());

  MESSAGE("summary: ", device_kills, " device kills (", device_kills_in_flight,
          " with a batch unacked, ", device_kills_ack_lost,
          " of them stored by the cloud), ", cloud_kills, " cloud kills (",
          cloud_kills_in_flight, " with a batch not yet stored), ", checked,
          " records checked in ", batches, " batches, ", cloud_duplicates,
          " duplicate deliveries absorbed by the cloud, ",
          seconds_since(t0), " s");
  // The cases this test is about each happened.
  CHECK(device_kills_in_flight >= 1);
  CHECK(device_kills_ack_lost >= 1);
  CHECK(cloud_kills_in_flight >= 1);
}

} // namespace

TEST_CASE("SIGKILL of either side at random moments during sync loses and "
          "duplicates no record") {
  kill_either_side({});
}

TEST_CASE("postgresql: SIGKILL of either side at random moments during sync "
          "loses and duplicates no record") {
  on_postgresql("sync_kill", kill_either_side);
}
