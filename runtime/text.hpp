#pragma once

#include <string_view>
#include <vector>

namespace fleetd {

/// Lines of `text` without their newlines; views into `text`.
std::vector<std::string_view> split_lines(std::string_view text);

/// Whitespace-separated fields of one line; views into `line`.
std::vector<std::string_view> split_fields(std::string_view line);

/// `x` without leading and trailing blanks and tabs.
std::string_view trim(std::string_view x);

} // namespace fleetd
