#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/typed_response_promise.hpp>

#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

struct sync_now_config {
  storage_actor storage;
  /// The sync actors (their relays), by name ("sync_metrics", ...).
  std::vector<std::pair<std::string, sync_actor>> syncs;
  clock_ptr clock;
  /// How long a request waits for the acks when it names no timeout.
  std::chrono::milliseconds timeout{30000};
  /// How often it looks whether everything went.
  std::chrono::milliseconds poll{50};
};

class option_set;

/// Declares sync.now-timeout.
void declare(option_set& opts, sync_now_config& x);

/// bad_config naming the option key when `x` cannot work.
caf::error validate(const sync_now_config& x);

/// The largest timeout of one request: the console forwards for 60 s.
constexpr std::chrono::milliseconds max_sync_now_timeout{55000};

/// One `sync now` being answered.
struct sync_now_request {
  caf::typed_response_promise<debug_report> promise;
  int64_t started_ms = 0;
  int64_t deadline_ms = 0;
  /// Each sync actor's statistics when the request came.
  std::map<std::string, actor_stats> before;
  /// The answers of the look in progress.
  std::map<std::string, actor_stats> now;
  actor_stats storage;
  size_t waiting = 0;
  /// The figures before are taken and the rounds asked for.
  bool started = false;
  /// The wait before the next look (from `poll`, doubling to 250 ms).
  std::chrono::milliseconds poll{50};
};

struct sync_now_state {
  sync_now_config cfg;
  std::map<int64_t, std::shared_ptr<sync_now_request>> open;
  int64_t next_id = 1;
  int64_t requests = 0, acked = 0, timed_out = 0;
  static inline const char* name = "sync_now";
};

/// Answers `debug "sync now [timeout ms]"`: tells every sync actor to run
/// a round now (send what is pending, cut a batch of what is not), then
/// looks (from `poll`, backing off to 250 ms; the store only once no sync
/// actor is busy) until the store has no queued batch and each stream has
/// sent what it held (its actor not busy, nothing left unbatched or a new
/// batch acked), and says per stream what went ("acked": true). Past the
/// timeout the same report with "acked": false, its text led by "sync now:
/// timed out after N ms". No sync actor: answered at once.
sync_now_actor::behavior_type
sync_now(sync_now_actor::stateful_pointer<sync_now_state> self,
         sync_now_config cfg);

} // namespace fleetd
