// The cloud_store actor: each device's batches on one writer (writer_of),
// several writers of a PostgreSQL store writing at once, stats summed.
#include "cloud/cloud_store.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "cloud/pg_migrate.hpp"
#include "cloud/pg_store.hpp"
#include "runtime/clock.hpp"
#include "messages/error.hpp"
#include "messages/register.hpp"
#include "ask.hpp"
#include "helpers.hpp"
#include "pg_fixture.hpp"
#include "skip.hpp"
#include "store_batches.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

ingest_batch batch(const std::string& device, int64_t seq) {
  ingest_batch b;
  b.device_id = device;
  b.stream = metrics_stream;
  b.epoch = "e1";
  b.sequence = seq;
  b.samples = test::samples(4, static_cast<double>(seq));
  return b;
}

} // namespace

TEST_CASE("a device always goes to the same writer, and devices spread over "
          "all of them") {
  CHECK(writer_of("acme/dev-a", 1) == 0);
  CHECK(writer_of("acme/dev-a", 0) == 0);
  std::map<size_t, int> per_writer;
  for (int i = 0; i < 1000; ++i) {
    auto id = "acme/dev-" + std::to_string(i);
    auto w = writer_of(id, 4);
    REQUIRE(w < 4);
    CHECK(writer_of(id, 4) == w);
    ++per_writer[w];
  }
  REQUIRE(per_writer.size() == 4);
  for (auto& [w, n] : per_writer)
    CHECK(n > 150);
}

TEST_CASE("postgresql: three writers store every device's batches once, in "
          "order, the store's stats sum them, and they end with it") {
  std::string why;
  // Straight to the server: its connections are the writers' own.
  auto db = test::fresh_pg_database("cloud_store", why);
  if (!db)
    return test::skip(why);
  auto owner = test::pg_connect(db->owner_url);
  auto migrated = migrate(owner);
  REQUIRE_MESSAGE(migrated, render(migrated.error()));
  pg::connect_options opts;
  opts.statement_timeout_ms = 30000; // as fleetd-cloud does
  auto clock = std::make_shared<manual_clock>(test::store_clock_start_ms);
  auto st = pg_store::open(db->app_url, clock, opts, 3);
  REQUIRE_MESSAGE(st, render(st.error()));
  caf::actor_system_config cfg;
  register_messages(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  std::shared_ptr<cloud_store_backend> backend
    = std::make_shared<pg_store>(std::move(*st));
  auto store = sys.spawn<caf::detached>(cloud_store, std::move(backend));
  constexpr int devices = 12;
  constexpr int64_t batches = 3;
  std::vector<std::string> ids;
  for (int i = 0; i < devices; ++i)
    ids.push_back("acme/dev-" + std::to_string(i));
  // A round's batches all sent before any answer: the writers take them
  // at once; the next round only after, as each device sends one at a time.
  using handle = decltype(self->request(store, 30s, write_atom::value,
                                        ingest_batch{}));
  int answered = 0;
  for (int64_t seq = 1; seq <= batches; ++seq) {
    std::vector<handle> pending;
    for (auto& id : ids)
      pending.push_back(self->request(store, 30s, write_atom::value,
                                      batch(id, seq)));
    for (auto& h : pending)
      h.receive(
        [&](const ingest_outcome& out) {
          CHECK(out.stored == 4);
          CHECK(out.last_acked == seq);
          ++answered;
        },
        [&](caf::error& err) { FAIL_CHECK(render(err)); });
  }
  CHECK(answered == devices * batches);
  auto stats = test::ask<actor_stats>(self, store, 30s, stats_atom::value);
  CHECK(stats.counters["batches_stored"] == devices * batches);
  CHECK(stats.counters["points_stored"] == devices * batches * 4);
  auto infos = test::ask<device_infos>(self, store, 30s, devices_atom::value);
  REQUIRE(infos.size() == static_cast<size_t>(devices));
  for (auto& x : infos) {
    CHECK(x.last_acked_sequence == batches);
    CHECK(x.gaps == 0);
  }
  // Each writer holds a connection of its own, until the store ends.
  auto admin = test::pg_connect(db->admin_url);
  auto writers = [&] {
    return test::pg_must(admin, "SELECT count(*) FROM pg_stat_activity "
                                "WHERE usename = 'fleetd_node' AND "
                                "datname = $1",
                         {db->name})
      .int64(0, 0);
  };
  CHECK(writers() == 3);
  self->send_exit(store, caf::exit_reason::user_shutdown);
  CHECK(test::eventually([&] { return writers() == 0; }, 20s));
}
