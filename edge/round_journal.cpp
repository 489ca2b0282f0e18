#include "edge/round_journal.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/varint.hpp"
#include "messages/wire.hpp"

namespace fleetd {

namespace {

// Payload kinds: the file's header (its epoch), records plain or zstd.
constexpr char kind_header = 'H';
constexpr char kind_plain = 'R';
constexpr char kind_zstd = 'Z';
constexpr int64_t page_bytes = 4096;
constexpr int64_t grow_bytes = 64 * 1024;
constexpr char kind_batch = 'B';
constexpr char kind_ack = 'A';
constexpr char kind_event = 'E';
constexpr char section_metrics = 'M';
constexpr char section_logs = 'L';
constexpr char section_cursors = 'C';
// A decoded frame may not claim more than this (bounds the allocation).
constexpr uint64_t max_decoded_bytes = 64 << 20;

void put_u32(std::string& out, uint32_t x) {
  for (int i = 0; i < 4; ++i)
    out += static_cast<char>((x >> (8 * i)) & 0xFF);
}

uint32_t get_u32(const char* p) {
  uint32_t x = 0;
  for (int i = 0; i < 4; ++i)
    x |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return x;
}

void put_signed(std::string& out, int64_t x) {
  put_varint(out, zigzag(static_cast<uint64_t>(x)));
}

void put_bytes(std::string& out, const std::string& x) {
  put_varint(out, x.size());
  out += x;
}

// Reads what put_* wrote; any read past the end fails the whole payload.
struct reader : varint_reader {
  int64_t signed_varint() {
    return static_cast<int64_t>(unzigzag(varint()));
  }
  uint64_t fixed64() {
    if (left() < 8) {
      ok = false;
      return 0;
    }
    uint64_t x = 0;
    for (int i = 0; i < 8; ++i)
      x |= static_cast<uint64_t>(static_cast<unsigned char>(in[pos + i]))
           << (8 * i);
    pos += 8;
    return x;
  }
  std::string bytes() {
    auto n = varint();
    if (!ok || n > left()) {
      ok = false;
      return {};
    }
    auto out = std::string(in.substr(pos, n));
    pos += n;
    return out;
  }
};

std::string frame(const std::string& payload) {
  std::string out;
  out.reserve(payload.size() + 8);
  put_u32(out, static_cast<uint32_t>(payload.size()));
  put_u32(out, crc32(payload));
  out += payload;
  return out;
}

// `plain` records as a payload, zstd-compressed when that is smaller.
std::string records_payload(const std::string& plain) {
  auto z = zstd_compress(plain, 1);
  if (is_zstd(z) && z.size() < plain.size())
    return kind_zstd + z;
  return kind_plain + plain;
}

std::string encode_op(const queued_batch& b) {
  std::string out(1, kind_batch);
  put_bytes(out, b.stream);
  put_signed(out, b.sequence);
  put_signed(out, b.last_id);
  put_signed(out, b.points);
  put_signed(out, b.created_ms);
  put_bytes(out, b.body);
  return out;
}

std::string encode_op(const journal_ack& a) {
  std::string out(1, kind_ack);
  put_bytes(out, a.stream);
  put_signed(out, a.sequence);
  put_signed(out, a.base);
  put_varint(out, a.defs.size());
  for (auto& d : a.defs) {
    put_bytes(out, d.name);
    put_bytes(out, encode_labels(d.labels));
  }
  put_bytes(out, a.history);
  return out;
}

std::string encode_op(const journal_event& e) {
  std::string out(1, kind_event);
  put_signed(out, e.id);
  put_signed(out, e.ts_ms);
  put_bytes(out, e.kind);
  put_bytes(out, e.message);
  return out;
}

bool is_op(char kind) {
  return kind == kind_batch || kind == kind_ack || kind == kind_event;
}

// A batch, an ack or an event read back; false when the bytes are none.
bool decode_op(const std::string& payload, round_journal::op& out) {
  reader r{{payload, 1}};
  out.kind = payload[0];
  if (out.kind == kind_event) {
    auto& e = out.event;
    e.id = r.signed_varint();
    e.ts_ms = r.signed_varint();
    e.kind = r.bytes();
    e.message = r.bytes();
    return r.ok && r.left() == 0;
  }
  if (out.kind == kind_batch) {
    auto& b = out.batch;
    b.stream = r.bytes();
    b.sequence = r.signed_varint();
    b.last_id = r.signed_varint();
    b.points = r.signed_varint();
    b.created_ms = r.signed_varint();
    b.body = r.bytes();
    return r.ok && r.left() == 0;
  }
  auto& a = out.ack;
  a.stream = r.bytes();
  a.sequence = r.signed_varint();
  a.base = r.signed_varint();
  auto n = r.varint();
  // Each definition takes at least two bytes.
  if (!r.ok || n > r.left() / 2)
    return false;
  for (uint64_t i = 0; i < n && r.ok; ++i) {
    metric_sample d;
    d.name = r.bytes();
    auto labels = decode_labels(r.bytes());
    d.labels = std::move(labels);
    a.defs.push_back(std::move(d));
  }
  a.history = r.bytes();
  return r.ok && r.left() == 0;
}

} // namespace

uint32_t crc32(const std::string& bytes, uint32_t crc) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k)
        c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (unsigned char b : bytes)
    crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

