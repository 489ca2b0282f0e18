#pragma once

#include <string>

#include "messages/types.hpp"

namespace fleetd {

/// Canonical bytes of a label set (name NUL value NUL ..., sorted by name);
/// equal label sets give equal bytes, so stores key series by them.
std::string encode_labels(const label_map& labels);

/// Inverse of encode_labels; a truncated tail is ignored.
label_map decode_labels(const std::string& bytes);

} // namespace fleetd
