#pragma once

#include <string>
#include <string_view>

#include <caf/error.hpp>

#include "messages/types.hpp"

namespace fleetd {

/// Canonical bytes of a label set (name NUL value NUL ..., sorted by name);
/// equal label sets give equal bytes, so stores key series by them.
std::string encode_labels(const label_map& labels);

/// Inverse of encode_labels; a truncated tail is ignored.
label_map decode_labels(const std::string& bytes);

/// The offset of the first byte that makes `x` other than UTF-8 text
/// without NUL (a NUL, a bad or overlong sequence, a surrogate, past
/// U+10FFFF), or npos: labels are NUL-separated here and PostgreSQL's text
/// holds nothing else, so every name, label, log line and event text must be.
size_t bad_text_at(std::string_view x);

/// ec::invalid_record naming `what` and the offset unless `x` is such text.
caf::error check_text(std::string_view x, const std::string& what);

/// check_text of every label name and value.
caf::error check_labels(const label_map& labels, const std::string& what);

/// Replaces each byte at which `x` stops being such text with '?' (same
/// size: nothing to budget); the bytes it replaced.
size_t repair_text(std::string& x);

/// repair_text of every label name and value; the bytes it replaced.
size_t repair_labels(label_map& labels);

/// Makes every text field of `b` such text (repair_text): the epoch, metric
/// names and labels, log lines and labels, event kinds, messages and
/// attributes; the fields it changed. Columnar bytes are the store's to
/// decode: their series definitions are refused instead (metrics_codec).
int64_t repair_texts(ingest_batch& b);

} // namespace fleetd
