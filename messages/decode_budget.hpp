#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <caf/error.hpp>

#include "messages/types.hpp"

namespace fleetd {

/// What one received request may make a node materialise while it is
/// decoded (ingest.max-decoded-bytes): the decompressed body, the parsed
/// message, and every record with the names and labels it copies. Each
/// decoding step charges the budget *before* it allocates; a request that
/// would exceed it is refused (ec::too_large), whatever path it takes.
class decode_budget {
public:
  explicit decode_budget(uint64_t limit) : limit_(limit) {}

  /// Takes `bytes` for `what`; ec::too_large (naming `what` and the limit)
  /// when fewer are left, and then nothing is taken.
  caf::error charge(uint64_t bytes, const char* what);

  uint64_t limit() const { return limit_; }
  uint64_t used() const { return used_; }
  uint64_t left() const { return limit_ - used_; }

private:
  uint64_t limit_;
  uint64_t used_ = 0;
};

/// What a record of `struct_size` bytes takes decoded with a copy of `name`
/// and `labels` (the strings' bytes; small-string and node overheads are
/// in the struct sizes).
uint64_t record_bytes(size_t struct_size, const std::string& name,
                      const label_map& labels);

} // namespace fleetd
