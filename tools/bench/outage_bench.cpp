// fleetd-bench outage: a device rides out a long outage, then drains its
// backlog to the cloud over loopback.
//
// Everything is the real code, in one process: the device is an sqlite_store
// (tier 1 caps: 100 MB, 7 days) behind the storage actor, a cloud link, the
// backoff actor and the three sync actors (events, metrics, logs) with tier 1
// settings (batches of 1000, zstd-3, every 5 min), wired as edge/main.cpp
// wires them; the cloud is an embedded store, the tenancy actor over an
// embedded tenancy database, the ingest actor and the ingest endpoint (Beast)
// as cloud/main.cpp wires them. All device time comes from a manual clock.
//
// 0. Transport, as in production: the endpoint serves HTTPS with a server
//    certificate for 127.0.0.1 from a throwaway CA made in-process
//    (bench_tls.hpp); the cloud link verifies it against that CA, host name
//    included. The setup creates the org "bench" and the device
//    "outage-dev" in the tenancy database and hands the device link its key
//    (a key file, sent as Authorization: Bearer); the cloud stores the
//    records as "bench/outage-dev". --plain: plain HTTP, no key
//    (ingest.anonymous), records stored as "outage-dev".
// 1. A port is reserved (bound, then closed) and the cloud link pointed at it:
//    nothing listens there during the outage.
// 2. Fill: per 10 s round, one scrape of --series series (node_exporter-like
//    counters and gauges, seeded, bench/node_series.hpp) and
//    --log-lines-per-round log lines go through the storage actor
//    (store_atom, one request each, waiting for the reply as the collectors
//    do); then the clock moves 10 s. The sync actors start after the first
//    round and really fail: connection refused, reported to the backoff
//    actor, whose breaker opens (a link_offline event the device records and
//    must sync too). With the manual clock their waits never end, so they
//    stay queued, as a device's would through a long outage.
// 3. Reconnect: the cloud starts on the reserved port (the same link and sync
//    actors as during the outage), the clock moves past the backoff window
//    (cap + 1 s) and the sync actors get a tick, as their timers would give
//    them. drain_s is the wall time from that tick until the sync actors have
//    acked every point and log line stored and every event that existed at
//    the reconnect. Then one more tick flushes the link_online event and the
//    device must show an empty queue and nothing unbatched.
// 4. Compare: every point (series, timestamp, value bits) and log line
//    (timestamp, labels, line) the device stored, and every event in its
//    events table, must be in the cloud store (read with SQLite) exactly
//    once. records_lost = device records missing from the cloud;
//    records_duplicated = cloud copies beyond one; records_unexpected = cloud
//    rows the device never stored.
// 5. Baseline ("naive"): the same records as a simple sender would send them
//    to a fresh cloud of the same code: metrics as SyncRequests of format
//    version 1 (MetricsBatch protobuf columns: every series' name and labels
//    in every batch, timestamp and value as plain protobuf fields), logs and
//    events as LogsBatch and EventsBatch (there is no simpler format), the
//    same 1000 records per request, zstd-3, one request at a time over one
//    keep-alive connection on the same transport (HTTPS with the device's
//    key, or --plain), from memory: no device store to read, no queue
//    to persist, no backoff (so its drain time is a floor, not a device).
#include "tools/bench/bench_util.hpp"
#include "tools/bench/outage_bench.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string_view>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <netinet/in.h>
#include <random>
#include <sstream>
#include <sys/socket.h>
#include <thread>
#include <tuple>
#include <unistd.h>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "cloud/cloud_store.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/embedded_tenancy.hpp"
#include "cloud/ingest.hpp"
#include "cloud/ingest_endpoint.hpp"
#include "cloud/tenancy.hpp"
#include "edge/backoff.hpp"
#include "edge/capability.hpp"
#include "edge/cloud_link.hpp"
#include "edge/sqlite_store.hpp"
#include "edge/storage.hpp"
#include "edge/sync.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/wire.hpp"
#include "runtime/clock.hpp"
#include "runtime/http_client.hpp"
#include "runtime/logger.hpp"
#include "runtime/node.hpp"
#include "runtime/sqlite.hpp"
#include "tools/bench/bench_cloud.hpp"
#include "tools/bench/node_series.hpp"

