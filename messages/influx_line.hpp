#pragma once

// The InfluxDB line protocol (docs/collectors.md, "Influx line protocol"), as
// Telegraf and application libraries write it:
//   measurement[,tag=value...] field=value[,field=value...] [timestamp]
// Each numeric or boolean field becomes a sample named
// `<measurement>_<field>` with the tags as labels (VictoriaMetrics' mapping);
// string fields are skipped and counted.
//
// Every line is its own verdict, as in prom_text.hpp: a bad line gets a
// line-numbered error and the good lines around it are kept; what a request
// may make the parser materialise is bounded before it is allocated.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

#include "messages/text_lines.hpp"
#include "messages/types.hpp"

namespace fleetd {

/// The unit of the lines' timestamps (the `precision` query parameter).
enum class influx_precision : uint8_t { ns, us, ms, s };

/// "ns" (or "n"), "us" (or "u"), "ms" or "s", as Influx's `precision`
/// parameter; false for anything else.
bool parse_influx_precision(std::string_view x, influx_precision& out);

struct influx_limits : text_limits {
  /// Tags of one line.
  size_t max_tags = 64;
  /// Fields of one line.
  size_t max_fields = 256;
};

struct influx_batch : text_result {
  /// String fields, which have no sample.
  size_t skipped_strings = 0;
};

/// Parses `text`; lines without a timestamp get `now_ms`.
influx_batch parse_influx_lines(std::string_view text, int64_t now_ms,
                                influx_precision precision,
                                const influx_limits& limits = {});

} // namespace fleetd
