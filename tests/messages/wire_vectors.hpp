#pragma once

// The test vectors of docs/wire-format.md (tests/data/wire-vectors): how a
// decoded request is written down, shared by their generator and their test.

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>

#include "fleetd/v1/sync.pb.h"
#include "messages/metrics_codec.hpp"
#include "messages/wire.hpp"

namespace fleetd::test {

/// Bytes as lower-case hex.
inline std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

/// `s` as it is when plain printable ASCII without the separators used
/// here (space, quote, backslash, braces, comma, equals), else 0x + hex.
inline std::string text(std::string_view s) {
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f || std::strchr("\"\\{},=", c) != nullptr)
      return "0x" + hex(s);
  return std::string(s);
}

/// `{name="value",...}` in the order a label_map keeps them (byte order).
inline std::string labels_text(const label_map& labels) {
  std::string out = "{";
  for (auto& [k, v] : labels)
    out += (out.size() > 1 ? "," : "") + text(k) + "=\"" + text(v) + "\"";
  return out + "}";
}

inline std::string u64_hex(uint64_t x) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, x);
  return buf;
}

/// One line per record: what a second implementation must decode.
inline std::string records_text(const decoded_request& req,
                                const metric_samples& samples) {
  std::string out;
  for (auto& s : samples) {
    uint64_t bits = 0;
    std::memcpy(&bits, &s.value, sizeof(bits));
    out += "metric " + std::to_string(s.timestamp_ms) + " " + text(s.name)
           + labels_text(s.labels) + " " + u64_hex(bits) + "\n";
  }
  for (auto& l : req.logs)
    out += "log " + std::to_string(l.timestamp_ns) + " "
           + labels_text(l.labels) + " " + text(l.line) + "\n";
  for (auto& e : req.events)
    out += "event " + std::to_string(e.timestamp_ms) + " " + text(e.kind)
           + " " + text(e.message) + " " + labels_text(e.attributes) + "\n";
  return out;
}

/// A plain request of device "edge-01", sequence 1, around `batch` (the
/// serialized bytes of field 3, 4 or 5), with its checksum.
inline std::string request_around(int field, const std::string& batch) {
  fleetd::v1::SyncRequest req;
  req.set_device_id("edge-01");
  auto* md = req.mutable_metadata();
  md->set_sequence_number(1);
  md->set_format_version(wire_format_version);
  md->set_checksum(batch_checksum(batch));
  if (field == 3)
    req.mutable_metrics()->ParseFromString(batch);
  else if (field == 4)
    req.mutable_logs()->ParseFromString(batch);
  else
    req.mutable_events()->ParseFromString(batch);
  return req.SerializeAsString();
}

/// Protobuf metric columns that copy one 32 KiB series name into each of
/// 100,000 samples: about 3.2 GB decoded from a few hundred bytes of zstd.
inline std::string copying_metrics_batch() {
  fleetd::v1::MetricsBatch b;
  b.add_series()->set_name(std::string(32 * 1024, 'n'));
  for (int i = 0; i < 100000; ++i) {
    b.add_series_index(0);
    b.add_timestamp_ms(0);
    b.add_value(0);
  }
  return b.SerializeAsString();
}

} // namespace fleetd::test
