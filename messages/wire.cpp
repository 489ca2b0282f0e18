#include "messages/wire.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <tuple>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>
#include <xxhash.h>
#include <zstd.h>

#include "fleetd/v1/sync.pb.h"
#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/varint.hpp"
#if !FLEETD_PROTO_LITE
#include "messages/parse_bound.hpp"
#endif

namespace fleetd {

namespace {

namespace pb = fleetd::v1;
using google::protobuf::internal::WireFormatLite;

// The bytes of the batch field (3, 4 or 5) exactly as they are on the wire,
// so the checksum never depends on how a sender serializes. A request may
// carry the batch once: protobuf merges repeated occurrences of a message
// field, so points from an earlier copy would be decoded without the checksum
// (which covers one occurrence only) ever seeing them.
caf::expected<std::pair<int, std::string_view>>
raw_batch_field(std::string_view request) {
  google::protobuf::io::CodedInputStream in(
    reinterpret_cast<const uint8_t*>(request.data()),
    static_cast<int>(request.size()));
  int found = 0;
  std::string_view raw;
  for (;;) {
    auto tag = in.ReadTag();
    if (tag == 0)
      break;
    auto field = WireFormatLite::GetTagFieldNumber(tag);
    auto type = WireFormatLite::GetTagWireType(tag);
    if (field >= 3 && field <= 5
        && type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t len = 0;
      if (!in.ReadVarint32(&len))
        return make_error(ec::decode_failed, "truncated batch length");
      auto pos = static_cast<size_t>(in.CurrentPosition());
      if (pos + len > request.size())
        return make_error(ec::decode_failed, "truncated batch");
      if (found != 0)
        return make_error(ec::decode_failed,
                          "request carries more than one batch");
      found = field;
      raw = request.substr(pos, len);
      if (!in.Skip(static_cast<int>(len)))
        return make_error(ec::decode_failed, "truncated batch");
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return make_error(ec::decode_failed, "malformed request");
    }
  }
  return std::make_pair(found, raw);
}

} // namespace

bool is_zstd(std::string_view body) {
  return body.size() >= 4 && static_cast<uint8_t>(body[0]) == 0x28
         && static_cast<uint8_t>(body[1]) == 0xB5
         && static_cast<uint8_t>(body[2]) == 0x2F
         && static_cast<uint8_t>(body[3]) == 0xFD;
}

std::string batch_checksum(std::string_view bytes) {
  uint64_t h = XXH3_64bits(bytes.data(), bytes.size());
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<char>(h & 0xFF);
    h >>= 8;
  }
  return out;
}

namespace {
std::string zstd_frame(const std::string& plain, int level,
                       std::string_view dict = {});
} // namespace

device_capability capability_of(const capability_report& x) {
  device_capability out;
  out.tier = x.settings.tier;
  out.total_ram = x.hw.total_ram;
  out.available_ram = x.hw.available_ram;
  out.total_disk = x.hw.total_disk;
  out.available_disk = x.hw.available_disk;
  out.cpu_cores = x.hw.cpu_cores;
  out.has_sqlite = x.settings.sqlite;
  // It is about to send: the network is there.
  out.has_network = true;
  return out;
}

std::string with_send_fields(const std::string& body, int64_t retry_count,
                             const device_capability* cap,
                             const drop_declaration* declared) {
  pb::SyncRequest extra;
  extra.mutable_metadata()->set_retry_count(static_cast<int32_t>(
    std::min<int64_t>(retry_count, std::numeric_limits<int32_t>::max())));
  if (cap != nullptr) {
    auto* c = extra.mutable_capability();
    c->set_tier(static_cast<int32_t>(cap->tier));
    c->set_total_ram(cap->total_ram);
    c->set_available_ram(cap->available_ram);
    c->set_total_disk(cap->total_disk);
    c->set_available_disk(cap->available_disk);
    c->set_cpu_cores(static_cast<int32_t>(cap->cpu_cores));
    c->set_has_sqlite(cap->has_sqlite);
    c->set_has_network(cap->has_network);
  }
  if (declared != nullptr) {
    auto* d = extra.mutable_delivery();
    d->set_origin(declared->origin);
    d->set_collected(declared->collected);
    d->set_stored(declared->stored);
    for (auto& [kind, n] : declared->records) {
      auto* c = d->add_dropped();
      c->set_kind(kind);
      c->set_records(n);
    }
  }
  // Nothing to say on a first send: the queued bytes alone (a 2-byte
  // empty metadata costs a whole zstd frame, ~12 bytes, when compressed).
  if (retry_count <= 0 && cap == nullptr && declared == nullptr)
    return body;
  std::string tail;
  extra.SerializeToString(&tail);
  // zstd decoders read concatenated frames as the concatenated contents.
  return body + (is_zstd(body) ? zstd_frame(tail, 1) : tail);
}

