// Writes the wire-format test vectors (tests/data/wire-vectors): request
// bodies made by the real encoders and by a minimal sender as firmware would
// write it, each with what a receiver decodes from it. Deterministic: run
// `build/tests/wire_vectors_gen tests/data/wire-vectors` after a deliberate
// format change, and commit the files with it.
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>

#include <zstd.h>

#include "fleetd/v1/sync.pb.h"
#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "wire_vectors.hpp"

using namespace fleetd;
namespace pb = fleetd::v1;

namespace {

constexpr int64_t t0 = 1'764'892'800'000; // 2025-12-05T00:00:00Z
constexpr uint64_t budget = 64 * 1024 * 1024;

// -- a minimal sender (docs/wire-format.md, "Minimal sender profile") -------

void put_varint(std::string& out, uint64_t x) {
  while (x >= 0x80) {
    out.push_back(static_cast<char>(x | 0x80));
    x >>= 7;
  }
  out.push_back(static_cast<char>(x));
}

uint64_t zigzag(int64_t x) {
  return (static_cast<uint64_t>(x) << 1) ^ static_cast<uint64_t>(x >> 63);
}

void put_string(std::string& out, const std::string& s) {
  put_varint(out, s.size());
  out += s;
}

void put_u64(std::string& out, uint64_t x) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>(x >> (8 * i)));
}

// Base 0 against the empty session, every series defined in full, one
// timestamp group per series (8-byte planes), the order sent explicitly,
// every value as XOR control 0x08 + its 8 bytes: no choice, no state.
std::string minimal_columnar(const metric_samples& xs) {
  std::map<std::pair<std::string, label_map>, std::vector<size_t>> by_series;
  std::vector<std::pair<std::string, label_map>> series;
  std::vector<size_t> slot_of(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    auto key = std::make_pair(xs[i].name, xs[i].labels);
    auto [it, fresh] = by_series.try_emplace(key);
    if (fresh)
      series.push_back(key);
    it->second.push_back(i);
  }
  std::string out;
  out.push_back(3);  // version
  put_varint(out, 0); // base
  put_u64(out, codec_context{}.digest());
  put_varint(out, series.size());
  for (auto& [name, labels] : series) {
    std::string def;
    put_string(def, name);
    put_varint(def, labels.size());
    for (auto& [k, v] : labels) { // label_map: sorted byte-wise
      put_string(def, k);
      put_string(def, v);
    }
    put_varint(out, 0); // shares nothing
    put_string(out, def);
  }
  put_varint(out, series.size()); // slots: series 0, 1, 2, ...
  for (size_t s = 0; s < series.size(); ++s)
    put_varint(out, zigzag(s == 0 ? 0 : 1));
  put_varint(out, series.size()); // groups: one per slot
  int64_t prev_first = 0;
  for (auto& key : series) {
    auto& idx = by_series[key];
    std::vector<int64_t> ts;
    for (auto i : idx)
      ts.push_back(xs[i].timestamp_ms);
    put_varint(out, ts.size());
    put_varint(out, zigzag(ts[0] - prev_first));
    prev_first = ts[0];
    if (ts.size() >= 2) {
      put_varint(out, zigzag(ts[1] - ts[0]));
      out.push_back(8); // selector: 8 byte planes, even for no values
      for (int b = 0; b < 8; ++b)
        for (size_t i = 2; i < ts.size(); ++i)
          out.push_back(static_cast<char>(
            zigzag((ts[i] - ts[i - 1]) - (ts[i - 1] - ts[i - 2])) >> (8 * b)));
    }
  }
  for (size_t s = 0; s < series.size(); ++s)
    put_varint(out, s); // slot s takes group s
  out.push_back(1); // explicit order
  std::map<std::pair<std::string, label_map>, size_t> slot_no;
  for (size_t s = 0; s < series.size(); ++s)
    slot_no[series[s]] = s;
  for (auto& x : xs)
    put_varint(out, slot_no[{x.name, x.labels}]);
  std::string kinds, bodies;
  for (auto& key : series) {
    kinds.push_back(2); // XOR, reconstruction 0, not continued
    uint64_t prev = 0;
    for (auto i : by_series[key]) {
      uint64_t bits = 0;
      std::memcpy(&bits, &xs[i].value, 8);
      bodies.push_back(0x08); // shift 0, 8 bytes
      put_u64(bodies, bits ^ prev);
      prev = bits;
    }
  }
  for (auto* stream : {&kinds, static_cast<std::string*>(nullptr),
                       static_cast<std::string*>(nullptr),
                       static_cast<std::string*>(nullptr), &bodies})
    put_string(out, stream != nullptr ? *stream : std::string{});
  return out;
}

