// Bad input to the cloud through the real door (ingest_endpoint + ingest
// actor + embedded store over HTTP on a kept-alive connection): every kind of
// bad batch gets a clear error reply (HTTP status, SyncResponse error_code
// and message) and a `rejected_<code>` counter, stores nothing, and the
// connection then delivers a good batch. Also the columnar series session,
// logs, events and the device config as a device sees them on the wire.
#include "cloud/ingest.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>
#include <zstd.h>

#include <unistd.h>

#include "cloud_fixture.hpp"

#include "cloud/cloud_store.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/ingest_endpoint.hpp"
#include "fleetd/v1/sync.pb.h"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/metrics_codec.hpp"
#include "messages/register.hpp"
#include "messages/stream_codec.hpp"
#include "messages/wire.hpp"
#include "runtime/http_client.hpp"
#include "runtime/sqlite.hpp"
#include "ask.hpp"
#include "helpers.hpp"
#include "check_samples.hpp"

using namespace fleetd;
using test::ack_of;
using test::check_same_samples;
using test::concat;
using namespace std::chrono_literals;

namespace pb = fleetd::v1;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;
constexpr const char* device_id = "http-dev";
constexpr const char* epoch = "epoch-1";

// Limits of the fixture: a body may be 16 KiB on the wire, 64 KiB decoded.
constexpr size_t max_body_bytes = 16 * 1024;
constexpr size_t max_decoded_bytes = 64 * 1024;

using headers_t = std::vector<std::pair<std::string, std::string>>;

std::string zstd(const std::string& plain, int level = 3) {
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  auto n = ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(),
                         level);
  REQUIRE_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

/// Samples of series `names` (each with a "host" label), `per_series`
/// scrapes; `tag` makes the values of each batch unique.
metric_samples scrape(const std::vector<std::string>& names,
                      size_t per_series, double tag, int64_t t0 = 0) {
  metric_samples out;
  for (size_t k = 0; k < per_series; ++k)
    for (size_t i = 0; i < names.size(); ++i) {
      metric_sample s;
      s.name = names[i];
      s.labels = {{"host", "h1"}, {"job", "node"}};
      s.timestamp_ms = clock_start_ms + t0 + static_cast<int64_t>(k) * 1000;
      s.value = tag * 100 + static_cast<double>(k * names.size() + i) + 0.25;
      out.push_back(std::move(s));
    }
  return out;
}

encode_settings settings(int64_t seq, int64_t config_version = 0) {
  encode_settings es;
  es.device_id = device_id;
  es.sequence = seq;
  es.epoch = epoch;
  es.now_ms = clock_start_ms;
  es.zstd_level = 0;
  es.config_version = config_version;
  return es;
}

/// A plain (uncompressed) protobuf-columns request.
std::string plain_metrics(int64_t seq, const metric_samples& xs,
                          int64_t config_version = 0) {
  return encode_metrics_request(settings(seq, config_version), xs);
}

/// A plain columnar request.
std::string plain_columnar(int64_t seq, const std::string& columnar) {
  return encode_columnar_request(settings(seq), columnar);
}

void append_varint(std::string& out, uint64_t x) {
  while (x >= 0x80) {
    out.push_back(static_cast<char>((x & 0x7F) | 0x80));
    x >>= 7;
  }
  out.push_back(static_cast<char>(x));
}

/// A plain SyncRequest whose field `field` (length-delimited) carries
/// `batch`, checksummed correctly, with the given metadata.
std::string request_with(int field, const std::string& batch, int64_t seq,
                         uint32_t format_version = wire_format_version) {
  pb::SyncRequest req;
  req.set_device_id(device_id);
  auto* md = req.mutable_metadata();
  md->set_sequence_number(seq);
  md->set_epoch(epoch);
  md->set_timestamp(clock_start_ms);
  md->set_format_version(format_version);
  md->set_checksum(batch_checksum(batch));
  auto out = req.SerializeAsString();
  append_varint(out, (static_cast<uint64_t>(field) << 3) | 2);
  append_varint(out, batch.size());
  out += batch;
  return out;
}

std::string with_checksum_flipped(const std::string& plain) {
  pb::SyncRequest req;
  REQUIRE(req.ParseFromString(plain));
  auto sum = req.metadata().checksum();
  REQUIRE(sum.size() == 8);
  sum[7] = static_cast<char>(sum[7] ^ 0x40);
  req.mutable_metadata()->set_checksum(sum);
  return req.SerializeAsString();
}

/// The client is a member of this class: it goes before the base class
/// stops the endpoint and the actors.
struct http_fixture : test::cloud_fixture {
  std::string path = dir.file("cloud.db");
  cloud_store_actor store;
  ingest_actor ing;
  std::unique_ptr<http_client> client;
  uint16_t port = 0;

  http_fixture() : cloud_fixture("fleetd-ingest-http", clock_start_ms) {
    store = spawn_cloud_store(path);
    ingest_config icfg;
    icfg.max_decoded_bytes = max_decoded_bytes;
    icfg.store = store;
    icfg.anonymous = true;
    ing = keep(sys->spawn(ingest, icfg));
    http_limits limits;
    limits.max_body_bytes = max_body_bytes;
    port = open_endpoint(ing, limits);
    REQUIRE(port != 0);
    client = std::make_unique<http_client>("127.0.0.1", port, 10s, 1 << 20);
  }

  /// POSTs to `target`; `encoding` empty sends no Content-Encoding,
  /// `content_type` empty no Content-Type.
  http_response post(const std::string& body, const std::string& encoding,
                     const std::string& content_type = protobuf_type,
                     const std::string& target = "/v1/sync") {
    headers_t headers;
    if (!content_type.empty())
      headers.emplace_back("Content-Type", content_type);
    if (!encoding.empty())
      headers.emplace_back("Content-Encoding", encoding);
    auto res = client->post(target, body, headers);
    REQUIRE_MESSAGE(res, render(res.error()));
    return std::move(*res);
  }

  /// POSTs a body that must be acked; returns the ack.
  sync_ack deliver(const std::string& body, const std::string& encoding,
                   int64_t want_ack) {
    auto res = post(body, encoding);
    CHECK(res.status == 200);
    CHECK(res.content_type == protobuf_type);
    auto ack = ack_of(res.body);
    CHECK(ack.success);
    CHECK(ack.error_code.empty());
    CHECK(ack.last_sequence_ack == want_ack);
    return ack;
  }

  std::map<std::string, int64_t> counters() {
    return test::ask<actor_stats>(*self, ing, 5s, stats_atom::value).counters;
  }


  metric_samples points() {
    return test::ask<metric_samples>(*self, store, 5s, points_atom::value,
                                     std::string{device_id});
  }