caf::expected<round_journal> round_journal::open(const std::string& path,
                                                 const std::string& vfs,
                                                 const std::string& epoch) {
  auto file = open_page_file(path, vfs);
  if (!file)
    return file.error();
  round_journal out;
  out.file_ = std::move(*file);
  out.path_ = path;
  out.vfs_ = vfs;
  out.epoch_ = epoch;
  if (auto err = out.replay())
    return err;
  return out;
}

caf::error round_journal::replay() {
  auto size = file_->size();
  if (!size)
    return size.error();
  int64_t off = 0;
  int64_t last_end = 0; // of the last whole frame
  bool header = false;
  while (off < *size) {
    auto head = file_->read(off, 8);
    if (!head)
      return head.error();
    // No frame starts in a page's last 8 bytes (see append_frame): there,
    // as where a length reads 0, zeros up to the next page are padding.
    auto room = page_bytes - off % page_bytes;
    auto len = head->size() < 8 || room < 8
                 ? int64_t{0}
                 : static_cast<int64_t>(get_u32(head->data()));
    if (len == 0) {
      // Zeros to the next page: padding before a frame, or the end of the
      // frames and the file's zeros ahead of them.
      auto next = std::min((off / page_bytes + 1) * page_bytes, *size);
      auto gap = file_->read(off, next - off);
      if (!gap)
        return gap.error();
      if (static_cast<int64_t>(gap->size()) < next - off
          || gap->find_first_not_of('\0') != std::string::npos)
        break;
      off = next;
      continue;
    }
    if (len > max_frame_bytes || off + 8 + len > *size)
      break;
    auto payload = file_->read(off + 8, len);
    if (!payload)
      return payload.error();
    if (static_cast<int64_t>(payload->size()) < len
        || crc32(*payload) != get_u32(head->data() + 4))
      break;
    if (!header) {
      if ((*payload)[0] != kind_header)
        break;
      if (payload->compare(1, std::string::npos, epoch_) != 0)
        return make_error(ec::storage_corrupt,
                          path_ + " belongs to a store of another epoch ("
                            + payload->substr(1, 32) + ")");
      header = true;
    } else if (is_op((*payload)[0])) {
      op o;
      if (!decode_op(*payload, o))
        break;
      ops_.push_back(std::move(o));
    } else if (!decode(*payload)) {
      break;
    }
    off += 8 + len;
    last_end = off;
    ++replayed_frames_;
  }
  durable_metrics_ = metrics_.size();
  durable_logs_ = logs_.size();
  // A tail cut short or garbled was never synced: nobody was answered for
  // it. Zeros after the last frame are the file's room ahead, kept.
  bool clean = header && off == *size;
  torn_bytes_ = clean ? 0 : *size - off;
  size_ = header ? last_end : 0;
  allocated_ = clean ? *size : size_;
  if (auto in_page = size_ % page_bytes; in_page > 0) {
    auto tail = file_->read(size_ - in_page, in_page);
    if (!tail)
      return tail.error();
    tail_ = std::move(*tail);
  }
  if (!clean && size_ < *size) {
    if (auto err = file_->truncate(size_))
      return err;
    return file_->sync();
  }
  return caf::none;
}

