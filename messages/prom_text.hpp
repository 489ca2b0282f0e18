#pragma once

// The Prometheus text exposition format 0.0.4 (docs/collectors.md, "Prometheus
// text"), as local exporters serve it and local programs push it: comment,
// HELP and TYPE lines, samples with labels, NaN and +-Inf, optional
// millisecond timestamps, histograms and summaries as their sample series.
//
// Every line is its own verdict: a bad line gets a line-numbered error and
// is skipped, the good lines around it are kept. What a page may make the
// parser materialise is bounded before it is allocated (prom_limits).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

#include "messages/types.hpp"

namespace fleetd {

enum class prom_type : uint8_t { untyped, counter, gauge, histogram, summary };

/// "untyped", "counter", ... as a TYPE line spells it.
const char* to_string(prom_type x);

/// A metric family's metadata: its TYPE and HELP lines.
struct prom_family {
  std::string name;
  prom_type type = prom_type::untyped;
  std::string help;
};

/// Why one line was skipped.
struct line_error {
  /// 1-based.
  size_t line = 0;
  std::string reason;
};

/// Counts a bad line in `bad_lines` and keeps its error while `errors` has
/// fewer than `max`.
void note_line_error(std::vector<line_error>& errors, size_t& bad_lines,
                     size_t max, size_t line, std::string reason);

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

struct prom_limits {
  /// A longer line is skipped with an error, never copied.
  size_t max_line_bytes = 64 * 1024;
  /// Labels of one sample.
  size_t max_labels = 64;
  /// Samples of one page; parsing stops there (prom_page::stopped).
  size_t max_samples = 200'000;
  /// Line errors kept with their text (all are counted).
  size_t max_errors = 32;
  /// What the samples, families and duplicate check may take decoded
  /// (strings, structs, nodes); parsing stops there (prom_page::stopped).
  uint64_t max_decoded_bytes = uint64_t{64} << 20;
};

struct prom_page {
  /// In page order; each with the page's timestamp unless it gave its own.
  metric_samples samples;
  /// Families with a TYPE or HELP line, in the order first seen.
  std::vector<prom_family> families;
  /// The first prom_limits::max_errors bad lines.
  std::vector<line_error> errors;
  /// Every bad line, including those past max_errors.
  size_t bad_lines = 0;
  /// ec::too_large when a limit stopped parsing before the end (the samples
  /// before it are kept); none otherwise.
  caf::error stopped;
};

/// Parses `text`; samples without a timestamp get `timestamp_ms`. Labels
/// with an empty value are dropped (in Prometheus they are no label); a
/// series given twice is an error on its second line.
prom_page parse_prom_text(std::string_view text, int64_t timestamp_ms,
                          const prom_limits& limits = {});

/// Whether `x` is a metric name: [a-zA-Z_:][a-zA-Z0-9_:]*.
bool is_metric_name(std::string_view x);

/// Whether `x` is a label name: [a-zA-Z_][a-zA-Z0-9_]*.
bool is_label_name(std::string_view x);

/// A Prometheus text float: decimal (sign, exponent) or NaN, Inf,
/// Infinity with a sign, case-insensitive; false for anything else or a
/// value out of double's range.
bool parse_prom_float(std::string_view x, double& out);

} // namespace fleetd
