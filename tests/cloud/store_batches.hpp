#pragma once

// Batches and samples the cloud store suites share (embedded_store_test,
// store_contract_test).

#include <string>
#include <vector>

#include "messages/types.hpp"
#include "messages/wire.hpp"

namespace fleetd::test {

constexpr int64_t store_clock_start_ms = 1'700'000'000'000;

/// `n` samples of two series; `tag` makes the values of each batch unique.
inline metric_samples samples(size_t n, double tag) {
  metric_samples out;
  for (size_t i = 0; i < n; ++i) {
    metric_sample s;
    s.name = i % 2 == 0 ? "cpu" : "load1";
    if (i % 2 == 0)
      s.labels = {{"core", "0"}, {"mode", "idle"}};
    s.timestamp_ms = store_clock_start_ms + static_cast<int64_t>(i);
    s.value = tag * 1000 + static_cast<double>(i);
    out.push_back(std::move(s));
  }
  return out;
}

/// A columnar metrics batch as ingest hands it over (checksum of the bytes).
inline ingest_batch columnar_batch(std::string device, std::string epoch,
                            int64_t seq, std::string bytes) {
  ingest_batch b;
  b.device_id = std::move(device);
  b.stream = metrics_stream;
  b.epoch = std::move(epoch);
  b.sequence = seq;
  b.checksum = batch_checksum(bytes);
  b.columnar = std::move(bytes);
  return b;
}

/// Samples of the series `names`, one point each; `tag` tells batches apart.
inline metric_samples of_series(const std::vector<std::string>& names, double tag) {
  metric_samples out;
  for (size_t i = 0; i < names.size(); ++i) {
    metric_sample s;
    s.name = names[i];
    s.labels = {{"host", "h1"}};
    s.timestamp_ms = store_clock_start_ms + static_cast<int64_t>(tag) * 1000;
    s.value = tag * 10 + static_cast<double>(i);
    out.push_back(std::move(s));
  }
  return out;
}

/// Batch `seq` of `device` ("org/device"): 2 plain samples, its own checksum.
inline ingest_batch journal_batch(const std::string& device, int64_t seq,
                                  size_t points = 2) {
  ingest_batch b;
  b.device_id = device;
  b.stream = metrics_stream;
  b.epoch = "e1";
  b.sequence = seq;
  b.checksum = "sum" + std::to_string(seq);
  b.samples = samples(points, static_cast<double>(seq));
  return b;
}

} // namespace fleetd::test