bool round_journal::decode(const std::string& payload) {
  std::string plain;
  if (payload[0] == kind_zstd) {
    // The decoder of the wire's bodies: it charges what a frame makes
    // before keeping it, whatever size the frame claims.
    decode_budget budget{max_decoded_bytes};
    if (zstd_decompress(std::string_view(payload).substr(1), plain, budget))
      return false;
  } else if (payload[0] == kind_plain) {
    plain = payload.substr(1);
  } else {
    return false;
  }
  reader r{{plain}};
  std::vector<journal_metric> ms;
  std::vector<journal_log> ls;
  std::vector<source_cursor> cs;
  while (r.ok && r.left() > 0) {
    auto section = plain[r.pos++];
    auto count = r.varint();
    // Every row takes at least three bytes: a count past that is a lie.
    if (!r.ok || count > r.left() / 3
        || (section != section_metrics && section != section_logs
            && section != section_cursors))
      return false;
    if (section == section_cursors) {
      for (uint64_t i = 0; i < count && r.ok; ++i) {
        source_cursor c;
        c.key = r.bytes();
        c.generation = r.signed_varint();
        c.value = r.bytes();
        cs.push_back(std::move(c));
      }
      continue;
    }
    int64_t id = 0;
    int64_t ts = 0;
    for (uint64_t i = 0; i < count && r.ok; ++i) {
      id += r.signed_varint();
      ts += r.signed_varint();
      if (section == section_metrics) {
        auto sid = static_cast<int64_t>(r.varint());
        ms.push_back(journal_metric{id, sid, ts, r.fixed64()});
      } else {
        auto labels = r.bytes();
        ls.push_back(journal_log{id, ts, std::move(labels), r.bytes()});
      }
    }
  }
  if (!r.ok)
    return false;
  for (auto& m : ms) {
    max_metric_id_ = std::max(max_metric_id_, m.id);
    metrics_.push_back(m);
  }
  for (auto& l : ls) {
    max_log_id_ = std::max(max_log_id_, l.id);
    logs_.push_back(std::move(l));
  }
  for (auto& c : cs)
    keep_newest(cursors_, std::move(c));
  return true;
}

namespace {

// Rows [from, end) as a section: its tag, the count, then each row's id and
// time as deltas from the row before and what `put_row` adds.
template <class Rows, class Ts, class Put>
void put_section(std::string& out, char tag, const Rows& rows, size_t from,
                 Ts ts, Put put_row) {
  if (rows.size() <= from)
    return;
  out += tag;
  put_varint(out, rows.size() - from);
  int64_t id = 0;
  int64_t t = 0;
  for (auto i = from; i < rows.size(); ++i) {
    auto& r = rows[i];
    put_signed(out, r.id - std::exchange(id, r.id));
    put_signed(out, r.*ts - std::exchange(t, r.*ts));
    put_row(r);
  }
}

} // namespace

