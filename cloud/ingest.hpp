#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "messages/interfaces.hpp"

namespace fleetd {

struct ingest_config {
  /// Largest request body after decompression.
  size_t max_decoded_bytes = 64 * 1024 * 1024;
  cloud_store_actor store;
};

struct ingest_state {
  ingest_config cfg;
  int64_t requests = 0;
  int64_t accepted = 0;
  int64_t duplicates = 0;
  int64_t points = 0;
  int64_t store_failures = 0;
  int64_t configs_sent = 0;
  /// Rejected requests by error code (checksum_mismatch, decode_failed, ...).
  std::map<std::string, int64_t> rejected;
  static inline const char* name = "ingest";
};

/// Decodes and verifies one POST /v1/sync body, stores it through the store
/// (which drops duplicates atomically) and answers with a SyncResponse that
/// acks only what is durably stored. A bad batch is never half-written.
ingest_actor::behavior_type
ingest(ingest_actor::stateful_pointer<ingest_state> self, ingest_config cfg);

} // namespace fleetd