// -- the samples -------------------------------------------------------------

double nan_with_payload(uint64_t payload) {
  uint64_t bits = 0x7ff8000000000000ULL | payload;
  double x;
  std::memcpy(&x, &bits, 8);
  return x;
}

metric_samples scrape(int64_t ts, int round) {
  metric_samples out;
  out.push_back({"node_load1", {{"instance", "edge-01"}}, ts, 0.25 * round});
  out.push_back({"node_memory_MemAvailable_bytes", {{"instance", "edge-01"}},
                 ts, 1.5e9 - 4096.0 * round});
  out.push_back({"node_cpu_seconds_total",
                 {{"cpu", "0"}, {"instance", "edge-01"}, {"mode", "idle"}},
                 ts, 1000.01 + 9.98 * round});
  out.push_back({"special", {{"kind", "nan"}}, ts, nan_with_payload(round)});
  out.push_back({"special", {{"kind", "neg_zero"}}, ts, -0.0});
  out.push_back({"special", {{"kind", "inf"}}, ts,
                 round % 2 ? std::numeric_limits<double>::infinity()
                           : -std::numeric_limits<double>::infinity()});
  return out;
}

metric_samples scrapes(int from, int n) {
  metric_samples out;
  for (int r = from; r < from + n; ++r)
    for (auto& s : scrape(t0 + 10000 * r + (r % 3), r))
      out.push_back(std::move(s));
  return out;
}

encode_settings settings(int64_t seq, int zstd_level) {
  encode_settings es;
  es.device_id = "edge-01";
  es.sequence = seq;
  es.epoch = "5f2a9c0e11d3b7a4";
  es.now_ms = t0 + 60000;
  es.zstd_level = zstd_level;
  return es;
}

// -- writing a vector ----------------------------------------------------------

struct vector_writer {
  std::string dir;
  std::map<std::string, codec_context> sessions;

  // Decodes `body` as the cloud does (a base-0 batch resets the session) and
  // writes NAME.body and NAME.expect.
  void write(const std::string& name, const std::string& what,
             const std::string& body, bool zstd,
             const std::string& session = "") {
    std::ofstream(dir + "/" + name + ".body", std::ios::binary) << body;
    std::ofstream ex(dir + "/" + name + ".expect");
    ex << "# " << what << "\n";
    ex << "content-encoding " << (zstd ? "zstd" : "identity") << "\n";
    if (!session.empty())
      ex << "session " << session << "\n";
    auto req = decode_request(body, zstd, budget);
    if (!req) {
      ex << "refused " << to_string(static_cast<ec>(req.error().code()))
         << "\n";
      return;
    }
    metric_samples xs = req->samples;
    if (!req->columnar.empty()) {
      auto& ctx = sessions[session];
      auto base = columnar_base(req->columnar);
      if (base && *base == 0)
        ctx.clear();
      ex << "digest-before " << test::u64_hex(ctx.digest()) << "\n";
      decode_budget b{req->decode_budget};
      auto got = decode_columnar(req->columnar, ctx, b);
      if (!got) {
        ex << "refused " << to_string(static_cast<ec>(got.error().code()))
           << "\n";
        return;
      }
      xs = std::move(*got);
      ex << "digest-after " << test::u64_hex(ctx.digest()) << "\n";
    }
    ex << "stream " << req->stream << "\nsequence " << req->sequence
       << "\nepoch " << req->epoch << "\n";
    ex << test::records_text(*req, xs);
  }
};

