#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include "messages/journal.hpp"

namespace fleetd {

/// The format version journal rows are written in (JournalEntry.version).
inline constexpr uint32_t journal_format_version = 1;

/// `x` as a journal row: a JournalEntry (messages/fleetd/v1/journal.proto),
/// zstd-compressed. The id is the row's key, not part of the bytes.
std::string encode_journal_entry(const journal_entry& x);

/// A journal row read back; decode_failed when it is not one (corrupt,
/// truncated, or of a newer format), too_large past `max_bytes` decoded.
caf::expected<journal_entry> decode_journal_entry(std::string_view row,
                                                  uint64_t max_bytes);

} // namespace fleetd
