// The ingest actor (and the HTTP endpoint in front of it): a good body is
// stored and acked, a bad one is refused with a stable code and stores nothing.
#include "cloud/ingest.hpp"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
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

#include "cloud_fixture.hpp"

#include "cloud/cloud_store.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/ingest_endpoint.hpp"
#include "fleetd/v1/sync.pb.h"
#include "messages/error.hpp"
#include "messages/metrics_codec.hpp"
#include "messages/register.hpp"
#include "messages/wire.hpp"
#include "runtime/http_client.hpp"
#include "runtime/sqlite.hpp"
#include "ask.hpp"
#include "check_samples.hpp"

using namespace fleetd;
using test::ack_of;
using test::check_same_samples;
using namespace std::chrono_literals;

namespace fs = std::filesystem;
namespace pb = fleetd::v1;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;

constexpr const char* device_id = "ingest-dev";

metric_samples samples(size_t n) {
  metric_samples out;
  for (size_t i = 0; i < n; ++i) {
    metric_sample s;
    s.name = i % 2 == 0 ? "cpu" : "mem.free";
    if (i % 2 == 0)
      s.labels = {{"core", "0"}};
    s.timestamp_ms = clock_start_ms + static_cast<int64_t>(i);
    s.value = static_cast<double>(i) + 0.5;
    out.push_back(std::move(s));
  }
  return out;
}

/// A request body as a device sends it; zstd unless `level` is 0.
std::string body(int64_t seq, const metric_samples& xs, int level = 3) {
  encode_settings es;
  es.device_id = device_id;
  es.sequence = seq;
  es.now_ms = clock_start_ms;
  es.zstd_level = level;
  return encode_metrics_request(es, xs);
}

struct ingest_fixture : test::cloud_fixture {
  cloud_store_actor store;
  ingest_actor ing;

  explicit ingest_fixture(size_t max_decoded_bytes = 1 << 20)
    : cloud_fixture("fleetd-ingest", clock_start_ms) {
    store = spawn_cloud_store(dir.file("cloud.db"));
    ingest_config icfg;
    icfg.max_decoded_bytes = max_decoded_bytes;
    icfg.store = store;
    icfg.anonymous = true;
    ing = keep(sys->spawn(ingest, icfg));
  }

  uint16_t start_endpoint() {
    auto port = open_endpoint(ing, http_limits{});
    REQUIRE(port != 0);
    return port;
  }

  http_reply sync(const std::string& bytes, const std::string& encoding,
                  const std::string& content_type = protobuf_type) {
    return test::ask<http_reply>(*self, ing, 10s, sync_atom::value,
                                 sync_envelope{bytes, encoding, content_type,
                                               ""});
  }


  metric_samples stored() {
    return test::ask<metric_samples>(*self, store, 5s, points_atom::value,
                                     std::string{device_id});
  }


  device_infos devices() {
    return test::ask<device_infos>(*self, store, 5s, devices_atom::value);
  }


  std::map<std::string, int64_t> counters() {
    auto out = test::ask<actor_stats>(*self, ing, 5s, stats_atom::value);
    CHECK(out.name == "ingest");
    return out.counters;
  }

};

void check_refused(const http_reply& rep, uint16_t status,
                   const std::string& code) {
  CHECK(rep.status == status);
  CHECK(rep.content_type == protobuf_type);
  auto ack = ack_of(rep.body);
  CHECK_FALSE(ack.success);
  CHECK(ack.error_code == code);
  CHECK_FALSE(ack.error_message.empty());
  CHECK(ack.last_sequence_ack == 0);
  // The same code and message, for the X-Fleetd-Error header.
  CHECK(rep.error == ack.error_code + ": " + ack.error_message);
}

std::string with_checksum_flipped(const std::string& plain) {
  pb::SyncRequest req;
  REQUIRE(req.ParseFromString(plain));
  auto sum = req.metadata().checksum();
  REQUIRE(sum.size() == 8);
  sum[0] = static_cast<char>(sum[0] ^ 0x01);
  req.mutable_metadata()->set_checksum(sum);
  return req.SerializeAsString();
}

} // namespace

