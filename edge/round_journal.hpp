#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "messages/types.hpp"
#include "runtime/page_file.hpp"

namespace fleetd {

/// A metrics row as the store keeps it: the value as its IEEE-754 bits.
struct journal_metric {
  int64_t id = 0;
  int64_t series_id = 0;
  int64_t ts_ms = 0;
  uint64_t bits = 0;
};

/// The rounds file's samples: a deque, so hours of rounds grow by blocks
/// (no copy of them all at twice the size) and acked ones free theirs.
using journal_metrics = std::deque<journal_metric>;

/// A log line as the store keeps it: labels encoded (encode_labels).
struct journal_log {
  int64_t id = 0;
  int64_t ts_ns = 0;
  std::string labels;
  std::string line;
};

/// An ack as the rounds file keeps it: what store_backend::ack was given.
struct journal_ack {
  std::string stream;
  int64_t sequence = 0;
  int64_t base = 0;
  metric_samples defs;
  std::string history;
};

/// An event as the rounds file keeps it, with the id its row takes.
struct journal_event {
  int64_t id = 0;
  int64_t ts_ms = 0;
  std::string kind;
  std::string message;
};

/// The store's rounds file (`<db>-rounds`): each commit of samples and log
/// lines is one frame appended and synced, about one 4 KiB page written per
/// collection round where an SQLite commit writes two or more, plus the same
/// again when it is checkpointed. Records stay here until a batch covers
/// them (then the file is emptied) or the store moves them into its tables.
///
/// Frame: u32 payload length, u32 CRC-32 of the payload, payload (little
/// endian). A frame of up to a 4 KiB page never straddles one, and none
/// starts in a page's last 8 bytes: zeros up to the next page are padding.
/// Frames are written as whole pages (page_file: O_DIRECT where it can),
/// the last page's earlier frames with them.
/// A frame that is cut short or fails its CRC ends the file: it was never
/// synced, so no store that wrote it was answered.
class round_journal {
public:
  /// Most bytes one frame may claim; a longer one ends the file as torn.
  static constexpr int64_t max_frame_bytes = 16 << 20;

  /// Opens `path` (open_page_file) and reads back its records. A file written
  /// under another epoch (another store's numbering) is ec::storage_corrupt.
  static caf::expected<round_journal> open(const std::string& path,
                                           const std::string& vfs,
                                           const std::string& epoch);

  /// Every record held, durable first, then those added since the last
  /// flush (pending); ids ascending.
  const journal_metrics& metrics() const {
    return metrics_;
  }
  const std::vector<journal_log>& logs() const {
    return logs_;
  }
  void add(journal_metric x) {
    metrics_.push_back(x);
  }
  void add(journal_log x) {
    logs_.push_back(std::move(x));
  }
  /// A source cursor, written in the frame of the records added with it.
  void add(source_cursor x) {
    pending_cursors_.push_back(std::move(x));
  }
  bool has_pending() const {
    return metrics_.size() > durable_metrics_ || logs_.size() > durable_logs_
           || !pending_cursors_.empty();
  }
  /// The newest durable cursor of each key (read back or flushed since the
  /// file was last emptied), and those not flushed yet.
  const std::vector<source_cursor>& cursors() const {
    return cursors_;
  }
  const std::vector<source_cursor>& pending_cursors() const {
    return pending_cursors_;
  }
  int64_t pending_metrics() const {
    return static_cast<int64_t>(metrics_.size() - durable_metrics_);
  }
  int64_t pending_logs() const {
    return static_cast<int64_t>(logs_.size() - durable_logs_);
  }
  bool empty() const {
    return metrics_.empty() && logs_.empty();
  }

