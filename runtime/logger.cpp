#include "runtime/logger.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "messages/error.hpp"

namespace fleetd {

namespace {

std::atomic<int> threshold{static_cast<int>(log_level::info)};
std::mutex mtx;
FILE* file = nullptr;

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

} // namespace logger

} // namespace fleetd