TEST_CASE("a good body is answered 200 with a successful SyncResponse that "
          "acks its sequence") {
  ingest_fixture f;
  auto xs = samples(6);
  SUBCASE("zstd") {
    auto rep = f.sync(body(1, xs), "zstd");
    CHECK(rep.status == 200);
    CHECK(rep.content_type == protobuf_type);
    auto ack = ack_of(rep.body);
    CHECK(ack.success);
    CHECK(ack.last_sequence_ack == 1);
    CHECK(ack.error_code.empty());
    CHECK(ack.retry_after_ms == 0);
  }
  SUBCASE("identity") {
    auto rep = f.sync(body(1, xs, 0), "identity");
    CHECK(rep.status == 200);
    CHECK(ack_of(rep.body).last_sequence_ack == 1);
  }
  SUBCASE("no Content-Encoding at all") {
    auto rep = f.sync(body(1, xs, 0), "");
    CHECK(rep.status == 200);
    CHECK(ack_of(rep.body).success);
  }
  check_same_samples(f.stored(), xs);
  auto c = f.counters();
  CHECK(c["requests"] == 1);
  CHECK(c["accepted"] == 1);
  CHECK(c["points"] == 6);
  CHECK(c["duplicates"] == 0);
  CHECK(c["store_failures"] == 0);
}

TEST_CASE("consecutive batches are acked one by one") {
  ingest_fixture f;
  for (int64_t seq = 1; seq <= 3; ++seq) {
    auto rep = f.sync(body(seq, samples(2)), "zstd");
    REQUIRE(rep.status == 200);
    CHECK(ack_of(rep.body).last_sequence_ack == seq);
  }
  CHECK(f.stored().size() == 6);
  CHECK(f.counters()["accepted"] == 3);
}

TEST_CASE("a corrupt zstd body is refused 400 decode_failed and stores "
          "nothing") {
  ingest_fixture f;
  auto good = body(1, samples(6));
  REQUIRE(is_zstd(good));
  std::string bad;
  SUBCASE("garbage after the frame header") {
    bad = good.substr(0, 6) + std::string(64, '\x5A');
  }
  SUBCASE("truncated") {
    bad = good.substr(0, good.size() / 2);
  }
  SUBCASE("plain bytes declared as zstd") {
    bad = body(1, samples(6), 0);
  }
  auto rep = f.sync(bad, "zstd");
  check_refused(rep, 400, "decode_failed");
  CHECK(f.stored().empty());
  CHECK(f.devices().empty());
  auto c = f.counters();
  CHECK(c["rejected_decode_failed"] == 1);
  CHECK(c["accepted"] == 0);
  CHECK(c["points"] == 0);
}

TEST_CASE("a checksum that does not match is refused 400 checksum_mismatch") {
  ingest_fixture f;
  auto plain = with_checksum_flipped(body(1, samples(4), 0));
  check_refused(f.sync(plain, "identity"), 400, "checksum_mismatch");
  CHECK(f.stored().empty());
  CHECK(f.devices().empty());
  CHECK(f.counters()["rejected_checksum_mismatch"] == 1);
  // The sequence was not taken: the correct batch 1 is still news.
  auto rep = f.sync(body(1, samples(4)), "zstd");
  CHECK(rep.status == 200);
  CHECK(f.stored().size() == 4);
  CHECK(f.counters()["duplicates"] == 0);
}

TEST_CASE("an unsupported Content-Encoding is refused 415 before decoding") {
  ingest_fixture f;
  for (auto enc : {"gzip", "br", "ZSTD", "zstd, gzip"}) {
    CAPTURE(enc);
    check_refused(f.sync(body(1, samples(2)), enc), 415,
                  "unsupported_encoding");
  }
  CHECK(f.stored().empty());
  auto c = f.counters();
  CHECK(c["rejected_unsupported_encoding"] == 4);
  CHECK(c["requests"] == 4);
}