std::string with_flipped_checksum(const std::string& plain) {
  pb::SyncRequest req;
  req.ParseFromString(plain);
  auto sum = req.metadata().checksum();
  sum[7] = static_cast<char>(sum[7] ^ 1);
  req.mutable_metadata()->set_checksum(sum);
  return req.SerializeAsString();
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: wire_vectors_gen DIR\n";
    return 2;
  }
  vector_writer w{argv[1], {}};
  // Minimal profile: two batches in a row, both base 0, no compression.
  auto m1 = scrapes(0, 3);
  w.write("01-minimal-profile", "minimal sender: base 0, 8-byte planes, "
          "XOR values, explicit order, no compression",
          encode_columnar_request(settings(1, 0), minimal_columnar(m1)), false,
          "minimal");
  auto m2 = scrapes(3, 1);
  w.write("02-minimal-profile-again", "minimal sender again: base 0 resets "
          "the session, so every batch is self-contained",
          encode_columnar_request(settings(2, 0), minimal_columnar(m2)), false,
          "minimal");
  // The device's own encoder: a session over two batches, zstd.
  codec_context dev;
  auto a = scrapes(0, 30);
  auto ca = encode_columnar(a, dev);
  commit_columnar(dev, a);
  w.write("03-session-first", "fleetd's encoder, first batch of a session "
          "(series defined inline), zstd",
          encode_columnar_request(settings(1, 3), ca), true, "device");
  auto b = scrapes(30, 30);
  auto cb = encode_columnar(b, dev);
  w.write("04-session-continued", "fleetd's encoder, next batch: series by "
          "number, columns continue the histories, zstd",
          encode_columnar_request(settings(2, 3), cb), true, "device");
  w.write("05-protobuf-columns", "a simple sender's metrics as protobuf "
          "columns (no session), no compression",
          encode_metrics_request(settings(1, 0), scrapes(0, 2)), false);
  log_lines logs{{{{"job", "app"}, {"unit", "x y"}}, t0 * 1000000 + 1, "hello"},
                 {{{"job", "app"}}, t0 * 1000000 + 2, "line with \"quotes\""},
                 {{{"job", "app"}, {"unit", "x y"}}, t0 * 1000000 + 3, ""}};
  w.write("06-logs", "log lines grouped by label set, zstd",
          encode_logs_request(settings(1, 3), logs), true);
  event_records events{{t0, "capability_change", "tier 1 -> 2", {{"from", "1"}}},
                       {t0 + 5, "link_online", "", {}}};
  w.write("07-events", "events, no compression",
          encode_events_request(settings(1, 0), events), false);
  w.write("08-refused-checksum", "the checksum of 05 with one bit flipped",
          with_flipped_checksum(encode_metrics_request(settings(1, 0),
                                                       scrapes(0, 2))),
          false);
  codec_context stranger;
  commit_columnar(stranger, scrapes(0, 1));
  w.write("09-refused-session", "a batch encoded against a session of 6 "
          "series the receiver does not hold",
          encode_columnar_request(settings(3, 0),
                                  encode_columnar(scrapes(1, 1), stranger)),
          false, "fresh");
  auto truncated = ca.substr(0, ca.size() - 1);
  w.write("10-refused-truncated", "03's columnar bytes without their last byte",
          encode_columnar_request(settings(1, 0), truncated), false, "cut");
  pb::SyncRequest empty;
  empty.set_device_id("edge-01");
  empty.mutable_metadata()->set_sequence_number(1);
  empty.mutable_metadata()->set_format_version(2);
  w.write("11-refused-no-batch", "a request without a batch field",
          empty.SerializeAsString(), false);
  auto plain = test::request_around(3, test::copying_metrics_batch());
  std::string z(ZSTD_compressBound(plain.size()), '\0');
  z.resize(ZSTD_compress(z.data(), z.size(), plain.data(), plain.size(), 19));
  w.write("12-refused-too-large", "protobuf columns that would copy a 32 KiB "
          "series name 100,000 times: over a 64 MiB decode budget (zstd)",
          z, true);
  return 0;
}
