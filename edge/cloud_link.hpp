#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/typed_response_promise.hpp>

#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"
#include "runtime/http_url.hpp"
#include "runtime/http_client.hpp"

namespace fleetd {

struct cloud_link_config {
  std::string host;
  int64_t port = 0;
  /// "host:port,host:port" ([v6]:port): the nodes to fail over between, in
  /// order; when set, host and port are not used.
  std::string endpoints;
  std::chrono::milliseconds timeout{10000};
  size_t max_response_bytes = 1024 * 1024;
  /// Trusted CA (empty: the system store) and optional client certificate.
  tls_files tls;
  /// Plain HTTP (loopback only): for local tests, never a fleet.
  bool insecure = false;
  /// The device's key ("fdk_..."); "": <data-dir>/device.key.
  std::string key_file;
  /// Enrollment token (or a file holding it) used once when no key exists.
  std::string enroll_token;
  std::string enroll_token_file;
  /// The device id an enrollment asks a key for.
  std::string device_id;
  /// How long a batch arriving after a quiet spell waits for the other
  /// streams' batches to share its request (0: never waits).
  std::chrono::milliseconds coalesce_window{50};
  /// 5: as 4, and each logs batch's lines front-coded, zstd with the sync
  /// dictionary, POST /v5/sync (a lone batch too); 4: as 3, and each logs
  /// batch's timestamps as deltas, POST /v4/sync (a lone logs batch too); 3: several batches per request, POST
  /// /v3/sync (zstd as a whole) when they came compressed; 2: POST /v2/sync
  /// (trimmed headers), the queued bytes as they are; each falls back to
  /// the older form when a node answers 404; 1: one batch per POST
  /// /v1/sync, as before version 2.
  int64_t sync_version = 5;
  /// cloud.stream: auto, true or false; `use_stream` is what it resolved
  /// to for this run (auto: on when syncs come every 30 s or faster and
  /// batches are compressed, stream_wanted).
  std::string stream = "auto";
  bool use_stream = false;
  /// Where the quiet-spell rule reads the time; the wall clock when unset.
  clock_ptr clock;
};

/// How long a node that refused a sync stream (not 404) gets HTTP requests
/// before the next upgrade: a full node is not asked every round.
constexpr std::chrono::milliseconds stream_refused_pause{600000};

/// A batch that comes less than this after the last exchange ended is part
/// of a drain (or of rounds that fast) and goes at once; one after a longer
/// quiet spell waits up to cloud.coalesce-window for the other streams'.
constexpr std::chrono::milliseconds coalesce_quiet_spell{500};

/// The zstd level of a POST /v3/sync to /v5/sync (a bundle compressed as a
/// whole, when its batches came compressed) of `queued_bytes` (its
/// batches' bytes as queued): a round's few KiB at 19, 3-4 % smaller than
/// at 3 for ~0.1 ms and ~0.2-1 MiB of context; a backlog's drain at 3.
constexpr size_t small_bundle_bytes = 4096;
constexpr int bundle_zstd_level(size_t queued_bytes) {
  return queued_bytes <= small_bundle_bytes ? 19 : 3;
}

/// What cloud.stream = `setting` means for a node syncing every
/// `sync_interval_ms` at zstd level `zstd_level`: a stream pays off when
/// exchanges come faster than the cloud's idle timeout (60 s) closes it.
bool stream_wanted(const std::string& setting, int64_t sync_interval_ms,
                   int64_t zstd_level);

class option_set;

/// Declares cloud.endpoints, cloud.host, cloud.port, cloud.timeout,
/// cloud.ca-file, cloud.tls-cert, cloud.tls-key, cloud.insecure,
/// cloud.key-file, cloud.enroll-token and cloud.enroll-token-file; setting
/// cloud.endpoints together with cloud.host or cloud.port is refused.
void declare(option_set& opts, cloud_link_config& x);

/// bad_config naming the option key when `x` cannot work.
caf::error validate(const cloud_link_config& x);

/// One cloud node the link can send to.
using cloud_endpoint = host_port;

/// The endpoints of `x` in order: cloud.endpoints parsed (at most 16), or
/// host:port alone; bad_config naming the option when one is malformed.
caf::expected<std::vector<cloud_endpoint>>
endpoints_of(const cloud_link_config& x);

/// The first line of a key or token file, trimmed, reading at most 4 KiB:
/// empty when `path` is empty or the file does not exist (no key); an
/// io_error with errno's text when it exists but cannot be read.
caf::expected<std::string> read_key_file(const std::string& path);

/// An endpoint's own keep-alive client (TLS name: its host) and its URL.
struct endpoint_client {
  std::string url;
  std::unique_ptr<http_client> client;
  /// The node answered POST /v2/sync with 404: an older cloud, v1 only.
  bool v1_only = false;
  /// The newest bundle form the node takes: each 404 to POST /vN/sync
  /// (N = 3 to 5) leaves N - 1 (v5: front-coded lines and the dictionary;
  /// v4: log timestamps as deltas; v3: zstd as a whole; v2: the batches'
  /// own bytes).
  int64_t node_version = 5;
  /// The node answered the sync stream's upgrade with 404: HTTP only.
  bool no_stream = false;
  /// It refused the upgrade otherwise (503: its streams are all taken):
  /// HTTP until this steady time, then the upgrade is tried again.
  int64_t stream_retry_ms = 0;
};

/// A batch waiting to share a request with other streams' batches.
struct pending_sync {
  caf::typed_response_promise<sync_ack> promise;
  std::string body;
};

struct cloud_link_state {
  cloud_link_config cfg;
  /// Every endpoint's client; requests go to `current` until it fails.
  std::vector<endpoint_client> endpoints;
  size_t current = 0;
  int64_t failovers = 0;
  /// "Bearer <key>" once the device has a key; empty: none (anonymous).
  std::string authorization;
  int64_t enrollments = 0;
  int64_t requests = 0;
  int64_t failures = 0;
  /// Frames sent on sync streams (each a request without HTTP headers).
  int64_t stream_frames = 0;
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
  /// Batches sent, and requests that carried more than one.
  int64_t batches = 0;
  int64_t bundles = 0;
  /// Batches waiting for the coalesce window; the timer's generation.
  std::vector<pending_sync> pending;
  int64_t flush_generation = 0;
  /// The clock's steady ms when the last exchange ended (a drain sends at
  /// once); none yet.
  std::optional<int64_t> last_exchange_ms;
  /// GET /healthz probes while offline, and those not answered 200.
  int64_t probes = 0;
  int64_t probes_failed = 0;
  std::string last_error;
  static inline const char* name = "cloud_link";
};

/// Carries SyncRequest bodies as POST /v2/sync (or at sync version 3 to 5
/// /v3/sync to /v5/sync, zstd as a whole: bundle_for) with keep-alive
/// and the device key, the
/// batches of every stream that arrive within the coalesce window (after a
/// quiet spell) in one request, and turns each batch's SyncResponse into its
/// reply; a node that answers 404 gets the older form from then on (v5:
/// /v4/sync; v4: /v3/sync; v3: POST /v2/sync; v2: each batch as POST
/// /v1/sync).
/// Without a key but
/// with an enrollment token it first enrolls (POST /v1/enroll) and keeps the
/// key in key_file (0600); a refused enrollment is a link failure: the data
/// waits and the sync actors back off. When the current endpoint fails to
/// answer (connect, TLS, timeout, a 5xx) the request fails as before and the
/// next ones go to the next endpoint, round-robin, staying there; a 4xx is
/// an answer and moves nothing. A health probe (GET /healthz) answers the
/// backoff actor while the link is offline. Spawn detached: the HTTP call
/// blocks.
cloud_link_actor::behavior_type
cloud_link(cloud_link_actor::stateful_pointer<cloud_link_state> self,
           cloud_link_config cfg);

} // namespace fleetd