std::string round_journal::encode_pending() const {
  std::string out;
  put_section(out, section_metrics, metrics_, durable_metrics_,
              &journal_metric::ts_ms, [&out](const journal_metric& m) {
                put_varint(out, static_cast<uint64_t>(m.series_id));
                for (int b = 0; b < 8; ++b)
                  out += static_cast<char>((m.bits >> (8 * b)) & 0xFF);
              });
  put_section(out, section_logs, logs_, durable_logs_, &journal_log::ts_ns,
              [&out](const journal_log& l) {
                put_bytes(out, l.labels);
                put_bytes(out, l.line);
              });
  if (!pending_cursors_.empty()) {
    out += section_cursors;
    put_varint(out, pending_cursors_.size());
    for (auto& c : pending_cursors_) {
      put_bytes(out, c.key);
      put_signed(out, c.generation);
      put_bytes(out, c.value);
    }
  }
  return out;
}

caf::error round_journal::flush() {
  if (!has_pending())
    return caf::none;
  if (auto err = append_frame(records_payload(encode_pending()), true))
    return err;
  for (auto i = durable_metrics_; i < metrics_.size(); ++i)
    max_metric_id_ = std::max(max_metric_id_, metrics_[i].id);
  for (auto i = durable_logs_; i < logs_.size(); ++i)
    max_log_id_ = std::max(max_log_id_, logs_[i].id);
  durable_metrics_ = metrics_.size();
  durable_logs_ = logs_.size();
  for (auto& c : pending_cursors_)
    keep_newest(cursors_, std::move(c));
  pending_cursors_.clear();
  return caf::none;
}

caf::error round_journal::append_frame(const std::string& payload,
                                       bool sync) {
  if (static_cast<int64_t>(payload.size()) + 8 > max_frame_bytes)
    return make_error(ec::too_large, "a frame of "
                                       + std::to_string(payload.size())
                                       + " bytes exceeds the rounds file's "
                                         "limit");
  std::string bytes;
  // The header goes out with the first frame: one write, one sync.
  if (size_ == 0)
    bytes = frame(kind_header + epoch_);
  bytes += frame(payload);
  // A frame that would straddle a page starts the next one instead (a hole
  // of zeros before it, read as padding): one page written, not two. None
  // starts in a page's last 8 bytes, where its length would be cut.
  auto at = size_;
  auto room = page_bytes - at % page_bytes;
  auto n = static_cast<int64_t>(bytes.size());
  if (size_ > 0 && n > room && (n <= page_bytes || room < 8))
    at += room;
  // The file grows ahead in steps of zeros: a synced frame then rewrites
  // its page only, never the file's length.
  if (at + n > allocated_) {
    auto want = (at + n + grow_bytes - 1) / grow_bytes * grow_bytes;
    if (!file_->grow(want))
      allocated_ = want;
  }
  // Whole pages: the last one's earlier frames, the gap, the new bytes,
  // zeros to the page's end (the file holds zeros past size_ already).
  auto first = at / page_bytes * page_bytes;
  std::string pages = first < size_ ? tail_ : std::string{};
  pages.resize(static_cast<size_t>(at - first), '\0');
  pages += bytes;
  auto end = at + n;
  auto in_last = end % page_bytes;
  pages.resize(static_cast<size_t>((end + page_bytes - 1) / page_bytes
                                   * page_bytes - first), '\0');
  auto new_tail = pages.substr(pages.size() - (in_last > 0 ? page_bytes : 0),
                               static_cast<size_t>(in_last));
  // Unsynced frames' pages before this one's go out with it.
  if (!unwritten_.empty()) {
    pages = unwritten_.substr(0, static_cast<size_t>(first - unwritten_at_))
            + pages;
    first = unwritten_at_;
  }
  if (sync) {
    auto err = file_->write(first, pages);
    if (!err)
      err = file_->sync();
    if (err) {
      // Cut back what may have been written.
      file_->truncate(size_);
      allocated_ = size_;
      return err;
    }
    unwritten_.clear();
  } else {
    unwritten_at_ = first;
    unwritten_ = std::move(pages);
  }
  size_ = end;
  tail_ = std::move(new_tail);
  allocated_ = std::max(allocated_, size_);
  ++frames_;
  return caf::none;
}

