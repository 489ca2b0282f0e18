#pragma once

// Assertions (and a sample helper) that suites of several folders share.

#include <cstdint>
#include <cstring>
#include <vector>

#include <doctest/doctest.h>

#include "messages/types.hpp"

namespace fleetd::test {

/// Same samples in the same order; `exact_bits` compares values bit for bit
/// (NaN payloads, -0.0) instead of by ==.
inline void check_same_samples(const metric_samples& got,
                               const metric_samples& want,
                               bool exact_bits = false) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].labels == want[i].labels);
    CHECK(got[i].timestamp_ms == want[i].timestamp_ms);
    if (exact_bits) {
      uint64_t a;
      uint64_t b;
      std::memcpy(&a, &got[i].value, sizeof(a));
      std::memcpy(&b, &want[i].value, sizeof(b));
      CHECK(a == b);
    } else {
      CHECK(got[i].value == want[i].value);
    }
  }
}

/// The samples of `parts`, one after another.
inline metric_samples concat(const std::vector<metric_samples>& parts) {
  metric_samples out;
  for (auto& p : parts)
    out.insert(out.end(), p.begin(), p.end());
  return out;
}

} // namespace fleetd::test
