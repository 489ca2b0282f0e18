// The POST /v1/sync body: encoding, decoding and every way decoding refuses.
#include <doctest/doctest.h>
#include <xxhash.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include <zstd.h>

#include "fleetd/v1/sync.pb.h"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/types.hpp"
#include "messages/wire.hpp"
#include "check_samples.hpp"
#include "wire_vectors.hpp"

using namespace fleetd;
namespace pb = fleetd::v1;

namespace {

constexpr size_t one_mib = 1024 * 1024;

double from_bits(uint64_t x) {
  double out;
  std::memcpy(&out, &x, sizeof(out));
  return out;
}

metric_sample sample(std::string name, label_map labels, int64_t ts,
                     double value) {
  metric_sample s;
  s.name = std::move(name);
  s.labels = std::move(labels);
  s.timestamp_ms = ts;
  s.value = value;
  return s;
}

// Several series (some sharing a name, differing in labels), repeated
// series, and values that only a bitwise comparison tells apart.
metric_samples test_samples() {
  return {
    sample("cpu.usage", {{"core", "0"}, {"host", "edge-01"}}, 1700000000000,
           42.125),
    sample("cpu.usage", {{"core", "1"}, {"host", "edge-01"}}, 1700000000000,
           std::numeric_limits<double>::quiet_NaN()),
    sample("mem.free", {}, 1700000000001, -0.0),
    sample("cpu.usage", {{"core", "0"}, {"host", "edge-01"}}, 1700000001000,
           from_bits(0x7FF8DEADBEEF0001ull)), // NaN with a payload
    sample("disk.bytes", {{"dev", "sda"}, {"mount", "/var/lib/fl\xC3\xA9" "etd"}},
           -5, std::numeric_limits<double>::infinity()),
    sample("mem.free", {}, 1700000001001,
           std::numeric_limits<double>::denorm_min()),
    sample("temp", {{"zone", ""}}, 0, -273.15),
    sample("mem.free", {}, std::numeric_limits<int64_t>::max(),
           -std::numeric_limits<double>::infinity()),
  };
}

encode_settings settings(int level, int64_t seq = 7) {
  encode_settings cfg;
  cfg.device_id = "edge-01";
  cfg.sequence = seq;
  cfg.now_ms = 1700000002000;
  cfg.zstd_level = level;
  return cfg;
}

void check_same_samples(const metric_samples& got,
                        const metric_samples& want) {
  test::check_same_samples(got, want, true);
}

bool has_code(const caf::error& err, ec code) {
  return err.category() == caf::atom("fleetd")
         && err.code() == static_cast<uint8_t>(code);
}

template <class T>
void check_fails(const caf::expected<T>& x, ec code) {
  std::string want = to_string(code);
  REQUIRE_MESSAGE(!x, "decoding succeeded, expected " << want);
  CHECK_MESSAGE(has_code(x.error(), code),
                "got " << render(x.error()) << ", expected " << want);
}

std::string zstd_compress(std::string_view plain, int level = 3) {
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  auto n = ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(),
                         level);
  REQUIRE(!ZSTD_isError(n));
  out.resize(n);
  return out;
}

// A zstd frame whose header does not declare the content size, as streaming
// compressors produce it.
std::string zstd_compress_stream(std::string_view plain) {
  ZSTD_CStream* cs = ZSTD_createCStream();
  REQUIRE(cs != nullptr);
  REQUIRE(!ZSTD_isError(ZSTD_initCStream(cs, 3)));
  std::string out;
  std::string chunk(ZSTD_CStreamOutSize(), '\0');
  ZSTD_inBuffer in{plain.data(), plain.size(), 0};
  while (in.pos < in.size) {
    ZSTD_outBuffer o{chunk.data(), chunk.size(), 0};
    auto rc = ZSTD_compressStream(cs, &o, &in);
    REQUIRE(!ZSTD_isError(rc));
    out.append(chunk.data(), o.pos);
  }
  for (;;) {
    ZSTD_outBuffer o{chunk.data(), chunk.size(), 0};
    auto left = ZSTD_endStream(cs, &o);
    REQUIRE(!ZSTD_isError(left));
    out.append(chunk.data(), o.pos);
    if (left == 0)
      break;
  }
  ZSTD_freeCStream(cs);
  REQUIRE(ZSTD_getFrameContentSize(out.data(), out.size())
          == ZSTD_CONTENTSIZE_UNKNOWN);
  return out;
}

// Length of a zstd frame header (RFC 8878, section 3.1.1.1).
size_t frame_header_size(std::string_view frame) {
  REQUIRE(frame.size() > 5);
  auto fhd = static_cast<uint8_t>(frame[4]);
  bool single_segment = (fhd >> 5) & 1;
  size_t dict_id[] = {0, 1, 2, 4};
  size_t fcs[] = {single_segment ? size_t{1} : size_t{0}, 2, 4, 8};
  return 4 + 1 + (single_segment ? 0 : 1) + dict_id[fhd & 3] + fcs[fhd >> 6];
}

// A SyncRequest built by hand; `batch` is the serialized batch to place in
// field `field` (0: none), checksummed correctly unless told otherwise.
std::string hand_made_request(int field, const std::string& batch,
                              int64_t seq = 1,
                              const std::string& device = "edge-01") {
  pb::SyncRequest req;
  req.set_device_id(device);
  auto* md = req.mutable_metadata();
  md->set_sequence_number(seq);
  md->set_format_version(wire_format_version);
  md->set_checksum(batch_checksum(batch));
  switch (field) {
    case 3: REQUIRE(req.mutable_metrics()->ParseFromString(batch)); break;
    case 4: REQUIRE(req.mutable_logs()->ParseFromString(batch)); break;
    case 5: REQUIRE(req.mutable_events()->ParseFromString(batch)); break;
    default: break;
  }
  return req.SerializeAsString();
}

std::string one_series_batch(std::vector<uint32_t> index,
                             std::vector<int64_t> ts,
                             std::vector<double> values) {
  pb::MetricsBatch b;
  auto* s = b.add_series();
  s->set_name("x");
  for (auto i : index)
    b.add_series_index(i);
  for (auto t : ts)
    b.add_timestamp_ms(t);
  for (auto v : values)
    b.add_value(v);
  return b.SerializeAsString();
}

} // namespace

TEST_CASE("a plain metrics request round-trips bit for bit") {
  auto in = test_samples();
  auto body = encode_metrics_request(settings(0), in);
  CHECK_FALSE(is_zstd(body));
  auto out = decode_request(body, false, one_mib);
  REQUIRE_MESSAGE(out, render(out.error()));
  CHECK(out->device_id == "edge-01");
  CHECK(out->stream == metrics_stream);
  CHECK(out->sequence == 7);
  check_same_samples(out->samples, in);
}

TEST_CASE("a zstd metrics request round-trips bit for bit") {
  auto in = test_samples();
  for (int level : {1, 3, 19}) {
    CAPTURE(level);
    auto body = encode_metrics_request(settings(level, 123456789012), in);
    CHECK(is_zstd(body));
    auto out = decode_request(body, true, one_mib);
    REQUIRE_MESSAGE(out, render(out.error()));
    CHECK(out->device_id == "edge-01");
    CHECK(out->stream == metrics_stream);
    CHECK(out->sequence == 123456789012);
    check_same_samples(out->samples, in);
  }
}

TEST_CASE("a request with no samples round-trips empty") {
  for (int level : {0, 3}) {
    auto body = encode_metrics_request(settings(level), {});
    auto out = decode_request(body, level > 0, one_mib);
    REQUIRE_MESSAGE(out, render(out.error()));
    CHECK(out->samples.empty());
    CHECK(out->stream == metrics_stream);
  }
}