  log_lines logs() {
    return test::ask<log_lines>(*self, store, 5s, logs_atom::value,
                                std::string{device_id});
  }


  event_records events() {
    return test::ask<event_records>(*self, store, 5s, events_atom::value,
                                    std::string{device_id});
  }


  device_infos devices() {
    return test::ask<device_infos>(*self, store, 5s, devices_atom::value);
  }


  /// Sets every field of a device's settings, known to the cloud or not.
  cloud_settings set_config(const std::string& device, cloud_settings x) {
    cloud_settings out;
    (*self)
      ->request(store, 5s, config_atom::value, device,
                settings_change{x, all_settings_fields, true})
      .receive([&](cloud_settings& y) { out = y; },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return out;
  }

  /// Row counts and stream counters straight from the database file.
  std::map<std::string, int64_t> tables() {
    auto db = sqlite::database::open(path);
    REQUIRE_MESSAGE(db, render(db.error()));
    std::map<std::string, int64_t> out;
    auto one = [&](const std::string& key, const std::string& sql) {
      auto st = db->prepare(sql);
      REQUIRE_MESSAGE(st, render(st.error()));
      auto row = st->step();
      REQUIRE(row);
      REQUIRE(*row);
      out[key] = st->column_int(0);
    };
    for (auto t : {"batches", "points", "logs", "events", "wire_series",
                   "series", "streams", "device_config"})
      one(t, std::string("SELECT count(*) FROM ") + t);
    for (auto c : {"last_sequence", "epochs", "points", "batches",
                   "duplicates", "last_seen"})
      one(std::string("streams.") + c,
          std::string("SELECT coalesce(sum(") + c + "), 0) FROM streams");
    return out;
  }

  /// The cloud's series table of the device's session, by index.
  std::vector<series_key> wire_table() {
    auto db = sqlite::database::open(path);
    REQUIRE(db);
    auto st = db->prepare("SELECT s.name, s.labels FROM wire_series w JOIN "
                          "series s ON s.id = w.series_id WHERE "
                          "w.device_id = ?1 AND w.epoch = ?2 ORDER BY w.idx");
    REQUIRE(st);
    st->bind(1, std::string_view{device_id}).bind(2, std::string_view{epoch});
    std::vector<series_key> out;
    for (;;) {
      auto row = st->step();
      REQUIRE(row);
      if (!*row)
        return out;
      // Names suffice here: the labels blob is the store's own encoding.
      out.emplace_back(st->column_text(0), label_map{});
    }
  }
};

std::vector<std::string> names_of(const std::vector<series_key>& xs) {
  std::vector<std::string> out;
  for (auto& x : xs)
    out.push_back(x.first);
  return out;
}

/// Checks a refusal: status, a SyncResponse with the code and a message.
void check_refusal(const http_response& res, unsigned status,
                   const std::string& code) {
  CHECK(res.status == status);
  CHECK(res.content_type == protobuf_type);
  auto ack = ack_of(res.body);
  CHECK_FALSE(ack.success);
  CHECK(ack.error_code == code);
  CHECK_MESSAGE(!ack.error_message.empty(), "no message for " << code);
  CHECK(ack.config.version == 0);
  // curl -v shows why without decoding the body.
  CHECK(res.error.rfind(code + ": ", 0) == 0);
  CHECK(res.error.size() > code.size() + 2);
}

int64_t total_rejected(const std::map<std::string, int64_t>& c) {
  int64_t n = 0;
  for (auto& kv : c)
    if (kv.first.rfind("rejected_", 0) == 0)
      n += kv.second;
  return n;
}

/// The good batch a device sends as `seq`: two series, zstd.
metric_samples good_samples(int64_t seq) {
  return scrape({"cpu", "mem"}, 2, static_cast<double>(seq));
}

std::string good_body(int64_t seq) {
  return zstd(plain_metrics(seq, good_samples(seq)));
}

struct bad_case {
  std::string name;
  unsigned status;
  std::string code;
  std::string encoding;
  /// Makes the body; `next` is the sequence the device would send next.
  std::function<std::string(int64_t next)> body;
};

std::vector<bad_case> bad_cases() {
  std::vector<bad_case> out;
  auto add = [&](std::string name, unsigned status, std::string code,
                 std::string encoding,
                 std::function<std::string(int64_t)> body) {
    out.push_back(bad_case{std::move(name), status, std::move(code),
                           std::move(encoding), std::move(body)});
  };
  // Corrupt zstd.
  add("corrupt zstd: garbage after the frame header", 400, "decode_failed",
      "zstd", [](int64_t next) {
        return good_body(next).substr(0, 6) + std::string(64, '\x5A');
      });
  add("corrupt zstd: frame cut in half", 400, "decode_failed", "zstd",
      [](int64_t next) {
        auto z = good_body(next);
        return z.substr(0, z.size() / 2);
      });
  add("corrupt zstd: plain bytes declared as zstd", 400, "decode_failed",
      "zstd", [](int64_t next) {
        return plain_metrics(next, good_samples(next));
      });
  // Wrong checksum.
  add("wrong checksum, zstd", 400, "checksum_mismatch", "zstd",
      [](int64_t next) {
        return zstd(
          with_checksum_flipped(plain_metrics(next, good_samples(next))));
      });
  add("wrong checksum: batch bytes changed after checksumming", 400,
      "checksum_mismatch", "identity", [](int64_t next) {
        pb::MetricsBatch b;
        b.set_columnar(encode_columnar(good_samples(next), codec_context{}));
        auto req = request_with(3, b.SerializeAsString(), next);
        // Flip one bit of the last byte: inside the batch field.
        req.back() = static_cast<char>(req.back() ^ 0x01);
        return req;
      });
  // Truncated or inconsistent protobuf.
  add("truncated protobuf, identity", 400, "decode_failed", "identity",
      [](int64_t next) {
        auto p = plain_metrics(next, good_samples(next));
        return p.substr(0, p.size() - 5);
      });
  add("truncated protobuf inside a sound zstd frame", 400, "decode_failed",
      "zstd", [](int64_t next) {
        auto p = plain_metrics(next, good_samples(next));
        return zstd(p.substr(0, p.size() - 5));
      });
  add("metrics columns of different lengths", 400, "decode_failed", "zstd",
      [](int64_t next) {
        pb::MetricsBatch b;
        b.add_series()->set_name("cpu");
        b.add_series_index(0);
        b.add_series_index(0);
        b.add_timestamp_ms(clock_start_ms);
        b.add_timestamp_ms(clock_start_ms + 1);
        b.add_value(1.0);
        return zstd(request_with(3, b.SerializeAsString(), next));
      });
  add("series index out of range", 400, "decode_failed", "zstd",
      [](int64_t next) {
        pb::MetricsBatch b;
        b.add_series()->set_name("cpu");
        b.add_series_index(7);
        b.add_timestamp_ms(clock_start_ms);
        b.add_value(1.0);
        return zstd(request_with(3, b.SerializeAsString(), next));
      });
  add("logs columns of different lengths", 400, "decode_failed", "zstd",
      [](int64_t next) {
        pb::LogsBatch b;
        b.add_streams();
        b.add_stream_index(0);
        b.add_timestamp_ns(1);
        b.add_timestamp_ns(2);
        b.add_line("one line, two timestamps");
        return zstd(request_with(4, b.SerializeAsString(), next));
      });
  add("two batch fields in one request", 400, "decode_failed", "zstd",
      [](int64_t next) {
        pb::EventsBatch e;
        e.add_events()->set_kind("extra");
        auto req = plain_metrics(next, good_samples(next));
        auto extra = e.SerializeAsString();
        append_varint(req, (5 << 3) | 2);
        append_varint(req, extra.size());
        return zstd(req + extra);
      });
  add("unknown format version", 400, "decode_failed", "zstd",
      [](int64_t next) {
        pb::MetricsBatch b;
        b.set_columnar(encode_columnar(good_samples(next), codec_context{}));
        return zstd(request_with(3, b.SerializeAsString(), next,
                                 wire_format_version + 1));
      });
  // Unknown stream.
  add("unknown stream: the batch in a field the cloud does not know", 400,
      "unknown_stream", "zstd", [](int64_t next) {
        return zstd(request_with(9, "traces, say", next));
      });
  add("unknown stream: no batch at all", 400, "unknown_stream", "identity",
      [](int64_t next) {
        pb::SyncRequest req;
        req.set_device_id(device_id);
        req.mutable_metadata()->set_sequence_number(next);
        req.mutable_metadata()->set_format_version(wire_format_version);
        return req.SerializeAsString();
      });
  // Sequences.
  add("sequence zero", 400, "bad_sequence", "zstd",
      [](int64_t) { return good_body(0); });
  add("negative sequence", 400, "bad_sequence", "zstd",
      [](int64_t) { return good_body(-3); });
  add("sequence far in the future", 409, "bad_sequence", "zstd",
      [](int64_t next) { return good_body(next + 1'000'000); });
  add("sequence from the past with other content", 409, "bad_sequence",
      "zstd", [](int64_t) {
        return zstd(plain_metrics(1, scrape({"other"}, 1, 99)));
      });
  // Size.
  add("over the decoded size limit", 413, "too_large", "zstd",
      [](int64_t next) {
        metric_samples xs;
        for (int i = 0; i < 8000; ++i) {
          metric_sample s;
          s.name = "cpu";
          s.timestamp_ms = clock_start_ms + i;
          s.value = 1.0;
          xs.push_back(std::move(s));
        }
        auto p = plain_metrics(next, xs);
        auto z = zstd(p, 19);
        REQUIRE(p.size() > max_decoded_bytes);
        REQUIRE(z.size() < max_body_bytes);
        return z;
      });
  // Encoding.
  add("unsupported Content-Encoding", 415, "unsupported_encoding", "gzip",
      [](int64_t next) { return good_body(next); });
  // Columnar batches.
  add("columnar bytes that do not decode (trailing byte)", 400,
      "decode_failed", "zstd", [](int64_t next) {
        return zstd(plain_columnar(
          next, encode_columnar(good_samples(next), codec_context{}) + '\0'));
      });
  add("columnar bytes of an unknown version", 400, "decode_failed", "zstd",
      [](int64_t next) {
        auto c = encode_columnar(good_samples(next), codec_context{});
        c[0] = '\x09';
        return zstd(plain_columnar(next, c));
      });
  add("columnar batch against a table the cloud does not hold", 409,
      "session_out_of_sync", "zstd", [](int64_t next) {
        codec_context ctx;
        commit_columnar(ctx, scrape({"a", "b"}, 1, 0));
        return zstd(plain_columnar(next,
                                   encode_columnar(good_samples(next), ctx)));
      });
  add("columnar and protobuf columns at once", 400, "decode_failed", "zstd",
      [](int64_t next) {
        pb::MetricsBatch b;
        b.set_columnar(encode_columnar(good_samples(next), codec_context{}));
        b.add_series()->set_name("cpu");
        b.add_series_index(0);
        b.add_timestamp_ms(clock_start_ms);
        b.add_value(1.0);
        return zstd(request_with(3, b.SerializeAsString(), next));
      });
  return out;
}

} // namespace