TEST_CASE("a Content-Type other than protobuf is refused 415 "
          "unsupported_media_type before decoding") {
  ingest_fixture f;
  for (auto type : {"", "text/plain", "application/json",
                    "application/x-protobufs", "application/protobuf"}) {
    CAPTURE(type);
    check_refused(f.sync(body(1, samples(2)), "zstd", type), 415,
                  "unsupported_media_type");
  }
  CHECK(f.stored().empty());
  CHECK(f.counters()["rejected_unsupported_media_type"] == 5);
  // Media types are case-insensitive and may carry parameters.
  for (auto type : {"Application/X-Protobuf", "application/x-protobuf; v=1"}) {
    CAPTURE(type);
    CHECK(f.sync(body(1, samples(2)), "zstd", type).status == 200);
  }
}

TEST_CASE("store errors: a refusal when retrying cannot help, 503 only when "
          "the store may recover") {
  CHECK(store_error_status(make_error(ec::invalid_record)) == 422);
  CHECK(store_error_status(make_error(ec::bad_sequence)) == 409);
  CHECK(store_error_status(make_error(ec::session_out_of_sync)) == 409);
  CHECK(store_error_status(make_error(ec::decode_failed)) == 400);
  CHECK(store_error_status(make_error(ec::checksum_mismatch)) == 400);
  CHECK(store_error_status(make_error(ec::too_large)) == 413);
  // Busy, disk full, I/O, a store gone or slow: the device retries.
  CHECK(store_error_status(make_error(ec::storage_failed)) == 503);
  CHECK(store_error_status(make_error(ec::disk_full)) == 503);
  CHECK(store_error_status(make_error(ec::io_error)) == 503);
  CHECK(store_error_status(make_error(ec::timeout)) == 503);
  CHECK(store_error_status(caf::make_error(caf::sec::request_timeout)) == 503);
}

TEST_CASE("one mapping from outcome to status: ok 200; whatever the body did "
          "wrong a refusal; only the store's own trouble 503") {
  CHECK(http_status(ingest_step::store, caf::none) == 200);
  CHECK(http_status(ingest_step::decode, make_error(ec::unsupported_media_type))
        == 415);
  CHECK(http_status(ingest_step::decode, make_error(ec::unsupported_encoding))
        == 415);
  CHECK(http_status(ingest_step::decode, make_error(ec::too_large)) == 413);
  // A bad sequence in the body is malformed; against the store, a conflict.
  CHECK(http_status(ingest_step::decode, make_error(ec::bad_sequence)) == 400);
  CHECK(http_status(ingest_step::store, make_error(ec::bad_sequence)) == 409);
  CHECK(http_status(ingest_step::decode, make_error(ec::unknown_stream)) == 400);
  CHECK(http_status(ingest_step::store, make_error(ec::disk_full)) == 503);
}

TEST_CASE("a batch the store refuses by a constraint is answered 422 "
          "invalid_record, not 503: the device counts it and moves on") {
  ingest_fixture f;
  {
    auto db = sqlite::database::open(f.dir.file("cloud.db"));
    REQUIRE(db);
    REQUIRE_FALSE(db->exec("CREATE TRIGGER refuse BEFORE INSERT ON points "
                           "BEGIN SELECT RAISE(ABORT, 'refused by test'); "
                           "END;"));
  }
  check_refused(f.sync(body(1, samples(2)), "zstd"), 422, "invalid_record");
  CHECK(f.stored().empty());
  auto c = f.counters();
  CHECK(c["rejected_invalid_record"] == 1);
  CHECK(c["store_failures"] == 0);
}