namespace fleetd::bench {

const char* outage_summary =
  "a device through a simulated outage (injected clock, default 24 h of "
  "100 series\n      every 10 s + a log line a second), then its backlog "
  "drained to an in-process\n      cloud over loopback; drain_s, bytes vs "
  "a naive sender, records lost/duplicated";

namespace {

using std::chrono::steady_clock;
using namespace std::chrono_literals;

// 2023-11-14T22:13:20Z; fixed so every run stores identical rows.
constexpr int64_t start_ms = 1700000000000;
constexpr int64_t round_ms = 10000;
constexpr const char* device_id = "outage-dev";
// The org the device is enrolled in over HTTPS.
constexpr const char* org_name = "bench";
// The device's caps and sync interval: tier 1 (docs/architecture.md section 5).
const tier_settings tier1 = defaults_for_tier(1);
constexpr auto link_timeout = std::chrono::seconds(10);
constexpr auto backoff_base = std::chrono::seconds(1);
constexpr auto backoff_cap = std::chrono::minutes(5);

double seconds_since(steady_clock::time_point t0) {
  return std::chrono::duration<double>(steady_clock::now() - t0).count();
}

/// A port on 127.0.0.1 where nothing listens (bound once, then closed).
uint16_t reserve_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    fail(std::string("socket: ") + strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    auto err = std::string(strerror(errno));
    ::close(fd);
    fail("cannot reserve a port: " + err);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// -- the records --------------------------------------------------------------

/// A metric point reduced to what must arrive: series, timestamp, value bits.
struct point_key {
  uint32_t series;
  int64_t ts;
  uint64_t bits;
  bool operator<(const point_key& y) const {
    return std::tie(series, ts, bits) < std::tie(y.series, y.ts, y.bits);
  }
  bool operator==(const point_key& y) const {
    return series == y.series && ts == y.ts && bits == y.bits;
  }
};

std::string log_key(int64_t ts_ns, const std::string& labels,
                    const std::string& line) {
  return std::to_string(ts_ns) + '\0' + labels + '\0' + line;
}

std::string event_key(int64_t ts_ms, const std::string& kind,
                      const std::string& message) {
  return std::to_string(ts_ms) + '\0' + kind + '\0' + message;
}

/// What the device produces, round by round, deterministically.
class device_data {
public:
  device_data(int64_t series, int64_t lines_per_round) : rng_(20240611) {
    auto base = node_exporter_series(rng_, start_ms);
    for (int64_t i = 0; i < series; ++i) {
      auto d = base[static_cast<size_t>(i) % base.size()];
      if (i >= static_cast<int64_t>(base.size()))
        d.labels["shard"] = std::to_string(i / base.size());
      defs_.push_back(std::move(d));
    }
    for (auto& d : defs_)
      keys_.push_back(d.name + '\0' + encode_labels(d.labels));
    values_ = node_values(defs_);
    lines_per_round_ = lines_per_round;
  }

  const std::vector<series_def>& defs() const {
    return defs_;
  }

  /// name NUL encode_labels(labels) of each series, by series index.
  const std::vector<std::string>& keys() const {
    return keys_;
  }

  /// One scrape of every series and the log lines of round `r`; appends the
  /// keys of the points to `points`.
  void round(int64_t r, metric_samples& xs, log_lines& lines,
             std::vector<point_key>& points) {
    xs.clear();
    lines.clear();
    std::uniform_int_distribution<int64_t> jitter_ms(0, 40);
    auto ts = start_ms + r * round_ms + jitter_ms(rng_);
    values_.step(rng_);
    auto& vs = values_.values();
    for (size_t i = 0; i < defs_.size(); ++i) {
      xs.push_back({defs_[i].name, defs_[i].labels, ts, vs[i]});
      points.push_back({static_cast<uint32_t>(i), ts, bits_of(vs[i])});
    }
    auto round_ns = (start_ms + r * round_ms) * 1000000;
    std::uniform_int_distribution<int64_t> jitter_ns(0, 999999);
    for (int64_t i = 0; i < lines_per_round_; ++i) {
      auto ns = round_ns + i * (round_ms * 1000000 / lines_per_round_)
                + jitter_ns(rng_);
      lines.push_back(log_for(ns, r, i));
    }
  }

private:
  log_line log_for(int64_t ts_ns, int64_t r, int64_t i) {
    std::uniform_int_distribution<int> pick(0, 99);
    std::uniform_int_distribution<int> n(1, 65000);
    char buf[256];
    const char* unit = nullptr;
    auto p = pick(rng_);
    if (p < 45) {
      unit = "fleet-app";
      static const char* paths[] = {"/api/v1/status", "/api/v1/readings",
                                    "/healthz", "/api/v1/config"};
      snprintf(buf, sizeof(buf),
               "level=info msg=\"request served\" method=GET path=%s "
               "status=200 duration_ms=%.1f bytes=%d",
               paths[n(rng_) % 4], 0.4 + (n(rng_) % 400) / 10.0,
               200 + n(rng_) % 4000);
    } else if (p < 60) {
      unit = "sshd";
      snprintf(buf, sizeof(buf),
               "Accepted publickey for deploy from 10.0.%d.%d port %d ssh2: "
               "ED25519 SHA256:q3Xv%04x",
               n(rng_) % 8, n(rng_) % 250, 30000 + n(rng_) % 30000,
               n(rng_) % 65536);
    } else if (p < 75) {
      unit = "systemd";
      snprintf(buf, sizeof(buf), "Started Session %lld of User root.",
               static_cast<long long>(1000 + r * lines_per_round_ + i));
    } else if (p < 90) {
      unit = "kernel";
      snprintf(buf, sizeof(buf),
               "[%lld.%06d] eth0: Link is Up - 1Gbps/Full - flow control "
               "rx/tx",
               static_cast<long long>(r * 10 + i), n(rng_) % 1000000);
    } else if (p < 97) {
      unit = "cron";
      snprintf(buf, sizeof(buf),
               "(root) CMD (/usr/local/bin/backup.sh --incremental "
               "--tag=%d)",
               n(rng_));
    } else {
      unit = "fleet-app";
      snprintf(buf, sizeof(buf),
               "level=warn msg=\"upstream slow\" upstream=10.0.%d.%d:8443 "
               "retry=%d",
               n(rng_) % 8, n(rng_) % 250, n(rng_) % 5);
    }
    log_line out;
    out.labels = {{"host", device_id}, {"job", "syslog"}, {"unit", unit}};
    out.timestamp_ns = ts_ns;
    out.line = buf;
    return out;
  }

  std::mt19937_64 rng_;
  std::vector<series_def> defs_;
  node_values values_{{}};
  std::vector<std::string> keys_;
  int64_t lines_per_round_ = 0;
};

// -- SQLite, read-only --------------------------------------------------------

/// A connection to a store another thread may still write (WAL).
sqlite::database open_db(const std::string& path) {
  auto db = sqlite::database::open(path);
  if (!db)
    fail(render(db.error()));
  return std::move(*db);
}

/// Runs `sql` with text parameter ?1 = `arg` (when not null) and calls `row`
/// for every result row.
void each(sqlite::database& db, const std::string& sql, const char* arg,
          const std::function<void(sqlite::statement&)>& row) {
  auto st = db.prepare(sql);
  if (!st)
    fail(render(st.error()));
  if (arg)
    st->bind(1, std::string_view{arg});
  if (auto err = sqlite::each_row(*st, row))
    fail("query " + sql + ": " + render(err));
}

// -- comparing ----------------------------------------------------------------

struct tally {
  int64_t lost = 0;
  int64_t duplicated = 0;
  int64_t unexpected = 0;

  tally& operator+=(const tally& y) {
    lost += y.lost;
    duplicated += y.duplicated;
    unexpected += y.unexpected;
    return *this;
  }
};

/// Multiset difference of sorted `want` (device) and `got` (cloud).
template <class T>
tally compare_sorted(const std::vector<T>& want, const std::vector<T>& got) {
  tally out;
  size_t i = 0;
  size_t j = 0;
  while (i < want.size() || j < got.size()) {
    if (j == got.size() || (i < want.size() && want[i] < got[j])) {
      ++out.lost;
      ++i;
    } else if (i == want.size() || got[j] < want[i]) {
      // Cloud rows the device never stored; duplicates of them too.
      ++out.unexpected;
      ++j;
    } else {
      auto& k = want[i];
      int64_t a = 0;
      int64_t b = 0;
      for (; i < want.size() && want[i] == k; ++i)
        ++a;
      for (; j < got.size() && got[j] == k; ++j)
        ++b;
      out.lost += std::max<int64_t>(0, a - b);
      out.duplicated += std::max<int64_t>(0, b - a);
    }
  }
  return out;
}

/// The device's records, sorted, as the cloud must hold them.
struct ground_truth {
  std::vector<point_key> points;
  std::vector<std::string> logs;
  std::vector<std::string> events;
  std::map<std::string, uint32_t> series; // key -> index
};

tally compare_cloud(const std::string& cloud_db, const ground_truth& want,
                    const std::string& stored_id) {
  auto db = open_db(cloud_db);
  std::vector<point_key> points;
  points.reserve(want.points.size());
  tally out;
  each(db,
       "SELECT s.name, s.labels, p.ts, p.bits FROM points p JOIN series s "
       "ON s.id = p.series_id WHERE p.device_id = ?1",
       stored_id.c_str(), [&](sqlite::statement& st) {
         auto key = st.column_text(0) + '\0' + st.column_blob(1);
         auto i = want.series.find(key);
         if (i == want.series.end()) {
           ++out.unexpected;
           return;
         }
         points.push_back(
           {i->second, st.column_int(2), bits_of(st.column_exact(3))});
       });
  std::sort(points.begin(), points.end());
  out += compare_sorted(want.points, points);
  points = {};
  std::vector<std::string> logs;
  each(db, "SELECT ts, labels, line FROM logs WHERE device_id = ?1",
       stored_id.c_str(), [&](sqlite::statement& st) {
         logs.push_back(
           log_key(st.column_int(0), st.column_blob(1), st.column_text(2)));
       });
  std::sort(logs.begin(), logs.end());
  out += compare_sorted(want.logs, logs);
  std::vector<std::string> events;
  each(db, "SELECT ts, kind, message FROM events WHERE device_id = ?1",
       stored_id.c_str(), [&](sqlite::statement& st) {
         events.push_back(
           event_key(st.column_int(0), st.column_text(1), st.column_text(2)));
       });
  std::sort(events.begin(), events.end());
  out += compare_sorted(want.events, events);
  return out;
}

// -- actors -------------------------------------------------------------------

/// Every actor and server of one round; stops them in reverse order.
int64_t drops_of(const actor_stats& st) {
  int64_t n = 0;
  for (auto& kv : st.counters)
    if (kv.first.rfind("dropped_", 0) == 0)
      n += kv.second;
  return n;
}

// -- the naive sender ---------------------------------------------------------

struct naive_run {
  double seconds = 0;
  int64_t bytes = 0;
  int64_t metrics_bytes = 0;
  int64_t requests = 0;
};

naive_run send_naive(uint16_t port, const transport& t,
                     const device_data& data, const ground_truth& truth,
                     const log_lines& logs, const event_records& events,
                     int64_t batch_size, int zstd_level) {
  naive_run out;
  http_client client("127.0.0.1", port, link_timeout, 1024 * 1024);
  if (!t.plain)
    if (auto err = client.use_tls(t.pki.client))
      fail("naive sender: " + render(err));
  std::map<std::string, int64_t> sequence;
  auto post = [&](const std::string& stream, const std::string& body) {
    std::vector<std::pair<std::string, std::string>> headers{
      {"Content-Type", "application/x-protobuf"}};
    if (is_zstd(body))
      headers.emplace_back("Content-Encoding", "zstd");
    if (!t.authorization.empty())
      headers.emplace_back("Authorization", t.authorization);
    auto res = client.post("/v1/sync", body, headers);
    if (!res)
      fail("naive sender: " + render(res.error()));
    auto ack = decode_response(res->body);
    if (res->status != 200 || !ack || !ack->success
        || ack->last_sequence_ack != sequence[stream])
      fail("naive sender: HTTP " + std::to_string(res->status) + " for "
           + stream + " batch " + std::to_string(sequence[stream]));
    out.bytes += static_cast<int64_t>(body.size());
    ++out.requests;
  };
  auto settings = [&](const std::string& stream) {
    encode_settings es;
    es.device_id = device_id;
    es.sequence = ++sequence[stream];
    es.epoch = "naive";
    es.now_ms = start_ms;
    es.zstd_level = zstd_level;
    return es;
  };
  auto n = static_cast<size_t>(batch_size);
  // The points in the order the device stored them (truth.points is sorted),
  // found before the clock starts.
  std::vector<const point_key*> order;
  order.reserve(truth.points.size());
  for (auto& p : truth.points)
    order.push_back(&p);
  std::stable_sort(order.begin(), order.end(),
                   [](const point_key* a, const point_key* b) {
                     return a->ts < b->ts;
                   });
  auto t0 = steady_clock::now();
  for (size_t i = 0; i < events.size(); i += n) {
    event_records xs(events.begin() + i,
                     events.begin() + std::min(events.size(), i + n));
    post(events_stream, encode_events_request(settings(events_stream), xs));
  }
  auto& defs = data.defs();
  metric_samples batch;
  auto send_points = [&] {
    auto body = encode_metrics_request(settings(metrics_stream), batch);
    out.metrics_bytes += static_cast<int64_t>(body.size());
    post(metrics_stream, body);
    batch.clear();
  };
  for (auto* p : order) {
    auto& d = defs[p->series];
    double v;
    std::memcpy(&v, &p->bits, sizeof(v));
    batch.push_back({d.name, d.labels, p->ts, v});
    if (batch.size() == n)
      send_points();
  }
  if (!batch.empty())
    send_points();
  for (size_t i = 0; i < logs.size(); i += n) {
    log_lines xs(logs.begin() + i, logs.begin() + std::min(logs.size(), i + n));
    post(logs_stream, encode_logs_request(settings(logs_stream), xs));
  }
  out.seconds = seconds_since(t0);
  return out;
}

// -- one round ----------------------------------------------------------------

void progress(const outage_options& opt, const std::string& text) {
  if (opt.progress)
    std::cerr << "outage: " << text << std::endl;
}

/// The device's actors in one world: tier-1 store, link, backoff, syncs.
struct device {
  storage_actor st;
  cloud_link_actor link;
  backoff_actor bck;
  std::map<std::string, sync_actor> syncs;
  uint16_t port = 0;
};

device start_device(world& w, const clock_ptr& clock,
                    const std::string& path, const transport& t) {
  device d;
  sqlite_store_config scfg;
  scfg.path = path;
  scfg.clock = clock;
  scfg.limits.max_bytes = tier1.storage_bytes;
  scfg.limits.retention_ms = tier1.retention_ms;
  auto store = sqlite_store::open(scfg);
  if (!store)
    fail("sqlite_store::open(" + path + "): " + render(store.error()));
  d.st = w.keep("storage",
                w.sys.spawn<caf::detached>(
                  storage, std::make_shared<sqlite_store>(std::move(*store))));
  d.port = reserve_port();
  cloud_link_config lcfg;
  lcfg.host = "127.0.0.1";
  lcfg.port = d.port;
  lcfg.timeout = link_timeout;
  lcfg.insecure = t.plain;
  lcfg.tls = t.pki.client;
  lcfg.key_file = t.key_file;
  lcfg.device_id = device_id;
  d.link = w.keep("cloud_link", w.sys.spawn<caf::detached>(cloud_link, lcfg));
  backoff_config bcfg;
  bcfg.base = backoff_base;
  bcfg.cap = backoff_cap;
  bcfg.breaker_threshold = 3;
  bcfg.seed = 1;
  bcfg.clock = clock;
  bcfg.storage = d.st;
  d.bck = w.keep("backoff", w.sys.spawn(backoff, bcfg));
  return d;
}

// The sync actors, events first as edge/main.cpp spawns them.
void start_syncs(world& w, const outage_options& opt, const clock_ptr& clock,
                 device& d) {
  for (auto stream : {events_stream, metrics_stream, logs_stream}) {
    sync_config ycfg;
    ycfg.device_id = device_id;
    ycfg.stream = stream;
    ycfg.interval = std::chrono::milliseconds(tier1.sync_interval_ms);
    ycfg.batch_size = opt.batch_size;
    ycfg.zstd_level = opt.zstd_level;
    ycfg.request_timeout = link_timeout * 2 + std::chrono::seconds(1);
    ycfg.clock = clock;
    ycfg.storage = d.st;
    ycfg.link = d.link;
    ycfg.backoff = d.bck;
    d.syncs[stream] = w.keep(std::string("sync_") + stream,
                             w.sys.spawn(fleetd::sync, ycfg));
  }
}

// The rounds of data stored while the cloud is away (the syncs start after
// the first round, as on a device that boots without a network).
void fill(world& w, const outage_options& opt, const std::shared_ptr<manual_clock>& clock,
          device_data& data, int64_t rounds, device& d, ground_truth& truth,
          log_lines& all_logs, outage_result& res) {
  progress(opt, "filling " + std::to_string(rounds) + " rounds of "
                  + std::to_string(opt.series) + " series + "
                  + std::to_string(opt.log_lines_per_round)
                  + " log lines while the cloud is away (port "
                  + std::to_string(d.port) + ")");
  truth.points.reserve(static_cast<size_t>(rounds * opt.series));
  all_logs.reserve(static_cast<size_t>(rounds * opt.log_lines_per_round));
  metric_samples xs;
  log_lines lines;
  auto t_fill = steady_clock::now();
  for (int64_t r = 0; r < rounds; ++r) {
    data.round(r, xs, lines, truth.points);
    if (!xs.empty()
        && w.ask<int64_t>(d.st, store_atom::value, xs)
             != static_cast<int64_t>(xs.size()))
      fail("the device did not store every point of round "
           + std::to_string(r));
    if (!lines.empty()
        && w.ask<int64_t>(d.st, store_atom::value, lines)
             != static_cast<int64_t>(lines.size()))
      fail("the device did not store every log line of round "
           + std::to_string(r));
    for (auto& l : lines) {
      truth.logs.push_back(
        log_key(l.timestamp_ns, encode_labels(l.labels), l.line));
      all_logs.push_back(std::move(l));
    }
    if (r == 0)
      start_syncs(w, opt, clock, d);
    clock->set(start_ms + (r + 1) * round_ms);
    if (opt.progress && rounds >= 10 && (r + 1) % (rounds / 10) == 0)
      progress(opt, "  " + std::to_string(r + 1) + "/" + std::to_string(rounds)
                      + " rounds stored, " + format(seconds_since(t_fill), 1)
                      + " s");
  }
  res.fill_s = seconds_since(t_fill);
  res.points = static_cast<int64_t>(truth.points.size());
  res.log_lines = static_cast<int64_t>(truth.logs.size());
}

// A real outage of hours opens the breaker. The retries run on real timers
// that wait out clock time, so a short (fast) fill may end before the third
// failure, and with the clock standing still no retry would ever come: move
// the clock to the end of each backoff window until the breaker opens.
// Returns each sync actor's statistics at the end of the outage.
std::map<std::string, actor_stats>
wait_offline(world& w, const outage_options& opt, const std::shared_ptr<manual_clock>& clock,
             const std::string& device_db, device& d, outage_result& res) {
  auto t_offline = steady_clock::now();
  while (w.stats(d.bck).counters["went_offline"] == 0) {
    if (seconds_since(t_offline) > 60)
      fail("the link never went offline: " + w.stats(d.bck).state);
    auto ls = w.ask<link_status>(d.bck, link_atom::value);
    if (ls.next_attempt_ms > clock->now_ms())
      clock->set(ls.next_attempt_ms);
    std::this_thread::sleep_for(20ms);
  }
  std::map<std::string, actor_stats> before;
  for (auto& kv : d.syncs)
    before[kv.first] = w.stats(kv.second);
  for (auto& kv : before)
    res.outage_send_failures += kv.second.counters["send_failures"];
  auto bstats = w.stats(d.bck);
  res.went_offline = bstats.counters["went_offline"];
  progress(opt, "stored in " + format(res.fill_s, 1) + " s; link "
                  + bstats.state + ", "
                  + std::to_string(res.outage_send_failures) + " failed sends");
  if (res.outage_send_failures == 0)
    fail("the sync actors never tried the link during the outage");
  // The backoff sent link_offline to storage before it counted went_offline;
  // a request queued behind it in storage's mailbox returns once it is stored.
  w.stats(d.st);
  auto dev = open_db(device_db);
  each(dev, "SELECT count(*) FROM events", nullptr,
       [&](sqlite::statement& s) { res.backlog_events = s.column_int(0); });
  return before;
}

/// From the reconnect on, the manual clock runs with the wall clock: a wait
/// the cloud asks for (429's retry_after_ms, 503) or a backoff after a failed
/// exchange then ends as it would on a device, instead of never.
class clock_follower {
public:
  explicit clock_follower(std::shared_ptr<manual_clock> clock)
    : clock_(std::move(clock)),
      base_ms_(clock_->now_ms()),
      t0_(steady_clock::now()) {
    // nop
  }

  void operator()() const {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                steady_clock::now() - t0_)
                .count();
    clock_->set(std::max(clock_->now_ms(), base_ms_ + ms));
  }

private:
  std::shared_ptr<manual_clock> clock_;
  int64_t base_ms_;
  steady_clock::time_point t0_;
};

// What the device and the cloud say when the drain takes too long.
std::string drain_state(world& w, device& d) {
  std::string out = "backoff: " + w.stats(d.bck).state
                    + "; cloud_link: " + w.stats(d.link).state + "; ingest:";
  for (auto& kv : w.stats(w.ingest_hdl).counters)
    if (kv.first.rfind("rejected_", 0) == 0 || kv.first == "accepted"
        || kv.first == "store_failures")
      out += " " + kv.first + "=" + std::to_string(kv.second);
  return out;
}

// The cloud comes up on the port the link knows; waits until every stream
// synced its backlog.
void drain(world& w, const outage_options& opt,
           const std::shared_ptr<manual_clock>& clock,
           const std::string& cloud_db, const transport& t, device& d,
           outage_result& res) {
  w.start_cloud(cloud_db, clock, d.port, t);
  clock->advance(std::chrono::milliseconds(backoff_cap).count() + 1000);
  progress(opt, "cloud up on port " + std::to_string(d.port) + "; draining");
  clock_follower follow(clock);
  auto t_drain = steady_clock::now();
  for (auto stream : {events_stream, metrics_stream, logs_stream})
    w.self->send(d.syncs[stream], tick_atom::value);
  auto want = std::map<std::string, int64_t>{{events_stream, res.backlog_events},
                                             {metrics_stream, res.points},
                                             {logs_stream, res.log_lines}};
  for (;;) {
    bool done = true;
    for (auto& kv : want)
      if (w.stats(d.syncs[kv.first]).counters["records_synced"] < kv.second)
        done = false;
    if (done)
      break;
    if (seconds_since(t_drain) > opt.drain_timeout_s)
      fail("backlog not drained after " + format(opt.drain_timeout_s, 0)
           + " s; " + drain_state(w, d));
    follow();
    std::this_thread::sleep_for(5ms);
  }
  res.drain_s = seconds_since(t_drain);
  progress(opt, "drained in " + format(res.drain_s, 2) + " s");
}

// Events recorded since (link_online) go with one more round; then the
// device holds nothing unsynced, and its drops are counted.
void flush(world& w, const std::shared_ptr<manual_clock>& clock, device& d,
           outage_result& res) {
  clock_follower follow(clock);
  auto t_flush = steady_clock::now();
  for (;;) {
    follow();
    auto s = w.stats(d.st);
    if (s.counters["queued_batches"] == 0 && s.counters["unbatched_points"] == 0
        && s.counters["unbatched_logs"] == 0
        && s.counters["unbatched_events"] == 0) {
      res.device_drops = drops_of(s);
      return;
    }
    if (seconds_since(t_flush) > 60)
      fail("the device still holds unsynced records a minute after the "
           "drain: queued_batches="
           + std::to_string(s.counters["queued_batches"]) + " unbatched="
           + std::to_string(s.counters["unbatched_points"]) + "/"
           + std::to_string(s.counters["unbatched_logs"]) + "/"
           + std::to_string(s.counters["unbatched_events"]));
    w.self->send(d.syncs[events_stream], tick_atom::value);
    std::this_thread::sleep_for(100ms);
  }
}

// Batches and bytes each stream sent after the reconnect.
void count_sent(world& w, const outage_options& opt, device& d,
                const std::map<std::string, actor_stats>& before,
                outage_result& res) {
  for (auto& kv : d.syncs) {
    auto s = w.stats(kv.second);
    auto sent = s.counters["bytes_sent"]
                - before.at(kv.first).counters.at("bytes_sent");
    res.batches += s.counters["batches_acked"];
    if (kv.first == metrics_stream) {
      res.metrics_bytes_sent = sent;
      res.metrics_batches = s.counters["batches_acked"];
    }
    progress(opt, "  " + kv.first + ": "
                    + std::to_string(s.counters["records_synced"])
                    + " records in "
                    + std::to_string(s.counters["batches_acked"])
                    + " batches, " + std::to_string(sent)
                    + " bytes after the reconnect, "
                    + std::to_string(s.counters["send_failures"]
                                     - before.at(kv.first).counters.at(
                                       "send_failures"))
                    + " failed sends after it");
  }
  auto lstats = w.stats(d.link);
  res.bytes_sent = lstats.counters["bytes_sent"];
  res.requests = lstats.counters["requests"] - lstats.counters["failures"];
  res.over_quota = w.stats(w.ingest_hdl).counters["rejected_over_quota"];
  if (w.tenancy_hdl)
    res.authenticated = w.stats(w.tenancy_hdl).counters["auth_ok"];
}

// The device's events, in the order it recorded them (the naive sender's
// order too).
event_records device_events(const std::string& device_db,
                            ground_truth& truth) {
  event_records events;
  auto dev = open_db(device_db);
  each(dev, "SELECT ts, kind, message FROM events ORDER BY id", nullptr,
       [&](sqlite::statement& st) {
         event_record e;
         e.timestamp_ms = st.column_int(0);
         e.kind = st.column_text(1);
         e.message = st.column_text(2);
         truth.events.push_back(event_key(e.timestamp_ms, e.kind, e.message));
         events.push_back(std::move(e));
       });
  return events;
}

// The naive sender: the same records to a fresh cloud.
void run_baseline(const outage_options& opt, const clock_ptr& clock,
                  const transport& t, const device_data& data,
                  const ground_truth& truth, const log_lines& all_logs,
                  const event_records& events, outage_result& res) {
  auto naive_db = opt.dir + "/naive-cloud.db";
  {
    world w;
    auto port = w.start_cloud(naive_db, clock, 0, t);
    auto nv = send_naive(port, t, data, truth, all_logs, events,
                         opt.batch_size, opt.zstd_level);
    res.naive_drain_s = nv.seconds;
    res.naive_bytes_sent = nv.bytes;
    res.naive_metrics_bytes_sent = nv.metrics_bytes;
    res.naive_requests = nv.requests;
  }
  auto nt = compare_cloud(naive_db, truth, t.stored_id);
  res.naive_records_lost = nt.lost;
  res.naive_records_duplicated = nt.duplicated + nt.unexpected;
  progress(opt, "naive sender: " + format(res.naive_drain_s, 2) + " s, "
                  + std::to_string(res.naive_bytes_sent) + " bytes, lost "
                  + std::to_string(nt.lost) + ", duplicated "
                  + std::to_string(res.naive_records_duplicated));
}

void run_round(const outage_options& opt, outage_result& res) {
  auto rounds = static_cast<int64_t>(std::llround(opt.hours * 3600 * 1000
                                                  / round_ms));
  if (rounds < 1)
    fail("--hours too small: not one 10 s round");
  res.rounds_of_data = rounds;
  auto clock = std::make_shared<manual_clock>(start_ms);
  auto device_db = opt.dir + "/device.db";
  auto cloud_db = opt.dir + "/cloud.db";
  device_data data(opt.series, opt.log_lines_per_round);
  ground_truth truth;
  for (size_t i = 0; i < data.keys().size(); ++i)
    truth.series.emplace(data.keys()[i], static_cast<uint32_t>(i));
  log_lines all_logs;
  auto t = make_transport(opt.dir, opt.plain, opt.quota_pps, clock,
                          device_id, org_name);
  res.stored_as = t.stored_id;
  {
    world w;
    auto d = start_device(w, clock, device_db, t);
    fill(w, opt, clock, data, rounds, d, truth, all_logs, res);
    auto before = wait_offline(w, opt, clock, device_db, d, res);
    drain(w, opt, clock, cloud_db, t, d, res);
    flush(w, clock, d, res);
    count_sent(w, opt, d, before, res);
    progress(opt, std::string(t.plain ? "plain HTTP, anonymous" : "HTTPS")
                    + ": stored as " + t.stored_id + ", "
                    + std::to_string(res.authenticated)
                    + " requests authenticated by key, "
                    + std::to_string(res.over_quota) + " over quota");
  } // every actor of the device and the cloud stops here
  auto events = device_events(device_db, truth);
  res.events = static_cast<int64_t>(truth.events.size());
  std::sort(truth.points.begin(), truth.points.end());
  std::sort(truth.logs.begin(), truth.logs.end());
  std::sort(truth.events.begin(), truth.events.end());
  auto got = compare_cloud(cloud_db, truth, t.stored_id);
  res.records_lost = got.lost;
  res.records_duplicated = got.duplicated;
  res.records_unexpected = got.unexpected;
  progress(opt, "compared: lost " + std::to_string(got.lost)
                  + ", duplicated " + std::to_string(got.duplicated)
                  + ", unexpected " + std::to_string(got.unexpected));
  if (opt.baseline)
    run_baseline(opt, clock, t, data, truth, all_logs, events, res);
}

// -- driver -------------------------------------------------------------------

struct cli_options {
  outage_options run;
  int64_t rounds = 3;
};

// Returns an error message, empty when the arguments are fine.
std::string parse(const std::vector<std::string>& args, cli_options& opt) {
  arg_cursor cur(args);
  while (cur.next()) {
    auto arg = cur.name();
    std::string value;
    auto need_value = [&] { return cur.value(value); };
    if (arg == "--hours") {
      if (!need_value())
        return arg + ": missing value";
      double v = 0;
      if (!parse_double(value, v) || v <= 0 || v > 24 * 30)
        return arg + ": expected hours in (0, 720], got '" + value + "'";
      opt.run.hours = v;
    } else if (arg == "--series" || arg == "--log-lines-per-round"
               || arg == "--rounds" || arg == "--batch-size"
               || arg == "--quota-pps") {
      if (!need_value())
        return arg + ": missing value";
      int64_t v = 0;
      bool zero_ok = arg == "--log-lines-per-round";
      if (!parse_int(value, v) || v < (zero_ok ? 0 : 1) || v > 100000)
        return arg + ": expected an integer in [" + (zero_ok ? "0" : "1")
               + ", 100000], got '" + value + "'";
      if (arg == "--series")
        opt.run.series = v;
      else if (arg == "--log-lines-per-round")
        opt.run.log_lines_per_round = v;
      else if (arg == "--rounds")
        opt.rounds = v;
      else if (arg == "--quota-pps")
        opt.run.quota_pps = v;
      else
        opt.run.batch_size = v;
    } else if (arg == "--dir") {
      if (!need_value() || value.empty())
        return "--dir: missing value";
      opt.run.dir = value;
    } else if (arg == "--no-baseline") {
      opt.run.baseline = false;
    } else if (arg == "--plain") {
      opt.run.plain = true;
    } else {
      return "unknown argument '" + arg + "'";
    }
  }
  if (opt.run.plain && opt.run.quota_pps > 0)
    return "--quota-pps: the org's quota needs HTTPS with a key, not --plain";
  // The naive sender does not wait out 429s: no baseline under a quota.
  if (opt.run.quota_pps > 0)
    opt.run.baseline = false;
  return {};
}

// Prints the BENCH line (medians; records_*: the worst round); true when a
// round lost, duplicated or invented records.
bool print_bench_line(const cli_options& opt,
                      const std::vector<outage_result>& results) {
  auto med = [&](auto field) {
    std::vector<double> xs;
    for (auto& x : results)
      xs.push_back(field(x));
    return median(xs);
  };
  auto& last = results.back();
  auto points = static_cast<double>(last.points);
  auto drain = med([](auto& x) { return x.drain_s; });
  auto bytes = med([](auto& x) { return double(x.bytes_sent); });
  auto naive_bytes = med([](auto& x) { return double(x.naive_bytes_sent); });
  auto mbytes = med([](auto& x) { return double(x.metrics_bytes_sent); });
  auto naive_mbytes
    = med([](auto& x) { return double(x.naive_metrics_bytes_sent); });
  auto naive_drain = med([](auto& x) { return x.naive_drain_s; });
  int64_t lost = 0;
  int64_t dup = 0;
  int64_t unexpected = 0;
  for (auto& x : results) {
    lost = std::max(lost, x.records_lost);
    dup = std::max(dup, x.records_duplicated);
    unexpected = std::max(unexpected, x.records_unexpected);
  }
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
  auto whole = opt.run.hours == std::floor(opt.run.hours);
  std::cout << "BENCH outage hours=" << format(opt.run.hours, whole ? 0 : 2)
            << " transport=" << (opt.run.plain ? "http" : "https")
            << " series=" << opt.run.series
            << " log_lines_per_round=" << opt.run.log_lines_per_round
            << " points=" << last.points << " log_lines=" << last.log_lines
            << " events=" << last.events << " batches=" << last.batches
            << " batch=" << opt.run.batch_size << " stat=median"
            << " drain_s=" << format(drain, 2)
            << " bytes_sent=" << format(bytes, 0)
            << " bytes_per_point=" << format(ratio(bytes, points), 3)
            << " naive_bytes_sent=" << format(naive_bytes, 0)
            << " bytes_ratio=" << format(ratio(naive_bytes, bytes), 2)
            << " metrics_bytes_per_point=" << format(ratio(mbytes, points), 3)
            << " naive_metrics_bytes_per_point="
            << format(ratio(naive_mbytes, points), 3)
            << " metrics_bytes_ratio=" << format(ratio(naive_mbytes, mbytes), 2)
            << " naive_drain_s=" << format(naive_drain, 2)
            << " drain_ratio=" << format(ratio(naive_drain, drain), 3)
            << " fill_s=" << format(med([](auto& x) { return x.fill_s; }), 1)
            << " records_lost=" << lost << " records_duplicated=" << dup
            << " records_unexpected=" << unexpected;
  if (opt.run.quota_pps > 0)
    std::cout << " quota_pps=" << opt.run.quota_pps << " over_quota="
              << format(med([](auto& x) { return double(x.over_quota); }), 0);
  std::cout << " rounds=" << results.size() << std::endl;
  return lost != 0 || dup != 0 || unexpected != 0;
}

} // namespace

outage_result run_outage_round(const outage_options& opt) {
  outage_result res;
  try {
    run_round(opt, res);
  } catch (const bench_failure& x) {
    res.error = x.what;
  }
  return res;
}

std::string outage_usage() {
  return "usage: fleetd-bench outage [--hours H] [--series N] "
         "[--log-lines-per-round L]\n"
         "                           [--rounds R] [--batch-size B] [--dir DIR] "
         "[--no-baseline]\n"
         "                           [--plain] [--quota-pps N]\n\n"
         "Runs one device (sqlite_store with tier 1 caps behind the storage "
         "actor, cloud\nlink, backoff actor, sync actors for events, metrics "
         "and logs; batches of B,\nzstd-3) through an outage of H hours of "
         "an injected clock: every 10 s it\nstores one scrape of N "
         "node_exporter-like series and L log lines, while its\nsync actors "
         "fail against a closed port and its breaker opens. Then a cloud\n"
         "(embedded store, ingest, Beast endpoint) starts on that port, the "
         "clock moves\npast the backoff window and the sync actors get a "
         "tick; drain_s is the wall\ntime until every record stored before "
         "the reconnect is acked (target: <= 60 s\nfor 24 h). Every point, "
         "log line and event the device holds must then be in\nthe cloud "
         "store exactly once; otherwise the command exits 1.\n\n"
         "Prints one line on stdout (medians over the rounds):\n\n"
         "  BENCH outage hours=H transport=https|http series=N log_lines_per_round=L points=.. "
         "log_lines=..\n"
         "    events=.. batches=.. batch=B stat=median drain_s=.. "
         "bytes_sent=..\n"
         "    bytes_per_point=.. naive_bytes_sent=.. bytes_ratio=..\n"
         "    metrics_bytes_per_point=.. naive_metrics_bytes_per_point=.. "
         "metrics_bytes_ratio=..\n"
         "    naive_drain_s=.. drain_ratio=.. fill_s=.. records_lost=0\n"
         "    records_duplicated=0 records_unexpected=0 rounds=R\n\n"
         "fill_s is the wall time of storing the outage's data (not part of "
         "the result).\nrecords_*: the worst round.\n\n"
         "bytes_sent: request bodies that reached the cloud (the cloud "
         "link's count),\nall streams; bytes_per_point = bytes_sent / "
         "points (logs included).\n\n"
         "Baseline (naive_*): the same records sent to a fresh cloud of the "
         "same code as\na simple sender would: metrics as SyncRequests of "
         "format version 1\n(MetricsBatch protobuf columns, the seed's "
         "simple-sender format: every series'\nname and labels in every "
         "batch, timestamps and values as plain protobuf\nfields), logs and "
         "events as LogsBatch/EventsBatch (no simpler format exists),\nB "
         "records per request, zstd-3, one request at a time on one "
         "keep-alive\nconnection, straight from memory: no store to read, "
         "no queue to persist, no\nbackoff. Its bytes are what the wire "
         "format saves (bytes_ratio = naive_bytes_sent\n/ bytes_sent, "
         "metrics_bytes_ratio the same for the metrics stream alone); its\n"
         "time is a floor for any sender through this cloud (drain_ratio = "
         "naive_drain_s /\ndrain_s; below 1 means the device is slower than "
         "that floor).\n\n"
         "options:\n"
         "  --hours H                 outage length in clock hours "
         "(default 24)\n"
         "  --series N                series per scrape (default 100)\n"
         "  --log-lines-per-round L   log lines per 10 s (default 10: one a "
         "second)\n"
         "  --rounds R                repetitions, each from fresh databases "
         "(default 3;\n"
         "                            one 24 h round takes about 30 s on 2 "
         "cores)\n"
         "  --batch-size B            records per batch (default 1000, tier "
         "1)\n"
         "  --dir DIR                 where the databases go (default a "
         "fresh directory\n"
         "                            under $TMPDIR or /var/tmp, removed "
         "afterwards); fsync\n"
         "                            cost depends on the disk\n"
         "  --no-baseline             skip the naive sender\n"
         "  --plain                   plain HTTP and no device key (the "
         "cloud's\n"
         "                            ingest.anonymous), for the device and "
         "the naive\n"
         "                            sender; default: HTTPS with the "
         "device's key\n"
         "  --quota-pps N             the org's points-per-second quota "
         "(default none):\n"
         "                            the device drains at that pace, "
         "through 429s\n"
         "                            (no baseline: the naive sender does "
         "not wait\n"
         "                            them out)\n";
}

int run_outage_bench(const std::vector<std::string>& args) {
  cli_options opt;
  if (auto err = parse(args, opt); !err.empty()) {
    std::cerr << "fleetd-bench outage: " << err
              << "; see fleetd-bench outage --help" << std::endl;
    return 2;
  }
  // The outage's expected warnings (connection refused, link offline) once.
  logger::init(log_level::error, "");
  namespace fs = std::filesystem;
  bool own_dir = false;
  if (auto err = prepare_dir(opt.run.dir, own_dir); !err.empty()) {
    std::cerr << "fleetd-bench outage: " << err << std::endl;
    return 1;
  }
  auto top = opt.run.dir;
  std::vector<outage_result> results;
  int rc = 0;
  auto t0 = steady_clock::now();
  for (int64_t r = 0; r < opt.rounds; ++r) {
    auto ropt = opt.run;
    ropt.dir = top + "/round-" + std::to_string(r + 1);
    std::error_code ec;
    fs::remove_all(ropt.dir, ec);
    fs::create_directories(ropt.dir, ec);
    auto res = run_outage_round(ropt);
    fs::remove_all(ropt.dir, ec);
    if (!res.error.empty()) {
      std::cerr << "fleetd-bench outage: round " << (r + 1) << ": "
                << res.error << std::endl;
      rc = 1;
      break;
    }
    std::cerr << "round " << (r + 1) << "/" << opt.rounds << ": drain "
              << format(res.drain_s, 2) << " s, " << res.bytes_sent
              << " bytes (naive " << format(res.naive_drain_s, 2) << " s, "
              << res.naive_bytes_sent << " bytes), fill "
              << format(res.fill_s, 1) << " s, lost " << res.records_lost
              << ", duplicated " << res.records_duplicated << ", unexpected "
              << res.records_unexpected << "; "
              << format(seconds_since(t0), 1) << " s so far" << std::endl;
    results.push_back(res);
  }
  if (own_dir) {
    std::error_code ec;
    fs::remove_all(top, ec);
  }
  if (results.empty())
    return rc;
  if (print_bench_line(opt, results))
    rc = 1;
  return rc;
}

} // namespace fleetd::bench