TEST_CASE("a large zstd request decompresses across many chunks") {
  metric_samples in;
  for (int i = 0; i < 20000; ++i)
    in.push_back(sample("series." + std::to_string(i % 50),
                        {{"i", std::to_string(i % 7)}}, 1700000000000 + i,
                        i * 0.5));
  auto body = encode_metrics_request(settings(3), in);
  REQUIRE(is_zstd(body));
  REQUIRE(ZSTD_getFrameContentSize(body.data(), body.size()) > 64 * 1024);
  auto out = decode_request(body, true, 16 * one_mib);
  REQUIRE_MESSAGE(out, render(out.error()));
  check_same_samples(out->samples, in);
}

TEST_CASE("the encoder describes the batch in the metadata and sends each "
          "series once") {
  auto body = encode_metrics_request(settings(0), test_samples());
  pb::SyncRequest req;
  REQUIRE(req.ParseFromString(body));
  CHECK(req.device_id() == "edge-01");
  CHECK(req.data_case() == pb::SyncRequest::kMetrics);
  auto& md = req.metadata();
  CHECK(md.sequence_number() == 7);
  // Informational fields no cloud reads are not sent.
  CHECK(md.timestamp() == 0);
  CHECK_FALSE(md.compressed());
  CHECK(md.compression_algo().empty());
  CHECK(md.format_version() == wire_format_version);
  CHECK(md.checksum().size() == 8);
  CHECK(md.checksum() == batch_checksum(req.metrics().SerializeAsString()));
  // cpu.usage{core=0}, cpu.usage{core=1}, mem.free, disk.bytes, temp.
  CHECK(req.metrics().series_size() == 5);
  CHECK(req.metrics().series_index_size() == 8);
  auto zbody = encode_metrics_request(settings(3), test_samples());
  auto plain = std::string(
    ZSTD_getFrameContentSize(zbody.data(), zbody.size()), '\0');
  REQUIRE(ZSTD_decompress(plain.data(), plain.size(), zbody.data(),
                          zbody.size())
          == plain.size());
  pb::SyncRequest zreq;
  REQUIRE(zreq.ParseFromString(plain));
  CHECK(zreq.metadata().timestamp() == 0);
  CHECK_FALSE(zreq.metadata().compressed());
  CHECK(zreq.metadata().compression_algo().empty());
  // The envelope is what the cloud reads: the device, then in the metadata
  // (2) the sequence, format and checksum (no epoch set here).
  pb::SyncRequest envelope = req;
  envelope.clear_metrics();
  CHECK(envelope.ByteSizeLong() == 2 + 7 + 2 + 2 + 2 + 10);
}

TEST_CASE("the batch checksum is XXH3-64 in big-endian order") {
  // Reference value of XXH3_64bits("") = 0x2D06800538D394C2.
  CHECK(batch_checksum("") == std::string("\x2D\x06\x80\x05\x38\xD3\x94\xC2", 8));
  CHECK(batch_checksum("a") != batch_checksum("b"));
  CHECK(batch_checksum("abc").size() == 8);
}

TEST_CASE("a flipped byte inside the batch fails the checksum") {
  auto body = encode_metrics_request(settings(0), test_samples());
  SUBCASE("in a value") {
    // 42.125 is stored as 8 little-endian bytes in the packed value column.
    double v = 42.125;
    auto pos = body.find(std::string(reinterpret_cast<const char*>(&v), 8));
    REQUIRE(pos != std::string::npos);
    body[pos] = static_cast<char>(body[pos] ^ 0x01);
  }
  SUBCASE("in a series name") {
    auto pos = body.find("disk.bytes");
    REQUIRE(pos != std::string::npos);
    body[pos] = 'D';
  }
  SUBCASE("in a timestamp") {
    // Still a valid varint: only the low bits of the first byte change.
    pb::MetricsBatch probe;
    probe.add_timestamp_ms(1700000000000);
    auto col = probe.SerializeAsString().substr(2); // skip tag and length
    auto pos = body.find(col);
    REQUIRE(pos != std::string::npos);
    body[pos] = static_cast<char>(body[pos] ^ 0x02);
  }
  check_fails(decode_request(body, false, one_mib), ec::checksum_mismatch);
  // The same body compressed: the checksum is checked after decompression.
  check_fails(decode_request(zstd_compress(body), true, one_mib),
              ec::checksum_mismatch);
}

TEST_CASE("a wrong checksum in the metadata fails the checksum") {
  auto body = encode_metrics_request(settings(0), test_samples());
  pb::SyncRequest req;
  REQUIRE(req.ParseFromString(body));
  SUBCASE("different bytes") {
    auto sum = req.metadata().checksum();
    sum[7] = static_cast<char>(sum[7] ^ 0x80);
    req.mutable_metadata()->set_checksum(sum);
  }
  SUBCASE("missing") {
    req.mutable_metadata()->clear_checksum();
  }
  check_fails(decode_request(req.SerializeAsString(), false, one_mib),
              ec::checksum_mismatch);
}

TEST_CASE("a request carrying the batch field twice is refused") {
  // Protobuf merges repeated occurrences of a message field, so the points of
  // the first copy would be decoded without any checksum covering them.
  auto first = one_series_batch({0}, {1}, {666.0});
  auto second = one_series_batch({0}, {2}, {1.0});
  auto body = hand_made_request(3, second);
  // Append field 3 once more, after the original, with other points.
  pb::SyncRequest extra;
  REQUIRE(extra.mutable_metrics()->ParseFromString(first));
  auto smuggled = extra.SerializeAsString() + body;
  pb::SyncRequest merged;
  REQUIRE(merged.ParseFromString(smuggled));
  REQUIRE(merged.metrics().value_size() == 2);
  auto out = decode_request(smuggled, false, one_mib);
  REQUIRE_FALSE(out);
  CHECK((has_code(out.error(), ec::checksum_mismatch)
         || has_code(out.error(), ec::decode_failed)));
}

TEST_CASE("a corrupt zstd body fails to decode") {
  auto good = encode_metrics_request(settings(3), test_samples());
  REQUIRE(is_zstd(good));
  SUBCASE("a frame header with the reserved bit set") {
    std::string body = good.substr(0, 4) + '\x08' + std::string(64, '\0');
    check_fails(decode_request(body, true, one_mib), ec::decode_failed);
  }
  SUBCASE("a block of reserved type after a valid frame header") {
    auto header = frame_header_size(good);
    std::string body = good.substr(0, header) + "\xFF\xFF\xFF"
                       + std::string(64, '\xA5');
    check_fails(decode_request(body, true, one_mib), ec::decode_failed);
  }
  SUBCASE("garbage blocks after a valid frame header") {
    auto header = frame_header_size(good);
    std::string body = good.substr(0, header);
    for (int i = 0; i < 64; ++i)
      body += static_cast<char>(0x5A ^ (i * 37));
    check_fails(decode_request(body, true, one_mib), ec::decode_failed);
  }
  SUBCASE("a truncated frame") {
    for (size_t cut : {size_t{1}, size_t{5}, good.size() / 2}) {
      CAPTURE(cut);
      check_fails(decode_request(good.substr(0, good.size() - cut), true,
                                 one_mib),
                  ec::decode_failed);
    }
  }
  SUBCASE("not a zstd frame at all") {
    auto plain = encode_metrics_request(settings(0), test_samples());
    check_fails(decode_request(plain, true, one_mib), ec::decode_failed);
    check_fails(decode_request("", true, one_mib), ec::decode_failed);
  }
  SUBCASE("a frame followed by garbage") {
    check_fails(decode_request(good + "garbage!", true, one_mib),
                ec::decode_failed);
  }
}

TEST_CASE("a truncated protobuf fails to decode") {
  auto body = encode_metrics_request(settings(0), test_samples());
  for (size_t keep : {body.size() - 1, body.size() - 9, body.size() / 2,
                      size_t{3}}) {
    CAPTURE(keep);
    check_fails(decode_request(body.substr(0, keep), false, one_mib),
                ec::decode_failed);
    check_fails(decode_request(zstd_compress(body.substr(0, keep)), true,
                               one_mib),
                ec::decode_failed);
  }
}

