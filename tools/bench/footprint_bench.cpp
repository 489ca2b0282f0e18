#include "tools/bench/footprint_bench.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include <signal.h>

#include "edge/cloud_link.hpp"
#include "edge/node_metrics.hpp"
#include "fault_proxy.hpp"
#include "messages/error.hpp"
#include "messages/stream_codec.hpp"
#include "messages/wire.hpp"
#include "runtime/http_client.hpp"
#include "runtime/sqlite.hpp"
#include "tools/bench/bench_util.hpp"
#include "tools/bench/install_size.hpp"
#include "tools/pg_server/process.hpp"
#include "tools/pg_server/waiting.hpp"
#include "tools/vm_server/vm_server.hpp"

namespace fleetd::bench {

const char* footprint_summary
  = "fleetd (system collector + synthetic series, 100 every 10 s, a log "
    "line a second)\n      against fleetd-cloud, beside vmagent scraping "
    "node_exporter into VictoriaMetrics:\n      CPU, memory, disk and wire "
    "bytes per sample, resume after an outage";

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int64_t round_s = 10;
constexpr const char* node_exporter_program = "/usr/bin/prometheus-node-exporter";
constexpr const char* vmagent_program = "/usr/bin/vmagent";

void progress(const footprint_options& opt, const std::string& text) {
  if (opt.progress)
    std::cerr << "footprint: " << text << std::endl;
}

// -- processes ----------------------------------------------------------------

// "key: number" of /proc/PID/<file> (status: VmHWM in kB; io: write_bytes).
int64_t proc_field(pid_t pid, const char* file, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size() + 1, key + ":") == 0)
      return std::stoll(line.substr(key.size() + 1));
  fail("/proc/" + std::to_string(pid) + "/" + file + ": no " + key);
}

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
struct child {
  pid_t pid = -1;
  std::string log;
  std::string name;
  child(std::vector<std::string> argv, std::string log_file)
    : log(std::move(log_file)) {
    child_spec spec;
    spec.argv = std::move(argv);
    spec.log = log;
    spec.cwd = "/";
    name = spec.argv.front();
    pid = spawn(spec);
    if (pid < 0)
      fail("cannot start " + spec.argv.front());
  }
  ~child() {
    end();
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  void end() {
    if (pid > 0)
      stop(pid, SIGTERM);
    pid = -1;
  }
  void check_alive() const {
    if (auto status = pid > 0 ? wait_for_child(pid, milliseconds(0))
                              : std::nullopt)
      fail(name + " exited early (status " + std::to_string(*status)
           + "); its log:\n" + read_tail(log));
  }
};

uint16_t wait_port_file(const std::string& file, const child& c) {
  int port = 0;
  poll_until(
    [&] {
      c.check_alive();
      std::ifstream in(file);
      return static_cast<bool>(in >> port) && port > 0;
    },
    milliseconds(30'000));
  if (port <= 0)
    fail(file + " never appeared; log:\n" + read_tail(c.log));
  return static_cast<uint16_t>(port);
}

std::string http_get(uint16_t port, const std::string& target) {
  http_client client("127.0.0.1", port, milliseconds(5000), 64 << 20);
  auto res = client.get(target);
  if (!res || res->status != 200)
    return {};
  return res->body;
}

// -- fleetd's side ------------------------------------------------------------

/// Counters of one actor in `fleetctl status --json` output (-1: absent).
int64_t counter_of(const std::string& json, const std::string& actor,
                   const std::string& name) {
  auto at = json.find("\"name\":\"" + actor + "\"");
  if (at == std::string::npos)
    return -1;
  auto end = json.find("\"name\":", at + 8);
  auto key = json.find("\"" + name + "\":", at);
  if (key == std::string::npos || key > end)
    return -1;
  return std::stoll(json.substr(key + name.size() + 3));
}

/// `name` summed over the actors whose names start with `prefix` (0: none).
int64_t counter_sum(const std::string& json, const std::string& prefix,
                    const std::string& name) {
  int64_t sum = 0;
  for (auto at = json.find("\"name\":\"" + prefix); at != std::string::npos;
       at = json.find("\"name\":\"" + prefix, at + 1)) {
    auto actor = json.substr(at + 8, json.find('"', at + 8) - at - 8);
    sum += std::max<int64_t>(0, counter_of(json, actor, name));
  }
  return sum;
}

struct device_counters {
  int64_t rounds = 0; // the fewest of the round-limited collectors'
  int64_t samples = 0;
  int64_t log_lines = 0;
};

device_counters read_device(const std::string& bin_dir, uint16_t console,
                            const std::string& scratch) {
  child_spec spec;
  spec.argv = {bin_dir + "/fleetctl", "--node=127.0.0.1:" + std::to_string(console),
               "--json", "status"};
  spec.log = scratch + "/fleetctl.out";
  spec.cwd = "/";
  std::remove(spec.log.c_str());
  if (run(spec, milliseconds(15'000)) != 0)
    fail("fleetctl status failed: " + read_tail(spec.log));
  std::ifstream in(spec.log);
  std::string json((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  device_counters out;
  // The load generator and the scrapes run in "collectors"' stead.
  out.rounds = counter_of(json, "system_collector", "rounds");
  auto load = counter_of(json, "load_generator", "rounds");
  if (load >= 0)
    out.rounds = std::min(out.rounds, load);
  out.samples = counter_sum(json, "system_collector", "points_stored")
                + counter_sum(json, "load_generator", "points_stored")
                + counter_sum(json, "scrape:", "points_stored");
  out.log_lines = counter_sum(json, "load_generator", "lines_stored")
                  + counter_sum(json, "log_tail", "lines_stored");
  if (out.rounds < 0)
    fail("fleetctl status: no collector counters in " + json.substr(0, 300));
  return out;
}

/// What the cloud's embedded store holds of the device: metric samples,
/// samples stored twice, log lines, and records of every stream.
struct cloud_counts {
  int64_t samples = 0;
  int64_t doubled = 0;
  int64_t log_lines = 0;
  int64_t records = 0;
};

int64_t scalar(sqlite::database& db, const std::string& sql) {
  auto st = db.prepare(sql);
  if (!st)
    return 0;
  auto row = st->step();
  return row && *row ? st->column_int(0) : 0;
}

cloud_counts read_cloud(const std::string& db_path) {
  cloud_counts out;
  auto db = sqlite::database::open_readonly(db_path);
  if (!db)
    return out;
  out.samples = scalar(*db, "SELECT count(*) FROM points");
  out.doubled = scalar(*db, "SELECT coalesce(sum(n - 1), 0) FROM (SELECT "
                            "count(*) AS n FROM points GROUP BY series_id, "
                            "ts HAVING n > 1)");
  out.log_lines = scalar(*db, "SELECT count(*) FROM logs");
  out.records = out.samples + out.log_lines
                + scalar(*db, "SELECT count(*) FROM events");
  return out;
}

/// Splits a relay's bytes by exchange: each request (head and body) and the
/// response bytes after it go to what the request carried; a v2 bundle's
/// bytes are shared among its streams by the size of their batches.
class exchange_split {
public:
  using shares = std::map<std::string, double>;

  void chunk(uint64_t conn, bool up, std::string_view bytes) {
    std::lock_guard<std::mutex> guard{mtx_};
    auto& c = conns_[conn];
    if (!up) {
      add(c.kinds, static_cast<double>(bytes.size()));
      if (c.batch && !c.answered) {
        c.answered = true;
        ++batch_answers_;
      }
      c.answer.append(bytes);
      while (take_answer(c)) {
      }
      // Frames held back until the upgrade's answer was seen.
      while (take_request(c)) {
      }
      return;
    }
    c.pending.append(bytes);
    while (take_request(c)) {
    }
  }

  /// Where the bytes went, part by part (request line, headers, bodies).
  std::map<std::string, int64_t> parts() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return parts_;
  }

  int64_t bytes(const std::string& kind) const {
    std::lock_guard<std::mutex> guard{mtx_};
    auto i = bytes_.find(kind);
    return i == bytes_.end() ? 0 : static_cast<int64_t>(i->second);
  }

  /// Called with a line per request (trace_requests).
  void trace(std::function<void(const std::string&)> f) {
    std::lock_guard<std::mutex> guard{mtx_};
    trace_ = std::move(f);
  }

  /// Batch requests (v1 or v2) whose answer began to come back.
  int64_t batch_answers() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return batch_answers_;
  }

private:
  struct conn_state {
    std::string pending;
    std::string answer;
    shares kinds{{"other", 1.0}};
    bool batch = false;
    bool answered = false;
    // A sync stream: asked for (GET /v5/stream), answered, and from the
    // 101 on frames both ways, decoded with the connection's context.
    bool upgrade_asked = false;
    bool upgrade_answered = false;
    std::shared_ptr<stream_decompressor> stream;
  };

  void add(const shares& kinds, double n) {
    for (auto& [kind, share] : kinds)
      bytes_[kind] += n * share;
  }

  // A lower-cased head of a bundle zstd as a whole (POST /v3/sync, or
  // /v4/sync and /v5/sync: its items may be recoded).
  static bool whole_zstd(const std::string& head) {
    return head.rfind("post /v3/sync ", 0) == 0
           || (!frame(head) && coded(head) != bundle_coding::none);
  }

  static bundle_coding coded(const std::string& head) {
    if (head.rfind("post /v5/sync ", 0) == 0)
      return bundle_coding::log_lines;
    if (head.rfind("post /v4/sync ", 0) == 0 || frame(head))
      return bundle_coding::log_times;
    return bundle_coding::none;
  }

  // A stream frame, decoded: a plain v4 bundle.
  static bool frame(const std::string& head) {
    return head.rfind("frame ", 0) == 0;
  }

  // A lower-cased head of a bundle (POST /v2/sync, /v3/sync or /v4/sync).
  static bool bundle(const std::string& head) {
    return head.rfind("post /v2/sync ", 0) == 0 || whole_zstd(head)
           || frame(head);
  }

  // What a request body carried, by stream, as shares of its batches' bytes.
  static shares kinds_of(const std::string& head, std::string_view body) {
    std::vector<std::pair<std::string, double>> parts;
    if (head.rfind("post /v1/sync ", 0) == 0) {
      if (auto x = decode_request(body, is_zstd(body), 64 << 20))
        parts.emplace_back(x->stream, 1.0);
    } else if (bundle(head)) {
      if (auto items = decode_bundle_body(body, whole_zstd(head), 64 << 20,
                                          coded(head)))
        for (auto& item : *items)
          if (auto x = decode_request(item.request, item.zstd, 64 << 20))
            parts.emplace_back(x->stream,
                               static_cast<double>(item.request.size()));
    }
    double total = 0;
    for (auto& p : parts)
      total += p.second;
    if (parts.empty() || total <= 0)
      return {{"other", 1.0}};
    shares out;
    for (auto& p : parts)
      out[p.first] += p.second / total;
    return out;
  }

  // The head's bytes by line kind ("<dir> line", "<dir> <header name>").
  void tally_head(const std::string& dir, const std::string& head) {
    size_t at = 0;
    bool first = true;
    while (at < head.size()) {
      auto end = std::min(head.find("\r\n", at), head.size());
      auto name = first ? std::string("line")
                        : head.substr(at, head.find(':', at) - at);
      parts_[dir + " " + name] += static_cast<int64_t>(end + 2 - at);
      at = end + 2;
      first = false;
    }
    parts_[dir + " blank line"] += 2;
    parts_[dir + "s"] += 1;
  }

  // A v2 body's items by stream; the rest is the bundle's framing (a zstd
  // bundle: its items' plain sizes, beside the bundle's own).
  void tally_body(const std::string& head, std::string_view body) {
    parts_["request body"] += static_cast<int64_t>(body.size());
    if (!bundle(head))
      return;
    auto zstd = whole_zstd(head);
    auto items = decode_bundle_body(body, zstd, 64 << 20, coded(head));
    if (!items)
      return;
    auto framing = static_cast<int64_t>(body.size());
    for (auto& item : *items) {
      auto x = decode_request(item.request, item.zstd, 64 << 20);
      auto n = static_cast<int64_t>(item.request.size());
      parts_["request item " + (x ? x->stream : std::string("?"))
             + (zstd ? " plain in zstd bundle"
                     : item.zstd ? " zstd" : " plain")] += n;
      framing -= n;
    }
    if (zstd)
      parts_["request zstd bundle"] += static_cast<int64_t>(body.size());
    else
      parts_["request bundle framing"] += framing;
  }

  // (head length, whole message length) of the message at the front.
  static std::optional<std::pair<size_t, size_t>>
  message_at(const std::string& buf, std::string& head) {
    auto head_end = buf.find("\r\n\r\n");
    if (head_end == std::string::npos)
      return std::nullopt;
    size_t body_len = 0;
    head = buf.substr(0, head_end);
    std::transform(head.begin(), head.end(), head.begin(), ::tolower);
    if (auto cl = head.find("\r\ncontent-length:"); cl != std::string::npos)
      body_len = std::stoull(head.substr(cl + 17));
    if (buf.size() < head_end + 4 + body_len)
      return std::nullopt;
    return std::make_pair(head_end, head_end + 4 + body_len);
  }

  // One whole frame at the front of `buf`: (payload start, end), or none.
  static std::optional<std::pair<size_t, size_t>> frame_at(const std::string& buf) {
    size_t at = 0;
    auto end = frame_end(buf, 64 << 20, at);
    if (!end || *end == 0)
      return std::nullopt;
    return std::make_pair(at, *end);
  }

  // One whole answer at the front of `c.answer`: tallied, removed.
  bool take_answer(conn_state& c) {
    if (c.stream) {
      auto f = frame_at(c.answer);
      if (!f)
        return false;
      parts_["response frame"] += static_cast<int64_t>(f->second);
      parts_["response frames"] += 1;
      c.answer.erase(0, f->second);
      return true;
    }
    std::string head;
    auto m = message_at(c.answer, head);
    if (!m)
      return false;
    if (c.upgrade_asked && !c.upgrade_answered) {
      c.upgrade_answered = true;
      if (head.rfind("http/1.1 101 ", 0) == 0)
        c.stream = std::make_shared<stream_decompressor>();
    }
    tally_head("response", c.answer.substr(0, m->first));
    parts_["response body"] += static_cast<int64_t>(m->second - m->first - 4);
    c.answer.erase(0, m->second);
    return true;
  }

  // One frame at the front of `c.pending`: decoded, counted, removed.
  bool take_frame(conn_state& c) {
    auto f = frame_at(c.pending);
    if (!f)
      return false;
    auto plain = c.stream->decode(
      std::string_view(c.pending).substr(f->first, f->second - f->first),
      64 << 20);
    std::string head = "frame /v5/stream";
    std::string body = plain ? *plain : std::string{};
    parts_["request frame"] += static_cast<int64_t>(f->second);
    parts_["request frames"] += 1;
    if (trace_)
      trace_(describe(head, body, f->second));
    c.kinds = kinds_of(head, body);
    c.batch = c.kinds.count("other") == 0;
    c.answered = false;
    add(c.kinds, static_cast<double>(f->second));
    c.pending.erase(0, f->second);
    return true;
  }

  // One whole request at the front of `c.pending`: counted, removed.
  bool take_request(conn_state& c) {
    if (c.stream)
      return take_frame(c);
    if (c.upgrade_asked && !c.upgrade_answered)
      return false;
    std::string head;
    auto m = message_at(c.pending, head);
    if (!m)
      return false;
    auto head_end = m->first;
    auto total = m->second;
    auto body_len = total - head_end - 4;
    auto body = std::string_view(c.pending).substr(head_end + 4, body_len);
    tally_head("request", c.pending.substr(0, head_end));
    tally_body(head, body);
    if (head.rfind("get /v5/stream ", 0) == 0)
      c.upgrade_asked = true;
    if (trace_)
      trace_(describe(head, body, total));
    c.kinds = kinds_of(head, body);
    c.batch = c.kinds.count("other") == 0;
    c.answered = false;
    add(c.kinds, static_cast<double>(total));
    c.pending.erase(0, total);
    return true;
  }

  // "<request line> total=N body=N [stream bytes records]..." for a trace.
  static std::string describe(const std::string& head, std::string_view body,
                              size_t total) {
    std::ostringstream out;
    out << head.substr(0, head.find("\r\n")) << " total=" << total
        << " body=" << body.size();
    if (!bundle(head))
      return out.str();
    auto items = decode_bundle_body(body, whole_zstd(head), 64 << 20,
                                    coded(head));
    if (!items)
      return out.str();
    std::vector<std::string> queued;
    for (auto& item : *items) {
      queued.push_back(item.zstd ? item.request
                                 : zstd_compress(item.request, 3));
      if (auto x = decode_request(item.request, item.zstd, 64 << 20))
        out << " [" << x->stream << " seq=" << x->sequence
            << " plain=" << item.request.size() << " alone_zstd19="
            << (item.zstd ? item.request.size()
                          : zstd_compress(item.request, 19).size())
            << " logs=" << x->logs.size() << " events=" << x->events.size()
            << " retry=" << x->retry_count << "]";
    }
    // The same batches as sync version 4 would have sent them.
    size_t queued_bytes = 0;
    for (auto& q : queued)
      queued_bytes += q.size();
    if (coded(head) == bundle_coding::log_lines)
      out << " as_v4_body="
          << encode_bundle_body(queued, bundle_zstd_level(queued_bytes),
                                bundle_coding::log_times)
               .bytes.size();
    return out.str();
  }

  std::function<void(const std::string&)> trace_;
  mutable std::mutex mtx_;
  std::map<uint64_t, conn_state> conns_;
  std::map<std::string, double> bytes_;
  std::map<std::string, int64_t> parts_;
  int64_t batch_answers_ = 0;
};

// -- vmagent's side -----------------------------------------------------------

/// One series of a /metrics page: its name and labels, as exposed.
struct exposed_series {
  std::string name;
  std::map<std::string, std::string> labels;
  bool operator<(const exposed_series& x) const {
    return std::tie(name, labels) < std::tie(x.name, x.labels);
  }
};

// `name{a="x",b="y"} value`; false for lines it does not take (escapes).
bool parse_series(const std::string& line, exposed_series& out) {
  auto brace = line.find('{');
  auto space = line.find(' ');
  if (line.empty() || line[0] == '#' || space == std::string::npos
      || line.find('\\') != std::string::npos)
    return false;
  if (brace == std::string::npos || brace > space) {
    out.name = line.substr(0, space);
    return true;
  }
  out.name = line.substr(0, brace);
  auto pos = brace + 1;
  while (pos < line.size() && line[pos] != '}') {
    auto eq = line.find("=\"", pos);
    auto close = eq == std::string::npos ? eq : line.find('"', eq + 2);
    if (close == std::string::npos)
      return false;
    out.labels[line.substr(pos, eq - pos)] = line.substr(eq + 2, close - eq - 2);
    pos = close + 1 + (close + 1 < line.size() && line[close + 1] == ',');
  }
  return true;
}

std::string regex_quote(const std::string& x) {
  std::string out;
  for (char ch : x) {
    if (std::string_view("\\.^$|?*+()[]{}").find(ch) != std::string_view::npos)
      out += '\\';
    out += ch == '\'' ? std::string("''") : std::string(1, ch);
  }
  return out;
}

// A global relabelling that keeps exactly the first `n` series of the page
// (sorted), so vmagent sends n series, none of its automatic ones.
std::string keep_config(const std::string& page, int64_t n) {
  std::set<exposed_series> all;
  std::istringstream in(page);
  std::string line;
  while (std::getline(in, line))
    if (exposed_series s; parse_series(line, s))
      all.insert(std::move(s));
  if (static_cast<int64_t>(all.size()) < n)
    fail("node_exporter exposes only " + std::to_string(all.size())
         + " series");
  std::vector<exposed_series> kept(all.begin(), std::next(all.begin(), n));
  std::set<std::string> names;
  for (auto& s : kept)
    for (auto& kv : s.labels)
      names.insert(kv.first);
  std::string sources = "[__name__", regex;
  for (auto& l : names)
    sources += ", " + l;
  for (auto& s : kept) {
    auto key = s.name;
    for (auto& l : names)
      key += ";" + (s.labels.count(l) ? s.labels.at(l) : std::string{});
    regex += (regex.empty() ? "" : "|") + regex_quote(key);
  }
  return "- action: keep\n  source_labels: " + sources
         + "]\n  separator: ';'\n  regex: '" + regex + "'\n";
}

// Samples VictoriaMetrics holds of job `job` (timestamps in its export).
int64_t vm_samples(vm_server& vm, const std::string& job) {
  if (vm.flush())
    return 0;
  auto body = vm.get(vm_export_target("{job=\"" + job + "\"}"));
  if (!body)
    return 0;
  int64_t n = 0;
  std::istringstream in(*body);
  std::string line;
  while (std::getline(in, line)) {
    auto at = line.find("\"timestamps\":[");
    auto end = at == std::string::npos ? at : line.find(']', at);
    if (end != std::string::npos && end > at + 14)
      n += 1 + std::count(line.begin() + static_cast<long>(at),
                          line.begin() + static_cast<long>(end), ',');
  }
  return n;
}

double vmagent_metric(uint16_t port, const std::string& name) {
  auto v = metric_sum(http_get(port, "/metrics"), name);
  return v ? *v : 0;
}

// -- one run ------------------------------------------------------------------

/// Everything one run starts; members stop in reverse order.
// Appends a numbered line to `path` every second until dropped or stopped.
struct line_writer {
  std::string path;
  std::atomic<bool> done{false};
  std::thread thread;
  explicit line_writer(std::string p) : path(std::move(p)) {
    thread = std::thread([this] {
      for (int64_t n = 0; !done; ++n) {
        std::ofstream out(path, std::ios::app);
        out << "2026-12-07T00:00:00Z INFO app: request " << n
            << " served in 12 ms\n";
        out.close();
        for (int i = 0; i < 10 && !done; ++i)
          std::this_thread::sleep_for(milliseconds(100));
      }
    });
  }
  void stop() {
    done = true;
    if (thread.joinable())
      thread.join();
  }
  ~line_writer() {
    stop();
  }
};

struct stack {
  temp_dir dir{"fleetd-footprint"};
  std::string bin;
  std::unique_ptr<vm_server> vm;
  std::unique_ptr<child> cloud;
  exchange_split split; // outlives the relay that feeds it
  std::unique_ptr<test::fault_proxy> cloud_relay;
  std::unique_ptr<test::fault_proxy> vm_relay;
  std::unique_ptr<child> node_exporter;
  std::unique_ptr<child> vmagent;
  std::unique_ptr<child> fleetd;
  uint16_t console = 0;
  uint16_t vmagent_port = 0;
  int64_t rounds = 0;
  // "collectors": an application's log file fleetd follows, a line a second
  // (declared last: stopped before the directory goes).
  std::unique_ptr<line_writer> app_log;

  std::string path(const std::string& name) const {
    return dir.path() + "/" + name;
  }
};

std::string default_bin_dir() {
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    fail("cannot find this program's directory");
  return self.parent_path().string();
}

// VictoriaMetrics and fleetd-cloud, each behind its relay. False: skipped.
bool start_receivers(stack& st, footprint_result& r) {
  vm_server::failure why;
  st.vm = vm_server::start(why);
  if (!st.vm) {
    r.skipped = why.skip;
    r.error = why.why;
    return false;
  }
  fs::create_directories(st.path("cloud"));
  st.cloud = std::make_unique<child>(
    std::vector<std::string>{st.bin + "/fleetd-cloud",
                             "--node.data-dir=" + st.path("cloud"),
                             "--ingest.host=127.0.0.1", "--ingest.port=0",
                             "--ingest.insecure=true",
                             "--ingest.anonymous=true", "--console.port=0",
                             "--console.insecure=true", "--log.level=warning"},
    st.path("cloud.log"));
  auto port = wait_port_file(st.path("cloud/ingest.port"), *st.cloud);
  st.cloud_relay = std::make_unique<test::fault_proxy>(port);
  st.cloud_relay->tap([&split = st.split](uint64_t c, bool up,
                                          std::string_view b) {
    split.chunk(c, up, b);
  });
  st.vm_relay = std::make_unique<test::fault_proxy>(st.vm->port());
  return true;
}

// node_exporter, then vmagent scraping it every 10 s into the relay.
void start_vmagent(stack& st, const footprint_options& opt,
                   const std::string& setting) {
  auto ne_port = free_port();
  st.node_exporter = std::make_unique<child>(
    std::vector<std::string>{node_exporter_program,
                             "--web.listen-address=127.0.0.1:"
                               + std::to_string(ne_port)},
    st.path("node_exporter.log"));
  std::string page;
  poll_until([&] { return !(page = http_get(ne_port, "/metrics")).empty(); },
             milliseconds(15'000));
  if (page.empty())
    fail("node_exporter does not answer; log:\n"
         + read_tail(st.node_exporter->log));
  // "collectors": fleetd reads node_exporter's breadth, vmagent keeps all.
  write_file(st.path("relabel.yml"),
             setting == "collectors" ? std::string("[]\n")
                                     : keep_config(page, opt.series),
             false);
  write_file(st.path("scrape.yml"),
             "global:\n  scrape_interval: 10s\nscrape_configs:\n"
             "  - job_name: footprint\n    static_configs:\n"
             "      - targets: ['127.0.0.1:"
               + std::to_string(ne_port) + "']\n",
             false);
  st.vmagent_port = static_cast<uint16_t>(free_port());
  st.vmagent = std::make_unique<child>(
    std::vector<std::string>{
      vmagent_program, "-promscrape.config=" + st.path("scrape.yml"),
      "-promscrape.noStaleMarkers",
      "-remoteWrite.url=http://127.0.0.1:"
        + std::to_string(st.vm_relay->port()) + "/api/v1/write",
      "-remoteWrite.tmpDataPath=" + st.path("vmagent-data"),
      "-remoteWrite.relabelConfig=" + st.path("relabel.yml"),
      "-httpListenAddr=127.0.0.1:" + std::to_string(st.vmagent_port),
      "-loggerLevel=ERROR"},
    st.path("vmagent.log"));
  if (!poll_until([&] { return !http_get(st.vmagent_port, "/metrics").empty(); },
                  milliseconds(15'000)))
    fail("vmagent does not answer; log:\n" + read_tail(st.vmagent->log));
}

std::string fleetd_program(const stack& st, const footprint_options& opt) {
  return opt.fleetd_program.empty() ? st.bin + "/fleetd" : opt.fleetd_program;
}

// The node_exporter collectors fleetd runs here, in their order, each
// taken while the series so far stay under opt.series (node_exporter's full
// set has more: vmagent's side keeps 100 of its page too); their series
// counted into `system`.
std::string system_collectors(const footprint_options& opt, int64_t& system) {
  std::string enabled;
  system = 0;
  for (auto name : node_collectors()) {
    node_metrics_config cfg;
    cfg.enabled = std::string{name};
    auto n = static_cast<int64_t>(read_system_metrics(cfg, 0, nullptr).size());
    if (system + n >= opt.series)
      continue;
    enabled += (enabled.empty() ? "" : ",") + cfg.enabled;
    system += n;
  }
  return enabled;
}

// fleetd: its system series plus synthetic ones make opt.series; its
// collection ends during the outage, so the backlog is all there is.
void start_fleetd(stack& st, const footprint_options& opt,
                  const std::string& setting) {
  auto data = st.path("device");
  fs::create_directories(data);
  st.rounds = std::max<int64_t>(
    2, static_cast<int64_t>((opt.window_s + opt.outage_s) / round_s));
  auto rounds = std::to_string(st.rounds);
  std::vector<std::string> argv{
    fleetd_program(st, opt), "--node.data-dir=" + data, "--device.id=footprint",
    "--cloud.host=127.0.0.1",
    "--cloud.port=" + std::to_string(st.cloud_relay->port()),
    "--cloud.insecure=true", "--console.port=0", "--console.insecure=true",
    "--tier.pin=1", "--collector.rounds=" + rounds, "--log.level=warning"};
  if (setting == "collectors") {
    // Every collector at once: node_exporter's breadth, a scrape target
    // (VictoriaMetrics' own page: no process of the baseline serves it) and
    // a log file.
    st.app_log = std::make_unique<line_writer>(st.path("app.log"));
    argv.insert(argv.end(),
                {"--scrape.targets=vm=http://127.0.0.1:"
                   + std::to_string(st.vm->port()) + "/metrics",
                 "--scrape.rounds=" + rounds,
                 "--logs.paths=app=" + st.path("app.log"),
                 "--logs.start-at=beginning"});
  } else {
    int64_t system = 0;
    auto collectors = system_collectors(opt, system);
    argv.insert(argv.end(),
                {"--collector.enabled=" + collectors,
                 "--load.series=" + std::to_string(opt.series - system),
                 "--load.interval=10s", "--load.rounds=" + rounds,
                 "--load.log-lines=10"});
  }
  if (opt.sync_version > 0)
    argv.emplace_back("--cloud.sync-version="
                      + std::to_string(opt.sync_version));
  if (setting == "sync10s")
    argv.emplace_back("--sync.interval=10s");
  else if (setting != "tier1" && setting != "collectors")
    fail("unknown setting '" + setting + "' (tier1, sync10s or collectors)");
  st.fleetd = std::make_unique<child>(argv, st.path("fleetd.log"));
  st.console = wait_port_file(data + "/console.port", *st.fleetd);
}

void sleep_checking(const stack& st, double seconds) {
  auto until = steady::now() + std::chrono::duration<double>(seconds);
  while (steady::now() < until) {
    st.fleetd->check_alive();
    st.cloud->check_alive();
    std::this_thread::sleep_for(milliseconds(200));
  }
}

// Seconds from now until `grew` holds (looked at every 100 ms), or -1
// after `limit_s`.
double wait_growth(const std::function<bool()>& grew, double limit_s) {
  auto t0 = steady::now();
  auto paced = [&] {
    std::this_thread::sleep_for(milliseconds(100));
    return grew();
  };
  if (!poll_until(paced, milliseconds(static_cast<int64_t>(limit_s * 1000))))
    return -1;
  return seconds_since(t0);
}

// The outage: both relays refuse for opt.outage_s, node_exporter stops just
// before they return; then the time until each receiver stores data again.
void outage(stack& st, const footprint_options& opt, footprint_result& r) {
  auto t0 = steady::now();
  st.cloud_relay->drop();
  st.vm_relay->drop();
  auto tried_before = st.cloud_relay->stats().connections;
  progress(opt, "connections before the outage: "
                  + std::to_string(tried_before));
  sleep_checking(st, opt.outage_s);
  // Until fleetd has tried to send into the outage (bounded like a resume).
  while (st.cloud_relay->stats().connections == tried_before
         && seconds_since(t0) < opt.outage_s + opt.resume_limit_s)
    sleep_checking(st, 1);
  r.outage_actual_s = seconds_since(t0);
  st.node_exporter->end();
  // Collection is over: the log file stops growing too.
  if (st.app_log)
    st.app_log->stop();
  auto answers_before = st.split.batch_answers();
  auto vm_before = st.vm->metric("vm_rows_inserted_total");
  st.cloud_relay->pass();
  st.vm_relay->pass();
  progress(opt, "receivers back; waiting for data");
  std::thread vm_wait([&] {
    r.vmagent_resume_s = wait_growth(
      [&] {
        auto now = st.vm->metric("vm_rows_inserted_total");
        return now && vm_before && *now > *vm_before;
      },
      opt.resume_limit_s);
  });
  // Flowing again: the cloud answers a batch (a retry of one the outage
  // failed may be a duplicate: nothing new stored, yet the link is back).
  r.fleetd_resume_s = wait_growth(
    [&] { return st.split.batch_answers() > answers_before; },
    opt.resume_limit_s);
  vm_wait.join();
}

// Waits (bounded) until both receivers hold what their agent sent.
void drain(stack& st, const footprint_options& opt, footprint_result& r) {
  auto expected_vm = [&] {
    return static_cast<int64_t>(
      vmagent_metric(st.vmagent_port,
                     "vmagent_remotewrite_global_rows_pushed_before_relabel_total")
      - vmagent_metric(st.vmagent_port,
                       "vmagent_remotewrite_global_relabel_metrics_dropped_total"));
  };
  poll_until(
    [&] {
      // Each look starts fleetctl and reads an export: once a second.
      std::this_thread::sleep_for(milliseconds(1000));
      auto dev = read_device(st.bin, st.console, st.dir.path());
      auto cloud = read_cloud(st.path("cloud/cloud.db"));
      r.fleetd_samples = dev.samples;
      r.fleetd_log_lines = dev.log_lines;
      r.fleetd_arrived = cloud.samples;
      r.fleetd_doubled = cloud.doubled;
      r.fleetd_log_lines_arrived = cloud.log_lines;
      r.vmagent_samples = expected_vm();
      r.vmagent_arrived = vm_samples(*st.vm, "footprint");
      return dev.rounds >= st.rounds && cloud.samples >= dev.samples
             && cloud.log_lines >= dev.log_lines
             && r.vmagent_arrived >= r.vmagent_samples;
    },
    milliseconds(static_cast<int64_t>(opt.resume_limit_s * 1000)));
}

struct snapshot {
  double fleetd = 0, vmagent = 0, node_exporter = 0;
};

snapshot cpu_now(const stack& st) {
  return {cpu_seconds_of(st.fleetd->pid), cpu_seconds_of(st.vmagent->pid),
          cpu_seconds_of(st.node_exporter->pid)};
}

void measure(stack& st, const footprint_options& opt, footprint_result& r) {
  if (!poll_until(
        [&] {
          std::this_thread::sleep_for(milliseconds(200));
          return read_device(st.bin, st.console, st.dir.path()).rounds >= 1;
        },
        milliseconds(30'000)))
    fail("fleetd stored no round in 30 s; log:\n" + read_tail(st.fleetd->log));
  auto first = read_device(st.bin, st.console, st.dir.path());
  auto disk0 = proc_field(st.fleetd->pid, "io", "write_bytes");
  auto cpu0 = cpu_now(st);
  auto wire0 = st.cloud_relay->stats();
  auto t0 = std::chrono::steady_clock::now();
  progress(opt, "steady window of " + format(opt.window_s, 0) + " s");
  sleep_checking(st, opt.window_s);
  auto cpu1 = cpu_now(st);
  auto wire1 = st.cloud_relay->stats();
  r.window_s = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                             - t0).count();
  r.fleetd_window_wire_bytes = wire1.bytes_up + wire1.bytes_down
                               - wire0.bytes_up - wire0.bytes_down;
  r.fleetd_cpu_s = cpu1.fleetd - cpu0.fleetd;
  r.vmagent_cpu_s = cpu1.vmagent - cpu0.vmagent;
  r.node_exporter_cpu_s = cpu1.node_exporter - cpu0.node_exporter;
  progress(opt, "receivers cut for " + format(opt.outage_s, 0) + " s");
  outage(st, opt, r);
  drain(st, opt, r);
  r.fleetd_disk_bytes = proc_field(st.fleetd->pid, "io", "write_bytes") - disk0;
  r.fleetd_disk_samples = r.fleetd_samples - first.samples;
  r.fleetd_hwm_kib = proc_field(st.fleetd->pid, "status", "VmHWM");
  r.vmagent_hwm_kib = proc_field(st.vmagent->pid, "status", "VmHWM");
  r.fleetd_metrics_wire_bytes = st.split.bytes(metrics_stream);
  r.fleetd_log_wire_bytes = st.split.bytes(logs_stream);
  auto relay = st.cloud_relay->stats();
  r.fleetd_other_wire_bytes = relay.bytes_up + relay.bytes_down
                              - r.fleetd_metrics_wire_bytes
                              - r.fleetd_log_wire_bytes;
  std::string parts = "wire bytes by part:";
  for (auto& [part, n] : st.split.parts())
    parts += " [" + part + "]=" + std::to_string(n);
  progress(opt, parts + " [connections]="
                  + std::to_string(relay.connections));
  auto vm_relay = st.vm_relay->stats();
  r.vmagent_wire_bytes = vm_relay.bytes_up + vm_relay.bytes_down;
  r.data_span_s = static_cast<double>(st.rounds * round_s);
  auto size = measure_install_size(opt.install_program.empty()
                                     ? fleetd_program(st, opt)
                                     : opt.install_program,
                                   true);
  if (!size)
    fail("install size: " + render(size.error()));
  r.fleetd_install_bytes = static_cast<int64_t>(size->bytes);
}

footprint_result run_checked(const footprint_options& opt,
                             const std::string& setting) {
  footprint_result r;
  r.setting = setting;
  for (auto* p : {node_exporter_program, vmagent_program})
    if (!executable(p)) {
      r.skipped = true;
      r.error = std::string(p) + " is not installed (tools/install-deps)";
      return r;
    }
  stack st;
  st.bin = opt.bin_dir.empty() ? default_bin_dir() : opt.bin_dir;
  if (!start_receivers(st, r))
    return r;
  if (opt.trace_requests)
    st.split.trace([t0 = steady::now()](const std::string& line) {
      std::cerr << "footprint: request at " << format(seconds_since(t0), 1)
                << " s: " << line << std::endl;
    });
  start_vmagent(st, opt, setting);
  start_fleetd(st, opt, setting);
  progress(opt, "setting " + setting + ": all started in " + st.dir.path());
  measure(st, opt, r);
  return r;
}

// -- output -------------------------------------------------------------------

double ratio(double a, double b) {
  return b > 0 ? a / b : 0;
}

double arrived_pct(int64_t arrived, int64_t expected) {
  return expected > 0 ? 100.0 * static_cast<double>(arrived)
                          / static_cast<double>(expected)
                      : 0;
}

std::string resume_text(double s) {
  return s < 0 || std::isinf(s) ? "timeout" : format(s, 1);
}

std::string parse_args(const std::vector<std::string>& args,
                       footprint_options& opt, int64_t& runs) {
  arg_cursor cur(args);
  bool settings_given = false;
  while (cur.next()) {
    auto arg = cur.name();
    std::string value;
    if (!cur.value(value))
      return arg + ": wants a value";
    if (arg == "--setting") {
      if (value != "tier1" && value != "sync10s" && value != "collectors")
        return "--setting: tier1, sync10s or collectors";
      if (!settings_given)
        opt.settings.clear();
      settings_given = true;
      opt.settings.push_back(value);
      continue;
    }
    if (arg == "--bin-dir" || arg == "--install-program" || arg == "--fleetd") {
      (arg == "--bin-dir"   ? opt.bin_dir
       : arg == "--fleetd" ? opt.fleetd_program
                           : opt.install_program) = value;
      continue;
    }
    double x = 0;
    if (!parse_double(value, x) || (x <= 0 && arg != "--trace-requests"))
      return arg + ": wants a positive number";
    if (arg == "--window")
      opt.window_s = x;
    else if (arg == "--outage")
      opt.outage_s = x;
    else if (arg == "--resume-limit")
      opt.resume_limit_s = x;
    else if (arg == "--runs")
      runs = static_cast<int64_t>(x);
    else if (arg == "--trace-requests")
      opt.trace_requests = x != 0;
    else if (arg == "--sync-version" && x <= 4)
      opt.sync_version = static_cast<int64_t>(x);
    else
      return "unknown option " + arg;
  }
  if (opt.outage_s < 2 * round_s)
    return "--outage: at least 20 s (a round is collected inside it)";
  return {};
}

} // namespace

footprint_result run_footprint(const footprint_options& opt,
                               const std::string& setting) {
  try {
    return run_checked(opt, setting);
  } catch (const bench_failure& f) {
    footprint_result r;
    r.setting = setting;
    r.error = f.what;
    return r;
  }
}

double samples_arrived_pct(const footprint_result& r) {
  return std::min(arrived_pct(r.fleetd_arrived, r.fleetd_samples),
                  arrived_pct(r.vmagent_arrived, r.vmagent_samples));
}

std::string footprint_line(const footprint_options& opt,
                           const footprint_result& r, const std::string& run) {
  auto mb_per_day = ratio(static_cast<double>(r.fleetd_metrics_wire_bytes
                                              + r.fleetd_log_wire_bytes
                                              + r.fleetd_other_wire_bytes)
                            * 86400 / 1e6,
                          r.data_span_s);
  std::ostringstream out;
  out << "BENCH footprint setting=" << r.setting << " run=" << run
      << " window_s=" << format(opt.window_s, 0)
      << " outage_s=" << format(r.outage_actual_s, 0)
      << " fleetd_cpu_s=" << format(r.fleetd_cpu_s, 3)
      << " vmagent_cpu_s=" << format(r.vmagent_cpu_s, 3)
      << " node_exporter_cpu_s=" << format(r.node_exporter_cpu_s, 3)
      << " cpu_ratio="
      << format(ratio(r.fleetd_cpu_s, r.vmagent_cpu_s + r.node_exporter_cpu_s), 3)
      << " fleetd_hwm_kib=" << r.fleetd_hwm_kib
      << " vmagent_hwm_kib=" << r.vmagent_hwm_kib
      << " fleetd_disk_bytes_per_sample="
      << format(ratio(static_cast<double>(r.fleetd_disk_bytes),
                      static_cast<double>(r.fleetd_disk_samples)), 1)
      << " fleetd_wire_bytes_per_sample="
      << format(ratio(static_cast<double>(r.fleetd_metrics_wire_bytes),
                      static_cast<double>(r.fleetd_arrived)), 2)
      << " vmagent_wire_bytes_per_sample="
      << format(ratio(static_cast<double>(r.vmagent_wire_bytes),
                      static_cast<double>(r.vmagent_arrived)), 2)
      << " fleetd_log_wire_bytes=" << r.fleetd_log_wire_bytes
      << " fleetd_other_wire_bytes=" << r.fleetd_other_wire_bytes
      << " fleetd_mb_per_day=" << format(mb_per_day, 3)
      << " fleetd_window_mb_per_day="
      << format(ratio(static_cast<double>(r.fleetd_window_wire_bytes) * 86400
                        / 1e6,
                      r.window_s),
                3)
      << " fleetd_install_bytes=" << r.fleetd_install_bytes
      << " fleetd_resume_s=" << resume_text(r.fleetd_resume_s)
      << " vmagent_resume_s=" << resume_text(r.vmagent_resume_s)
      << " samples_arrived_pct=" << format(samples_arrived_pct(r), 2)
      << " fleetd_samples=" << r.fleetd_samples
      << " fleetd_arrived=" << r.fleetd_arrived
      << " fleetd_doubled=" << r.fleetd_doubled
      << " fleetd_log_lines=" << r.fleetd_log_lines
      << " fleetd_log_lines_arrived=" << r.fleetd_log_lines_arrived
      << " vmagent_samples=" << r.vmagent_samples
      << " vmagent_arrived=" << r.vmagent_arrived;
  return out.str();
}

footprint_result median_result(const std::vector<footprint_result>& runs) {
  footprint_result m = runs.front();
  auto med = [&](auto member) {
    std::vector<double> xs;
    for (auto& r : runs) {
      double x = static_cast<double>(r.*member);
      // A timeout (-1) ranks above every measured time.
      xs.push_back(x < 0 ? INFINITY : x);
    }
    return median(xs);
  };
  for (auto p : {&footprint_result::fleetd_cpu_s, &footprint_result::vmagent_cpu_s,
                 &footprint_result::node_exporter_cpu_s,
                 &footprint_result::fleetd_resume_s,
                 &footprint_result::vmagent_resume_s,
                 &footprint_result::outage_actual_s,
                 &footprint_result::window_s,
                 &footprint_result::data_span_s})
    m.*p = med(p);
  for (auto p :
       {&footprint_result::fleetd_hwm_kib, &footprint_result::vmagent_hwm_kib,
        &footprint_result::fleetd_disk_bytes, &footprint_result::fleetd_disk_samples,
        &footprint_result::fleetd_metrics_wire_bytes,
        &footprint_result::fleetd_log_wire_bytes,
        &footprint_result::fleetd_other_wire_bytes,
        &footprint_result::vmagent_wire_bytes,
        &footprint_result::fleetd_window_wire_bytes,
        &footprint_result::fleetd_install_bytes, &footprint_result::fleetd_samples,
        &footprint_result::fleetd_arrived, &footprint_result::fleetd_doubled,
        &footprint_result::fleetd_log_lines,
        &footprint_result::fleetd_log_lines_arrived,
        &footprint_result::vmagent_samples, &footprint_result::vmagent_arrived})
    m.*p = static_cast<int64_t>(med(p));
  return m;
}

std::string footprint_usage() {
  return "usage: fleetd-bench footprint [--window S] [--outage S] "
         "[--resume-limit S] [--runs N]\n"
         "                              [--setting tier1|sync10s|collectors]... "
         "[--bin-dir DIR]\n"
         "                              [--fleetd FLEETD] "
         "[--install-program FLEETD]\n"
         "                              [--sync-version V] "
         "[--trace-requests 1]\n\n"
         "Runs real processes side by side: fleetd (tier 1; its system "
         "collector plus\nsynthetic series, 100 every 10 s, and one log line "
         "a second) syncing to\nfleetd-cloud (plain HTTP, embedded store), "
         "and vmagent scraping\nprometheus-node-exporter every 10 s, "
         "relabelled to the same 100 series, into a\nthrowaway "
         "VictoriaMetrics. Each agent reaches its receiver through a "
         "byte-counting\nTCP relay (headers included). After the steady "
         "window both relays are cut\n(connections dropped, new ones "
         "refused) for the outage, and longer until fleetd has tried to\nsend into it (at tier 1 a sync falls due every 5 min); collection ends inside\nit. Then resume "
         "(from the receivers' return to the cloud's first answer to a\nbatch, or the first rows VictoriaMetrics stores) and\n"
         "arrival (every sample stored by fleetd in fleetd-cloud's store, "
         "every sample\nvmagent pushed in VictoriaMetrics) are measured, "
         "each wait bounded by the\nresume limit.\n\n"
         "  --window S        steady window the CPU figures cover "
         "(default 600)\n"
         "  --outage S        receivers away at least this long, at least 20 "
         "(default 120)\n"
         "  --resume-limit S  longest wait for data to flow again, and then "
         "for all of it\n"
         "                    (default 300); a resume not seen prints "
         "\"timeout\"\n"
         "  --runs N          runs per setting (default 1); one line each, "
         "then run=median\n"
         "  --setting X       tier1 (tier-1 defaults), sync10s "
         "(sync.interval=10s) or\n"
         "                    collectors (node_exporter's breadth, a scrape "
         "target, a log\n"
         "                    file; vmagent keeps all of node_exporter); "
         "repeatable\n"
         "                    (default tier1 and sync10s, one after the "
         "other)\n"
         "  --bin-dir DIR     where fleetd, fleetd-cloud and fleetctl are "
         "(default: here)\n"
         "  --fleetd FLEETD   the fleetd that runs, e.g. build-device/fleetd "
         "(default:\n                    bin-dir's)\n"
         "  --install-program FLEETD  the fleetd whose install size is "
         "reported, e.g.\n"
         "                    build-device/fleetd (default: the one that "
         "runs)\n"
         "  --sync-version V  fleetd's cloud.sync-version, 1-4 (default: "
         "fleetd's own)\n"
         "  --trace-requests 1  a line per fleetd request on stderr: when, "
         "its bytes, its\n                    batches (plain, and zstd -19 alone; a POST /v5/sync\n                    also as /v4/sync) (default: 0)\n\n"
         "Prints per setting and run\n"
         "  BENCH footprint setting=... run=N fleetd_cpu_s=... "
         "cpu_ratio=... fleetd_hwm_kib=...\n"
         "    fleetd_disk_bytes_per_sample=... fleetd_wire_bytes_per_sample=... "
         "fleetd_mb_per_day=...\n"
         "    fleetd_resume_s=... vmagent_resume_s=... samples_arrived_pct=... "
         "fleetd_doubled=...\n"
         "cpu_ratio = fleetd / (vmagent + node_exporter) over the window; "
         "disk bytes =\n/proc/PID/io write_bytes from fleetd's first round to "
         "the end, per sample it\nstored; wire bytes per sample count "
         "metrics exchanges only (logs and the rest\nare "
         "fleetd_log_wire_bytes, fleetd_other_wire_bytes); mb_per_day = all "
         "of fleetd's\nbytes over the seconds of data collected, outage and "
         "drain included;\nwindow_mb_per_day = its bytes over the steady "
         "window alone. With --runs "
         "above 1, a last line\nrun=median per setting. Exits 1 when a "
         "sample is missing or doubled.\n";
}

int run_footprint_bench(const std::vector<std::string>& args) {
  footprint_options opt;
  int64_t runs = 1;
  if (auto err = parse_args(args, opt, runs); !err.empty()) {
    std::cerr << "fleetd-bench footprint: " << err << "\n" << footprint_usage();
    return 2;
  }
  int code = 0;
  for (auto& setting : opt.settings) {
    std::vector<footprint_result> results;
    for (int64_t i = 1; i <= runs; ++i) {
      auto r = run_footprint(opt, setting);
      if (!r.error.empty()) {
        std::cerr << "fleetd-bench footprint: " << r.error << std::endl;
        return r.skipped ? 77 : 1;
      }
      std::cout << footprint_line(opt, r, std::to_string(i)) << std::endl;
      if (samples_arrived_pct(r) < 100 || r.fleetd_doubled > 0)
        code = 1;
      results.push_back(std::move(r));
    }
    if (runs > 1)
      std::cout << footprint_line(opt, median_result(results), "median")
                << std::endl;
  }
  return code;
}

} // namespace fleetd::bench
