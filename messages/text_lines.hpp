#pragma once

// What the line-oriented text parsers (prom_text.hpp, influx_line.hpp,
// json_lines.hpp) share: a verdict per line, errors kept up to a bound and
// all counted, and the bounds of what one input may make a parser
// materialise.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>

#include "messages/types.hpp"

namespace fleetd {

/// Why one line was skipped.
struct line_error {
  /// 1-based.
  size_t line = 0;
  std::string reason;
};

struct text_limits {
  /// A longer line is skipped with an error, never copied.
  size_t max_line_bytes = 64 * 1024;
  /// Samples (records) of one input; parsing stops there
  /// (line_verdicts::stopped).
  size_t max_samples = 200'000;
  /// Line errors kept with their text (all are counted).
  size_t max_errors = 32;
  /// What the samples and the parser's own indexes may take decoded
  /// (strings, structs, nodes); parsing stops there.
  uint64_t max_decoded_bytes = uint64_t{64} << 20;
};

/// What a parse made of an input's lines, whatever records it makes.
struct line_verdicts {
  /// The first text_limits::max_errors bad lines.
  std::vector<line_error> errors;
  /// Every bad line, including those past max_errors.
  size_t bad_lines = 0;
  /// ec::too_large when a limit stopped parsing before the end (the samples
  /// before it are kept); none otherwise.
  caf::error stopped;

  /// Counts a bad line and keeps its error while there is room.
  void note_error(size_t line, std::string reason, size_t max_errors) {
    ++bad_lines;
    if (errors.size() < max_errors)
      errors.push_back({line, std::move(reason)});
  }
};

struct text_result : line_verdicts {
  /// In input order.
  metric_samples samples;
};

/// Calls `f(line, number)` for each line of `text` (1-based numbers; the
/// newline and a '\r' before it taken off) until `f` returns false.
template <class F>
void for_each_line(std::string_view text, F&& f) {
  size_t number = 0;
  while (!text.empty()) {
    auto end = text.find('\n');
    auto line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (!f(line, ++number))
      return;
  }
}

} // namespace fleetd
