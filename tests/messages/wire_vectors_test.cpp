// The wire-format test vectors (tests/data/wire-vectors, made by
// wire_vectors_gen): every body decodes to exactly the records, digests and
// refusals written beside it, as a second implementation must.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "wire_vectors.hpp"

using namespace fleetd;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t budget = 64 * 1024 * 1024;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// The value of a `key value` line of an expect file; empty when absent.
std::string field(const std::string& expect, const std::string& key) {
  std::istringstream in(expect);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + " ", 0) == 0)
      return line.substr(key.size() + 1);
  return {};
}

// The record lines of an expect file.
std::string records(const std::string& expect) {
  std::istringstream in(expect);
  std::string line, out;
  while (std::getline(in, line))
    for (auto kind : {"metric ", "log ", "event "})
      if (line.rfind(kind, 0) == 0)
        out += line + "\n";
  return out;
}

} // namespace

TEST_CASE("every wire test vector decodes to what is written beside it") {
  fs::path dir = fs::path(FLEETD_SOURCE_DIR) / "tests/data/wire-vectors";
  std::vector<fs::path> bodies;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".body")
      bodies.push_back(e.path());
  std::sort(bodies.begin(), bodies.end());
  REQUIRE(bodies.size() >= 12);
  std::map<std::string, codec_context> sessions;
  size_t refused = 0, decoded_records = 0;
  for (auto& path : bodies) {
    CAPTURE(path.filename().string());
    auto body = slurp(path);
    auto expect = slurp(fs::path(path).replace_extension(".expect"));
    REQUIRE(!expect.empty());
    CHECK(body.size() <= 64 * 1024);
    auto zstd = field(expect, "content-encoding") == "zstd";
    auto want_refusal = field(expect, "refused");
    auto req = decode_request(body, zstd, budget);
    if (!req) {
      CHECK(to_string(static_cast<ec>(req.error().code())) == want_refusal);
      ++refused;
      continue;
    }
    metric_samples xs = req->samples;
    if (!req->columnar.empty()) {
      auto& ctx = sessions[field(expect, "session")];
      auto base = columnar_base(req->columnar);
      // A receiver starts the session afresh on base 0 (as the cloud does).
      if (base && *base == 0)
        ctx.clear();
      CHECK(test::u64_hex(ctx.digest()) == field(expect, "digest-before"));
      decode_budget b{req->decode_budget};
      auto got = decode_columnar(req->columnar, ctx, b);
      if (!got) {
        CHECK(to_string(static_cast<ec>(got.error().code())) == want_refusal);
        ++refused;
        continue;
      }
      xs = std::move(*got);
      CHECK(test::u64_hex(ctx.digest()) == field(expect, "digest-after"));
    }
    CHECK(want_refusal.empty());
    CHECK(req->stream == field(expect, "stream"));
    CHECK(std::to_string(req->sequence) == field(expect, "sequence"));
    CHECK(req->epoch == field(expect, "epoch"));
    auto got = test::records_text(*req, xs);
    CHECK(got == records(expect));
    CHECK(!got.empty());
    decoded_records += xs.size() + req->logs.size() + req->events.size();
  }
  CHECK(refused == 5);
  MESSAGE(bodies.size(), " vectors, ", decoded_records, " records, ", refused,
          " refusals");
}

TEST_CASE("the empty session's digest is the one the format names") {
  // docs/wire-format.md: a base-0 batch carries XXH3-64 of nothing, seed 0.
  CHECK(test::u64_hex(codec_context{}.digest()) == "2d06800538d394c2");
}
