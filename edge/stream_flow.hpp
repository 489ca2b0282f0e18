#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace fleetd {

/// Records of one stream the collectors handed to storage (collected) and
/// those it accepted (stored): what a device declares beside its drops.
struct stream_flow {
  int64_t collected = 0;
  int64_t stored = 0;

  bool operator==(const stream_flow& y) const {
    return collected == y.collected && stored == y.stored;
  }
};

/// The flow of every stream, counted since the store named `epoch` began
/// (the origin of the device's declarations).
struct flow_counts {
  std::string epoch;
  std::map<std::string, stream_flow> streams;

  bool operator==(const flow_counts& y) const {
    return epoch == y.epoch && streams == y.streams;
  }
  bool operator!=(const flow_counts& y) const {
    return !(*this == y);
  }
};

/// Adds to the counts of `stream`; counts of another epoch start from 0.
void count_flow(flow_counts& x, const std::string& epoch,
                const std::string& stream, int64_t collected, int64_t stored);

/// As a store keeps it: "epoch\nstream collected stored\n...".
std::string encode_flow(const flow_counts& x);

/// What encode_flow made; empty counts when `text` is anything else (a
/// garbled row counts afresh rather than failing the store).
flow_counts decode_flow(const std::string& text);

} // namespace fleetd
