#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

#include "messages/decode_budget.hpp"
#include "messages/types.hpp"

namespace fleetd {

/// Stream names as they appear in URLs, the store and the console.
constexpr const char* metrics_stream = "metrics";
constexpr const char* logs_stream = "logs";
constexpr const char* events_stream = "events";

/// Current version of the batch encoding (SyncMetadata.format_version):
/// 2 adds MetricsBatch.columnar, logs and events; 1 (metrics as protobuf
/// columns only) is still accepted from simple senders.
constexpr uint32_t wire_format_version = 2;

/// True when `body` starts with a zstd frame.
bool is_zstd(std::string_view body);

/// XXH3-64 of `bytes`, big endian, as SyncMetadata.checksum carries it.
std::string batch_checksum(std::string_view bytes);

struct encode_settings {
  std::string device_id;
  int64_t sequence = 0;
  std::string epoch;
  /// When the batch is cut (the device's queue keeps it; not sent).
  int64_t now_ms = 0;
  /// zstd level; 0 sends the body uncompressed.
  int zstd_level = 3;
  /// cloud_settings.version the device applies (SyncRequest.config_version).
  int64_t config_version = 0;
};

/// A complete POST /v1/sync body carrying the samples as a MetricsBatch of
/// protobuf columns (the simple senders' format).
std::string encode_metrics_request(const encode_settings& cfg,
                                   const metric_samples& samples);

/// A POST /v1/sync body carrying one columnar metrics batch
/// (messages/metrics_codec).
std::string encode_columnar_request(const encode_settings& cfg,
                                    const std::string& columnar);

/// A POST /v1/sync body carrying log lines, grouped by stream labels.
std::string encode_logs_request(const encode_settings& cfg,
                                const log_lines& lines);

/// A POST /v1/sync body carrying events.
std::string encode_events_request(const encode_settings& cfg,
                                  const event_records& events);

/// The capability a device reports: the tier it runs and what it detected.
device_capability capability_of(const capability_report& x);

/// `body` (a request encoded above, zstd or plain) with
/// SyncMetadata.retry_count and, when `cap` is set, SyncRequest.capability
/// (when `declared` is set, SyncRequest.delivery)
/// appended as a second message (a second zstd frame when compressed), which
/// protobuf merges. Both lie outside the checksummed batch, so the queued
/// bytes are resent unchanged and a resend is still a duplicate.
std::string with_send_fields(const std::string& body, int64_t retry_count,
                             const device_capability* cap,
                             const drop_declaration* declared = nullptr);

/// Most drop kinds one SyncRequest.delivery may name, and the longest name.
constexpr int max_declared_kinds = 32;
constexpr size_t max_drop_kind_bytes = 64;
/// Largest count a kind may declare (their sum stays far from overflow).
constexpr int64_t max_declared_records = 1'000'000'000'000'000;

/// The columnar metrics bytes inside a request body this device encoded
/// (zstd or plain); empty when the body carries none.
caf::expected<std::string> request_columnar(std::string_view body);

/// A SyncRequest taken apart and verified: the batch as the cloud store
/// takes it (metrics as protobuf columns in `samples`, or still encoded in
/// `columnar`), with `decode_budget` = what the request left of its budget.
using decoded_request = ingest_batch;

/// Decompresses (when `zstd`), parses and verifies one request body. One
/// decode budget of `max_decoded_bytes` bounds everything it materialises:
/// the decompressed body, the parsed message and every record (names and
/// labels copied per record); past it the request is ec::too_large.
caf::expected<decoded_request> decode_request(std::string_view body, bool zstd,
                                              size_t max_decoded_bytes);

/// SyncResponse bytes for an ack.
std::string encode_response(const sync_ack& ack);

/// Reads a SyncResponse.
caf::expected<sync_ack> decode_response(std::string_view body);

/// Most batches one POST /v2/sync may carry (one per stream).
constexpr size_t max_bundle_items = 3;

/// One batch of a POST /v2/sync body: a POST /v1/sync body and whether it
/// is zstd-compressed (what Content-Encoding says in v1); in a
/// POST /v4/sync or /v5/sync, whether its log timestamps came as deltas
/// (delta_log_times), in a POST /v5/sync whether its lines came front-coded
/// (front_code_log_lines); decode_bundle_body restores both.
struct bundle_item {
  std::string request;
  bool zstd = false;
  bool log_time_deltas = false;
  bool log_lines_front_coded = false;
};

/// How the items of a bundle may be recoded, by the path that carries it.
enum class bundle_coding : uint8_t {
  /// POST /v2/sync and /v3/sync: items as queued.
  none,
  /// POST /v4/sync and sync stream frames: log timestamps as deltas.
  log_times,
  /// POST /v5/sync: log timestamps as deltas, log lines front-coded, and
  /// the whole zstd with the sync dictionary (sync_dictionary()).
  log_lines,
};

/// The bundle coding of a POST to `target` (none for /v2 and /v3).
bundle_coding coding_of_path(std::string_view target);

/// A plain POST /v1/sync body carrying a LogsBatch with its timestamp_ns
/// column (field 3) as zigzag deltas from the previous line's (LogsBatch
/// field 5, POST /v4/sync only); empty when `request` carries no logs or
/// would not come back byte for byte from restore_log_times.
std::string delta_log_times(std::string_view request);

/// The body delta_log_times was given, exactly; at most `max_bytes` long
/// (ec::too_large, checked as it grows), ec::decode_failed for anything
/// delta_log_times cannot have made.
caf::expected<std::string> restore_log_times(std::string_view coded,
                                             size_t max_bytes);

/// A plain POST /v1/sync body (or one delta_log_times made) carrying a
/// LogsBatch with its lines (field 4) front-coded as one field 6 (POST
/// /v5/sync only); empty when `request` carries no lines or would not come
/// back byte for byte from restore_log_lines.
std::string front_code_log_lines(std::string_view request);

/// The body front_code_log_lines was given, exactly; at most `max_bytes`
/// long (ec::too_large, each line checked before it is made),
/// ec::decode_failed for anything front_code_log_lines cannot have made.
caf::expected<std::string> restore_log_lines(std::string_view coded,
                                             size_t max_bytes);

/// The zstd dictionary of POST /v5/sync (raw content, frozen: a cloud
/// decodes with the very bytes a device compressed with). It holds the
/// series definitions fleetd's system collector sends first in a session,
/// as the columnar codec writes them (messages/sync_dictionary.cpp).
std::string_view sync_dictionary();

/// A POST /v2/sync body (SyncBundle) carrying `bodies`, each a POST /v1/sync
/// body as encoded above (zstd told by is_zstd), in order.
std::string encode_bundle(const std::vector<std::string>& bodies);

/// The items of a SyncBundle; more than `max_items` (counted before
/// anything is allocated for them) is ec::too_large, garbage or no item
/// ec::decode_failed.
caf::expected<std::vector<bundle_item>>
decode_bundle(std::string_view body, size_t max_items);

/// A POST /v2/sync body and whether it is zstd as a whole (POST /v3/sync,
/// or /v4/sync when `coded`: some item's log timestamps are deltas; with
/// bundle_coding::log_lines always zstd and coded: POST /v5/sync).
struct bundle_body {
  std::string bytes;
  bool zstd = false;
  bool coded = false;
  /// The items are in the reverse of the order given.
  bool reversed = false;
};

/// `bodies` as one POST /v2/sync body: when some are zstd, their plain
/// bytes in one SyncBundle compressed at `level` (one frame, and what the
/// items share, device and epoch, once), recoded as `coding` allows (log
/// timestamps as deltas, lines front-coded), if that is smaller than
/// encode_bundle(bodies), which it is otherwise. With log_lines the frame
/// is compressed with sync_dictionary() and always taken. Of two or three
/// items of at most max_reordered_bytes together both orders (given,
/// reversed) are tried and the smaller kept: `reversed` says which (the
/// answers come back in the body's order).
constexpr size_t max_reordered_bytes = 64 * 1024;
bundle_body encode_bundle_body(const std::vector<std::string>& bodies,
                               int level,
                               bundle_coding coding = bundle_coding::none);

/// `bodies` as the plain bytes of a POST /v4/sync body (each logs batch's
/// timestamps as deltas where that restores byte for byte): what a sync
/// stream frame carries (messages/stream_codec).
std::string plain_bundle_body(const std::vector<std::string>& bodies);

/// The items of a POST /v2/sync body (decode_bundle with max_bundle_items),
/// decompressed first when `zstd`: its frames may make at most
/// `max_plain_bytes` (ec::too_large; corrupt zstd ec::decode_failed). With
/// `coding` log_times (POST /v4/sync) items with log_time_deltas are
/// restored, with log_lines (POST /v5/sync, decompressed with the sync
/// dictionary) those with log_lines_front_coded too, all items together at
/// most `max_plain_bytes` (ec::too_large); an item recoded in a way its
/// coding does not allow is decode_failed.
caf::expected<std::vector<bundle_item>>
decode_bundle_body(std::string_view body, bool zstd, size_t max_plain_bytes,
                   bundle_coding coding = bundle_coding::none);

/// A SyncBundleResponse: per item its SyncResponse with `status` set.
std::string encode_bundle_response(const std::vector<sync_ack>& acks);

/// Reads a SyncBundleResponse answering `items` batches: exactly that many
/// results, each with an HTTP status (in sync_ack::status).
caf::expected<std::vector<sync_ack>>
decode_bundle_response(std::string_view body, size_t items);

/// `plain` as one zstd frame at `level` (plain itself when compression
/// fails; decoders tell the two apart with is_zstd).
std::string zstd_compress(const std::string& plain, int level);

/// The zstd frames of `body` decompressed into `plain`, each chunk charged
/// to `budget` before it is kept (a frame may lie about its size).
caf::error zstd_decompress(std::string_view body, std::string& plain,
                           decode_budget& budget);

} // namespace fleetd
