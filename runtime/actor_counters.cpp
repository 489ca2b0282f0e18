#include "runtime/actor_counters.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <limits.h>
#include <sstream>
#include <time.h>
#include <unistd.h>

#include "runtime/json.hpp"

namespace fleetd {

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

size_t time_bucket(int64_t ns) noexcept {
  auto us = static_cast<uint64_t>(ns < 0 ? 0 : ns / 1000);
  if (us == 0)
    return 0;
  auto k = static_cast<size_t>(64 - __builtin_clzll(us));
  return k < actor_counters::buckets ? k : actor_counters::buckets - 1;
}

int64_t coarse_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void actor_counters::timed_since(int64_t begin_ns) noexcept {
  auto end = clock();
  last_ns.store(end, std::memory_order_relaxed);
  // One writer (the actor's thread): a load and a store, no locked add.
  auto& b = time[time_bucket(end - begin_ns)];
  b.store(b.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  timed.store(timed.load(std::memory_order_relaxed) + 1,
              std::memory_order_relaxed);
}

void actor_counters::failed(const std::string& what) {
  errors.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> guard{mtx_};
  last_error_ = what.substr(0, 512);
}

std::shared_ptr<mailbox_gauge>
actor_counters::begin_incarnation(bool count_in) {
  spawns.fetch_add(1, std::memory_order_relaxed);
  started_ns.store(stamp(), std::memory_order_relaxed);
  auto g = std::make_shared<mailbox_gauge>(count_in);
  std::lock_guard<std::mutex> guard{mtx_};
  current_ = g;
  return g;
}

void actor_counters::end_incarnation(const mailbox_gauge* g,
                                     const std::string& why) {
  if (!why.empty())
    failed(why);
  std::lock_guard<std::mutex> guard{mtx_};
  handled_before_ += g->handled.load(std::memory_order_acquire);
  if (current_.get() == g)
    current_ = nullptr;
}

uint64_t actor_counters::handled() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return handled_before_
         + (current_ ? current_->handled.load(std::memory_order_acquire) : 0);
}

int64_t actor_counters::mailbox() const {
  std::shared_ptr<mailbox_gauge> g;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    g = current_;
  }
  if (!g)
    return 0;
  return static_cast<int64_t>(g->estimate());
}

std::string actor_counters::last_error() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return last_error_;
}

int64_t time_quantile_us(const actor_counters& c, double q) {
  uint64_t total = 0;
  std::array<uint64_t, actor_counters::buckets> xs;
  for (size_t i = 0; i < xs.size(); ++i)
    total += xs[i] = c.time[i].load(std::memory_order_relaxed);
  if (total == 0)
    return 0;
  auto rank = static_cast<uint64_t>(q * static_cast<double>(total));
  uint64_t seen = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    seen += xs[i];
    if (seen > rank)
      return int64_t{1} << i;
  }
  return int64_t{1} << (xs.size() - 1);
}

void actor_directory::bind(uint64_t id,
                           const std::shared_ptr<actor_counters>& c) {
  std::lock_guard<std::mutex> guard{mtx_};
  by_id_[id] = c;
}

std::shared_ptr<actor_counters> actor_directory::find(uint64_t id) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = by_id_.find(id);
  return i == by_id_.end() ? nullptr : i->second.lock();
}

std::shared_ptr<actor_counters>
stats_registry::slot(const std::string& name) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& e = entries_[name];
  if (!e.counters) {
    e.counters = std::make_shared<actor_counters>();
    e.counters->directory = directory_;
  }
  return e.counters;
}

void stats_registry::alias(uint64_t id, const std::string& name) {
  directory_->bind(id, slot(name));
}