  /// Appends the pending records as one frame and syncs it. On failure the
  /// file is cut back to its last synced frame and the records stay pending.
  caf::error flush();
  /// Appends a batch persisted for sending (synced: it is sent next) or an
  /// ack (written and synced with the next frame, or by sync_unwritten:
  /// one lost only means a resend, and it saves a page write). These
  /// are the redo log of what the store's tables hold uncommitted.
  caf::error append(const queued_batch& b);
  caf::error append(const journal_ack& a);
  /// Writes and syncs acks not written yet (at a clean stop).
  caf::error sync_unwritten();
  /// An event: synced, it is data to send.
  caf::error append(const journal_event& e);
  /// Every batch and ack the file holds, in the order written (read back at
  /// open, then appended); each is a queued_batch or a journal_ack.
  struct op {
    char kind = 'B'; // 'B' batch, 'A' ack, 'E' event
    queued_batch batch;
    journal_ack ack;
    journal_event event;
  };
  const std::vector<op>& ops() const {
    return ops_;
  }
  /// Forgets the pending records (the caller stored them elsewhere, or
  /// counted them as rejected).
  void drop_pending();
  /// Forgets durable records with ids up to `id` (the cloud acked them).
  caf::error forget_upto(bool logs, int64_t id);
  /// Forgets every durable record, batch and ack, and empties the file.
  caf::error reset();
  /// As reset(), but the file is kept: renamed to `to` (the directory
  /// synced), and a new empty one takes its place.
  caf::error seal(const std::string& to);
  /// Records the file held that the cloud acked (forget_upto) since it was
  /// started, read back included.
  int64_t acked_metrics() const {
    return acked_metrics_;
  }
  int64_t acked_logs() const {
    return acked_logs_;
  }

  /// Bytes of the file up to its last frame (the file is longer by the
  /// zeros it is extended by ahead); frames appended; frames read back at
  /// open; bytes of a torn tail cut off at open.
  int64_t bytes() const {
    return size_;
  }
  int64_t frames() const {
    return frames_;
  }
  int64_t replayed_frames() const {
    return replayed_frames_;
  }
  int64_t torn_bytes() const {
    return torn_bytes_;
  }
  int64_t largest_id(bool logs) const;
  /// True once a frame was written around the page cache (O_DIRECT).
  bool direct() const {
    return file_ && file_->direct();
  }

private:
  caf::error replay();
  // Forgets every durable record, batch and ack; the file is not touched.
  void forget_durable();
  // Decodes one frame's payload into the records; false when it is no frame.
  bool decode(const std::string& payload);
  std::string encode_pending() const;
  // Writes one frame of `payload` at the end, synced, with the pages of
  // the unsynced frames before it; an unsynced frame is only kept in
  // `unwritten_` until then (a page write saved: a lost ack is a resend).
  caf::error append_frame(const std::string& payload, bool sync);
  // Writes the pages of unsynced frames, if any (not synced).
  caf::error write_unwritten();

  std::unique_ptr<page_file> file_;
  // The file's bytes from the start of the page holding size_ to size_:
  // rewritten with each frame that goes on that page.
  std::string tail_;
  // Whole pages from `unwritten_at_` holding frames not written yet.
  std::string unwritten_;
  int64_t unwritten_at_ = 0;
  std::string path_;
  std::string vfs_;
  std::string epoch_;
  journal_metrics metrics_;
  std::vector<journal_log> logs_;
  std::vector<source_cursor> cursors_;
  std::vector<source_cursor> pending_cursors_;
  std::vector<op> ops_;
  size_t durable_metrics_ = 0;
  size_t durable_logs_ = 0;
  int64_t size_ = 0;
  // The file's length: size_ plus zeros ahead of the frames to come.
  int64_t allocated_ = 0;
  int64_t frames_ = 0;
  int64_t replayed_frames_ = 0;
  int64_t torn_bytes_ = 0;
  int64_t acked_metrics_ = 0;
  int64_t acked_logs_ = 0;
  // Largest id ever held, so a journal emptied by a batch still knows it.
  int64_t max_metric_id_ = 0;
  int64_t max_log_id_ = 0;
};

/// CRC-32 (IEEE 802.3) of `bytes`, continuing from `crc`.
uint32_t crc32(const std::string& bytes, uint32_t crc = 0);

} // namespace fleetd