namespace {

// Protobuf labels from a label map, and back.
void put_labels(google::protobuf::RepeatedPtrField<pb::Label>* out,
                const label_map& labels) {
  for (auto& kv : labels) {
    auto* l = out->Add();
    l->set_name(kv.first);
    l->set_value(kv.second);
  }
}

label_map labels_of(const google::protobuf::RepeatedPtrField<pb::Label>& in) {
  label_map out;
  for (auto& l : in)
    out[l.name()] = l.value();
  return out;
}

/// `plain` as one zstd frame (with `dict` as raw content when not empty),
/// or plain when compression fails.
std::string zstd_frame(const std::string& plain, int level,
                       std::string_view dict) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx{ZSTD_createCCtx(),
                                                          ZSTD_freeCCtx};
  std::string compressed(ZSTD_compressBound(plain.size()), '\0');
  auto n = ZSTD_compress_usingDict(cctx.get(), compressed.data(),
                                   compressed.size(), plain.data(),
                                   plain.size(), dict.data(), dict.size(),
                                   level);
  if (ZSTD_isError(n))
    return plain;
  compressed.resize(n);
  return compressed;
}

// Wraps the serialized batch of field `field` in a SyncRequest.
std::string encode_request(const encode_settings& cfg, int field_number,
                           const std::string& batch_bytes) {
  pb::SyncRequest req;
  req.set_device_id(cfg.device_id);
  auto* md = req.mutable_metadata();
  // timestamp, compressed and compression_algo are informational (no
  // cloud reads them; the body's own bytes say zstd): not sent.
  md->set_sequence_number(cfg.sequence);
  md->set_epoch(cfg.epoch);
  md->set_format_version(wire_format_version);
  md->set_checksum(batch_checksum(batch_bytes));
  req.set_config_version(cfg.config_version);
  // Serialize around the pre-encoded batch so the checksummed bytes are the
  // ones on the wire.
  std::string out;
  req.SerializeToString(&out);
  std::string field;
  {
    google::protobuf::io::StringOutputStream sos(&field);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.WriteTag(WireFormatLite::MakeTag(
      field_number, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
    cos.WriteVarint32(static_cast<uint32_t>(batch_bytes.size()));
    cos.WriteRaw(batch_bytes.data(), static_cast<int>(batch_bytes.size()));
  }
  out += field;
  if (cfg.zstd_level <= 0)
    return out;
  return zstd_frame(out, cfg.zstd_level);
}

} // namespace

std::string encode_metrics_request(const encode_settings& cfg,
                                   const metric_samples& samples) {
  pb::MetricsBatch batch;
  std::map<std::pair<std::string, label_map>, uint32_t> index;
  for (auto& s : samples) {
    auto key = std::make_pair(s.name, s.labels);
    auto i = index.find(key);
    if (i == index.end()) {
      auto* series = batch.add_series();
      series->set_name(s.name);
      put_labels(series->mutable_labels(), s.labels);
      i = index.emplace(std::move(key), static_cast<uint32_t>(index.size()))
            .first;
    }
    batch.add_series_index(i->second);
    batch.add_timestamp_ms(s.timestamp_ms);
    batch.add_value(s.value);
  }
  return encode_request(cfg, pb::SyncRequest::kMetricsFieldNumber,
                        batch.SerializeAsString());
}

std::string encode_columnar_request(const encode_settings& cfg,
                                    const std::string& columnar) {
  pb::MetricsBatch batch;
  batch.set_columnar(columnar);
  return encode_request(cfg, pb::SyncRequest::kMetricsFieldNumber,
                        batch.SerializeAsString());
}

std::string encode_logs_request(const encode_settings& cfg,
                                const log_lines& lines) {
  pb::LogsBatch batch;
  std::map<label_map, uint32_t> index;
  for (auto& x : lines) {
    auto i = index.find(x.labels);
    if (i == index.end()) {
      put_labels(batch.add_streams()->mutable_labels(), x.labels);
      i = index.emplace(x.labels, static_cast<uint32_t>(index.size())).first;
    }
    batch.add_stream_index(i->second);
    batch.add_timestamp_ns(x.timestamp_ns);
    batch.add_line(x.line);
  }
  return encode_request(cfg, pb::SyncRequest::kLogsFieldNumber,
                        batch.SerializeAsString());
}

std::string encode_events_request(const encode_settings& cfg,
                                  const event_records& events) {
  pb::EventsBatch batch;
  for (auto& x : events) {
    auto* e = batch.add_events();
    e->set_timestamp_ms(x.timestamp_ms);
    e->set_kind(x.kind);
    e->set_message(x.message);
    put_labels(e->mutable_attributes(), x.attributes);
  }
  return encode_request(cfg, pb::SyncRequest::kEventsFieldNumber,
                        batch.SerializeAsString());
}

namespace {

// Room in `plain` for `n` more bytes. The budget pays for what the string
// allocates (it doubles as it grows, up to what the budget has left).
caf::error make_room(std::string& plain, size_t n, decode_budget& budget) {
  auto need = plain.size() + n;
  auto cap = plain.capacity();
  if (need <= cap)
    return caf::none;
  auto grown = std::max<uint64_t>(need, std::min<uint64_t>(2 * cap,
                                                           cap + budget.left()));
  if (auto err = budget.charge(grown - cap, "decompressed body"))
    return err;
  plain.reserve(grown);
  return caf::none;
}

// The sum of the content sizes the frames of `body` declare; nullopt when
// one declares none or is not a frame.
std::optional<uint64_t> declared_size(std::string_view body) {
  uint64_t total = 0;
  while (!body.empty()) {
    auto size = ZSTD_getFrameContentSize(body.data(), body.size());
    auto len = ZSTD_findFrameCompressedSize(body.data(), body.size());
    if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR
        || ZSTD_isError(len) || size > (uint64_t{1} << 48))
      return std::nullopt;
    total += size;
    body.remove_prefix(len);
  }
  return total;
}

// The body as it was sent, or decompressed under the budget: a zstd frame
// may lie about its size, so it is streamed and charged chunk by chunk.
caf::error decompress(std::string_view& body, std::string& plain,
                      decode_budget& budget, bool dict = false) {
  auto size = ZSTD_getFrameContentSize(body.data(), body.size());
  if (size == ZSTD_CONTENTSIZE_ERROR)
    return make_error(ec::decode_failed, "body is not a zstd frame");
  if (size != ZSTD_CONTENTSIZE_UNKNOWN && size > budget.left())
    return make_error(ec::too_large, "decompressed body of "
                                       + std::to_string(size)
                                       + " bytes exceeds the limit");
  // Sizes every frame declares (a device's always do): one exact allocation.
  if (auto total = declared_size(body); total && *total <= budget.left())
    if (auto err = make_room(plain, *total, budget))
      return err;
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx{ZSTD_createDCtx(),
                                                          ZSTD_freeDCtx};
  if (dict) {
    auto d = sync_dictionary();
    if (ZSTD_isError(ZSTD_DCtx_loadDictionary(dctx.get(), d.data(), d.size())))
      return make_error(ec::decode_failed, "cannot load the sync dictionary");
  }
  ZSTD_inBuffer in{body.data(), body.size(), 0};
  std::string chunk(64 * 1024, '\0');
  size_t ret = 1;
  while (in.pos < in.size || ret != 0) {
    ZSTD_outBuffer out{chunk.data(), chunk.size(), 0};
    ret = ZSTD_decompressStream(dctx.get(), &out, &in);
    if (ZSTD_isError(ret))
      return make_error(ec::decode_failed, std::string("corrupt zstd body: ")
                                             + ZSTD_getErrorName(ret));
    if (auto err = make_room(plain, out.pos, budget))
      return err;
    plain.append(chunk.data(), out.pos);
    if (in.pos == in.size && out.pos < out.size && ret != 0)
      return make_error(ec::decode_failed, "truncated zstd body");
  }
  body = plain;
  return caf::none;
}

// A device's drop counters, bounded: a few short kinds, no negative count.
caf::error read_delivery(const pb::DeliveryReport& d, drop_declaration& out) {
  if (d.origin().empty() || d.origin().size() > max_drop_kind_bytes)
    return make_error(ec::decode_failed,
                      "delivery.origin must be 1 to 64 bytes");
  if (d.dropped_size() > max_declared_kinds)
    return make_error(ec::decode_failed,
                      "delivery names more than 32 drop kinds");
  out.origin = d.origin();
  for (auto& c : d.dropped()) {
    if (c.kind().empty() || c.kind().size() > max_drop_kind_bytes
        || c.records() < 0 || c.records() > max_declared_records)
      return make_error(ec::decode_failed,
                        "delivery.dropped: a kind of 1 to 64 bytes and a "
                        "count of 0 to 1e15 each");
    out.records[c.kind()] = c.records();
  }
  if (d.collected() < 0 || d.collected() > max_declared_records
      || d.stored() < 0 || d.stored() > d.collected())
    return make_error(ec::decode_failed,
                      "delivery: collected must be 0 to 1e15 and stored 0 "
                      "to collected, got collected "
                        + std::to_string(d.collected()) + ", stored "
                        + std::to_string(d.stored()));
  out.collected = d.collected();
  out.stored = d.stored();
  return caf::none;
}

// The envelope: who sent it, which batch, and that the batch is intact.
caf::error read_envelope(const pb::SyncRequest& req,
                         std::string_view raw_batch, int batch_field,
                         decoded_request& out) {
  if (req.device_id().empty())
    return make_error(ec::decode_failed, "device_id is empty");
  if (!req.has_metadata())
    return make_error(ec::decode_failed, "metadata missing");
  auto& md = req.metadata();
  if (md.format_version() < 1 || md.format_version() > wire_format_version)
    return make_error(ec::decode_failed,
                      "unsupported format_version "
                        + std::to_string(md.format_version()));
  if (md.sequence_number() <= 0)
    return make_error(ec::bad_sequence, "sequence_number must be positive");
  if (batch_field == 0)
    return make_error(ec::unknown_stream, "request carries no batch");
  if (md.checksum() != batch_checksum(raw_batch))
    return make_error(ec::checksum_mismatch, "batch checksum does not match");
  out.device_id = req.device_id();
  out.sequence = md.sequence_number();
  out.epoch = md.epoch();
  out.checksum = md.checksum();
  out.config_version = req.config_version();
  out.retry_count = md.retry_count();
  if (req.has_capability()) {
    auto& c = req.capability();
    out.capability = {c.tier(),          c.total_ram(),
                      c.available_ram(), c.total_disk(),
                      c.available_disk(), c.cpu_cores(),
                      c.has_sqlite(),    c.has_network()};
  }
  if (req.has_delivery())
    return read_delivery(req.delivery(), out.declared);
  return caf::none;
}

// Metrics as protobuf columns (each sample copies its series), or the
// columnar bytes still to be decoded against the session (by the store).
caf::error read_metrics(const pb::MetricsBatch& b, decoded_request& out,
                        decode_budget& budget) {
  out.stream = metrics_stream;
  auto n = b.series_index_size();
  if (!b.columnar().empty()) {
    if (n != 0 || b.series_size() != 0 || b.timestamp_ms_size() != 0
        || b.value_size() != 0)
      return make_error(ec::decode_failed,
                        "metrics batch carries both columnar and columns");
    // A copy beside the parsed one, held while the store decodes it.
    if (auto err = budget.charge(b.columnar().size(), "columnar batch"))
      return err;
    out.columnar = b.columnar();
    return caf::none;
  }
  if (b.timestamp_ms_size() != n || b.value_size() != n)
    return make_error(ec::decode_failed, "metrics columns differ in length");
  std::vector<std::pair<std::string, label_map>> series;
  series.reserve(static_cast<size_t>(b.series_size()));
  for (auto& s : b.series())
    series.emplace_back(s.name(), labels_of(s.labels()));
  for (int i = 0; i < n; ++i) {
    auto idx = b.series_index(i);
    if (idx >= series.size())
      return make_error(ec::decode_failed, "series index out of range");
    auto& [name, labels] = series[idx];
    if (auto err = budget.charge(record_bytes(sizeof(metric_sample), name,
                                              labels),
                                 "metric samples"))
      return err;
  }
  out.samples.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto& [name, labels] = series[b.series_index(i)];
    out.samples.push_back(
      metric_sample{name, labels, b.timestamp_ms(i), b.value(i)});
  }
  return caf::none;
}

