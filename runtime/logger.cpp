#include "runtime/logger.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>

#include "messages/error.hpp"

namespace fleetd {

namespace {

std::atomic<int> threshold{static_cast<int>(log_level::info)};
std::mutex mtx;
FILE* file = nullptr;

// Rate limit state of log_limited; kinds are call-site literals, so few.
struct kind_state {
  int64_t last_ms = 0;
  int64_t suppressed = 0;
};
constexpr size_t max_kinds = 1024;
std::mutex limit_mtx;
clock_ptr limit_clock;
int64_t limit_interval_ms = 10000;
std::map<std::string, kind_state> kinds;

const char* level_name(log_level x) {
  switch (x) {
    case log_level::error: return "ERROR";
    case log_level::warning: return "WARN";
    case log_level::info: return "INFO";
    case log_level::debug: return "DEBUG";
  }
  return "?";
}

} // namespace

bool parse_log_level(const std::string& text, log_level& out) {
  if (text == "error")
    out = log_level::error;
  else if (text == "warning")
    out = log_level::warning;
  else if (text == "info")
    out = log_level::info;
  else if (text == "debug")
    out = log_level::debug;
  else
    return false;
  return true;
}

namespace logger {

caf::error init(log_level level, const std::string& file_path) {
  threshold = static_cast<int>(level);
  std::lock_guard<std::mutex> guard{mtx};
  if (file) {
    fclose(file);
    file = nullptr;
  }
  if (!file_path.empty()) {
    file = fopen(file_path.c_str(), "a");
    if (!file)
      return make_error(ec::bad_config,
                        "log.file: cannot open '" + file_path + "' for writing");
  }
  return caf::none;
}

bool enabled(log_level level) {
  return static_cast<int>(level) <= threshold.load(std::memory_order_relaxed);
}

void write(log_level level, const char* component, const std::string& msg) {
  // Wall-clock time on purpose: log lines are for people, not for logic.
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              now.time_since_epoch())
              .count()
            % 1000;
  std::tm tm;
  gmtime_r(&secs, &tm);
  char stamp[32];
  strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  char line_head[96];
  snprintf(line_head, sizeof(line_head), "%s.%03dZ %-5s %s: ", stamp,
           static_cast<int>(ms), level_name(level), component);
  std::lock_guard<std::mutex> guard{mtx};
  fputs(line_head, stderr);
  fputs(msg.c_str(), stderr);
  fputc('\n', stderr);
  if (file) {
    fputs(line_head, file);
    fputs(msg.c_str(), file);
    fputc('\n', file);
    fflush(file);
  }
}

void set_rate_limit(clock_ptr clk, std::chrono::milliseconds interval) {
  std::lock_guard<std::mutex> guard{limit_mtx};
  limit_clock = std::move(clk);
  limit_interval_ms = interval.count();
  kinds.clear();
}

bool admit(const char *component, const char *kind, int64_t &suppressed) {
  std::lock_guard<std::mutex> guard{limit_mtx};
  if (!limit_clock)
    limit_clock = make_system_clock();
  auto now = limit_clock->steady_ms();
  auto key = std::string(component) + '/' + kind;
  auto i = kinds.find(key);
  if (i == kinds.end()) {
    // Past the bound (a call site building kinds at run time), do not limit.
    if (kinds.size() < max_kinds)
      kinds.emplace(key, kind_state{now, 0});
    suppressed = 0;
    return true;
  }
  auto &st = i->second;
  if (now - st.last_ms < limit_interval_ms) {
    ++st.suppressed;
    return false;
  }
  suppressed = st.suppressed;
  st = kind_state{now, 0};
  return true;
}

} // namespace logger

} // namespace fleetd
