#pragma once

#include <sstream>
#include <string>

#include <caf/error.hpp>

#include "runtime/clock.hpp"

namespace fleetd {

enum class log_level { error = 0, warning = 1, info = 2, debug = 3 };

/// Parses "error", "warning", "info" or "debug"; false when unknown.
bool parse_log_level(const std::string& text, log_level& out);

/// Process-wide logger (CAF's own is compiled out in Debian's build).
/// Thread-safe; writes one line per call to stderr and optionally a file.
namespace logger {

/// Sets the threshold and the optional file (appended); empty path = none.
caf::error init(log_level level, const std::string& file_path);

bool enabled(log_level level);

void write(log_level level, const char* component, const std::string& msg);

/// Clock and interval of the rate limit of log_limited (default: the wall
/// clock, 10s); tests inject a manual clock.
void set_rate_limit(clock_ptr clk, std::chrono::milliseconds interval);

/// Rate limit per kind (component + a key the call site names): the first
/// line of a kind passes, then at most one per interval; a passing line gets
/// in `suppressed` how many of its kind were held back since the last one.
bool admit(const char *component, const char *kind, int64_t &suppressed);

} // namespace logger

template <class... Ts>
void log(log_level level, const char* component, const Ts&... xs) {
  if (!logger::enabled(level))
    return;
  std::ostringstream out;
  (out << ... << xs);
  logger::write(level, component, out.str());
}

/// A line that may repeat per request or round (a failed store, a failed
/// sync): rate-limited per `kind`, see logger::admit.
template <class... Ts>
void log_limited(log_level level, const char *component, const char *kind,
                 const Ts &...xs) {
  int64_t suppressed = 0;
  if (!logger::enabled(level) || !logger::admit(component, kind, suppressed))
    return;
  std::ostringstream out;
  (out << ... << xs);
  if (suppressed > 0)
    out << " (" << suppressed << " more like this suppressed)";
  logger::write(level, component, out.str());
}

template <class... Ts>
void log_warning_limited(const char *component, const char *kind,
                         const Ts &...xs) {
  log_limited(log_level::warning, component, kind, xs...);
}

template <class... Ts>
void log_error(const char* component, const Ts&... xs) {
  log(log_level::error, component, xs...);
}

template <class... Ts>
void log_warning(const char* component, const Ts&... xs) {
  log(log_level::warning, component, xs...);
}

template <class... Ts>
void log_info(const char* component, const Ts&... xs) {
  log(log_level::info, component, xs...);
}

template <class... Ts>
void log_debug(const char* component, const Ts&... xs) {
  log(log_level::debug, component, xs...);
}

} // namespace fleetd