// Log lines, each with a copy of its stream's labels.
caf::error read_logs(const pb::LogsBatch& b, decoded_request& out,
                     decode_budget& budget) {
  out.stream = logs_stream;
  auto n = b.stream_index_size();
  if (b.timestamp_ns_size() != n || b.line_size() != n)
    return make_error(ec::decode_failed, "logs columns differ in length");
  std::vector<label_map> streams;
  for (auto& s : b.streams())
    streams.push_back(labels_of(s.labels()));
  for (int i = 0; i < n; ++i) {
    auto idx = b.stream_index(i);
    if (idx >= streams.size())
      return make_error(ec::decode_failed, "log stream index out of range");
    if (auto err = budget.charge(record_bytes(sizeof(log_line), b.line(i),
                                              streams[idx]),
                                 "log lines"))
      return err;
  }
  out.logs.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    out.logs.push_back(
      log_line{streams[b.stream_index(i)], b.timestamp_ns(i), b.line(i)});
  return caf::none;
}

// Events, each with its kind, message and attributes.
caf::error read_events(const pb::EventsBatch& b, decoded_request& out,
                       decode_budget& budget) {
  out.stream = events_stream;
  for (auto& e : b.events()) {
    uint64_t size = sizeof(event_record) + e.kind().size() + e.message().size();
    for (auto& l : e.attributes())
      size += l.name().size() + l.value().size();
    if (auto err = budget.charge(size, "events"))
      return err;
  }
  out.events.reserve(static_cast<size_t>(b.events_size()));
  for (auto& e : b.events())
    out.events.push_back(event_record{e.timestamp_ms(), e.kind(), e.message(),
                                      labels_of(e.attributes())});
  return caf::none;
}

} // namespace

