// The collected and stored counts a store keeps: counted per stream under
// one epoch, kept as text and read back; anything garbled reads as none.
#include "edge/stream_flow.hpp"

#include <doctest/doctest.h>

#include "fuzz.hpp"

using namespace fleetd;

TEST_CASE("flow counts: per stream, afresh under a new epoch, kept as text") {
  flow_counts x;
  count_flow(x, "e1", "metrics", 10, 0);
  count_flow(x, "e1", "metrics", 0, 9);
  count_flow(x, "e1", "logs", 3, 3);
  CHECK(x.streams["metrics"] == stream_flow{10, 9});
  CHECK(decode_flow(encode_flow(x)) == x);
  count_flow(x, "e2", "events", 1, 1);
  CHECK(x.epoch == "e2");
  CHECK(x.streams.size() == 1);
  CHECK(decode_flow(encode_flow(x)) == x);
  CHECK(decode_flow(encode_flow(flow_counts{"e3", {}})).epoch == "e3");
}

TEST_CASE("flow counts read back from garbage are none, never wrong") {
  for (const char* bad :
       {"", "\n", "e1\nmetrics 1", "e1\n\n", "e1\nmetrics -1 0\n", "e1\nmetrics 1 2\n",
        "e1\nnope 1 1\n", "e1\nmetrics x y\n", "e1\nmetrics 1 1 junk\n"}) {
    CAPTURE(bad);
    CHECK(decode_flow(bad) == flow_counts{});
  }
  flow_counts x;
  count_flow(x, "epoch-1", "metrics", 100, 90);
  auto text = encode_flow(x);
  std::mt19937_64 rng{16};
  for (long i = 0; i < test::fuzz_iterations(2000); ++i) {
    auto y = decode_flow(test::mutate(text, " \n-0123456789metrics", rng));
    for (auto& [stream, f] : y.streams) {
      CHECK(f.collected >= 0);
      CHECK(f.stored >= 0);
      CHECK(f.stored <= f.collected);
    }
  }
}
