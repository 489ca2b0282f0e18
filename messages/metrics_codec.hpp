#pragma once

// Columnar metrics batches (docs/wire-format.md, "Columnar metrics batch"):
// each series once per batch (or once per session with a codec_context),
// timestamps shared by series sampled together and delta-of-delta encoded,
// values encoded by kind (scaled-decimal integers, plain, offset from the
// minimum, delta or delta-of-delta, as byte planes or Rice codes; byte-wise
// XOR for other floats). The output is not compressed; callers apply zstd
// at the tier's level.
//
// Lossless: decode_columnar(encode_columnar(s, c), c') == s, sample order
// and every double bit pattern (NaN payloads, +-Inf, -0.0) included.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "messages/types.hpp"

namespace fleetd {

/// Version byte that starts every columnar batch.
constexpr uint8_t columnar_format_version = 3;

/// A series: metric name plus labels.
using series_key = std::pair<std::string, label_map>;

/// Per-session series table. Series in the table are referenced by index;
/// a batch carries the definition of every series it uses that the table
/// does not hold yet. Sender and receiver each keep one:
/// - sender: encode_columnar(samples, ctx), then, once the batch is known
///   to reach the receiver in order, commit_columnar(ctx, samples);
/// - receiver: decode_columnar(bytes, ctx) appends the batch's new series.
/// A default-constructed context that is never committed makes every batch
/// self-contained (all names inline). Both sides must reset together (new
/// session) when a batch is lost; a batch encoded against a table of a
/// different size is refused by the decoder.
struct codec_context {
  /// The last values of a series in the batches the context has seen
  /// (newest first); a batch may continue its columns from them.
  struct history {
    uint8_t count = 0; // 0-2
    double last[2] = {0, 0};
    // The kind, scale and column selector bytes of its last column; a
    // batch sends its own XOR these (mostly zero, which zstd takes).
    uint8_t kind = 0;
    uint8_t scale = 0;
    uint8_t selector = 0;
  };
  std::vector<series_key> series;
  std::map<series_key, uint32_t> index;
  /// Parallel to `series`.
  std::vector<history> state;
  /// Chained hash of the series definitions, in order.
  uint64_t series_digest = 0;
  /// decode_columnar refuses batches of more points (or series) than this,
  size_t max_points = size_t{1} << 22;
  /// and batches whose decoded samples (or series definitions) would take
  /// more bytes than this.
  size_t max_decoded_bytes = size_t{1} << 28;

  /// Index of `key`, or -1.
  int64_t find(const series_key& key) const;
  /// Appends `key` (must be absent) with no history; returns its index.
  uint32_t add(series_key key);
  /// Records `value` as the newest value of series `idx`.
  void push(uint32_t idx, double value);
  void clear();
  /// The histories, for storing beside the series table.
  std::string save_history() const;
  static std::string save_history(const std::vector<history>& state);
  /// Replaces the histories by saved ones; they must cover exactly the
  /// series the context holds (ec::decode_failed, unchanged, otherwise).
  caf::error load_history(std::string_view bytes);
  /// Hash of the series table and histories; every batch carries the one
  /// it was encoded against, so a receiver in another state refuses it.
  uint64_t digest() const;
};

/// What one batch changes in a context: the series it defines, appended at
/// `base`, and every series' history after it. A sender keeps this, not a
/// copy of the whole context, while the batch waits for its ack.
struct codec_delta {
  /// The batch starts a new session (base 0): the context is cleared first.
  bool reset = false;
  size_t base = 0;
  std::vector<series_key> added;
  std::vector<codec_context::history> state;
};

/// Adds `d` to `ctx` (codec_delta's batch was acked). ec::decode_failed,
/// `ctx` unchanged, when `ctx` is not the context `d` was taken from.
caf::error apply_delta(codec_context& ctx, codec_delta d);

/// Decodes one batch against `ctx` and returns what it changes there; `ctx`
/// is left as it was. With `expect`, the batch must decode to exactly those
/// samples (ec::decode_failed otherwise).
caf::expected<codec_delta> decode_delta(std::string_view bytes,
                                        codec_context& ctx,
                                        const metric_samples* expect);

/// Encodes `samples` against `ctx` (not modified).
std::string encode_columnar(const metric_samples& samples,
                            const codec_context& ctx);

/// Adds to `ctx` the series that encode_columnar(samples, ctx) defined
/// inline, in the same order, so later batches reference them by index.
caf::error commit_columnar(codec_context& ctx, const metric_samples& samples);

/// The session table size a batch was encoded against (its `base`); 0
/// marks a batch that starts a new session.
caf::expected<uint64_t> columnar_base(std::string_view bytes);

/// Same samples in the same order, doubles bit for bit.
bool identical(const metric_samples& a, const metric_samples& b);

class decode_budget;

/// Decodes one batch; on success appends its new series to `ctx`. On error
/// (ec::decode_failed; ec::too_large past the budget) `ctx` is left
/// unchanged. Series definitions and decoded samples are charged to
/// `budget` before they are materialised.
caf::expected<metric_samples> decode_columnar(std::string_view bytes,
                                              codec_context& ctx,
                                              decode_budget& budget);

/// The same with a budget of ctx.max_decoded_bytes.
caf::expected<metric_samples> decode_columnar(std::string_view bytes,
                                              codec_context& ctx);

/// A decoded point whose series is named by its index in the session table.
struct indexed_point {
  uint32_t series = 0;
  int64_t timestamp_ms = 0;
  double value = 0;
};

using indexed_points = std::vector<indexed_point>;

/// decode_columnar without a copy of the name and labels in every point:
/// each point's series is ctx.series[series] (the batch's new series are
/// appended on success). Same checks, same budget charges, same session
/// change; for a receiver that keeps its own data per session index.
caf::expected<indexed_points> decode_columnar_indexed(std::string_view bytes,
                                                      codec_context& ctx,
                                                      decode_budget& budget);

} // namespace fleetd