actor_runtime stats_registry::read(const std::string& name, uint64_t probes) {
  actor_runtime out;
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = entries_.find(name);
  if (i == entries_.end())
    return out;
  auto& e = i->second;
  auto& c = *e.counters;
  out.measured = true;
  auto handled = c.handled();
  out.handled = static_cast<int64_t>(handled);
  out.mailbox = c.mailbox();
  auto now = c.stamp();
  // The reader's own asks are no sign of life. The count can go down (a
  // skipped message taken back, a restart's old incarnation ended late).
  auto delta = handled > e.prev_handled ? handled - e.prev_handled : 0;
  auto others = delta > probes ? delta - probes : 0;
  if (e.prev_ns > 0 && now > e.prev_ns)
    out.per_second = static_cast<int64_t>(static_cast<double>(others) * 1e9
                                          / static_cast<double>(now - e.prev_ns));
  if (others > 0) {
    // The last timed message (maybe a probe: then the bound is loose), and
    // at the latest the previous read when others came since.
    auto timed = c.last_ns.load(std::memory_order_relaxed);
    e.last_ns = std::max({e.last_ns, timed, e.prev_ns});
  }
  e.prev_handled = handled;
  e.prev_ns = now;
  out.p50_us = time_quantile_us(c, 0.5);
  out.p99_us = time_quantile_us(c, 0.99);
  out.errors = static_cast<int64_t>(c.errors.load(std::memory_order_relaxed));
  out.last_error = c.last_error();
  auto spawns = c.spawns.load(std::memory_order_relaxed);
  out.restarts = spawns > 1 ? static_cast<int64_t>(spawns - 1) : 0;
  // No message yet (the reader's asks aside): idle since it started.
  auto since = std::max(e.last_ns,
                        c.started_ns.load(std::memory_order_relaxed));
  out.idle_ms = std::max<int64_t>(0, now - since) / 1000000;
  return out;
}

namespace {

// The value after `key` in /proc/self/status (kB for VmRSS); -1 if absent.
int64_t status_field(const std::string& path, const char* key) {
  std::ifstream in(path);
  std::string line;
  auto n = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, n, key) == 0)
      return std::atoll(line.c_str() + n);
  return -1;
}

} // namespace

process_figures read_process_figures(const std::string& proc_self) {
  process_figures out;
  auto rss_kb = status_field(proc_self + "/status", "VmRSS:");
  out.rss_bytes = rss_kb < 0 ? -1 : rss_kb * 1024;
  out.threads = status_field(proc_self + "/status", "Threads:");
  std::ifstream stat(proc_self + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)),
                   std::istreambuf_iterator<char>());
  // Fields after the command name, which may hold spaces: from the last ')'.
  auto paren = text.rfind(')');
  if (paren != std::string::npos) {
    std::istringstream rest(text.substr(paren + 2));
    std::string field;
    int64_t utime = -1;
    int64_t stime = -1;
    // State is field 3; utime and stime are fields 14 and 15.
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14)
        utime = std::atoll(field.c_str());
      if (i == 15)
        stime = std::atoll(field.c_str());
    }
    auto hz = sysconf(_SC_CLK_TCK);
    if (utime >= 0 && stime >= 0 && hz > 0)
      out.cpu_ms = (utime + stime) * 1000 / hz;
  }
  auto fd_dir = proc_self + "/fd";
  if (auto* dir = opendir(fd_dir.c_str())) {
    out.fds = 0;
    out.sockets = 0;
    char target[PATH_MAX];
    while (auto* e = readdir(dir)) {
      if (e->d_name[0] == '.')
        continue;
      ++out.fds;
      auto link = fd_dir + "/" + e->d_name;
      auto n = readlink(link.c_str(), target, sizeof(target) - 1);
      if (n > 0 && std::strncmp(target, "socket:", 7) == 0)
        ++out.sockets;
    }
    closedir(dir);
    // The directory's own descriptor, open while counting.
    --out.fds;
  }
  return out;
}

std::string to_json(const actor_runtime& x) {
  json_object out;
  add_fields(out, x);
  return out.str();
}

void add_fields(json_object& out, const actor_runtime& x) {
  out.add("measured", x.measured)
    .add("mailbox", x.mailbox)
    .add("handled", x.handled)
    .add("per_second", x.per_second)
    .add("p50_us", x.p50_us)
    .add("p99_us", x.p99_us)
    .add("errors", x.errors)
    .add("last_error", x.last_error)
    .add("restarts", x.restarts)
    .add("idle_ms", x.idle_ms);
}

std::string to_json(const process_figures& x) {
  json_object out;
  out.add("rss_bytes", x.rss_bytes)
    .add("cpu_ms", x.cpu_ms)
    .add("threads", x.threads)
    .add("fds", x.fds)
    .add("sockets", x.sockets);
  return out.str();
}

} // namespace fleetd