TEST_CASE("every kind of bad batch gets a clear refusal and a counter, "
          "stores nothing, and the connection then delivers a good batch") {
  http_fixture f;
  int64_t seq = 1;
  f.deliver(good_body(seq), "zstd", seq);
  auto want = good_samples(seq);
  auto cases = bad_cases();
  for (auto& c : cases) {
    CAPTURE(c.name);
    auto body = c.body(seq + 1);
    auto before = f.counters();
    auto tables = f.tables();
    // A write would move last_seen: rejections must not touch the streams.
    f.clock->advance(1000);
    check_refusal(f.post(body, c.encoding), c.status, c.code);
    auto after = f.counters();
    CHECK(after["rejected_" + c.code] == before["rejected_" + c.code] + 1);
    CHECK(total_rejected(after) == total_rejected(before) + 1);
    CHECK(after["requests"] == before["requests"] + 1);
    CHECK(after["accepted"] == before["accepted"]);
    CHECK(after["duplicates"] == before["duplicates"]);
    CHECK(after["points"] == before["points"]);
    CHECK(after["store_failures"] == 0);
    CHECK(f.tables() == tables);
    // The sequence was not taken: the device's next batch is still news,
    // on the same kept-alive connection.
    ++seq;
    f.deliver(good_body(seq), "zstd", seq);
    want = concat({want, good_samples(seq)});
    CHECK(f.client->connects() == 1);
  }
  check_same_samples(f.points(), want);
  CHECK(f.logs().empty());
  CHECK(f.events().empty());
  auto c = f.counters();
  CHECK(total_rejected(c) == static_cast<int64_t>(cases.size()));
  CHECK(c["accepted"] == seq);
  CHECK(c["duplicates"] == 0);
  auto ds = f.devices();
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].stream == metrics_stream);
  CHECK(ds[0].last_acked_sequence == seq);
  CHECK(ds[0].batches_received == seq);
  CHECK(ds[0].gaps == 0);
}