caf::error round_journal::write_unwritten() {
  if (unwritten_.empty())
    return caf::none;
  if (auto err = file_->write(unwritten_at_, unwritten_))
    return err;
  unwritten_.clear();
  return caf::none;
}

caf::error round_journal::sync_unwritten() {
  if (unwritten_.empty())
    return caf::none;
  if (auto err = write_unwritten())
    return err;
  return file_->sync();
}

caf::error round_journal::append(const queued_batch& b) {
  if (auto err = append_frame(encode_op(b), true))
    return err;
  ops_.push_back(op{kind_batch, b, {}, {}});
  return caf::none;
}

caf::error round_journal::append(const journal_ack& a) {
  if (auto err = append_frame(encode_op(a), false))
    return err;
  ops_.push_back(op{kind_ack, {}, a, {}});
  return caf::none;
}

caf::error round_journal::append(const journal_event& e) {
  if (auto err = append_frame(encode_op(e), true))
    return err;
  ops_.push_back(op{kind_event, {}, {}, e});
  return caf::none;
}

void round_journal::drop_pending() {
  metrics_.resize(durable_metrics_);
  logs_.resize(durable_logs_);
  pending_cursors_.clear();
}

caf::error round_journal::forget_upto(bool logs, int64_t id) {
  auto cut = [id](auto& rows, size_t& durable, int64_t& acked) {
    auto end = std::find_if(rows.begin(), rows.begin() + durable,
                            [id](auto& r) { return r.id > id; });
    auto n = static_cast<size_t>(end - rows.begin());
    rows.erase(rows.begin(), end);
    durable -= n;
    acked += static_cast<int64_t>(n);
  };
  if (logs)
    cut(logs_, durable_logs_, acked_logs_);
  else
    cut(metrics_, durable_metrics_, acked_metrics_);
  return caf::none;
}

void round_journal::forget_durable() {
  metrics_.erase(metrics_.begin(), metrics_.begin() + durable_metrics_);
  logs_.erase(logs_.begin(), logs_.begin() + durable_logs_);
  durable_metrics_ = 0;
  durable_logs_ = 0;
  acked_metrics_ = 0;
  acked_logs_ = 0;
  cursors_.clear();
  ops_.clear();
  size_ = 0;
  allocated_ = 0;
  tail_.clear();
  unwritten_.clear();
}

caf::error round_journal::reset() {
  forget_durable();
  if (auto err = file_->truncate(0))
    return err;
  return file_->sync();
}

caf::error round_journal::seal(const std::string& to) {
  // The new file first: a failure to make it leaves everything in place.
  auto next = path_ + ".new";
  auto fresh = open_page_file(next, vfs_);
  if (!fresh)
    return fresh.error();
  // The zeros ahead of the frames are no records: the kept file ends there.
  auto err = write_unwritten();
  if (!err)
    err = file_->truncate(size_);
  if (!err)
    err = file_->sync();
  if (!err && std::rename(path_.c_str(), to.c_str()) != 0)
    err = make_error(ec::io_error, "cannot rename " + path_ + " to " + to
                                     + ": " + std::strerror(errno));
  if (err) {
    std::remove(next.c_str());
    return err;
  }
  if (std::rename(next.c_str(), path_.c_str()) != 0) {
    auto why = std::string(std::strerror(errno));
    // Frames must go on where the next start reads them back.
    std::rename(to.c_str(), path_.c_str());
    std::remove(next.c_str());
    return make_error(ec::io_error, "cannot rename " + next + " to " + path_
                                      + ": " + why);
  }
  // Both names durable before a frame is synced into the new file: a power
  // cut must not bring back the old name and remove the new file as a
  // leftover `.new`, rounds and all. (Past the renames there is no undo: a
  // directory that cannot sync is a failing disk, its next writes fail.)
  (void) sync_dir_of(path_);
  file_ = std::move(*fresh);
  forget_durable();
  return caf::none;
}

int64_t round_journal::largest_id(bool logs) const {
  return logs ? max_log_id_ : max_metric_id_;
}

} // namespace fleetd
