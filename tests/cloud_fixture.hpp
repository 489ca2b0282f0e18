#pragma once

// The in-process cloud of the ingest, HTTP and sync suites: a scratch
// directory, a manual clock, an actor system, and helpers to spawn the
// embedded store and open the ingest endpoint in it.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <doctest/doctest.h>

#include "cloud/cloud_store.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/embedded_tenancy.hpp"
#include "cloud/tenancy.hpp"
#include "cloud/ingest_endpoint.hpp"
#include "messages/error.hpp"
#include "messages/register.hpp"
#include "messages/wire.hpp"
#include "scratch_dir.hpp"

namespace fleetd::test {

/// Base of a suite's fixture. At the end the endpoint stops first, then every
/// kept actor gets an exit and is waited for; the directory goes last.
struct cloud_fixture {
  scratch_dir dir;
  std::shared_ptr<manual_clock> clock;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  std::vector<caf::actor> spawned;
  /// The HTTP door, once open_endpoint opened it.
  std::unique_ptr<ingest_endpoint> endpoint;

  cloud_fixture(const std::string& dir_prefix, int64_t clock_start_ms)
    : dir(dir_prefix), clock(std::make_shared<manual_clock>(clock_start_ms)) {
    REQUIRE(dir.ok());
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
  }

  cloud_fixture(const cloud_fixture&) = delete;
  cloud_fixture& operator=(const cloud_fixture&) = delete;

  ~cloud_fixture() {
    if (endpoint)
      endpoint->stop();
    for (auto& x : spawned)
      (*self)->send_exit(x, caf::exit_reason::user_shutdown);
    for (auto& x : spawned)
      (*self)->wait_for(x);
  }

  /// Stops `hdl` with the fixture; returns it.
  template <class Handle>
  Handle keep(Handle hdl) {
    spawned.push_back(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  /// The cloud store actor (detached, kept) on an embedded store opened at
  /// `path`.
  cloud_store_actor spawn_cloud_store(const std::string& path,
                                      journal_config journal = {}) {
    auto st = embedded_store::open(path, clock, journal);
    REQUIRE_MESSAGE(st, render(st.error()));
    return keep(sys->spawn<caf::detached>(
      cloud_store, std::make_shared<embedded_store>(std::move(*st))));
  }

  /// The tenancy actor (detached, kept) on an embedded tenancy store opened
  /// at `path`.
  tenancy_actor spawn_tenancy(const std::string& path) {
    auto db = embedded_tenancy::open(path, std::string(64, 's'), clock);
    REQUIRE_MESSAGE(db, render(db.error()));
    tenancy_config tcfg;
    tcfg.store = std::make_shared<embedded_tenancy>(std::move(*db));
    tcfg.clock = clock;
    return keep(sys->spawn<caf::detached>(tenancy, tcfg));
  }

  /// Opens the endpoint on 127.0.0.1:`port` (0: any) in front of `front`,
  /// over HTTPS when `tls` names a certificate; returns the port it bound.
  uint16_t open_endpoint(ingest_actor front, http_limits limits,
                         uint16_t port = 0, tls_files tls = {}) {
    endpoint = std::make_unique<ingest_endpoint>(*sys, front, limits);
    ingest_endpoint_config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = port;
    cfg.tls = std::move(tls);
    cfg.insecure = cfg.tls.cert.empty();
    auto bound = endpoint->start(cfg);
    REQUIRE_MESSAGE(bound, render(bound.error()));
    return *bound;
  }

  /// Opens the endpoint on 127.0.0.1 (plain HTTP, any port) serving only
  /// the query API of `ten` and `qry`; returns the port it bound.
  uint16_t open_query_door(tenancy_actor ten, query_actor qry) {
    endpoint = std::make_unique<ingest_endpoint>(*sys, ingest_actor{},
                                                 http_limits{}, health_actor{},
                                                 query_api{ten, qry});
    ingest_endpoint_config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.insecure = true;
    auto bound = endpoint->start(cfg);
    REQUIRE_MESSAGE(bound, render(bound.error()));
    return *bound;
  }
};

/// The SyncResponse in a reply body; failing to decode it fails the test.
inline sync_ack ack_of(const std::string& bytes) {
  auto ack = decode_response(bytes);
  REQUIRE_MESSAGE(ack, render(ack.error()));
  return *ack;
}

} // namespace fleetd::test
