#pragma once

// A storage_actor behavior for tests of actors that talk to storage: the
// caller gives the four handlers its test is about (storing samples, events,
// debug, stats); every other request gets an empty, successful answer.

#include <caf/typed_event_based_actor.hpp>

#include "messages/interfaces.hpp"

namespace fleetd::test {

template <class Store, class Event, class Debug, class Stats>
storage_actor::behavior_type fake_storage_behavior(Store store, Event event,
                                                   Debug debug, Stats stats) {
  return {
    std::move(store),
    std::move(event),
    std::move(debug),
    std::move(stats),
    [](store_atom, const log_lines& xs) {
      return static_cast<int64_t>(xs.size());
    },
    [](store_atom, const log_lines& xs, const source_cursors&) {
      return static_cast<int64_t>(xs.size());
    },
    [](cursor_atom) { return source_cursors{}; },
    [](store_atom, const event_records& xs) {
      return static_cast<int64_t>(xs.size());
    },
    [](fetch_atom, const std::string&, int64_t, int64_t) {
      return unbatched_points{};
    },
    [](enqueue_atom, const queued_batch&) { return int64_t{0}; },
    [](pending_atom, const std::string&, int64_t) { return queued_batches{}; },
    [](ack_atom, const acked_batch&) { return int64_t{0}; },
    [](discard_atom, const std::string&, int64_t) { return int64_t{0}; },
    [](session_atom, const std::string&) { return wire_session{}; },
    [](config_atom) { return cloud_settings{}; },
    [](config_atom, const cloud_settings&) { return true; },
    [](flush_atom) { return true; },
    [](commit_atom) {},
    [](retry_atom, const std::string&, int64_t, int64_t) {},
    [](refused_atom, const std::string&, const std::string&, int64_t) {},
    [](capabilities_atom, const capability_report&) {
      // Tier changes are not what these tests are about.
    },
  };
}

} // namespace fleetd::test