// What decoding `body` takes of the decode budget: everything it materialises.
uint64_t budget_needed(const std::string& body, bool zstd) {
  constexpr uint64_t lots = uint64_t{1} << 40;
  auto req = decode_request(body, zstd, lots);
  REQUIRE_MESSAGE(req, render(req.error()));
  return lots - req->decode_budget;
}

TEST_CASE("a body larger than the limit is too large") {
  // One budget bounds the body, the parsed message and the records, so a
  // body decodes with what it needs and not one byte less.
  auto plain = encode_metrics_request(settings(0), test_samples());
  SUBCASE("plain") {
    check_fails(decode_request(plain, false, plain.size() - 1),
                ec::too_large);
    auto need = budget_needed(plain, false);
    CHECK(need > plain.size());
    CHECK(decode_request(plain, false, need));
    check_fails(decode_request(plain, false, need - 1), ec::too_large);
  }
  SUBCASE("zstd with the size in the frame header") {
    auto body = encode_metrics_request(settings(3), test_samples());
    auto size = ZSTD_getFrameContentSize(body.data(), body.size());
    REQUIRE(size > 0);
    REQUIRE(size < 4096);
    check_fails(decode_request(body, true, size - 1), ec::too_large);
    auto need = budget_needed(body, true);
    CHECK(decode_request(body, true, need));
    check_fails(decode_request(body, true, need - 1), ec::too_large);
  }
  SUBCASE("zstd without a declared size") {
    auto body = zstd_compress_stream(plain);
    auto need = budget_needed(body, true);
    auto ok = decode_request(body, true, need);
    REQUIRE_MESSAGE(ok, render(ok.error()));
    check_same_samples(ok->samples, test_samples());
    check_fails(decode_request(body, true, plain.size() - 1), ec::too_large);
    check_fails(decode_request(body, true, need - 1), ec::too_large);
  }
  SUBCASE("a zstd bomb without a declared size") {
    auto body = zstd_compress_stream(std::string(64 * one_mib, '\0'));
    CHECK(body.size() < 64 * 1024);
    check_fails(decode_request(body, true, one_mib), ec::too_large);
  }
  SUBCASE("a zstd bomb with a declared size") {
    auto body = zstd_compress(std::string(64 * one_mib, '\0'));
    check_fails(decode_request(body, true, one_mib), ec::too_large);
  }
}

TEST_CASE("a request without a batch names no known stream") {
  check_fails(decode_request(hand_made_request(0, ""), false, one_mib),
              ec::unknown_stream);
}

TEST_CASE("logs round-trip grouped by stream labels") {
  log_lines xs;
  xs.push_back(log_line{{{"job", "a"}}, 1, "first"});
  xs.push_back(log_line{{{"job", "b"}, {"level", "warn"}}, 2, "second"});
  xs.push_back(log_line{{{"job", "a"}}, 3, "t\xC3\xA9l\xC3\xA9 \xF0\x9F\x93\x9F"});
  for (int level : {0, 3}) {
    auto body = encode_logs_request(settings(level, 5), xs);
    auto out = decode_request(body, level > 0, one_mib);
    REQUIRE_MESSAGE(out, render(out.error()));
    CHECK(out->stream == logs_stream);
    CHECK(out->sequence == 5);
    REQUIRE(out->logs.size() == 3);
    for (size_t i = 0; i < xs.size(); ++i) {
      CHECK(out->logs[i].labels == xs[i].labels);
      CHECK(out->logs[i].timestamp_ns == xs[i].timestamp_ns);
      CHECK(out->logs[i].line == xs[i].line);
    }
  }
  pb::LogsBatch bad;
  bad.add_line("hello");
  bad.add_stream_index(3);
  bad.add_timestamp_ns(1);
  bad.add_streams();
  check_fails(decode_request(hand_made_request(4, bad.SerializeAsString()),
                             false, one_mib),
              ec::decode_failed);
}

TEST_CASE("text that is not UTF-8 or carries NUL is told apart by offset") {
  CHECK(bad_text_at("") == std::string_view::npos);
  CHECK(bad_text_at("plain \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\x9F \xF4\x8F\xBF\xBF")
        == std::string_view::npos);
  CHECK(bad_text_at(std::string_view{"ab\0c", 4}) == 2);
  CHECK(bad_text_at("ab\xFF") == 2);          // no lead byte
  CHECK(bad_text_at("a\xC3") == 1);           // truncated
  CHECK(bad_text_at("a\xC3(") == 1);          // bad continuation
  CHECK(bad_text_at("\xC0\x80") == 0);        // overlong NUL
  CHECK(bad_text_at("\xE0\x80\xAF") == 0);    // overlong '/'
  CHECK(bad_text_at("x\xED\xA0\x80") == 1);   // a surrogate
  CHECK(bad_text_at("\xF4\x90\x80\x80") == 0); // past U+10FFFF
  CHECK(bad_text_at("\xF8\x88\x80\x80\x80") == 0);
  auto err = check_text("ab\xFF", "log line 3");
  REQUIRE(err);
  CHECK(static_cast<ec>(err.code()) == ec::invalid_record);
  CHECK(render(err).find("log line 3 is not UTF-8 text without NUL (byte 2)")
        != std::string::npos);
}

TEST_CASE("repair_texts puts '?' for each byte no store holds, in every "
          "text field, and leaves UTF-8 alone") {
  const std::string nul("a\0b", 3), latin1 = "caf\xE9", good = "caf\xC3\xA9";
  ingest_batch b;
  b.epoch = nul;
  b.samples = {sample(latin1, {{"core", nul}, {latin1, "x"}}, 1, 1.0),
               sample(good, {{"core", good}}, 1, 1.0)};
  b.logs = {log_line{{{"job", latin1}}, 1, nul + latin1},
            log_line{{{"job", good}}, 2, good}};
  b.events.resize(1);
  b.events[0].kind = nul;
  b.events[0].message = latin1;
  b.events[0].attributes = {{nul, good}};
  // Fields: epoch, name, labels (one map), line, labels, kind, message,
  // attributes.
  CHECK(repair_texts(b) == 8);
  CHECK(b.epoch == "a?b");
  CHECK(b.samples[0].name == "caf?");
  CHECK(b.samples[0].labels == label_map{{"core", "a?b"}, {"caf?", "x"}});
  CHECK(b.samples[1].name == good);
  CHECK(b.logs[0].line == "a?bcaf?");
  CHECK(b.logs[0].labels == label_map{{"job", "caf?"}});
  CHECK(b.logs[1].line == good);
  CHECK(b.events[0].kind == "a?b");
  CHECK(b.events[0].message == "caf?");
  CHECK(b.events[0].attributes == label_map{{"a?b", good}});
  CHECK(repair_texts(b) == 0);
  std::string s = "\xF0\x9F\x93"; // a truncated sequence: each byte
  CHECK(repair_text(s) == 3);
  CHECK(s == "???");
}

TEST_CASE("events round-trip with their attributes") {
  event_records xs(2);
  xs[0].timestamp_ms = 10;
  xs[0].kind = "boot";
  xs[0].message = "agent started";
  xs[1].timestamp_ms = 11;
  xs[1].kind = "storage_drop";
  xs[1].message = "dropped 5";
  xs[1].attributes = {{"count", "5"}};
  auto out = decode_request(encode_events_request(settings(3, 2), xs), true,
                            one_mib);
  REQUIRE_MESSAGE(out, render(out.error()));
  CHECK(out->stream == events_stream);
  REQUIRE(out->events.size() == 2);
  CHECK(out->events[1].kind == "storage_drop");
  CHECK(out->events[1].message == "dropped 5");
  CHECK(out->events[1].attributes == xs[1].attributes);
  CHECK(out->events[0].timestamp_ms == 10);
}