TEST_CASE("a body over ingest.max-body-bytes is refused 413 by the HTTP "
          "server before the ingest actor; the device reconnects") {
  http_fixture f;
  f.deliver(good_body(1), "zstd", 1);
  auto tables = f.tables();
  auto before = f.counters();
  // Points with distinct values: zstd cannot shrink it below the limit.
  metric_samples xs;
  for (int i = 0; i < 4000; ++i) {
    metric_sample s;
    s.name = "noise";
    s.timestamp_ms = clock_start_ms + i * 7919;
    s.value = static_cast<double>(i) * 1.000001234567 + 0.123456789;
    xs.push_back(std::move(s));
  }
  auto big = zstd(plain_metrics(2, xs));
  REQUIRE(big.size() > max_body_bytes);
  auto res = f.post(big, "zstd");
  CHECK(res.status == 413);
  // NOTE: this refusal is the HTTP server's own text/plain answer, not a
  // SyncResponse: it carries no error_code, and it is counted by the
  // server (requests_rejected), not as rejected_too_large by ingest. See
  // the report: edge/cloud_link treats it as a link failure.
  CHECK(res.content_type == "text/plain");
  CHECK_FALSE(decode_response(res.body));
  CHECK(res.error == "too_large: body limit exceeded");
  CHECK(f.endpoint->counters().requests_rejected == 1);
  auto after = f.counters();
  CHECK(after["requests"] == before["requests"]);
  CHECK(total_rejected(after) == 0);
  CHECK(f.tables() == tables);
  // The server closed that connection; the same device session goes on.
  f.deliver(good_body(2), "zstd", 2);
  CHECK(f.client->connects() == 2);
  check_same_samples(f.points(), concat({good_samples(1), good_samples(2)}));
}

TEST_CASE("a Content-Type other than protobuf is refused 415 over HTTP; the "
          "device's own requests pass") {
  http_fixture f;
  auto tables = f.tables();
  struct want {
    std::string type;
    std::string header;
  };
  for (auto& c : std::vector<want>{
         {"", "unsupported_media_type: Content-Type must be "
              "application/x-protobuf, not ''"},
         {"application/x-www-form-urlencoded", ""},
         {"application/json", ""},
         // A hostile value comes back printable and bounded.
         {"text/\xff" + std::string(300, 'x'), ""}}) {
    CAPTURE(c.type);
    auto res = f.post(good_body(1), "zstd", c.type);
    check_refusal(res, 415, "unsupported_media_type");
    if (!c.header.empty())
      CHECK(res.error == c.header);
    CHECK(res.error.size() <= 256);
    for (auto ch : res.error)
      CHECK((ch >= 0x20 && ch < 0x7f));
  }
  CHECK(f.counters()["rejected_unsupported_media_type"] == 4);
  CHECK(f.tables() == tables);
  // What edge/cloud_link sends (application/x-protobuf) is stored.
  f.deliver(good_body(1), "zstd", 1);
}

TEST_CASE("every error answer carries X-Fleetd-Error: the endpoint's own, "
          "the ingest's and a store that is gone") {
  http_fixture f;
  SUBCASE("an unknown path") {
    auto res = f.post(good_body(1), "zstd", protobuf_type, "/v1/nope");
    CHECK(res.status == 404);
    CHECK(res.error == "not_found: no such endpoint: /v1/nope");
  }
  SUBCASE("a success carries none") {
    auto res = f.post(good_body(1), "zstd");
    CHECK(res.status == 200);
    CHECK(res.error.empty());
  }
  SUBCASE("a store that is gone: 503 with a retry delay") {
    (*f.self)->send_exit(f.store, caf::exit_reason::user_shutdown);
    (*f.self)->wait_for(f.store);
    auto res = f.post(good_body(1), "zstd");
    CHECK(res.status == 503);
    CHECK(res.error.rfind("store_unavailable: ", 0) == 0);
    CHECK(ack_of(res.body).retry_after_ms > 0);
  }
}

