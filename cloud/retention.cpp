#include "cloud/retention.hpp"

#include "cloud/pg_migrate.hpp"
#include "cloud/pg_store.hpp"
#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace {

constexpr int64_t day_ms = 86'400'000;
// Partitions are made at most 62 days at once: keep the age in sane bounds.
constexpr int64_t max_days = 36500;

} // namespace

void declare(option_set& opts, retention_config& x) {
  opts.add("store.retention-days", x.days, 0, "days",
           "Days of points, logs and events kept besides today, by the day "
           "the cloud received them; older days are dropped whole, hourly "
           "(0: keep forever; only with store.backend = postgresql)",
           0, max_days);
}

caf::error validate(const retention_config& x, const store_config& store) {
  if (x.days > 0 && store.backend != "postgresql")
    return bad_config("store.retention-days: only with store.backend = "
                      "postgresql (the embedded store keeps every row)");
  return caf::none;
}

caf::expected<std::vector<std::string>>
drop_expired_days(pg::connection& conn, int64_t now_ms, int64_t days) {
  auto today = now_ms - ((now_ms % day_ms) + day_ms) % day_ms;
  std::vector<std::string> out;
  // A transaction of its own: dropping a partition locks its parent.
  auto err = pg::transaction(conn, {}, [&]() -> caf::error {
    auto r = drop_partitions_before(conn, today - days * day_ms);
    if (!r)
      return r.error();
    out = std::move(*r);
    return caf::none;
  });
  if (err)
    return err;
  return out;
}

void retention_state::pass() {
  ++passes;
  if (!conn.ok()) {
    auto c = pg::connection::open(cfg.postgresql_url, cfg.connect);
    if (!c) {
      ++failures;
      log_warning("retention", "cannot connect: ", render(c.error()));
      return;
    }
    conn = std::move(*c);
  }
  auto r = drop_expired_days(conn, cfg.clock->now_ms(), cfg.days);
  if (!r) {
    ++failures;
    log_warning("retention", "no day dropped: ", render(r.error()));
    return;
  }
  dropped += static_cast<int64_t>(r->size());
  for (auto& name : *r)
    log_info("retention", "dropped ", name, " (older than ", cfg.days,
             " days)");
}

actor_stats retention_state::stats() const {
  actor_stats s;
  s.name = name;
  s.state = "keeping " + std::to_string(cfg.days) + " days";
  s.counters["passes"] = passes;
  s.counters["partitions_dropped"] = dropped;
  s.counters["failures"] = failures;
  return s;
}

retention_actor::behavior_type
retention(retention_actor::stateful_pointer<retention_state> self,
          retention_config cfg) {
  auto bad = cfg.days <= 0 || !cfg.clock || cfg.postgresql_url.empty();
  if (stop_on_bad_config(self, "retention",
                         bad ? bad_config("retention: needs days > 0, a "
                                          "clock and a PostgreSQL URL")
                             : caf::error{}))
    return retention_actor::behavior_type::make_empty_behavior();
  self->state.cfg = std::move(cfg);
  self->send(self, tick_atom::value); // a pass at start
  return {
    // Only its own timer sends ticks: each pass arms the next.
    [self](tick_atom) {
      auto& st = self->state;
      st.pass();
      self->delayed_send(self, st.cfg.clock->real(st.cfg.interval),
                         tick_atom::value);
    },
    [self](stats_atom) { return self->state.stats(); },
  };
}

} // namespace fleetd
