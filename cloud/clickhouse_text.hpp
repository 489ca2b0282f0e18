#pragma once

// Text to and from ClickHouse 18.16, which has no query parameters: every
// value the sink sends is escaped here, one function for SQL literals and
// TabSeparated fields alike.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "messages/types.hpp"

namespace fleetd {

/// `text` escaped so that it reads back byte for byte both between single
/// quotes in SQL and as a TabSeparated field: backslash and quote get a
/// backslash, control bytes (NUL, tab, newline, ...) and DEL become \xHH,
/// other bytes (UTF-8 or not) pass as they are.
std::string ch_escape(std::string_view text);

/// `text` as a quoted SQL string literal: '...' around ch_escape(text).
std::string ch_literal(std::string_view text);

/// A TabSeparated field as ClickHouse writes it, unescaped (\t, \n, \0,
/// \\, \', \xHH, ... and any other escaped byte as itself).
std::string ch_unescape(std::string_view field);

/// One TabSeparated answer's rows split into unescaped fields; at most
/// `max_rows` rows (the rest is dropped, `truncated` set).
std::vector<std::vector<std::string>>
ch_rows(std::string_view body, size_t max_rows, bool& truncated);

/// A series' labels as one canonical string (sorted by key, `\`, `,` and
/// `=` escaped with `\`): equal label sets, and only those, give equal
/// strings.
std::string canonical_labels(const label_map& labels);

/// The labels canonical_labels(labels) wrote, read back.
label_map parse_canonical_labels(std::string_view text);

/// A double as ClickHouse reads it back exactly: 17 significant digits,
/// nan, inf, -inf.
std::string ch_double(double x);

} // namespace fleetd
