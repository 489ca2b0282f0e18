#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace fleetd {

/// Lines of `text` without their newlines; views into `text`.
std::vector<std::string_view> split_lines(std::string_view text);

/// Whitespace-separated fields of one line; views into `line`.
std::vector<std::string_view> split_fields(std::string_view line);

/// `x` without leading and trailing blanks and tabs.
std::string_view trim(std::string_view x);

/// The `sep`-separated items of `list`, each trimmed, empty ones included
/// (a config list's caller decides whether "a,,b" is an error); views into
/// `list`; none for an empty list.
std::vector<std::string_view> split_list(std::string_view list, char sep);

/// The value of hex digit `c` (either case), or -1.
int hex_digit(char c);

/// `x` percent-encoded for a URL's query: every byte but A-Z a-z 0-9 - . _ ~
/// as %HH.
std::string url_escape(std::string_view x);

/// `x` as a double-quoted string of the Prometheus family's query languages
/// (PromQL, MetricsQL, LogQL: Go's escapes): backslash, quote and newline
/// escaped, other control bytes as \xHH, so no text leaves the string.
std::string query_string(std::string_view x);

/// `in` with %XX and '+' decoded into `out`; false on a truncated or
/// non-hex escape.
bool url_unescape(std::string_view in, std::string& out);

/// At most `max` bytes of `x`, each byte outside printable ASCII as '?': safe
/// in a header, a protobuf string or a log line whatever `x` came from.
std::string printable(std::string_view x, size_t max);

} // namespace fleetd
