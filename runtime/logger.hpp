#pragma once

#include <sstream>
#include <string>

#include <caf/error.hpp>

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

} // namespace logger

template <class... Ts>
void log(log_level level, const char* component, const Ts&... xs) {
  if (!logger::enabled(level))
    return;
  std::ostringstream out;
  (out << ... << xs);
  logger::write(level, component, out.str());
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
