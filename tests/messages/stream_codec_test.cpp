// The sync stream's frames: compression against earlier frames, framing,
// answer frames, and every way a receiver refuses hostile input.
#include <doctest/doctest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <zstd.h>

#include "messages/error.hpp"
#include "messages/stream_codec.hpp"
#include "messages/varint.hpp"

using namespace fleetd;

namespace {

bool has_code(const caf::error& err, ec code) {
  return err.category() == caf::atom("fleetd")
         && err.code() == static_cast<uint8_t>(code);
}

// A round's worth of text that repeats from one round to the next.
std::string round_text(int round) {
  std::string out;
  for (int i = 0; i < 10; ++i)
    out += "load round " + std::to_string(round) + " line " + std::to_string(i)
           + " job=fleetd_load device=footprint\n";
  return out;
}

// The payload of a whole frame (its prefix checked).
std::string_view payload_of(const std::string& framed) {
  size_t at = 0;
  auto end = frame_end(framed, framed.size(), at);
  REQUIRE(end);
  REQUIRE(*end == framed.size());
  return std::string_view(framed).substr(at);
}

} // namespace

TEST_CASE("frames decode in order to what was sent, later ones smaller "
          "than one compressed alone") {
  stream_compressor tx{3};
  stream_decompressor rx;
  size_t first = 0;
  size_t last = 0;
  for (int round = 1; round <= 20; ++round) {
    auto plain = round_text(round);
    auto framed = tx.frame(plain);
    REQUIRE(framed);
    auto back = rx.decode(payload_of(*framed), 1 << 20);
    REQUIRE_MESSAGE(back, render(back.error()));
    CHECK(*back == plain);
    (round == 1 ? first : last) = framed->size();
  }
  std::string alone(ZSTD_compressBound(round_text(20).size()), '\0');
  alone.resize(ZSTD_compress(alone.data(), alone.size(), round_text(20).data(),
                             round_text(20).size(), 3));
  INFO("first " << first << ", last " << last << ", alone " << alone.size());
  CHECK(last * 2 < alone.size());
  CHECK(last < first);
}

TEST_CASE("frame_end waits for a whole frame and refuses bad or oversized "
          "lengths") {
  std::string framed;
  put_varint(framed, 300);
  framed += std::string(300, 'x');
  size_t at = 0;
  for (size_t n : {size_t{0}, size_t{1}, size_t{2}, size_t{100}, size_t{301}}) {
    auto end = frame_end(std::string_view(framed).substr(0, n), 1000, at);
    REQUIRE(end);
    CHECK(*end == 0);
  }
  auto end = frame_end(framed, 1000, at);
  REQUIRE(end);
  CHECK(*end == framed.size());
  CHECK(at == 2);
  auto big = frame_end(framed, 299, at);
  REQUIRE(!big);
  CHECK(has_code(big.error(), ec::too_large));
  // Ten bytes of continuation: longer than any varint.
  auto bad = frame_end(std::string(10, '\xff'), 1000, at);
  REQUIRE(!bad);
  CHECK(has_code(bad.error(), ec::decode_failed));
}

TEST_CASE("the decoder refuses more than its plain limit") {
  stream_compressor tx{3};
  stream_decompressor rx;
  auto framed = tx.frame(std::string(100000, 'a'));
  REQUIRE(framed);
  auto back = rx.decode(payload_of(*framed), 99999);
  REQUIRE(!back);
  CHECK(has_code(back.error(), ec::too_large));
}

TEST_CASE("the decoder refuses a window larger than the stream's") {
  // A zstd frame whose header asks for a 1 MiB window.
  std::string plain(2 << 20, '\0');
  std::mt19937_64 rng(7);
  for (auto& ch : plain)
    ch = static_cast<char>(rng() % 4);
  auto* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, 20);
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  out.resize(ZSTD_compress2(cctx, out.data(), out.size(), plain.data(),
                            plain.size()));
  ZSTD_freeCCtx(cctx);
  stream_decompressor rx;
  auto back = rx.decode(out, 4 << 20);
  REQUIRE(!back);
  CHECK(has_code(back.error(), ec::decode_failed));
}

TEST_CASE("an empty payload is refused") {
  stream_decompressor rx;
  auto back = rx.decode("", 1024);
  REQUIRE(!back);
  CHECK(has_code(back.error(), ec::decode_failed));
}

TEST_CASE("answer frames round-trip and garbage is refused") {
  http_reply rep;
  rep.status = 409;
  rep.content_type = "application/x-protobuf";
  rep.error = "session_out_of_sync: reset";
  rep.body = std::string("\0\1\2", 3);
  auto framed = encode_answer_frame(rep, "2");
  auto back = decode_answer_frame(payload_of(framed));
  REQUIRE(back);
  CHECK(back->status == 409);
  CHECK(back->content_type == rep.content_type);
  CHECK(back->error == rep.error);
  CHECK(back->retry_after == "2");
  CHECK(back->body == rep.body);
  auto payload = std::string(payload_of(framed));
  for (size_t n = 0; n < payload.size(); ++n)
    CHECK(!decode_answer_frame(payload.substr(0, n)));
  CHECK(!decode_answer_frame(payload + "x"));
  std::string bad_status;
  put_varint(bad_status, 42);
  CHECK(!decode_answer_frame(bad_status + std::string(4, '\0')));
}

// Random and mutated payloads (FLEETD_STREAM_FUZZ=N for more): never a
// crash, never more than the limit, every refusal a decode error.
TEST_CASE("fuzz: hostile frames never crash or exceed the limit") {
  size_t rounds = 100000;
  if (auto* env = std::getenv("FLEETD_STREAM_FUZZ"))
    rounds = std::strtoull(env, nullptr, 10);
  std::mt19937_64 rng(20261206);
  stream_compressor tx{3};
  std::vector<std::string> good;
  for (int round = 1; round <= 8; ++round) {
    auto framed = tx.frame(round_text(round));
    REQUIRE(framed);
    good.emplace_back(payload_of(*framed));
  }
  size_t refused = 0;
  for (size_t i = 0; i < rounds; ++i) {
    stream_decompressor rx;
    // A good first frame or not, then a mutated or random one.
    if (rng() % 2 == 0)
      REQUIRE(rx.decode(good[0], 1 << 16));
    std::string x;
    if (rng() % 3 == 0) {
      x.resize(rng() % 64);
      for (auto& ch : x)
        ch = static_cast<char>(rng());
    } else {
      x = good[rng() % good.size()];
      auto flips = 1 + rng() % 4;
      for (size_t f = 0; f < flips && !x.empty(); ++f)
        x[rng() % x.size()] = static_cast<char>(rng());
      if (rng() % 4 == 0)
        x.resize(rng() % (x.size() + 1));
    }
    auto back = rx.decode(x, 4096);
    if (back)
      CHECK(back->size() <= 4096);
    else
      ++refused;
    size_t at = 0;
    (void) frame_end(x, 4096, at);
    (void) decode_answer_frame(x);
  }
  INFO("refused " << refused << " of " << rounds);
  CHECK(refused > rounds / 2);
}