TEST_CASE("a log line or event text with a NUL byte or invalid UTF-8 is "
          "stored with '?' for those bytes, counted, on any store") {
  ingest_fixture f;
  encode_settings es;
  es.device_id = device_id;
  es.sequence = 1;
  es.now_ms = clock_start_ms;
  event_records ev(1);
  ev[0].kind = "boot";
  ev[0].message = "caf\xE9";
  auto rep = f.sync(encode_logs_request(es, {{{}, 1, std::string("a\0b", 3)}}),
                    "zstd");
  CHECK(rep.status == 200);
  CHECK(f.sync(encode_events_request(es, ev), "zstd").status == 200);
  auto logs = test::ask<log_lines>(*f.self, f.store, 5s, logs_atom::value,
                                   std::string{device_id});
  REQUIRE(logs.size() == 1);
  CHECK(logs[0].line == "a?b");
  auto events = test::ask<event_records>(*f.self, f.store, 5s,
                                         events_atom::value,
                                         std::string{device_id});
  REQUIRE(events.size() == 1);
  CHECK(events[0].message == "caf?");
  CHECK(f.counters()["texts_repaired"] == 2);
}

TEST_CASE("NaN, infinities and -0.0 are acked 200 and stored bit for bit") {
  ingest_fixture f;
  auto xs = test::special_samples(clock_start_ms);
  auto rep = f.sync(body(1, xs), "zstd");
  CHECK(rep.status == 200);
  CHECK(rep.error.empty());
  check_same_samples(f.stored(), xs, true);
}

TEST_CASE("a body that decodes beyond the limit is refused 413 too_large") {
  ingest_fixture f{2048};
  auto big = body(1, samples(400));
  REQUIRE(big.size() < 2048);
  check_refused(f.sync(big, "zstd"), 413, "too_large");
  CHECK(f.stored().empty());
  CHECK(f.counters()["rejected_too_large"] == 1);
}

TEST_CASE("sequence zero is refused 400 bad_sequence") {
  ingest_fixture f;
  check_refused(f.sync(body(0, samples(2)), "zstd"), 400, "bad_sequence");
  CHECK(f.stored().empty());
}

TEST_CASE("stats count every rejection by its reason") {
  ingest_fixture f;
  f.sync(body(1, samples(2)), "zstd");
  f.sync("\x28\xB5\x2F\xFD garbage", "zstd");
  f.sync("\x28\xB5\x2F\xFD more garbage", "zstd");
  f.sync(with_checksum_flipped(body(2, samples(2), 0)), "");
  f.sync(body(2, samples(2)), "deflate");
  f.sync(body(0, samples(2)), "zstd");
  f.sync(body(1, samples(2)), "zstd");
  auto c = f.counters();
  CHECK(c["requests"] == 7);
  CHECK(c["accepted"] == 1);
  CHECK(c["duplicates"] == 1);
  CHECK(c["points"] == 2);
  CHECK(c["rejected_decode_failed"] == 2);
  CHECK(c["rejected_checksum_mismatch"] == 1);
  CHECK(c["rejected_unsupported_encoding"] == 1);
  CHECK(c["rejected_bad_sequence"] == 1);
  CHECK(c.count("rejected_too_large") == 0);
}

TEST_CASE("a duplicate is answered 200 with the same ack and stored once") {
  ingest_fixture f;
  auto xs = samples(5);
  auto b1 = body(1, xs);
  auto first = f.sync(b1, "zstd");
  REQUIRE(first.status == 200);
  auto again = f.sync(b1, "zstd");
  CHECK(again.status == 200);
  auto a1 = ack_of(first.body);
  auto a2 = ack_of(again.body);
  CHECK(a2.success);
  CHECK(a2.last_sequence_ack == a1.last_sequence_ack);
  CHECK(a2.last_sequence_ack == 1);
  check_same_samples(f.stored(), xs);
  SUBCASE("an old duplicate is acked with the latest sequence") {
    REQUIRE(f.sync(body(2, samples(1)), "zstd").status == 200);
    auto old = ack_of(f.sync(b1, "zstd").body);
    CHECK(old.success);
    CHECK(old.last_sequence_ack == 2);
    CHECK(f.stored().size() == 6);
  }
  auto c = f.counters();
  CHECK(c["duplicates"] >= 1);
  CHECK(c["points"] == static_cast<int64_t>(f.stored().size()));
  auto ds = f.devices();
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].duplicates == c["duplicates"]);
}