TEST_CASE("columnar bytes that do not decode are refused 400 and leave the "
          "session series table as it was") {
  http_fixture f;
  codec_context dev;
  auto s1 = scrape({"cpu", "mem"}, 3, 1);
  f.deliver(zstd(plain_columnar(1, encode_columnar(s1, dev))), "zstd", 1);
  commit_columnar(dev, s1);
  auto table = names_of(f.wire_table());
  CHECK(table == names_of(dev.series));
  auto s2 = scrape({"cpu", "mem", "disk"}, 2, 2, 10'000);
  auto good2 = encode_columnar(s2, dev);
  REQUIRE(columnar_base(good2));
  CHECK(*columnar_base(good2) == 2);
  std::vector<std::pair<std::string, std::string>> bad{
    {"trailing byte", good2 + '\0'},
    {"cut short", good2.substr(0, good2.size() - 1)},
    {"cut after the header", good2.substr(0, 3)},
    // base 0 would restart the table: the restart must roll back too.
    {"base 0, trailing byte", encode_columnar(s2, codec_context{}) + '\0'},
    {"base 0, cut short", encode_columnar(s2, codec_context{}).substr(0, 9)},
  };
  for (auto& [name, bytes] : bad) {
    CAPTURE(name);
    auto tables = f.tables();
    auto before = f.counters();
    check_refusal(f.post(zstd(plain_columnar(2, bytes)), "zstd"), 400,
                  "decode_failed");
    CHECK(f.counters()["rejected_decode_failed"]
          == before["rejected_decode_failed"] + 1);
    CHECK(f.tables() == tables);
    CHECK(names_of(f.wire_table()) == table);
  }
  // The good batch 2, encoded against the table of 2, still decodes.
  f.deliver(zstd(plain_columnar(2, good2)), "zstd", 2);
  commit_columnar(dev, s2);
  CHECK(names_of(f.wire_table()) == names_of(dev.series));
  check_same_samples(f.points(), concat({s1, s2}));
  CHECK(f.client->connects() == 1);
  CHECK(f.counters()["rejected_decode_failed"] == 5);
}

TEST_CASE("a columnar base the cloud does not hold is refused 409 "
          "session_out_of_sync; the same points with base 0 start the table "
          "afresh") {
  http_fixture f;
  codec_context dev;
  auto s1 = scrape({"cpu", "mem"}, 2, 1);
  f.deliver(zstd(plain_columnar(1, encode_columnar(s1, dev))), "zstd", 1);
  commit_columnar(dev, s1);
  // The device believes in a series the cloud never acked (a lost commit).
  commit_columnar(dev, scrape({"ghost"}, 1, 0));
  REQUIRE(dev.series.size() == 3);
  auto s2 = scrape({"disk", "cpu", "net"}, 2, 2, 10'000);
  auto tables = f.tables();
  check_refusal(f.post(zstd(plain_columnar(2, encode_columnar(s2, dev))),
                       "zstd"),
                409, "session_out_of_sync");
  CHECK(f.counters()["rejected_session_out_of_sync"] == 1);
  CHECK(f.tables() == tables);
  // The device starts a new session: the same points, every series inline.
  dev.clear();
  auto fresh = encode_columnar(s2, dev);
  REQUIRE(*columnar_base(fresh) == 0);
  f.deliver(zstd(plain_columnar(2, fresh)), "zstd", 2);
  commit_columnar(dev, s2);
  // The cloud's table is the new session's: disk, cpu, net (not cpu, mem).
  CHECK(names_of(f.wire_table()) == names_of(dev.series));
  CHECK(f.wire_table().size() == 3);
  check_same_samples(f.points(), concat({s1, s2}));
  // Batches of the new session reference it.
  auto s3 = scrape({"net", "disk"}, 2, 3, 20'000);
  auto b3 = encode_columnar(s3, dev);
  REQUIRE(*columnar_base(b3) == 3);
  f.deliver(zstd(plain_columnar(3, b3)), "zstd", 3);
  check_same_samples(f.points(), concat({s1, s2, s3}));
  // A batch against the old table of 2 is out of sync now.
  codec_context old;
  commit_columnar(old, s1);
  check_refusal(f.post(zstd(plain_columnar(4, encode_columnar(s3, old))),
                       "zstd"),
                409, "session_out_of_sync");
  CHECK(f.counters()["rejected_session_out_of_sync"] == 2);
  CHECK(f.client->connects() == 1);
}

TEST_CASE("a duplicate columnar batch is acked again without being decoded "
          "or stored") {
  http_fixture f;
  codec_context dev;
  auto s1 = scrape({"cpu", "mem"}, 2, 1);
  auto b1 = zstd(plain_columnar(1, encode_columnar(s1, dev)));
  f.deliver(b1, "zstd", 1);
  commit_columnar(dev, s1);
  auto s2 = scrape({"cpu", "mem", "disk"}, 2, 2, 10'000);
  auto b2 = zstd(plain_columnar(2, encode_columnar(s2, dev)));
  f.deliver(b2, "zstd", 2);
  commit_columnar(dev, s2);
  auto table = names_of(f.wire_table());
  REQUIRE(table.size() == 3);
  auto tables = f.tables();
  // Batch 1 has base 0 (decoding it would restart the table), batch 2 base 2
  // (decoding it now would be out of sync): both are plain duplicates.
  for (auto* b : {&b1, &b2}) {
    auto ack = f.deliver(*b, "zstd", 2);
    CHECK(ack.success);
  }
  auto now = f.tables();
  CHECK(now["streams.duplicates"] == tables["streams.duplicates"] + 2);
  for (auto key : {"batches", "points", "wire_series", "series",
                   "streams.points", "streams.batches"})
    CHECK_MESSAGE(now[key] == tables[key], key);
  CHECK(names_of(f.wire_table()) == table);
  auto c = f.counters();
  CHECK(c["duplicates"] == 2);
  CHECK(c["accepted"] == 2);
  CHECK(total_rejected(c) == 0);
  // The session table is intact: batch 3 against 3 series decodes.
  auto s3 = scrape({"disk", "cpu"}, 1, 3, 20'000);
  auto b3 = encode_columnar(s3, dev);
  REQUIRE(*columnar_base(b3) == 3);
  f.deliver(zstd(plain_columnar(3, b3)), "zstd", 3);
  check_same_samples(f.points(), concat({s1, s2, s3}));
}

TEST_CASE("a sequence from the past never seen fills the gap; the same "
          "sequence with other content is refused 409 bad_sequence") {
  http_fixture f;
  f.deliver(good_body(1), "zstd", 1);
  f.deliver(good_body(3), "zstd", 3);
  auto ds = f.devices();
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].gaps == 1);
  // Batch 2 arrives late: stored, the ack stays at 3.
  auto late = good_body(2);
  f.deliver(late, "zstd", 3);
  ds = f.devices();
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].gaps == 0);
  CHECK(ds[0].batches_received == 3);
  check_same_samples(f.points(), concat({good_samples(1), good_samples(3),
                                         good_samples(2)}));
  auto tables = f.tables();
  for (int64_t s : {1, 2, 3}) {
    CAPTURE(s);
    check_refusal(f.post(zstd(plain_metrics(s, scrape({"x"}, 1, 50))), "zstd"),
                  409, "bad_sequence");
  }
  CHECK(f.tables() == tables);
  CHECK(f.counters()["rejected_bad_sequence"] == 3);
  // The late batch's own bytes again: a duplicate.
  f.deliver(late, "zstd", 3);
  CHECK(f.counters()["duplicates"] == 1);
  f.deliver(good_body(4), "zstd", 4);
  CHECK(f.client->connects() == 1);
}

TEST_CASE("logs and events are stored per stream and read back; their bad "
          "batches store nothing") {
  http_fixture f;
  log_lines lines{
    {{{"unit", "sshd"}}, 1'700'000'000'000'000'001, "accepted key"},
    {{{"unit", "kernel"}, {"prio", "4"}}, 1'700'000'000'000'000'002, "oom"},
    {{{"unit", "sshd"}}, 1'700'000'000'000'000'003, "session closed"},
    // UTF-8 survives; a NUL byte is stored as '?' (no store holds it).
    {{}, 1'700'000'000'000'000'004,
     std::string("na\xc3\xafve \0 \xe2\x9c\x93", 12)},
  };
  event_records events{
    {clock_start_ms, "lifecycle", "started", {{"version", "1.2.3"}}},
    {clock_start_ms + 5, "storage", "dropped 10 points",
     {{"stream", "metrics"}, {"points", "10"}}},
    {clock_start_ms + 9, "link", "", {}},
  };
  auto logs1 = zstd(encode_logs_request(settings(1), lines));
  auto events1 = zstd(encode_events_request(settings(1), events));
  // Each stream numbers its own batches: all three are sequence 1.
  f.deliver(logs1, "zstd", 1);
  f.deliver(events1, "zstd", 1);
  f.deliver(good_body(1), "zstd", 1);
  auto got_logs = f.logs();
  REQUIRE(got_logs.size() == lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    CAPTURE(i);
    CHECK(got_logs[i].labels == lines[i].labels);
    CHECK(got_logs[i].timestamp_ns == lines[i].timestamp_ns);
    auto want = lines[i].line;
    repair_text(want);
    CHECK(got_logs[i].line == want);
  }
  auto got_events = f.events();
  REQUIRE(got_events.size() == events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    CAPTURE(i);
    CHECK(got_events[i].timestamp_ms == events[i].timestamp_ms);
    CHECK(got_events[i].kind == events[i].kind);
    CHECK(got_events[i].message == events[i].message);
    CHECK(got_events[i].attributes == events[i].attributes);
  }
  check_same_samples(f.points(), good_samples(1));
  auto ds = f.devices();
  REQUIRE(ds.size() == 3);
  CHECK(ds[0].stream == events_stream);
  CHECK(ds[0].points_received == 3);
  CHECK(ds[1].stream == logs_stream);
  CHECK(ds[1].points_received == 4);
  CHECK(ds[2].stream == metrics_stream);
  // Duplicates are acked, not stored again.
  auto tables = f.tables();
  f.deliver(logs1, "zstd", 1);
  f.deliver(events1, "zstd", 1);
  CHECK(f.tables()["logs"] == tables["logs"]);
  CHECK(f.tables()["events"] == tables["events"]);
  CHECK(f.counters()["duplicates"] == 2);
  // Bad logs / events batches store nothing.
  tables = f.tables();
  check_refusal(f.post(zstd(encode_logs_request(settings(1), {lines[0]})),
                       "zstd"),
                409, "bad_sequence");
  check_refusal(f.post(with_checksum_flipped(
                         encode_events_request(settings(2), events)),
                       "identity"),
                400, "checksum_mismatch");
  auto truncated = encode_logs_request(settings(2), lines);
  check_refusal(f.post(truncated.substr(0, truncated.size() - 2), "identity"),
                400, "decode_failed");
  CHECK(f.tables() == tables);
  f.deliver(zstd(encode_logs_request(settings(2), {lines[1]})), "zstd", 2);
  f.deliver(zstd(encode_events_request(settings(2), {events[0]})), "zstd", 2);
  CHECK(f.logs().size() == lines.size() + 1);
  CHECK(f.events().size() == events.size() + 1);
  CHECK(f.client->connects() == 1);
}

TEST_CASE("the SyncResponse carries the device's config while the batch's "
          "config_version is older") {
  http_fixture f;
  auto body = [](int64_t seq, int64_t have) {
    return zstd(plain_metrics(seq, good_samples(seq), have));
  };
  // No config yet: none in the answer.
  CHECK(f.deliver(body(1, 0), "zstd", 1).config.version == 0);
  cloud_settings x;
  x.batch_size = 500;
  x.sync_interval_ms = 30'000;
  x.retention_ms = 2 * 3'600'000;
  x.zstd_level = 5;
  auto v1 = f.set_config(device_id, x);
  CHECK(v1.version == 1);
  auto ack = f.deliver(body(2, 0), "zstd", 2);
  CHECK(ack.config.version == 1);
  CHECK(ack.config.batch_size == 500);
  CHECK(ack.config.sync_interval_ms == 30'000);
  CHECK(ack.config.retention_ms == 2 * 3'600'000);
  CHECK(ack.config.zstd_level == 5);
  CHECK(f.counters()["configs_sent"] == 1);
  // The device applies it and says so: no more config.
  CHECK(f.deliver(body(3, 1), "zstd", 3).config.version == 0);
  // Another device's config is numbered on its own.
  CHECK(f.set_config("another-device", x).version == 1);
  CHECK(f.deliver(body(4, 1), "zstd", 4).config.version == 0);
  // A new version reaches a device still on 1, a duplicate included.
  x.batch_size = 50;
  x.zstd_level = 0;
  CHECK(f.set_config(device_id, x).version == 2);
  auto b5 = body(5, 1);
  ack = f.deliver(b5, "zstd", 5);
  CHECK(ack.config.version == 2);
  CHECK(ack.config.batch_size == 50);
  CHECK(ack.config.zstd_level == 0);
  ack = f.deliver(b5, "zstd", 5);
  CHECK(ack.config.version == 2);
  CHECK(f.deliver(body(6, 2), "zstd", 6).config.version == 0);
  auto c = f.counters();
  CHECK(c["configs_sent"] == 3);
  CHECK(c["duplicates"] == 1);
}

// Log lines, labels and event text are protobuf `bytes`: a line that is not
// UTF-8 must not make its batch a permanent 400; PostgreSQL's text cannot
// hold its bytes, so every store gets '?' for them.
TEST_CASE("a log line that is not UTF-8 is stored with '?' for its bad "
          "bytes") {
  http_fixture f;
  log_lines lines{{{{"unit", "app"}}, 1, std::string("latin-1 caf\xe9", 12)}};
  auto res = f.post(zstd(encode_logs_request(settings(1), lines)), "zstd");
  CHECK(res.status == 200);
  auto got = f.logs();
  REQUIRE(got.size() == 1);
  CHECK(got[0].line == "latin-1 caf?");
  CHECK(f.counters()["texts_repaired"] == 1);
}

TEST_CASE("/healthz tells the truth: 200 while ingest and the store answer, "
          "503 naming the one that does not") {
  SUBCASE("the store dies") {
    http_fixture f;
    auto ok = f.client->get("/healthz");
    REQUIRE_MESSAGE(ok, render(ok.error()));
    CHECK(ok->status == 200);
    CHECK(ok->body == "ok\n");
    (*f.self)->send_exit(f.store, caf::exit_reason::kill);
    (*f.self)->wait_for(f.store);
    auto down = f.client->get("/healthz");
    REQUIRE(down);
    CHECK(down->status == 503);
    CHECK(down->error.find("unhealthy: ") == 0);
    CHECK(down->error.find("cloud_store") != std::string::npos);
  }
  SUBCASE("ingest dies") {
    http_fixture f;
    (*f.self)->send_exit(f.ing, caf::exit_reason::kill);
    (*f.self)->wait_for(f.ing);
    auto down = f.client->get("/healthz");
    REQUIRE(down);
    CHECK(down->status == 503);
    CHECK(down->error == "unhealthy: ingest is down");
  }
}

// -- POST /v2/sync: several batches in one request ---------------------------

namespace {

/// POSTs `bodies` as one SyncBundle to /v2/sync with only the headers the
/// device sends (no Content-Type), plus `extra`.
http_response post_bundle(http_fixture& f,
                          const std::vector<std::string>& bodies,
                          headers_t extra = {}) {
  auto res = f.client->post("/v2/sync", encode_bundle(bodies), extra);
  REQUIRE_MESSAGE(res, render(res.error()));
  return std::move(*res);
}

/// The per-batch answers of a 200 bundle answer.
std::vector<sync_ack> results_of(const http_response& res, size_t items) {
  REQUIRE(res.status == 200);
  auto acks = decode_bundle_response(res.body, items);
  REQUIRE_MESSAGE(acks, render(acks.error()));
  return std::move(*acks);
}

/// A bundle refused as a whole: its status and error code.
struct bad_bundle {
  std::string name;
  std::string body;
  headers_t headers;
  unsigned status;
  std::string code;
};

void check_bundle_refusals(http_fixture& f, const std::string& target,
                           const std::vector<bad_bundle>& cases) {
  for (auto& c : cases) {
    CAPTURE(c.name);
    auto res = f.client->post(target, c.body, c.headers);
    REQUIRE(res);
    check_refusal(*res, c.status, c.code);
  }
}

std::vector<std::string> concat_bodies(std::vector<std::string> xs,
                                       std::string x) {
  xs.push_back(std::move(x));
  return xs;
}

log_lines two_lines(int64_t seq) {
  return {{{{"unit", "sshd"}}, seq * 1000 + 1, "line a " + std::to_string(seq)},
          {{{"unit", "cron"}}, seq * 1000 + 2,
           "line b " + std::to_string(seq)}};
}

event_records one_event(int64_t seq) {
  return {{clock_start_ms + seq, "lifecycle", "round " + std::to_string(seq),
           {}}};
}

} // namespace

TEST_CASE("POST /v2/sync: one request carries metrics, logs and events; each "
          "batch is acked by its own sequence, a refused one alone") {
  http_fixture f;
  auto logs1 = encode_logs_request(settings(1), two_lines(1));
  auto events1 = zstd(encode_events_request(settings(1), one_event(1)));
  auto res = post_bundle(f, {good_body(1), logs1, events1});
  // The smallest answer: no Content-Type, no Server, no error header.
  CHECK(res.content_type.empty());
  CHECK(res.error.empty());
  for (auto& ack : results_of(res, 3)) {
    CHECK(ack.status == 200);
    CHECK(ack.success);
    CHECK(ack.last_sequence_ack == 1);
  }
  CHECK(f.points().size() == good_samples(1).size());
  CHECK(f.logs().size() == 2);
  CHECK(f.events().size() == 1);
  CHECK(f.counters()["accepted"] == 3);

  // A partial refusal: the metrics batch is stored and acked, the logs
  // batch with a wrong checksum refused 400 and stored nowhere.
  auto tables = f.tables();
  auto bad_logs = with_checksum_flipped(
    encode_logs_request(settings(2), two_lines(2)));
  auto acks = results_of(post_bundle(f, {good_body(2), bad_logs}), 2);
  CHECK(acks[0].status == 200);
  CHECK(acks[0].last_sequence_ack == 2);
  CHECK(acks[1].status == 400);
  CHECK_FALSE(acks[1].success);
  CHECK(acks[1].error_code == "checksum_mismatch");
  CHECK(f.logs().size() == 2);
  CHECK(f.tables()["logs"] == tables["logs"]);
  CHECK(f.tables()["points"] == tables["points"] + 4);

  // The device resends the refused batch alone, and a retry of the
  // accepted one is a duplicate: acked again, stored once.
  auto logs2 = encode_logs_request(settings(2), two_lines(2));
  acks = results_of(post_bundle(f, {good_body(2), logs2}), 2);
  CHECK(acks[0].last_sequence_ack == 2);
  CHECK(acks[1].last_sequence_ack == 2);
  CHECK(f.counters()["duplicates"] == 1);
  CHECK(f.logs().size() == 4);
  check_same_samples(f.points(), concat({good_samples(1), good_samples(2)}));
}

TEST_CASE("POST /v3/sync (a bundle compressed as a whole): each batch acked "
          "as it would be alone, duplicates included; bad ones refused whole") {
  http_fixture f;
  auto logs1 = encode_logs_request(settings(1), two_lines(1));
  auto events1 = zstd(encode_events_request(settings(1), one_event(1)));
  std::vector<std::string> bodies{good_body(1), logs1, events1};
  auto body = encode_bundle_body(bodies, 3);
  REQUIRE(body.zstd);
  auto tables = f.tables();
  std::vector<bad_bundle> cases{
    {"not zstd", encode_bundle(bodies), {}, 400, "decode_failed"},
    {"truncated", body.bytes.substr(0, body.bytes.size() / 2), {}, 400,
     "decode_failed"},
    // Past what a v2 bundle may be: refused while it decompresses.
    {"a zstd bomb", zstd(std::string(4 * max_body_bytes, '\x0a')), {}, 413,
     "too_large"},
    {"four batches", zstd(encode_bundle(concat_bodies(bodies, good_body(2)))),
     {}, 413, "too_large"},
    {"a Content-Encoding", body.bytes, {{"Content-Encoding", "zstd"}}, 415,
     "unsupported_encoding"},
  };
  check_bundle_refusals(f, "/v3/sync", cases);
  CHECK(f.tables() == tables);
  auto res = f.client->post("/v3/sync", body.bytes, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  for (auto& ack : results_of(*res, 3)) {
    CHECK(ack.status == 200);
    CHECK(ack.last_sequence_ack == 1);
  }
  CHECK(f.logs().size() == 2);
  CHECK(f.events().size() == 1);
  // The same batches again, as their own bytes: duplicates, stored once.
  for (auto& ack : results_of(post_bundle(f, bodies), 3))
    CHECK(ack.last_sequence_ack == 1);
  CHECK(f.counters()["duplicates"] == 3);
  check_same_samples(f.points(), good_samples(1));
}

namespace {

/// A bundle of a metrics and a logs batch recoded as `coding` goes to
/// `path`: truncated or a bomb refused whole, refused by each of `older`
/// (which never restore it), then acked and stored as the queued batches,
/// and the same batches as their own bytes are duplicates.
void check_recoded_bundle(const std::string& path, bundle_coding coding,
                          const std::vector<std::string>& older) {
  http_fixture f;
  auto logs1 = zstd(encode_logs_request(settings(1), two_lines(1)));
  std::vector<std::string> bodies{good_body(1), logs1};
  auto body = encode_bundle_body(bodies, 3, coding);
  REQUIRE(body.coded);
  auto tables = f.tables();
  std::vector<bad_bundle> cases{
    {"truncated", body.bytes.substr(0, body.bytes.size() / 2), {}, 400,
     "decode_failed"},
    {"a zstd bomb", zstd(std::string(4 * max_body_bytes, '\x0a')), {}, 413,
     "too_large"},
    {"garbage", std::string(64, '\x5a'), {}, 400, "decode_failed"},
  };
  check_bundle_refusals(f, path, cases);
  // Recoded items only where the path says they may be.
  std::vector<bad_bundle> recoded{{"recoded", body.bytes, {}, 400,
                                   "decode_failed"}};
  for (auto& other : older)
    check_bundle_refusals(f, other, recoded);
  CHECK(f.tables() == tables);
  auto res = f.client->post(path, body.bytes, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  for (auto& ack : results_of(*res, 2)) {
    CHECK(ack.status == 200);
    CHECK(ack.last_sequence_ack == 1);
  }
  CHECK(f.logs().size() == 2);
  check_same_samples(f.points(), good_samples(1));
  // The same batches as their own bytes (POST /v2/sync): duplicates.
  for (auto& ack : results_of(post_bundle(f, bodies), 2))
    CHECK(ack.last_sequence_ack == 1);
  CHECK(f.counters()["duplicates"] == 2);
  CHECK(f.logs().size() == 2);
}

} // namespace

TEST_CASE("POST /v4/sync (log timestamps as deltas): restored, acked and "
          "stored as the queued batch; /v3/sync refuses a recoded item; a "
          "resend by an older path is a duplicate") {
  check_recoded_bundle("/v4/sync", bundle_coding::log_times, {"/v3/sync"});
}

TEST_CASE("POST /v5/sync (the sync dictionary, log lines front-coded): "
          "restored, acked and stored as the queued batch; /v4/sync and "
          "/v3/sync refuse it; a resend by an older path is a duplicate") {
  check_recoded_bundle("/v5/sync", bundle_coding::log_lines,
                       {"/v4/sync", "/v3/sync"});
}

TEST_CASE("a sync stream: each frame's batches acked and stored; a resend "
          "over POST /v4/sync is a duplicate; a bundle too big once "
          "decompressed is refused 413 and a frame that does not "
          "decompress 500, each ending the stream") {
  http_fixture f;
  auto logs1 = zstd(encode_logs_request(settings(1), two_lines(1)));
  std::vector<std::string> bodies{good_body(1), logs1};
  auto res = f.client->stream_post(plain_bundle_body(bodies), 3, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  REQUIRE(f.client->streaming());
  for (auto& ack : results_of(*res, 2)) {
    CHECK(ack.status == 200);
    CHECK(ack.last_sequence_ack == 1);
  }
  CHECK(f.logs().size() == 2);
  CHECK(f.points().size() == good_samples(1).size());
  // The next round on the same stream, then the first again over HTTP.
  res = f.client->stream_post(plain_bundle_body({good_body(2)}), 3, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(results_of(*res, 1)[0].last_sequence_ack == 2);
  auto v4 = encode_bundle_body(bodies, 3, bundle_coding::log_times);
  REQUIRE(v4.coded);
  auto again = f.client->post("/v4/sync", v4.bytes, {});
  REQUIRE_MESSAGE(again, render(again.error()));
  CHECK(!f.client->streaming());
  auto acks = results_of(*again, 2);
  CHECK(acks[0].last_sequence_ack == 2); // metrics: 2 came since
  CHECK(acks[1].last_sequence_ack == 1);
  CHECK(f.counters()["duplicates"] == 2);
  CHECK(f.logs().size() == 2);
  // Bigger than ingest.max-body-bytes once decompressed.
  res = f.client->stream_post(std::string(2 * max_body_bytes, '\x0a'), 3, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  check_refusal(*res, 413, "too_large");
  CHECK(!f.client->streaming());
  // A raw stream whose frame is not zstd at all: 500, then the close.
  int fd = test::raw_stream(f.port);
  std::string frame;
  append_varint(frame, 5);
  frame += "hello";
  auto ans = test::raw_frame_exchange(fd, frame);
  ::close(fd);
  CHECK(ans.status == 500);
  CHECK(ans.error.rfind("stream_corrupt", 0) == 0);
}

TEST_CASE("POST /v2/sync: two batches of one stream are taken in order like "
          "two requests; nothing is stored twice") {
  http_fixture f;
  auto acks = results_of(post_bundle(f, {good_body(1), good_body(1)}), 2);
  CHECK(acks[0].last_sequence_ack == 1);
  CHECK(acks[1].last_sequence_ack == 1);
  CHECK(f.counters()["duplicates"] == 1);
  acks = results_of(post_bundle(f, {good_body(3), good_body(2)}), 2);
  CHECK(acks[0].last_sequence_ack == 3);
  CHECK(acks[1].last_sequence_ack == 3); // 2 fills the gap below 3
  // The same sequence with other bytes is a conflict for that item alone.
  auto other = zstd(plain_metrics(3, good_samples(9)));
  acks = results_of(post_bundle(f, {other, good_body(4)}), 2);
  CHECK(acks[0].status == 409);
  CHECK(acks[0].error_code == "bad_sequence");
  CHECK(acks[1].status == 200);
  CHECK(acks[1].last_sequence_ack == 4);
  check_same_samples(f.points(), concat({good_samples(1), good_samples(3),
                                         good_samples(2), good_samples(4)}));
}

TEST_CASE("POST /v2/sync: garbage, too many batches, no batch and a wrong "
          "envelope are refused as a whole before anything is stored") {
  http_fixture f;
  auto tables = f.tables();
  pb::SyncBundle empty_items;
  empty_items.add_items();
  std::vector<bad_bundle> cases{
    {"garbage", std::string(100, '\xff'), {}, 400, "decode_failed"},
    {"truncated", encode_bundle({good_body(1)}).substr(0, 20), {}, 400,
     "decode_failed"},
    {"no items", "", {}, 400, "decode_failed"},
    {"four batches", encode_bundle({good_body(1), good_body(2), good_body(3),
                                    good_body(4)}),
     {}, 413, "too_large"},
    // 10,000 empty items cost 20 KB of bytes but are counted, not parsed.
    {"many empty items", std::string(2 * 5000, '\0'), {}, 413, "too_large"},
    {"a text type", encode_bundle({good_body(1)}),
     {{"Content-Type", "text/plain"}}, 415, "unsupported_media_type"},
    {"compressed as a whole", encode_bundle({good_body(1)}),
     {{"Content-Encoding", "zstd"}}, 415, "unsupported_encoding"},
  };
  for (size_t i = 0; i < 5000; ++i)
    cases[4].body[2 * i] = '\x0a'; // field 1, length 0
  check_bundle_refusals(f, "/v2/sync", cases);
  // An empty item is an item: its empty SyncRequest is refused alone.
  auto acks = results_of(post_bundle(f, {std::string{}}), 1);
  CHECK(acks[0].status == 400);
  CHECK(f.tables() == tables);
  // The same connection then delivers, and GET is not a sync.
  CHECK(results_of(post_bundle(f, {good_body(1)}), 1)[0].success);
  auto get = f.client->get("/v2/sync");
  REQUIRE(get);
  CHECK(get->status == 405);
}
