#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "messages/interfaces.hpp"

namespace fleetd {

struct ingest_config {
  /// Decode budget of one request (ingest.max-decoded-bytes): everything
  /// decoding materialises, the columnar batch in the store included.
  int64_t max_decoded_bytes = 64 * 1024 * 1024;
  /// Accept requests without a device key, as the device they name (plain
  /// HTTP on loopback only, for tests): ingest.anonymous.
  bool anonymous = false;
  /// retry_after_ms of a 503 while the journal is full (journal.retry-after,
  /// declared with the journal's options).
  int64_t journal_retry_after_ms = 5000;
  cloud_store_actor store;
  /// Resolves device keys and charges quotas; required.
  tenancy_actor tenancy;
  /// Hears each stored or refused batch of a known device (the rollout's
  /// health figures); none: nobody.
  outcome_listener outcomes;
};

class option_set;

/// Declares ingest.max-decoded-bytes and ingest.anonymous.
void declare(option_set& opts, ingest_config& x);

/// bad_config naming the option key when `x` cannot work.
caf::error validate(const ingest_config& x);

struct ingest_state {
  ingest_config cfg;
  int64_t requests = 0;
  int64_t accepted = 0;
  int64_t duplicates = 0;
  int64_t points = 0;
  int64_t store_failures = 0;
  int64_t configs_sent = 0;
  int64_t enroll_requests = 0;
  /// Text fields stored with '?' for bytes no store holds (NUL, not UTF-8).
  int64_t texts_repaired = 0;
  /// Delivery reports with counters that went down within their origin
  /// (those add nothing; the rest of the report and the batch count).
  int64_t delivery_reports_ignored = 0;
  /// Rejected requests by error code (checksum_mismatch, decode_failed, ...).
  std::map<std::string, int64_t> rejected;
  static inline const char* name = "ingest";
};

/// The one media type of a SyncRequest and a SyncResponse.
constexpr const char* protobuf_type = "application/x-protobuf";

/// True when a Content-Type names protobuf_type (parameters allowed).
bool is_protobuf_type(const std::string& content_type);

/// The steps of a request, in order: what an error means depends on where.
enum class ingest_step { auth, decode, store };

/// The one mapping from a request's outcome to its HTTP status: 200 when
/// `err` is none; 401/403 when the device key does not prove the device;
/// 429 over quota; a refusal (400, 409, 413, 415, 422) when sending the
/// same bytes again cannot help; 503 (retry later) when the store may
/// recover (busy, disk full, I/O, timeout).
uint16_t http_status(ingest_step step, const caf::error& err);

/// http_status of a store error.
uint16_t store_error_status(const caf::error& err);

/// A SyncResponse as an HTTP answer; an error one names its code and
/// message in the X-Fleetd-Error header too.
http_reply sync_answer(uint16_t status, const sync_ack& ack);

/// Authenticates one POST /v1/sync (device key -> org and device), decodes
/// and verifies its body, checks the device it names is the key's and the
/// org's quota, stores it stamped "<org>/<device>" through the store
/// (which drops duplicates atomically) and answers with a SyncResponse that
/// acks only what is durably stored. A bad batch is never half-written.
ingest_actor::behavior_type
ingest(ingest_actor::stateful_pointer<ingest_state> self, ingest_config cfg);

} // namespace fleetd