TEST_CASE("a columnar metrics request carries the codec bytes untouched") {
  std::string columnar = "\x02\x00some columnar bytes";
  auto es = settings(3, 9);
  es.config_version = 4;
  auto body = encode_columnar_request(es, columnar);
  auto out = decode_request(body, true, one_mib);
  REQUIRE_MESSAGE(out, render(out.error()));
  CHECK(out->stream == metrics_stream);
  CHECK(out->columnar == columnar);
  CHECK(out->samples.empty());
  CHECK(out->config_version == 4);
  auto own = request_columnar(body);
  REQUIRE(own);
  CHECK(*own == columnar);
  SUBCASE("columnar and columns together are refused") {
    pb::MetricsBatch both;
    both.set_columnar("x");
    both.add_series_index(0);
    both.add_timestamp_ms(1);
    both.add_value(1);
    both.add_series()->set_name("x");
    check_fails(decode_request(hand_made_request(3, both.SerializeAsString()),
                               false, one_mib),
                ec::decode_failed);
  }
}

TEST_CASE("sequence numbers below 1 are bad sequences") {
  for (int64_t seq : {int64_t{0}, int64_t{-1},
                      std::numeric_limits<int64_t>::min()}) {
    CAPTURE(seq);
    for (int level : {0, 3}) {
      auto body = encode_metrics_request(settings(level, seq), test_samples());
      check_fails(decode_request(body, level > 0, one_mib), ec::bad_sequence);
    }
  }
}

TEST_CASE("a request without device id, metadata or known format fails to "
          "decode") {
  auto batch = one_series_batch({0}, {1}, {1.0});
  check_fails(decode_request(hand_made_request(3, batch, 1, ""), false,
                             one_mib),
              ec::decode_failed);
  pb::SyncRequest req;
  REQUIRE(req.ParseFromString(hand_made_request(3, batch)));
  SUBCASE("metadata missing") {
    req.clear_metadata();
  }
  SUBCASE("format version 3") {
    req.mutable_metadata()->set_format_version(3);
  }
  SUBCASE("format version 0") {
    req.mutable_metadata()->set_format_version(0);
  }
  check_fails(decode_request(req.SerializeAsString(), false, one_mib),
              ec::decode_failed);
}

TEST_CASE("a batch with inconsistent columns fails to decode") {
  SUBCASE("series index out of range") {
    auto batch = one_series_batch({0, 1}, {1, 2}, {1.0, 2.0});
    check_fails(decode_request(hand_made_request(3, batch), false, one_mib),
                ec::decode_failed);
  }
  SUBCASE("columns of different length") {
    auto batch = one_series_batch({0, 0}, {1}, {1.0, 2.0});
    check_fails(decode_request(hand_made_request(3, batch), false, one_mib),
                ec::decode_failed);
  }
  SUBCASE("a hand-made batch that is consistent decodes") {
    auto batch = one_series_batch({0, 0}, {1, 2}, {1.0, 2.0});
    auto out = decode_request(hand_made_request(3, batch), false, one_mib);
    REQUIRE_MESSAGE(out, render(out.error()));
    REQUIRE(out->samples.size() == 2);
    CHECK(out->samples[1].name == "x");
    CHECK(out->samples[1].timestamp_ms == 2);
  }
}

TEST_CASE("responses round-trip") {
  sync_ack ok;
  ok.success = true;
  ok.last_sequence_ack = 9876543210;
  auto x = decode_response(encode_response(ok));
  REQUIRE_MESSAGE(x, render(x.error()));
  CHECK(x->success);
  CHECK(x->last_sequence_ack == 9876543210);
  CHECK(x->error_code.empty());
  CHECK(x->error_message.empty());
  CHECK(x->retry_after_ms == 0);
  sync_ack bad;
  bad.success = false;
  bad.last_sequence_ack = 41;
  bad.error_code = "bad_sequence";
  bad.error_message = "expected 42, got 44";
  bad.retry_after_ms = 30000;
  auto y = decode_response(encode_response(bad));
  REQUIRE_MESSAGE(y, render(y.error()));
  CHECK_FALSE(y->success);
  CHECK(y->last_sequence_ack == 41);
  CHECK(y->error_code == "bad_sequence");
  CHECK(y->error_message == "expected 42, got 44");
  CHECK(y->retry_after_ms == 30000);
  CHECK(y->config.version == 0);
  sync_ack cfg;
  cfg.success = true;
  cfg.config.version = 3;
  cfg.config.batch_size = 50;
  cfg.config.sync_interval_ms = 30000;
  cfg.config.retention_ms = 2 * 3600000;
  cfg.config.zstd_level = 0;
  auto z = decode_response(encode_response(cfg));
  REQUIRE_MESSAGE(z, render(z.error()));
  CHECK(z->config.version == 3);
  CHECK(z->config.batch_size == 50);
  CHECK(z->config.sync_interval_ms == 30000);
  CHECK(z->config.retention_ms == 2 * 3600000);
  CHECK(z->config.zstd_level == 0);
  cfg.config.zstd_level = -1;
  CHECK(decode_response(encode_response(cfg))->config.zstd_level == -1);
  cfg.config.zstd_level = 7;
  CHECK(decode_response(encode_response(cfg))->config.zstd_level == 7);
}

