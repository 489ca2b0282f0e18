#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>

#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

struct sync_config {
  std::string device_id;
  std::string stream;
  std::chrono::milliseconds interval{10000};
  int64_t batch_size = 1000;
  int zstd_level = 3;
  std::chrono::milliseconds backoff_base{1000};
  std::chrono::milliseconds backoff_cap{300000};
  /// How long one request may take before the round counts as failed.
  std::chrono::milliseconds request_timeout{15000};
  uint64_t seed = 0;
  clock_ptr clock;
  storage_actor storage;
  cloud_link_actor link;
};

/// Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^n)].
std::chrono::milliseconds backoff_delay(std::chrono::milliseconds base,
                                        std::chrono::milliseconds cap,
                                        int64_t failures, std::minstd_rand& rng);

struct sync_state {
  sync_config cfg;
  std::minstd_rand rng;
  /// A round is running: only one batch is in flight per stream.
  bool busy = false;
  /// Identifies the one timer that may start the next round.
  int64_t generation = 0;
  int64_t consecutive_failures = 0;
  int64_t batches_sent = 0;
  int64_t batches_acked = 0;
  int64_t points_synced = 0;
  int64_t send_failures = 0;
  int64_t duplicates_acked = 0;
  int64_t last_acked_sequence = 0;
  int64_t bytes_sent = 0;
  std::string last_error;
  static inline const char* name = "sync";
};

/// Moves one stream from storage to the cloud: cut a batch, persist it in
/// sync_queue, send, delete on ack; on failure back off and resend the same
/// bytes. Batches go out one at a time, lowest sequence first.
sync_actor::behavior_type sync(sync_actor::stateful_pointer<sync_state> self,
                               sync_config cfg);

} // namespace fleetd