TEST_CASE("a store that is gone is answered 503 store_unavailable with a "
          "retry delay") {
  ingest_fixture f;
  (*f.self)->send_exit(f.store, caf::exit_reason::user_shutdown);
  (*f.self)->wait_for(f.store);
  auto rep = f.sync(body(1, samples(2)), "zstd");
  CHECK(rep.status == 503);
  auto ack = ack_of(rep.body);
  CHECK_FALSE(ack.success);
  CHECK(ack.error_code == "store_unavailable");
  CHECK(ack.retry_after_ms > 0);
  CHECK(f.counters()["store_failures"] == 1);
}

TEST_CASE("a full journal is answered 503 journal_full with the configured "
          "retry_after_ms over HTTP, and the batch is not acked") {
  test::cloud_fixture f{"fleetd-ingest", clock_start_ms};
  journal_config j;
  j.enabled = true;
  // The first batch fits; the journal then holds more than the bound.
  j.max_bytes = 1;
  auto store = f.spawn_cloud_store(f.dir.file("cloud.db"), j);
  ingest_config icfg;
  icfg.store = store;
  icfg.anonymous = true;
  icfg.journal_retry_after_ms = 7000;
  auto port = f.open_endpoint(f.keep(f.sys->spawn(ingest, icfg)), {});
  http_client client{"127.0.0.1", port, 5s, 1 << 20};
  std::vector<std::pair<std::string, std::string>> headers{
    {"Content-Type", protobuf_type}, {"Content-Encoding", "zstd"}};
  auto res = client.post("/v1/sync", body(1, samples(4)), headers);
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 200);
  res = client.post("/v1/sync", body(2, samples(4)), headers);
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 503);
  auto ack = ack_of(res->body);
  CHECK_FALSE(ack.success);
  CHECK(ack.error_code == "journal_full");
  CHECK(ack.retry_after_ms == 7000);
  auto ds = test::ask<device_infos>(*f.self, store, 5s, devices_atom::value);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].last_acked_sequence == 1);
}

TEST_CASE("the endpoint serves POST /v1/sync over HTTP with the ingest "
          "actor's answers") {
  ingest_fixture f;
  auto port = f.start_endpoint();
  http_client client{"127.0.0.1", port, 5s, 1 << 20};
  std::vector<std::pair<std::string, std::string>> zstd_headers{
    {"Content-Type", protobuf_type}, {"Content-Encoding", "zstd"}};
  auto xs = samples(8);
  auto res = client.post("/v1/sync", body(1, xs), zstd_headers);
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 200);
  CHECK(res->content_type == protobuf_type);
  auto ack = ack_of(res->body);
  CHECK(ack.success);
  CHECK(ack.last_sequence_ack == 1);
  check_same_samples(f.stored(), xs);
  // The same connection carries the next requests (keep-alive).
  res = client.post("/v1/sync", body(1, xs), zstd_headers);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(ack_of(res->body).last_sequence_ack == 1);
  CHECK(f.stored().size() == xs.size());
  res = client.post("/v1/sync", "\x28\xB5\x2F\xFD garbage!", zstd_headers);
  REQUIRE(res);
  CHECK(res->status == 400);
  CHECK(ack_of(res->body).error_code == "decode_failed");
  res = client.post("/v1/sync", body(2, xs),
                    {{"Content-Type", protobuf_type},
                     {"Content-Encoding", "gzip"}});
  REQUIRE(res);
  CHECK(res->status == 415);
  CHECK(ack_of(res->body).error_code == "unsupported_encoding");
  res = client.post("/v1/other", body(2, xs), zstd_headers);
  REQUIRE(res);
  CHECK(res->status == 404);
  CHECK(client.connects() == 1);
  auto c = f.counters();
  CHECK(c["requests"] == 4);
  CHECK(c["accepted"] == 1);
  CHECK(c["duplicates"] == 1);
  CHECK(c["rejected_decode_failed"] == 1);
  CHECK(c["rejected_unsupported_encoding"] == 1);
  CHECK(f.endpoint->counters().requests >= 5);
}

