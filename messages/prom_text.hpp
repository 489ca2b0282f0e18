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

#include "messages/text_lines.hpp"
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

struct prom_limits : text_limits {
  /// Labels of one sample.
  size_t max_labels = 64;
};

struct prom_page : text_result {
  /// Families with a TYPE or HELP line, in the order first seen.
  std::vector<prom_family> families;
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

/// Appends `v` as a quoted label value: \\, \" and \n escaped (the caller
/// checked it is UTF-8 text).
void append_prom_label_value(std::string& out, std::string_view v);

} // namespace fleetd