TEST_CASE("SyncConfig carries durations to the millisecond and still fills "
          "the whole-unit fields for older devices") {
  sync_ack cfg;
  cfg.success = true;
  cfg.config.version = 4;
  cfg.config.sync_interval_ms = 1'500;
  cfg.config.retention_ms = 90 * 60'000;
  auto body = encode_response(cfg);
  auto x = decode_response(body);
  REQUIRE_MESSAGE(x, render(x.error()));
  CHECK(x->config.sync_interval_ms == 1'500);
  CHECK(x->config.retention_ms == 5'400'000);
  // An older device reads only these: rounded, and never 0 (its own).
  pb::SyncResponse res;
  REQUIRE(res.ParseFromString(body));
  CHECK(res.config_update().sync_interval_ms() == 1'500);
  CHECK(res.config_update().retention_ms() == 5'400'000);
  CHECK(res.config_update().sync_interval_seconds() == 2);
  CHECK(res.config_update().retention_hours() == 2);
  cfg.config.sync_interval_ms = 400;
  cfg.config.retention_ms = 0;
  REQUIRE(res.ParseFromString(encode_response(cfg)));
  CHECK(res.config_update().sync_interval_seconds() == 1);
  CHECK(res.config_update().retention_hours() == 0);
  cfg.config.sync_interval_ms = max_setting_ms;
  REQUIRE(res.ParseFromString(encode_response(cfg)));
  CHECK(res.config_update().sync_interval_seconds() == INT32_MAX);
  // An older cloud sends only the whole units: the device reads those.
  pb::SyncResponse old;
  old.set_success(true);
  old.mutable_config_update()->set_version(2);
  old.mutable_config_update()->set_sync_interval_seconds(10);
  old.mutable_config_update()->set_retention_hours(3);
  x = decode_response(old.SerializeAsString());
  REQUIRE_MESSAGE(x, render(x.error()));
  CHECK(x->config.sync_interval_ms == 10'000);
  CHECK(x->config.retention_ms == 3 * 3'600'000);
}

TEST_CASE("an empty response is a default ack and garbage fails to decode") {
  auto x = decode_response("");
  REQUIRE(x);
  CHECK_FALSE(x->success);
  CHECK(x->last_sequence_ack == 0);
  check_fails(decode_response("\xFF"), ec::decode_failed);
  check_fails(decode_response(std::string_view("\x22\x10" "abc", 5)),
              ec::decode_failed);
}

TEST_CASE("is_zstd recognizes the zstd magic number only") {
  CHECK(is_zstd(std::string_view("\x28\xB5\x2F\xFD", 4)));
  CHECK(is_zstd(zstd_compress("hello")));
  CHECK(is_zstd(zstd_compress_stream("hello")));
  CHECK_FALSE(is_zstd(std::string_view("\x28\xB5\x2F", 3)));
  CHECK_FALSE(is_zstd(""));
  CHECK_FALSE(is_zstd(std::string_view("\xFD\x2F\xB5\x28", 4)));
  CHECK_FALSE(is_zstd(encode_metrics_request(settings(0), test_samples())));
}

TEST_CASE("retry_count and the capability ride outside the checksummed "
          "batch: plain and zstd bodies keep their bytes, checksum and "
          "points") {
  device_capability cap;
  cap.tier = 2;
  cap.total_ram = 268435456;
  cap.available_ram = 100000000;
  cap.total_disk = 50'000'000'000;
  cap.available_disk = 20'000'000'000;
  cap.cpu_cores = 3;
  cap.has_sqlite = true;
  cap.has_network = true;
  for (int level : {0, 3}) {
    CAPTURE(level);
    auto body = encode_metrics_request(settings(level), test_samples());
    auto plain = decode_request(body, is_zstd(body), one_mib);
    REQUIRE(plain);
    CHECK(plain->retry_count == 0);
    CHECK(plain->capability.tier == 0);
    auto sent = with_send_fields(body, 4, &cap);
    // The queued bytes come first, unchanged.
    CHECK(sent.compare(0, body.size(), body) == 0);
    CHECK(is_zstd(sent) == (level > 0));
    auto got = decode_request(sent, is_zstd(sent), one_mib);
    REQUIRE_MESSAGE(got, render(got.error()));
    CHECK(got->retry_count == 4);
    CHECK(got->checksum == plain->checksum);
    CHECK(got->sequence == plain->sequence);
    CHECK(got->epoch == plain->epoch);
    check_same_samples(got->samples, test_samples());
    auto& c = got->capability;
    CHECK(c.tier == 2);
    CHECK(c.total_ram == 268435456);
    CHECK(c.available_ram == 100000000);
    CHECK(c.total_disk == 50'000'000'000);
    CHECK(c.available_disk == 20'000'000'000);
    CHECK(c.cpu_cores == 3);
    CHECK(c.has_sqlite);
    CHECK(c.has_network);
    // Without a capability only the retry count is added.
    auto bare = decode_request(with_send_fields(body, 1, nullptr),
                               level > 0, one_mib);
    REQUIRE(bare);
    CHECK(bare->retry_count == 1);
    CHECK(bare->capability.tier == 0);
    CHECK(bare->checksum == plain->checksum);
  }
}

TEST_CASE("the device's drop counters ride outside the checksummed batch; "
          "a report past its bounds is refused decode_failed") {
  for (int level : {0, 3}) {
    CAPTURE(level);
    auto body = encode_metrics_request(settings(level), test_samples());
    auto plain = decode_request(body, is_zstd(body), one_mib);
    REQUIRE(plain);
    CHECK(plain->declared.origin.empty());
    drop_declaration d;
    d.origin = "store-1";
    d.records = {{"metrics_unsynced", 2000}, {"metrics_rejected", 3}};
    d.collected = 5000;
    d.stored = 4997;
    auto sent = with_send_fields(body, 0, nullptr, &d);
    CHECK(sent.compare(0, body.size(), body) == 0);
    auto got = decode_request(sent, is_zstd(sent), one_mib);
    REQUIRE_MESSAGE(got, render(got.error()));
    CHECK(got->declared == d);
    CHECK(got->checksum == plain->checksum);
    check_same_samples(got->samples, test_samples());
    auto refused = [&](const drop_declaration& bad) {
      auto r = decode_request(with_send_fields(body, 0, nullptr, &bad),
                              level > 0, one_mib);
      REQUIRE_FALSE(r);
      CHECK(static_cast<ec>(r.error().code()) == ec::decode_failed);
    };
    auto bad = d;
    bad.records["x"] = -1;
    refused(bad);
    bad = d;
    bad.records["x"] = max_declared_records + 1;
    refused(bad);
    bad = d;
    bad.records[std::string(max_drop_kind_bytes + 1, 'k')] = 1;
    refused(bad);
    bad = d;
    bad.origin.clear();
    refused(bad);
    bad = d;
    for (int i = 0; i <= max_declared_kinds; ++i)
      bad.records["k" + std::to_string(i)] = 1;
    refused(bad);
    // Collected and stored: never negative, never absurd, never more
    // stored than collected.
    for (auto [c, st] : {std::pair<int64_t, int64_t>{-1, 0},
                         {5, -1},
                         {5, 6},
                         {max_declared_records + 1, 0},
                         {std::numeric_limits<int64_t>::min(), 0},
                         {std::numeric_limits<int64_t>::max(),
                          std::numeric_limits<int64_t>::max()}}) {
      CAPTURE(c);
      CAPTURE(st);
      bad = d;
      bad.collected = c;
      bad.stored = st;
      refused(bad);
    }
  }
}

TEST_CASE("a first send with no capability to report adds nothing to the "
          "queued bytes, plain or zstd") {
  for (int level : {0, 3}) {
    CAPTURE(level);
    auto body = encode_metrics_request(settings(level), test_samples());
    CHECK(with_send_fields(body, 0, nullptr) == body);
    // A retry or a capability still rides along.
    CHECK(with_send_fields(body, 1, nullptr).size() > body.size());
    device_capability cap;
    cap.tier = 1;
    CHECK(with_send_fields(body, 0, &cap).size() > body.size());
  }
}

TEST_CASE("a capability report becomes the DeviceCapability of its tier") {
  capability_report r;
  r.hw.total_ram = 1;
  r.hw.available_ram = 2;
  r.hw.total_disk = 3;
  r.hw.available_disk = 4;
  r.hw.cpu_cores = 5;
  r.settings.tier = 3;
  r.settings.sqlite = false;
  auto c = capability_of(r);
  CHECK(c.tier == 3);
  CHECK(c.total_ram == 1);
  CHECK(c.available_ram == 2);
  CHECK(c.total_disk == 3);
  CHECK(c.available_disk == 4);
  CHECK(c.cpu_cores == 5);
  CHECK_FALSE(c.has_sqlite);
  CHECK(c.has_network);
}

// -- one decode budget on every path -----------------------------------------

namespace {

constexpr size_t sixty_four_kib = 64 * 1024;
constexpr size_t budget_64mib = 64 * one_mib;

// A zstd request around `batch` (already serialized) in field `field`.
std::string hostile_request(int field, const std::string& batch) {
  return zstd_compress(test::request_around(field, batch), 19);
}

} // namespace

TEST_CASE("protobuf metric columns that copy a long series per sample are "
          "refused before they are copied") {
  // One series of a 32 KiB name, 100,000 samples of it: ~3 GiB decoded.
  auto body = hostile_request(3, test::copying_metrics_batch());
  CHECK(body.size() <= sixty_four_kib);
  auto got = decode_request(body, true, budget_64mib);
  check_fails(got, ec::too_large);
  CHECK(render(got.error()).find("metric samples") != std::string::npos);
}

TEST_CASE("log lines that copy long stream labels per line are refused "
          "before they are copied") {
  pb::LogsBatch b;
  auto* l = b.add_streams()->add_labels();
  l->set_name("job");
  l->set_value(std::string(32 * 1024, 'v'));
  for (int i = 0; i < 100000; ++i) {
    b.add_stream_index(0);
    b.add_timestamp_ns(0);
    b.add_line("");
  }
  auto body = hostile_request(4, b.SerializeAsString());
  CHECK(body.size() <= sixty_four_kib);
  auto got = decode_request(body, true, budget_64mib);
  check_fails(got, ec::too_large);
  CHECK(render(got.error()).find("log lines") != std::string::npos);
}

TEST_CASE("events are charged as they are copied: a budget short of them is "
          "refused at the events") {
  // Events copy no shared strings, so what they take is close to the parse;
  // a budget that covers body and parse but not the copies stops them.
  pb::EventsBatch b;
  for (int i = 0; i < 2000; ++i) {
    auto* e = b.add_events();
    e->set_kind("k");
    e->set_message(std::string(1000, 'm'));
  }
  auto body = hostile_request(5, b.SerializeAsString());
  CHECK(body.size() <= sixty_four_kib);
  auto need = budget_needed(body, true);
  auto ok = decode_request(body, true, need);
  REQUIRE_MESSAGE(ok, render(ok.error()));
  CHECK(ok->events.size() == 2000);
  auto got = decode_request(body, true, need - 1);
  check_fails(got, ec::too_large);
  CHECK(render(got.error()).find("events") != std::string::npos);
}

TEST_CASE("a columnar batch gets what the request left of the budget") {
  auto body = encode_columnar_request(settings(3), std::string(100, 'c'));
  auto need = budget_needed(body, true);
  auto req = decode_request(body, true, need + 1000);
  REQUIRE_MESSAGE(req, render(req.error()));
  CHECK(req->decode_budget == 1000);
}

TEST_CASE("a SyncBundle carries each request's bytes unchanged with its "
          "encoding") {
  auto plain = encode_metrics_request(settings(0), test_samples());
  auto packed = encode_metrics_request(settings(3), test_samples());
  auto items = decode_bundle(encode_bundle({plain, packed}), max_bundle_items);
  REQUIRE_MESSAGE(items, render(items.error()));
  REQUIRE(items->size() == 2);
  CHECK((*items)[0].request == plain);
  CHECK_FALSE((*items)[0].zstd);
  CHECK((*items)[1].request == packed);
  CHECK((*items)[1].zstd);
  // Each item decodes as the POST /v1/sync body it is.
  auto back = decode_request((*items)[1].request, true, one_mib);
  REQUIRE_MESSAGE(back, render(back.error()));
  check_same_samples(back->samples, test_samples());
}

TEST_CASE("a SyncBundle is bounded before it is parsed") {
  auto body = encode_metrics_request(settings(0), test_samples());
  auto four = encode_bundle({body, body, body, body});
  auto res = decode_bundle(four, 3);
  REQUIRE_FALSE(res);
  CHECK(is_error(res.error(), ec::too_large));
  CHECK(decode_bundle(four, 4));
  // A million empty items: refused at the fourth, nothing parsed.
  std::string many;
  for (int i = 0; i < 1000000; ++i)
    many += std::string("\x0a\x00", 2);
  res = decode_bundle(many, 3);
  REQUIRE_FALSE(res);
  CHECK(is_error(res.error(), ec::too_large));
  for (auto bad : {std::string(), std::string("\xff\xff\xff", 3),
                   encode_bundle({body, body}).substr(0, 2 * body.size()),
                   std::string("\x0a\x7f", 2)}) {
    res = decode_bundle(bad, 3);
    REQUIRE_FALSE(res);
    CHECK_MESSAGE(is_error(res.error(), ec::decode_failed),
                  bad.size() << ": " << render(res.error()));
  }
}

TEST_CASE("a bundle of zstd batches is compressed as a whole, smaller than "
          "its items' own frames; its items are their plain bytes") {
  auto es = settings(3);
  es.epoch = "0123456789abcdef";
  auto metrics = with_send_fields(
    encode_metrics_request(es, test_samples()), 2, nullptr);
  auto logs = encode_logs_request(
    es, {{{{"unit", "a"}}, 5, "line one"}, {{{"unit", "a"}}, 6, "line two"}});
  auto events = encode_events_request(es, {{10, "boot", "up", {}}});
  std::vector<std::string> bodies{metrics, logs, events};
  auto body = encode_bundle_body(bodies, 3);
  REQUIRE(body.zstd);
  CHECK(is_zstd(body.bytes));
  CHECK(body.bytes.size() < encode_bundle(bodies).size());
  auto items = decode_bundle_body(body.bytes, true, one_mib);
  REQUIRE_MESSAGE(items, render(items.error()));
  REQUIRE(items->size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    auto& item = (*items)[i];
    CHECK_FALSE(item.zstd);
    auto got = decode_request(item.request, false, one_mib);
    auto want = decode_request(bodies[i], true, one_mib);
    REQUIRE_MESSAGE(got, render(got.error()));
    REQUIRE(want);
    // Same batch bytes (checksum), same send-time fields.
    CHECK(got->checksum == want->checksum);
    CHECK(got->stream == want->stream);
    CHECK(got->retry_count == want->retry_count);
  }
  // Plain batches (tier 3) stay plain: the bundle as it always was.
  auto plain = encode_metrics_request(settings(0), test_samples());
  auto same = encode_bundle_body({plain, plain}, 3);
  CHECK_FALSE(same.zstd);
  CHECK(same.bytes == encode_bundle({plain, plain}));
  CHECK(decode_bundle_body(same.bytes, false, one_mib)->size() == 2);
}

TEST_CASE("a bundle compressed as a whole is bounded while it decompresses") {
  auto body = encode_bundle_body(
    {encode_metrics_request(settings(3), test_samples())}, 3);
  REQUIRE(body.zstd);
  auto plain_size = encode_bundle(
    {encode_metrics_request(settings(0), test_samples())}).size();
  CHECK(decode_bundle_body(body.bytes, true, plain_size));
  auto small = decode_bundle_body(body.bytes, true, plain_size / 2);
  REQUIRE_FALSE(small);
  CHECK(is_error(small.error(), ec::too_large));
  // A frame of 64 MiB of zeros is refused at the bound, not allocated.
  auto bomb = zstd_compress(std::string(64 << 20, '\0'), 3);
  auto big = decode_bundle_body(bomb, true, one_mib);
  REQUIRE_FALSE(big);
  CHECK(is_error(big.error(), ec::too_large));
  for (auto bad : {std::string("not zstd at all"), body.bytes.substr(0, 12),
                   zstd_compress(std::string(100, '\xff'), 3)}) {
    auto res = decode_bundle_body(bad, true, one_mib);
    REQUIRE_FALSE(res);
    CHECK_MESSAGE(is_error(res.error(), ec::decode_failed),
                  render(res.error()));
  }
}

namespace {

// A round's log lines as the load generator makes them, rounds 10 s apart.
log_lines load_lines(int rounds, int per_round) {
  log_lines out;
  for (int r = 0; r < rounds; ++r)
    for (int i = 0; i < per_round; ++i)
      out.push_back({{{"job", "load"}},
                     (int64_t{1700000000000} + r * 10000 + r % 7) * 1000000
                       + i,
                     "load round " + std::to_string(r) + " line "
                       + std::to_string(i)});
  return out;
}

} // namespace

TEST_CASE("log timestamps as deltas restore to the very same request") {
  auto es = settings(0);
  auto plain = with_send_fields(encode_logs_request(es, load_lines(30, 10)),
                                2, nullptr);
  auto coded = delta_log_times(plain);
  REQUIRE_FALSE(coded.empty());
  MESSAGE("300 lines: " << zstd_compress(plain, 3).size() << " -> "
                        << zstd_compress(coded, 3).size()
                        << " bytes after zstd");
  CHECK(zstd_compress(coded, 3).size() * 3 < zstd_compress(plain, 3).size() * 2);
  auto back = restore_log_times(coded, plain.size());
  REQUIRE_MESSAGE(back, render(back.error()));
  CHECK(*back == plain);
  // Any timestamps: negative, decreasing, the extremes, equal.
  log_lines odd{{{}, INT64_MIN, "a"}, {{}, INT64_MAX, "b"}, {{}, -1, "c"},
                {{}, 0, "d"},         {{}, 0, "e"},         {{}, 5, "f"}};
  for (auto& x : load_lines(10, 10))
    odd.push_back(x);
  auto oddly = encode_logs_request(es, odd);
  auto oc = delta_log_times(oddly);
  REQUIRE_FALSE(oc.empty());
  auto ob = restore_log_times(oc, oddly.size());
  REQUIRE(ob);
  CHECK(*ob == oddly);
  // Nothing to recode: metrics, events, a zstd body, logs without lines.
  CHECK(delta_log_times(encode_metrics_request(es, test_samples())).empty());
  CHECK(delta_log_times(encode_events_request(es, {{1, "k", "m", {}}}))
          .empty());
  CHECK(delta_log_times(encode_logs_request(settings(3), load_lines(2, 2)))
          .empty());
  CHECK(delta_log_times(encode_logs_request(es, {})).empty());
}

TEST_CASE("restoring log timestamps is bounded and refuses what no device "
          "sends") {
  auto plain = encode_logs_request(settings(0), load_lines(3, 10));
  auto coded = delta_log_times(plain);
  REQUIRE_FALSE(coded.empty());
  // One byte short of the result: too large, before it is all built.
  check_fails(restore_log_times(coded, plain.size() - 1), ec::too_large);
  // Every truncation and byte flip: an error or some bounded request,
  // never a crash.
  for (size_t n = 0; n < coded.size(); ++n) {
    auto cut = restore_log_times(coded.substr(0, n), one_mib);
    if (cut)
      CHECK(cut->size() <= one_mib);
    auto flipped = coded;
    flipped[n] = static_cast<char>(flipped[n] ^ 0x5a);
    if (auto x = restore_log_times(flipped, one_mib))
      CHECK(x->size() <= one_mib);
  }
  // Deltas beside the original column, or twice, or none: refused.
  check_fails(restore_log_times(plain, one_mib), ec::decode_failed);
  auto twice = coded + coded;
  check_fails(restore_log_times(twice, one_mib), ec::decode_failed);
  CHECK(delta_log_times(coded).empty());
  // 100 KB of one-byte deltas of -1 (zigzag 1) restore to 10 bytes each:
  // refused at the bound, not allocated.
  std::string batch = "\x2a";
  std::string col(100000, '\x01');
  std::string len;
  for (auto x = col.size(); ; x >>= 7) {
    len.push_back(static_cast<char>((x & 0x7f) | (x >= 0x80 ? 0x80 : 0)));
    if (x < 0x80)
      break;
  }
  batch += len + col;
  std::string req = "\x22";
  for (auto x = batch.size(); ; x >>= 7) {
    req.push_back(static_cast<char>((x & 0x7f) | (x >= 0x80 ? 0x80 : 0)));
    if (x < 0x80)
      break;
  }
  req += batch;
  check_fails(restore_log_times(req, one_mib / 2), ec::too_large);
  auto big = restore_log_times(req, 2 * one_mib);
  REQUIRE(big);
  CHECK(big->size() > 900000);
}

TEST_CASE("a POST /v4/sync bundle carries log timestamps as deltas; only "
          "POST /v4/sync restores them") {
  auto es = settings(3);
  auto metrics = encode_metrics_request(es, test_samples());
  auto logs = encode_logs_request(es, load_lines(30, 10));
  std::vector<std::string> bodies{metrics, logs};
  auto v3 = encode_bundle_body(bodies, 3);
  auto v4 = encode_bundle_body(bodies, 3, bundle_coding::log_times);
  REQUIRE(v4.zstd);
  REQUIRE(v4.coded);
  CHECK_FALSE(v3.coded);
  MESSAGE("v3 " << v3.bytes.size() << " bytes, v4 " << v4.bytes.size());
  CHECK(v4.bytes.size() < v3.bytes.size());
  auto items = decode_bundle_body(v4.bytes, true, one_mib, bundle_coding::log_times);
  REQUIRE_MESSAGE(items, render(items.error()));
  REQUIRE(items->size() == 2);
  // The items are the batches' plain bytes exactly as queued.
  std::string plain;
  decode_budget budget{one_mib};
  REQUIRE_FALSE(zstd_decompress(logs, plain, budget));
  CHECK((*items)[1].request == plain);
  CHECK_FALSE((*items)[1].log_time_deltas);
  auto back = decode_request((*items)[1].request, false, one_mib);
  REQUIRE_MESSAGE(back, render(back.error()));
  CHECK(back->logs.size() == 300);
  // A v3 (or v2) body with coded items is refused: those paths never
  // restore.
  check_fails(decode_bundle_body(v4.bytes, true, one_mib), ec::decode_failed);
  // The restored items together are bounded like the plain bundle: the
  // metrics item's bytes count against the logs item's restoring.
  size_t both = (*items)[0].request.size() + plain.size();
  auto fits = decode_bundle_body(v4.bytes, true, both + 64, bundle_coding::log_times);
  CHECK(fits);
  auto small = decode_bundle_body(v4.bytes, true, both - 1, bundle_coding::log_times);
  REQUIRE_FALSE(small);
  CHECK(is_error(small.error(), ec::too_large));
}

TEST_CASE("front-coded log lines restore to the very same request, with "
          "or without timestamps as deltas") {
  auto es = settings(0);
  auto plain = with_send_fields(encode_logs_request(es, load_lines(30, 10)),
                                2, nullptr);
  auto coded = front_code_log_lines(plain);
  REQUIRE_FALSE(coded.empty());
  MESSAGE("300 lines: " << zstd_compress(plain, 19).size() << " -> "
                        << zstd_compress(coded, 19).size()
                        << " bytes after zstd -19");
  CHECK(zstd_compress(coded, 19).size() < zstd_compress(plain, 19).size());
  auto back = restore_log_lines(coded, plain.size());
  REQUIRE_MESSAGE(back, render(back.error()));
  CHECK(*back == plain);
  // On top of deltas, undone in the reverse order.
  auto deltas = delta_log_times(plain);
  REQUIRE_FALSE(deltas.empty());
  auto both = front_code_log_lines(deltas);
  REQUIRE_FALSE(both.empty());
  auto lines_back = restore_log_lines(both, plain.size());
  REQUIRE(lines_back);
  CHECK(*lines_back == deltas);
  auto times_back = restore_log_times(*lines_back, plain.size());
  REQUIRE(times_back);
  CHECK(*times_back == plain);
  // Lines sharing nothing, empty lines, a line that is the one before.
  log_lines odd{{{}, 1, ""}, {{}, 2, "abc"}, {{}, 3, "abc"}, {{}, 4, "xyz"},
                {{}, 5, ""}, {{}, 6, std::string(300, 'q')},
                {{}, 7, std::string(299, 'q') + "r"}};
  auto oddly = encode_logs_request(es, odd);
  auto oc = front_code_log_lines(oddly);
  REQUIRE_FALSE(oc.empty());
  auto ob = restore_log_lines(oc, oddly.size());
  REQUIRE(ob);
  CHECK(*ob == oddly);
  // Nothing to recode: metrics, events, a zstd body, logs without lines.
  CHECK(front_code_log_lines(encode_metrics_request(es, test_samples()))
          .empty());
  CHECK(front_code_log_lines(encode_events_request(es, {{1, "k", "m", {}}}))
          .empty());
  CHECK(front_code_log_lines(
          encode_logs_request(settings(3), load_lines(2, 2)))
          .empty());
  CHECK(front_code_log_lines(encode_logs_request(es, {})).empty());
}

TEST_CASE("restoring front-coded log lines is bounded and refuses what no "
          "device sends") {
  auto plain = encode_logs_request(settings(0), load_lines(3, 10));
  auto coded = front_code_log_lines(plain);
  REQUIRE_FALSE(coded.empty());
  check_fails(restore_log_lines(coded, plain.size() - 1), ec::too_large);
  for (size_t n = 0; n < coded.size(); ++n) {
    auto cut = restore_log_lines(coded.substr(0, n), one_mib);
    if (cut)
      CHECK(cut->size() <= one_mib);
    auto flipped = coded;
    flipped[n] = static_cast<char>(flipped[n] ^ 0x5a);
    if (auto x = restore_log_lines(flipped, one_mib))
      CHECK(x->size() <= one_mib);
  }
  // The run beside the lines, or twice, or none: refused.
  check_fails(restore_log_lines(plain, one_mib), ec::decode_failed);
  check_fails(restore_log_lines(coded + coded, one_mib), ec::decode_failed);
  CHECK(front_code_log_lines(coded).empty());
  // A line of 64 KiB, then 100,000 lines of 3 bytes each sharing it all:
  // 6.5 GB claimed by 300 KB, refused at the bound before it is made.
  std::string run;
  auto varint = [](std::string& out, uint64_t x) {
    for (; x >= 0x80; x >>= 7)
      out.push_back(static_cast<char>((x & 0x7f) | 0x80));
    out.push_back(static_cast<char>(x));
  };
  varint(run, 0);
  varint(run, 65536);
  run += std::string(65536, 'a');
  for (int i = 0; i < 100000; ++i) {
    varint(run, 65536);
    varint(run, 0);
  }
  std::string batch = "\x32";
  varint(batch, run.size());
  batch += run;
  std::string req = "\x22";
  varint(req, batch.size());
  req += batch;
  check_fails(restore_log_lines(req, one_mib), ec::too_large);
  // A line claiming more shared bytes than the line before has.
  std::string bad_run;
  varint(bad_run, 0);
  varint(bad_run, 1);
  bad_run += "a";
  varint(bad_run, 2);
  varint(bad_run, 0);
  std::string bad_batch = "\x32";
  varint(bad_batch, bad_run.size());
  bad_batch += bad_run;
  std::string bad = "\x22";
  varint(bad, bad_batch.size());
  bad += bad_batch;
  check_fails(restore_log_lines(bad, one_mib), ec::decode_failed);
}

TEST_CASE("a POST /v5/sync bundle is zstd with the sync dictionary, log "
          "lines front-coded; only POST /v5/sync restores it") {
  // The dictionary is raw content (not zstd's dictionary format, which a
  // decoder would parse instead) and frozen: its hash is part of the wire.
  auto dict = sync_dictionary();
  REQUIRE(dict.size() > 1000);
  CHECK(dict.substr(0, 4) != std::string_view("\x37\xa4\x30\xec", 4));
  CHECK(dict.size() == 2243);
  CHECK(XXH3_64bits(dict.data(), dict.size()) == 0x736c72bcbe9f08dcULL);
  auto es = settings(3);
  auto metrics = encode_metrics_request(es, test_samples());
  auto logs = encode_logs_request(es, load_lines(30, 10));
  std::vector<std::string> bodies{metrics, logs};
  auto v4 = encode_bundle_body(bodies, 19, bundle_coding::log_times);
  auto v5 = encode_bundle_body(bodies, 19, bundle_coding::log_lines);
  REQUIRE(v5.zstd);
  REQUIRE(v5.coded);
  MESSAGE("v4 " << v4.bytes.size() << " bytes, v5 " << v5.bytes.size());
  CHECK(v5.bytes.size() < v4.bytes.size());
  auto items = decode_bundle_body(v5.bytes, true, one_mib,
                                  bundle_coding::log_lines);
  REQUIRE_MESSAGE(items, render(items.error()));
  REQUIRE(items->size() == 2);
  auto& logs_item = (*items)[v5.reversed ? 0 : 1];
  std::string plain;
  decode_budget budget{one_mib};
  REQUIRE_FALSE(zstd_decompress(logs, plain, budget));
  CHECK(logs_item.request == plain);
  CHECK_FALSE(logs_item.log_time_deltas);
  CHECK_FALSE(logs_item.log_lines_front_coded);
  // Not without the dictionary, nor at v4 (no front-coded lines there).
  check_fails(decode_bundle_body(v5.bytes, true, one_mib,
                                 bundle_coding::log_times),
              ec::decode_failed);
  // A lone metrics batch goes as v5 too: the dictionary still pays.
  auto lone = encode_bundle_body({metrics}, 19, bundle_coding::log_lines);
  CHECK(lone.zstd);
  CHECK(lone.coded);
  auto back = decode_bundle_body(lone.bytes, true, one_mib,
                                 bundle_coding::log_lines);
  REQUIRE(back);
  REQUIRE(back->size() == 1);
  std::string metrics_plain;
  decode_budget b2{one_mib};
  REQUIRE_FALSE(zstd_decompress(metrics, metrics_plain, b2));
  CHECK((*back)[0].request == metrics_plain);
}

TEST_CASE("a bundle of two items keeps the smaller of both orders and says "
          "so") {
  auto es = settings(3);
  auto metrics = encode_metrics_request(es, test_samples());
  auto logs = encode_logs_request(es, load_lines(30, 10));
  for (auto coding : {bundle_coding::none, bundle_coding::log_times,
                      bundle_coding::log_lines}) {
    auto ab = encode_bundle_body({metrics, logs}, 19, coding);
    auto ba = encode_bundle_body({logs, metrics}, 19, coding);
    REQUIRE(ab.zstd);
    // The same two bodies either way, each order told.
    CHECK(ab.bytes == ba.bytes);
    CHECK(ab.reversed != ba.reversed);
    auto items = decode_bundle_body(ab.bytes, true, one_mib, coding);
    REQUIRE(items);
    auto first = decode_request((*items)[0].request, false, one_mib);
    REQUIRE(first);
    CHECK((first->stream == logs_stream) == ab.reversed);
  }
}

TEST_CASE("a SyncBundleResponse answers each batch with its own status and "
          "sequence") {
  sync_ack ok;
  ok.success = true;
  ok.last_sequence_ack = 42;
  ok.status = 200;
  ok.config.version = 3;
  ok.config.sync_interval_ms = 1500;
  sync_ack refused;
  refused.error_code = "checksum_mismatch";
  refused.error_message = "no";
  refused.status = 400;
  sync_ack busy;
  busy.error_code = "store_unavailable";
  busy.retry_after_ms = 1000;
  busy.status = 503;
  auto body = encode_bundle_response({ok, refused, busy});
  auto acks = decode_bundle_response(body, 3);
  REQUIRE_MESSAGE(acks, render(acks.error()));
  CHECK((*acks)[0].success);
  CHECK((*acks)[0].last_sequence_ack == 42);
  CHECK((*acks)[0].status == 200);
  CHECK((*acks)[0].config.sync_interval_ms == 1500);
  CHECK((*acks)[1].status == 400);
  CHECK((*acks)[1].error_code == "checksum_mismatch");
  CHECK((*acks)[2].status == 503);
  CHECK((*acks)[2].retry_after_ms == 1000);
  // Another count of results than batches sent, or a result without a
  // status, is no answer.
  CHECK_FALSE(decode_bundle_response(body, 2));
  sync_ack none = ok;
  none.status = 0;
  CHECK_FALSE(decode_bundle_response(encode_bundle_response({none}), 1));
  CHECK_FALSE(decode_bundle_response(std::string("\xff\xff", 2), 1));
  // A v1 answer never carries a status of its own.
  pb::SyncResponse v1;
  REQUIRE(v1.ParseFromString(encode_response(ok)));
  CHECK(v1.status() == 0);
  CHECK(decode_response(encode_response(ok))->status == 0);
}

TEST_CASE("what a delivery report of collected and stored adds to a request: "
          "a few dozen bytes") {
  drop_declaration d;
  d.origin = "0123456789abcdef"; // a store's epoch: random_hex(8)
  d.collected = 123'456'789;
  d.stored = 123'456'700;
  for (int level : {0, 3}) {
    CAPTURE(level);
    auto body = encode_metrics_request(settings(level), test_samples());
    auto added = with_send_fields(body, 0, nullptr, &d).size() - body.size();
    MESSAGE("zstd level " << level << ": the report adds " << added
                          << " bytes");
    CHECK(added <= 64);
  }
}