caf::expected<decoded_request> decode_request(std::string_view body, bool zstd,
                                              size_t max_decoded_bytes) {
  decode_budget budget{max_decoded_bytes};
  std::string plain;
  if (zstd) {
    if (auto err = decompress(body, plain, budget))
      return err;
  } else if (body.size() > max_decoded_bytes) {
    return make_error(ec::too_large, "body exceeds "
                                       + std::to_string(max_decoded_bytes)
                                       + " bytes");
  }
  // Parsing allocates up to dozens of bytes per byte of body (an empty
  // sub-message, a packed varint): charged from the bytes, before parsing.
#if !FLEETD_PROTO_LITE
  auto parse_cost = parse_bound(body, pb::SyncRequest::descriptor(),
                                budget.left());
  if (!parse_cost)
    return parse_cost.error();
  if (auto err = budget.charge(*parse_cost, "parsed request"))
    return err;
#endif // the device build decodes only its own queued batches, unbounded
  pb::SyncRequest req;
  if (!req.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return make_error(ec::decode_failed, "not a SyncRequest");
  auto raw = raw_batch_field(body);
  if (!raw)
    return raw.error();
  decoded_request out;
  if (auto err = read_envelope(req, raw->second, raw->first, out))
    return err;
  caf::error err;
  switch (req.data_case()) {
    case pb::SyncRequest::kMetrics:
      err = read_metrics(req.metrics(), out, budget);
      break;
    case pb::SyncRequest::kLogs:
      err = read_logs(req.logs(), out, budget);
      break;
    case pb::SyncRequest::kEvents:
      err = read_events(req.events(), out, budget);
      break;
    default:
      return make_error(ec::unknown_stream, "request carries no batch");
  }
  if (err)
    return err;
  // What is left bounds the columnar batch, decoded later by the store.
  out.decode_budget = budget.left();
  return out;
}

caf::expected<std::string> request_columnar(std::string_view body) {
  auto req = decode_request(body, is_zstd(body), std::string::npos / 2);
  if (!req)
    return req.error();
  return std::move(req->columnar);
}

namespace {

// Log timestamps as deltas (POST /v4/sync): the LogsBatch's packed
// timestamp_ns (field 3) rewritten in place as zigzag deltas (field 5), and
// back; every other byte is copied as it is.
constexpr uint32_t logs_tag = (4 << 3) | 2;   // SyncRequest.logs
constexpr uint32_t times_field = 3;           // LogsBatch.timestamp_ns
constexpr uint32_t deltas_field = 5;          // transport only

// One field of a message: its tag, all its bytes, and a length-delimited
// field's payload.
struct field_view {
  uint64_t tag = 0;
  std::string_view whole;
  std::string_view payload;
};

// The field at `pos` (advanced past it); false when malformed.
bool next_field(std::string_view msg, size_t& pos, field_view& f) {
  auto start = pos;
  uint64_t x = 0;
  if (!get_varint(msg, pos, f.tag))
    return false;
  switch (f.tag & 7) {
    case 0:
      if (!get_varint(msg, pos, x))
        return false;
      break;
    case 1:
    case 5: {
      size_t n = (f.tag & 7) == 1 ? 8 : 4;
      if (msg.size() - pos < n)
        return false;
      pos += n;
      break;
    }
    case 2:
      if (!get_varint(msg, pos, x) || x > msg.size() - pos)
        return false;
      f.payload = msg.substr(pos, x);
      pos += x;
      break;
    default: // groups: in no message of ours
      return false;
  }
  f.whole = msg.substr(start, pos - start);
  return true;
}

// The request around a recoded logs batch (either coding) is wrong.
caf::error bad_request_coding(const char* what) {
  return make_error(ec::decode_failed, std::string("recoded logs: ") + what);
}

caf::error bad_coding(const char* what) {
  return make_error(ec::decode_failed, std::string("log timestamps: ") + what);
}

caf::error too_long(size_t max_bytes) {
  return make_error(ec::too_large, "restored request exceeds "
                                     + std::to_string(max_bytes) + " bytes");
}

// `batch` with its one packed field `from` recoded into field `to`: to
// zigzag deltas (`deltas`) or back to the values.
caf::error recode_batch(std::string_view batch, uint32_t from, uint32_t to,
                        bool deltas, size_t max_bytes, std::string& out) {
  size_t pos = 0;
  int seen = 0;
  field_view f;
  while (pos < batch.size()) {
    if (!next_field(batch, pos, f))
      return bad_coding("malformed logs batch");
    auto field = f.tag >> 3;
    if (field == to)
      return bad_coding("field already present");
    if (field != from) {
      out.append(f.whole);
      continue;
    }
    if ((f.tag & 7) != 2 || ++seen > 1)
      return bad_coding("not one packed column");
    std::string col;
    uint64_t prev = 0;
    for (size_t p = 0; p < f.payload.size();) {
      uint64_t x = 0;
      if (!get_varint(f.payload, p, x))
        return bad_coding("malformed column");
      uint64_t y = deltas ? ((x - prev) << 1) ^ (0 - ((x - prev) >> 63))
                          : prev + ((x >> 1) ^ (0 - (x & 1)));
      prev = deltas ? x : y;
      put_varint(col, y);
      if (out.size() + col.size() > max_bytes)
        return too_long(max_bytes);
    }
    put_varint(out, (uint64_t{to} << 3) | 2);
    put_varint(out, col.size());
    out += col;
  }
  if (seen != 1)
    return bad_coding("no timestamp column");
  return caf::none;
}

// `request` with its one LogsBatch recoded by `recode` (batch, out).
template <class Recode>
caf::expected<std::string> recode_logs(std::string_view request,
                                       size_t max_bytes, Recode recode) {
  std::string out;
  size_t pos = 0;
  bool found = false;
  field_view f;
  while (pos < request.size()) {
    if (!next_field(request, pos, f))
      return bad_request_coding("malformed request");
    if (f.tag != logs_tag) {
      out.append(f.whole);
      continue;
    }
    if (found)
      return bad_request_coding("more than one logs batch");
    found = true;
    std::string batch;
    if (auto err = recode(f.payload, batch))
      return err;
    put_varint(out, f.tag);
    put_varint(out, batch.size());
    out += batch;
    if (out.size() > max_bytes)
      return too_long(max_bytes);
  }
  if (!found)
    return bad_request_coding("no logs batch");
  return out;
}

} // namespace

std::string delta_log_times(std::string_view request) {
  if (is_zstd(request))
    return {};
  auto coded = recode_logs(request, std::string::npos / 2,
                           [](std::string_view batch, std::string& out) {
                             return recode_batch(batch, times_field,
                                                 deltas_field, true,
                                                 std::string::npos / 2, out);
                           });
  // Sent only when the cloud gets the very same bytes back.
  if (!coded || coded->size() >= request.size())
    return {};
  auto back = restore_log_times(*coded, request.size());
  if (!back || *back != request)
    return {};
  return std::move(*coded);
}

caf::expected<std::string> restore_log_times(std::string_view coded,
                                             size_t max_bytes) {
  return recode_logs(coded, max_bytes,
                     [max_bytes](std::string_view batch, std::string& out) {
                       return recode_batch(batch, deltas_field, times_field,
                                           false, max_bytes, out);
                     });
}

namespace {

// Front-coded log lines (POST /v5/sync): the LogsBatch's line fields (4),
// one after another, as one field 6 where the first was; each line as the
// varint count of bytes it shares with the line before, the varint length
// of the rest, the rest. Every other byte is copied as it is.
constexpr uint32_t line_field = 4;       // LogsBatch.line
constexpr uint32_t front_field = 6;      // transport only

caf::error bad_lines(const char* what) {
  return make_error(ec::decode_failed, std::string("log lines: ") + what);
}

// Length-delimited field `field` holding `payload`, appended to `out`.
void put_field(std::string& out, uint32_t field, std::string_view payload) {
  put_varint(out, (uint64_t{field} << 3) | 2);
  put_varint(out, payload.size());
  out.append(payload);
}

caf::error front_code_batch(std::string_view batch, std::string& out) {
  size_t pos = 0;
  field_view f;
  std::string blob;
  std::string_view prev;
  // 0: no line yet, 1: in the run of lines, 2: past it.
  int run = 0;
  while (pos < batch.size()) {
    if (!next_field(batch, pos, f))
      return bad_lines("malformed logs batch");
    auto field = f.tag >> 3;
    if (field == front_field)
      return bad_lines("field already present");
    if (field != line_field) {
      if (run == 1) {
        put_field(out, front_field, blob);
        run = 2;
      }
      out.append(f.whole);
      continue;
    }
    if ((f.tag & 7) != 2 || run == 2)
      return bad_lines("lines are not one run");
    run = 1;
    auto line = f.payload;
    size_t shared = 0;
    while (shared < line.size() && shared < prev.size()
           && line[shared] == prev[shared])
      ++shared;
    put_varint(blob, shared);
    put_varint(blob, line.size() - shared);
    blob.append(line.substr(shared));
    prev = line;
  }
  if (run == 0)
    return bad_lines("no lines");
  if (run == 1)
    put_field(out, front_field, blob);
  return caf::none;
}

caf::error restore_lines_batch(std::string_view batch, size_t budget,
                               std::string& out) {
  size_t pos = 0;
  field_view f;
  int seen = 0;
  while (pos < batch.size()) {
    if (!next_field(batch, pos, f))
      return bad_lines("malformed logs batch");
    auto field = f.tag >> 3;
    if (field == line_field)
      return bad_lines("field already present");
    if (field != front_field) {
      out.append(f.whole);
      continue;
    }
    if ((f.tag & 7) != 2 || ++seen > 1)
      return bad_lines("not one run of lines");
    // Each line is charged before it is made: a short blob may claim long
    // shared prefixes.
    std::string line, prev;
    for (size_t p = 0; p < f.payload.size();) {
      uint64_t shared = 0, rest = 0;
      if (!get_varint(f.payload, p, shared) || !get_varint(f.payload, p, rest)
          || rest > f.payload.size() - p)
        return bad_lines("malformed run of lines");
      if (shared > prev.size())
        return bad_lines("a line shares more than the line before has");
      if (out.size() + shared + rest + 20 > budget)
        return too_long(budget);
      line.assign(prev, 0, static_cast<size_t>(shared));
      line.append(f.payload.substr(p, static_cast<size_t>(rest)));
      p += static_cast<size_t>(rest);
      put_field(out, line_field, line);
      prev.swap(line);
    }
  }
  if (seen != 1)
    return bad_lines("no run of lines");
  return caf::none;
}

} // namespace

std::string front_code_log_lines(std::string_view request) {
  if (is_zstd(request))
    return {};
  auto coded = recode_logs(request, std::string::npos / 2, front_code_batch);
  // Sent only when the cloud gets the very same bytes back.
  if (!coded || coded->size() >= request.size())
    return {};
  auto back = restore_log_lines(*coded, request.size());
  if (!back || *back != request)
    return {};
  return std::move(*coded);
}

caf::expected<std::string> restore_log_lines(std::string_view coded,
                                             size_t max_bytes) {
  auto out = recode_logs(coded, max_bytes,
                         [max_bytes](std::string_view batch, std::string& out) {
                           return restore_lines_batch(batch, max_bytes, out);
                         });
  if (out && out->size() > max_bytes)
    return too_long(max_bytes);
  return out;
}

namespace {

// A duration in a legacy SyncConfig field of `unit` ms: the nearest whole
// number, at least 1 unless 0 (0 would mean "the device's own").
int32_t legacy_units(int64_t ms, int64_t unit) {
  if (ms <= 0)
    return 0;
  return static_cast<int32_t>(
    std::clamp<int64_t>((ms + unit / 2) / unit, 1, INT32_MAX));
}

} // namespace

namespace {

// `ack` as a SyncResponse; `status` (field 7) only inside a bundle answer.
void fill_response(pb::SyncResponse& res, const sync_ack& ack,
                   bool with_status) {
  if (ack.config.version > 0) {
    auto* c = res.mutable_config_update();
    c->set_version(ack.config.version);
    c->set_batch_size(static_cast<int32_t>(ack.config.batch_size));
    c->set_sync_interval_ms(ack.config.sync_interval_ms);
    c->set_retention_ms(ack.config.retention_ms);
    c->set_sync_interval_seconds(legacy_units(ack.config.sync_interval_ms,
                                              1000));
    c->set_retention_hours(legacy_units(ack.config.retention_ms, 3600000));
    c->set_compression_enabled(ack.config.zstd_level != 0);
    c->set_zstd_level(static_cast<int32_t>(std::max<int64_t>(
      ack.config.zstd_level, 0)));
  }
  res.set_success(ack.success);
  res.set_last_sequence_ack(ack.last_sequence_ack);
  res.set_error_code(ack.error_code);
  res.set_error_message(ack.error_message);
  res.set_retry_after_ms(ack.retry_after_ms);
  if (with_status)
    res.set_status(static_cast<uint32_t>(std::clamp<int64_t>(ack.status, 0,
                                                             999)));
}

sync_ack ack_of(const pb::SyncResponse& res) {
  sync_ack out;
  out.success = res.success();
  out.last_sequence_ack = res.last_sequence_ack();
  out.error_code = res.error_code();
  out.error_message = res.error_message();
  out.retry_after_ms = res.retry_after_ms();
  out.status = res.status();
  if (res.has_config_update() && res.config_update().version() > 0) {
    auto& c = res.config_update();
    out.config.version = c.version();
    out.config.batch_size = std::max(c.batch_size(), 0);
    // The exact millisecond fields win; an older cloud sends only the others.
    out.config.sync_interval_ms
      = c.sync_interval_ms() > 0
          ? c.sync_interval_ms()
          : int64_t{std::max(c.sync_interval_seconds(), 0)} * 1000;
    out.config.retention_ms
      = c.retention_ms() > 0
          ? c.retention_ms()
          : int64_t{std::max(c.retention_hours(), 0)} * 3600000;
    // compression off: 0; on: the given level or, with none, the tier's.
    out.config.zstd_level = !c.compression_enabled()
                              ? 0
                              : (c.zstd_level() > 0 ? c.zstd_level() : -1);
  }
  return out;
}

} // namespace

std::string encode_response(const sync_ack& ack) {
  pb::SyncResponse res;
  fill_response(res, ack, false);
  return res.SerializeAsString();
}

caf::expected<sync_ack> decode_response(std::string_view body) {
  pb::SyncResponse res;
  if (!res.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return make_error(ec::decode_failed, "not a SyncResponse");
  auto out = ack_of(res);
  out.status = 0; // a v1 answer's status is its HTTP status
  return out;
}

namespace {

std::string encode_items(const std::vector<bundle_item>& items) {
  pb::SyncBundle bundle;
  for (auto& x : items) {
    auto* item = bundle.add_items();
    item->set_request(x.request);
    item->set_zstd(x.zstd);
    item->set_log_time_deltas(x.log_time_deltas);
    item->set_log_lines_front_coded(x.log_lines_front_coded);
  }
  return bundle.SerializeAsString();
}

} // namespace

std::string encode_bundle(const std::vector<std::string>& bodies) {
  std::vector<bundle_item> items;
  for (auto& body : bodies)
    items.push_back({body, is_zstd(body), false});
  return encode_items(items);
}

caf::expected<std::vector<bundle_item>>
decode_bundle(std::string_view body, size_t max_items) {
  // Count the items before protobuf allocates anything for them.
  google::protobuf::io::CodedInputStream in(
    reinterpret_cast<const uint8_t*>(body.data()),
    static_cast<int>(body.size()));
  size_t items = 0;
  while (auto tag = in.ReadTag()) {
    if (WireFormatLite::GetTagFieldNumber(tag) == 1 && ++items > max_items)
      return make_error(ec::too_large, "more than " + std::to_string(max_items)
                                         + " batches in one request");
    if (!WireFormatLite::SkipField(&in, tag))
      return make_error(ec::decode_failed, "not a SyncBundle");
  }
  if (!in.ConsumedEntireMessage() || in.CurrentPosition()
                                       != static_cast<int>(body.size()))
    return make_error(ec::decode_failed, "not a SyncBundle");
  pb::SyncBundle bundle;
  if (!bundle.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return make_error(ec::decode_failed, "not a SyncBundle");
  if (bundle.items_size() == 0)
    return make_error(ec::decode_failed, "a SyncBundle without items");
  std::vector<bundle_item> out;
  out.reserve(static_cast<size_t>(bundle.items_size()));
  for (auto& x : *bundle.mutable_items())
    out.push_back({std::move(*x.mutable_request()), x.zstd(),
                   x.log_time_deltas(), x.log_lines_front_coded()});
  return out;
}

namespace {

// The items' plain bytes (recoded as `coding` allows), whether some item
// was recoded, and whether some could not be read.
std::tuple<std::vector<bundle_item>, bool, bool>
plain_items(const std::vector<std::string>& bodies, bundle_coding coding) {
  std::vector<bundle_item> plain;
  bool coded = false;
  bool failed = false;
  for (auto& body : bodies) {
    // The device's own queued bytes: bounded all the same.
    decode_budget budget{64 * 1024 * 1024};
    bundle_item x;
    if (!is_zstd(body))
      x.request = body;
    else if (zstd_decompress(body, x.request, budget)) {
      // Not what this device queues: sent as it is, zstd, the whole failed.
      x.request = body;
      x.zstd = true;
      plain.push_back(std::move(x));
      failed = true;
      continue;
    }
    if (auto c = coding != bundle_coding::none ? delta_log_times(x.request)
                                               : std::string{};
        !c.empty()) {
      x.request = std::move(c);
      x.log_time_deltas = coded = true;
    }
    if (auto c = coding == bundle_coding::log_lines
                   ? front_code_log_lines(x.request)
                   : std::string{};
        !c.empty()) {
      x.request = std::move(c);
      x.log_lines_front_coded = coded = true;
    }
    plain.push_back(std::move(x));
  }
  return {std::move(plain), coded, failed};
}

} // namespace

std::string plain_bundle_body(const std::vector<std::string>& bodies) {
  return encode_items(
    std::get<0>(plain_items(bodies, bundle_coding::log_times)));
}

bundle_coding coding_of_path(std::string_view target) {
  if (target == "/v5/sync")
    return bundle_coding::log_lines;
  if (target == "/v4/sync")
    return bundle_coding::log_times;
  return bundle_coding::none;
}

bundle_body encode_bundle_body(const std::vector<std::string>& bodies,
                               int level, bundle_coding coding) {
  bundle_body out{encode_bundle(bodies), false};
  auto dict = coding == bundle_coding::log_lines;
  if (!dict && std::none_of(bodies.begin(), bodies.end(),
                            [](const std::string& b) { return is_zstd(b); }))
    return out;
  auto [plain, coded, failed] = plain_items(bodies, coding);
  if (failed)
    return out;
  auto compress = [&](const std::vector<bundle_item>& items) {
    return zstd_frame(encode_items(items), level,
                      dict ? sync_dictionary() : std::string_view{});
  };
  auto whole = compress(plain);
  bool reversed = false;
  size_t plain_bytes = 0;
  for (auto& x : plain)
    plain_bytes += x.request.size();
  // zstd codes a frame's literals with one table per block: text after
  // binary columns often codes smaller than before them, or the reverse.
  // A round's few KiB only: a drain's MiB are not compressed twice.
  if (plain.size() > 1 && plain_bytes <= max_reordered_bytes) {
    std::reverse(plain.begin(), plain.end());
    if (auto other = compress(plain); other.size() < whole.size()) {
      whole = std::move(other);
      reversed = true;
    }
  }
  if (is_zstd(whole) && (dict || whole.size() < out.bytes.size()))
    out = {std::move(whole), true, coded || dict, reversed};
  return out;
}

caf::expected<std::vector<bundle_item>>
decode_bundle_body(std::string_view body, bool zstd, size_t max_plain_bytes,
                   bundle_coding coding) {
  decode_budget budget{max_plain_bytes};
  std::string plain;
  if (zstd)
    if (auto err = decompress(body, plain, budget,
                              coding == bundle_coding::log_lines))
      return err;
  auto items = decode_bundle(zstd ? plain : body, max_bundle_items);
  if (!items)
    return items;
  // The restored items together may take what the plain body may.
  size_t used = 0;
  for (auto& x : *items) {
    if (x.log_time_deltas && (coding == bundle_coding::none || x.zstd))
      return make_error(ec::decode_failed,
                        "log_time_deltas only in a plain item of "
                        "POST /v4/sync or /v5/sync");
    if (x.log_lines_front_coded
        && (coding != bundle_coding::log_lines || x.zstd))
      return make_error(ec::decode_failed,
                        "log_lines_front_coded only in a plain item of "
                        "POST /v5/sync");
    if (!x.log_time_deltas && !x.log_lines_front_coded)
      used += x.request.size();
  }
  for (auto& x : *items) {
    // Undone in the reverse of the order the device coded them.
    if (x.log_lines_front_coded) {
      auto left = max_plain_bytes - std::min(used, max_plain_bytes);
      auto restored = restore_log_lines(x.request, left);
      if (!restored)
        return restored.error();
      x.request = std::move(*restored);
      x.log_lines_front_coded = false;
      if (!x.log_time_deltas)
        used += x.request.size();
    }
    if (x.log_time_deltas) {
      auto left = max_plain_bytes - std::min(used, max_plain_bytes);
      auto restored = restore_log_times(x.request, left);
      if (!restored)
        return restored.error();
      used += restored->size();
      x.request = std::move(*restored);
      x.log_time_deltas = false;
    }
  }
  return items;
}

std::string encode_bundle_response(const std::vector<sync_ack>& acks) {
  pb::SyncBundleResponse res;
  for (auto& ack : acks)
    fill_response(*res.add_results(), ack, true);
  return res.SerializeAsString();
}

caf::expected<std::vector<sync_ack>>
decode_bundle_response(std::string_view body, size_t items) {
  pb::SyncBundleResponse res;
  if (!res.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return make_error(ec::decode_failed, "not a SyncBundleResponse");
  if (static_cast<size_t>(res.results_size()) != items)
    return make_error(ec::decode_failed,
                      "SyncBundleResponse with "
                        + std::to_string(res.results_size())
                        + " results for " + std::to_string(items)
                        + " batches");
  std::vector<sync_ack> out;
  for (auto& r : res.results()) {
    out.push_back(ack_of(r));
    if (out.back().status < 100 || out.back().status > 599)
      return make_error(ec::decode_failed, "a result without an HTTP status");
  }
  return out;
}

} // namespace fleetd

namespace fleetd {

std::string zstd_compress(const std::string& plain, int level) {
  return zstd_frame(plain, level);
}

caf::error zstd_decompress(std::string_view body, std::string& plain,
                           decode_budget& budget) {
  return decompress(body, plain, budget);
}

} // namespace fleetd
