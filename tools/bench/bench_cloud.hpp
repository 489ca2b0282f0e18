#pragma once

// An in-process cloud for the benchmarks (embedded store, tenancy, ingest,
// endpoint, as cloud/main.cpp wires them) and how a device reaches it.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>

#include "cloud/ingest_endpoint.hpp"
#include "messages/error.hpp"
#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"
#include "runtime/logger.hpp"
#include "runtime/node.hpp"
#include "tools/bench/bench_tls.hpp"
#include "tools/bench/bench_util.hpp"

namespace fleetd::bench {

/// How the device and the naive sender reach the cloud and prove who they
/// are: HTTPS with a device key, or (plain) plain HTTP: anonymous, or with
/// the key when `key_when_plain`.
struct transport {
  bool plain = false;
  bench_pki pki;
  /// The cloud's tenancy database and hashing secret, shared by both clouds.
  std::string tenancy_db;
  std::string secret;
  /// "Bearer fdk_..." and the file the device link reads the key from.
  std::string authorization;
  std::string key_file;
  /// The device id the cloud stores records under.
  std::string stored_id;
};

/// The PKI, the org "bench" (with `quota_pps` when positive) and the device
/// added to it with its key in a file, as an operator would set them up
/// (fleetctl org create, quota set, device add).
transport make_transport(const std::string& dir, bool plain,
                         int64_t quota_pps, const clock_ptr& clock,
                         const std::string& device_id,
                         const std::string& org_name,
                         bool key_when_plain = false);

/// An actor system and the actors a benchmark started, stopped in reverse
/// order when it goes.
struct world {
  node_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  stop_list stops;
  std::vector<std::unique_ptr<ingest_endpoint>> endpoints;
  /// The ingest and tenancy (none when plain) of the last cloud started.
  ingest_actor ingest_hdl;
  tenancy_actor tenancy_hdl;

  ~world() {
    for (auto& e : endpoints)
      e->stop();
    stops.stop_all(sys, std::chrono::seconds(120));
  }

  template <class Handle>
  Handle keep(std::string name, Handle hdl) {
    stops.add(std::move(name), caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  /// Asks `hdl` and waits for the one reply of type T.
  template <class T, class Handle, class... Ts>
  T ask(const Handle& hdl, Ts&&... xs) {
    T out{};
    std::string err;
    self->request(hdl, std::chrono::seconds(120), std::forward<Ts>(xs)...)
      .receive([&](T& x) { out = std::move(x); },
               [&](caf::error& e) { err = render(e); });
    if (!err.empty())
      fail(err);
    return out;
  }

  template <class Handle>
  actor_stats stats(const Handle& hdl) {
    return ask<actor_stats>(hdl, stats_atom::value);
  }

  /// A cloud (embedded store, tenancy unless plain and keyless, ingest,
  /// endpoint) on 127.0.0.1:port, over HTTPS unless plain.
  uint16_t start_cloud(const std::string& path, clock_ptr clock,
                       uint16_t port, const transport& t);

  /// The tenancy actor over the transport's database, as cloud/main.cpp
  /// spawns it (its defaults: cache TTL, no quota).
  tenancy_actor start_tenancy(const transport& t, const clock_ptr& clock);
};

} // namespace fleetd::bench
