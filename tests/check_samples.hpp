#pragma once

// Assertions (and a sample helper) that suites of several folders share.

#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "messages/types.hpp"

namespace fleetd::test {

/// One sample of series `name`{`labels`} at `ts` (ms).
inline metric_sample sample(std::string name, label_map labels, int64_t ts,
                            double v) {
  metric_sample s;
  s.name = std::move(name);
  s.labels = std::move(labels);
  s.timestamp_ms = ts;
  s.value = v;
  return s;
}

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
      CHECK(bits_of(got[i].value) == bits_of(want[i].value));
    } else {
      CHECK(got[i].value == want[i].value);
    }
  }
}

/// A quiet NaN with a payload (0x5ca1ab1e), as a device may send one.
constexpr uint64_t nan_with_payload = 0x7ff800005ca1ab1eULL;

/// Values a REAL column loses or refuses: NaN with a payload, a negative
/// NaN, +Inf, -Inf and -0.0, one series each, timestamps from `first_ts`.
inline metric_samples special_samples(int64_t first_ts) {
  const double values[] = {double_of(nan_with_payload),
                           double_of(0xfff0000000000001ULL), // signalling, -
                           double_of(0x7ff0000000000000ULL), // +Inf
                           double_of(0xfff0000000000000ULL), // -Inf
                           double_of(0x8000000000000000ULL), // -0.0
                           1.5};
  metric_samples out;
  for (size_t i = 0; i < std::size(values); ++i) {
    metric_sample s;
    s.name = "special";
    s.labels = {{"kind", std::to_string(i)}};
    s.timestamp_ms = first_ts + static_cast<int64_t>(i);
    s.value = values[i];
    out.push_back(std::move(s));
  }
  return out;
}

/// The samples of `parts`, one after another.
inline metric_samples concat(const std::vector<metric_samples>& parts) {
  metric_samples out;
  for (auto& p : parts)
    out.insert(out.end(), p.begin(), p.end());
  return out;
}

} // namespace fleetd::test