TEST_CASE("the ingest actor and endpoint refuse configs that cannot work, "
          "naming the option") {
  ingest_config ic;
  CHECK(!validate(ic));
  ic.max_decoded_bytes = 0;
  auto reason = test::exit_reason_of(ingest, ic);
  CHECK(reason == ec::bad_config);
  CHECK(render(reason).find("ingest.max-decoded-bytes") != std::string::npos);
  ingest_endpoint_config ec_ok;
  // HTTPS needs a certificate; plain HTTP is for loopback only.
  CHECK(render(validate(ec_ok)).find("ingest.tls-cert") != std::string::npos);
  ec_ok.insecure = true;
  CHECK(!validate(ec_ok));
  auto exposed = ec_ok;
  exposed.host = "0.0.0.0";
  CHECK(render(validate(exposed)).find("ingest.insecure") != std::string::npos);
  auto limits = ec_ok.limits();
  CHECK(limits.max_body_bytes == 8u * 1024 * 1024);
  CHECK(limits.max_connections == 1024u);
  auto bad = ec_ok;
  bad.port = 70000;
  CHECK(render(validate(bad)).find("ingest.port") != std::string::npos);
  bad = ec_ok;
  bad.read_timeout = 0ms;
  CHECK(render(validate(bad)).find("ingest.read-timeout") != std::string::npos);
}

TEST_CASE("a columnar batch is decoded in the store under what the request "
          "left of its budget: one budget for the whole request") {
  // 2,000 points of one series with 1 KiB of labels: about 1 KiB on the
  // wire (constant values, the series defined once), about 2.2 MB decoded.
  metric_samples xs;
  for (int i = 0; i < 2000; ++i)
    xs.push_back(metric_sample{"m", {{"big", std::string(1024, 'x')}},
                               clock_start_ms + i, 1.0});
  auto columnar = encode_columnar(xs, codec_context{});
  encode_settings es;
  es.device_id = device_id;
  es.sequence = 1;
  es.now_ms = clock_start_ms;
  auto req = encode_columnar_request(es, columnar);
  REQUIRE(req.size() < 64 * 1024);
  SUBCASE("a budget of 1 MiB: the request decodes, the batch does not") {
    ingest_fixture f{1 << 20};
    check_refused(f.sync(req, "zstd"), 413, "too_large");
    CHECK(f.stored().empty());
    CHECK(f.counters()["rejected_too_large"] == 1);
    CHECK(f.counters()["store_failures"] == 0);
  }
  SUBCASE("a budget of 4 MiB holds it all") {
    ingest_fixture f{4 << 20};
    auto rep = f.sync(req, "zstd");
    CHECK(rep.status == 200);
    check_same_samples(f.stored(), xs, true);
  }
}

TEST_CASE("the minimal sender profile is stored: base-0 batches in a row, "
          "each self-contained (wire test vectors 01 and 02)") {
  ingest_fixture f;
  auto dir = std::string(FLEETD_SOURCE_DIR) + "/tests/data/wire-vectors/";
  size_t total = 0;
  for (auto name : {"01-minimal-profile", "02-minimal-profile-again"}) {
    CAPTURE(name);
    std::ifstream in(dir + name + ".body", std::ios::binary);
    std::string body((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    REQUIRE(!body.empty());
    auto rep = f.sync(body, "identity");
    CHECK(rep.status == 200);
    auto ack = ack_of(rep.body);
    CHECK(ack.success);
    auto req = decode_request(body, false, 1 << 20);
    REQUIRE(req);
    codec_context fresh;
    auto xs = decode_columnar(req->columnar, fresh);
    REQUIRE(xs);
    total += xs->size();
  }
  auto devs = f.devices();
  REQUIRE(devs.size() == 1);
  CHECK(devs[0].points_received == static_cast<int64_t>(total));
  CHECK(total == 24);
}
