#pragma once

// The sync stream (docs/wire-format.md, "Sync stream"): after
// `GET /v5/stream` with `Upgrade: fleetd-stream/1` is answered 101, the
// connection carries frames, no HTTP. Each request frame is a varint length
// and the next flushed part of one zstd frame that lasts as long as the
// connection, so a batch is compressed against the batches before it; it
// decompresses to a plain POST /v4/sync body. Each answer frame is a varint
// status and four length-prefixed strings: content type, error
// ("code: message"), Retry-After, body. An answer other than 200 ends the
// stream on both sides (its context may be unusable); closing resets both
// contexts, and nothing outlives the connection.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <caf/expected.hpp>

#include "messages/types.hpp"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace fleetd {

constexpr const char* stream_target = "/v5/stream";
constexpr const char* stream_protocol = "fleetd-stream/1";

/// The zstd window both sides use (32 KiB: a few dozen small exchanges);
/// a receiver refuses frames asking for more, which bounds its memory.
constexpr int stream_window_log = 15;

/// Longest varint a frame starts with (64-bit).
constexpr size_t max_frame_prefix = 10;

/// Where the frame at the front of `buf` ends, once it is all there: 0 while
/// its length prefix or payload is incomplete; ec::too_large when the
/// payload would exceed `max_payload`, ec::decode_failed for a bad prefix.
/// `payload_at` is set to where the payload starts, and `payload_bytes`
/// (when given) to its length, as soon as the prefix is whole.
caf::expected<size_t> frame_end(std::string_view buf, size_t max_payload,
                                size_t& payload_at,
                                uint64_t* payload_bytes = nullptr);

/// The sender's side: one zstd frame per connection, flushed per message.
class stream_compressor {
public:
  explicit stream_compressor(int level);
  ~stream_compressor();
  stream_compressor(const stream_compressor&) = delete;
  stream_compressor& operator=(const stream_compressor&) = delete;

  /// `plain` as a request frame (length prefix included); ec::io_error
  /// when zstd fails, after which the connection must be dropped.
  caf::expected<std::string> frame(std::string_view plain);

private:
  ZSTD_CCtx_s* ctx_;
};

/// The receiver's side of one connection.
class stream_decompressor {
public:
  stream_decompressor();
  ~stream_decompressor();
  stream_decompressor(const stream_decompressor&) = delete;
  stream_decompressor& operator=(const stream_decompressor&) = delete;

  /// One request frame's payload, decompressed: at most `max_plain` bytes
  /// (ec::too_large, checked chunk by chunk), ec::decode_failed for corrupt
  /// or truncated input. After an error the connection must be dropped.
  caf::expected<std::string> decode(std::string_view payload,
                                    size_t max_plain);

private:
  ZSTD_DCtx_s* ctx_;
};

/// An answer frame (length prefix included) for `rep`.
std::string encode_answer_frame(const http_reply& rep,
                                const std::string& retry_after);

/// An answer frame's payload read back.
struct answer_frame {
  uint16_t status = 0;
  std::string content_type;
  std::string error;
  std::string retry_after;
  std::string body;
};

/// ec::decode_failed for anything encode_answer_frame cannot have made.
caf::expected<answer_frame> decode_answer_frame(std::string_view payload);

} // namespace fleetd
