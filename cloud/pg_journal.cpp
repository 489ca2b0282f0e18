#include "cloud/pg_journal.hpp"

#include "cloud/pg_migrate.hpp"
#include "messages/error.hpp"

namespace fleetd {

namespace {

constexpr int64_t hour_ms = 3'600'000;

} // namespace

caf::expected<pg_journal> pg_journal::open(const std::string& url,
                                           clock_ptr clock,
                                           journal_config cfg,
                                           pg::connect_options opts) {
  auto conn = open_node_connection(url, opts);
  if (!conn)
    return conn.error();
  pg_journal out;
  out.clock_ = std::move(clock);
  out.cfg_ = std::move(cfg);
  out.conn_ = std::move(*conn);
  return out;
}

caf::expected<journal_cursor> pg_journal::cursor(const std::string& sink) {
  auto r = conn_.exec("SELECT xid::text, id FROM sink_cursors WHERE sink = $1",
                      {sink});
  if (!r)
    return r.error();
  journal_cursor out;
  if (r->rows() > 0)
    out = journal_cursor{r->int64(0, 0), r->int64(0, 1)};
  return out;
}

caf::expected<journal_chunk> pg_journal::read(journal_cursor after,
                                              journal_read_bounds max) {
  auto r = conn_.exec("SELECT xid::text, id, entry FROM "
                      "fleetd_journal_read($1::text::xid8, $2, $3)",
                      {after.xid, after.id, max.entries});
  if (!r)
    return r.error();
  journal_chunk out;
  out.end = after;
  auto max_bytes = static_cast<uint64_t>(cfg_.max_entry_bytes);
  for (int i = 0; i < r->rows(); ++i)
    if (!add_row(out, journal_cursor{r->int64(i, 0), r->int64(i, 1)},
                 r->bytea(i, 2), max_bytes, max.points))
      break;
  return out;
}

caf::error pg_journal::advance(const std::string& sink, journal_cursor to) {
  auto r = conn_.exec(
    "INSERT INTO sink_cursors (sink, xid, id, updated_ms) VALUES ($1, "
    "$2::text::xid8, $3, $4) ON CONFLICT (sink) DO UPDATE SET xid = "
    "EXCLUDED.xid, id = EXCLUDED.id, updated_ms = EXCLUDED.updated_ms "
    "WHERE (sink_cursors.xid, sink_cursors.id) < (EXCLUDED.xid, EXCLUDED.id)",
    {sink, to.xid, to.id, clock_->now_ms()});
  return r ? caf::none : r.error();
}

caf::expected<int64_t>
pg_journal::prune(const std::vector<std::string>& sinks) {
  std::string arr = "{";
  for (size_t i = 0; i < sinks.size(); ++i) {
    // Sink names are the node's own ([a-z0-9_-]); quoted all the same.
    arr += (i ? ",\"" : "\"") + sinks[i] + "\"";
  }
  arr += "}";
  auto r = conn_.exec("SELECT fleetd_journal_prune($1::text[])", {arr});
  if (!r)
    return r.error();
  if (auto err = drop_partitions())
    return err;
  return r->int64(0, 0);
}

caf::error pg_journal::drop_partitions() {
  auto now = clock_->now_ms();
  if (now < next_drop_ms_)
    return caf::none;
  auto hour = now / hour_ms;
  // A failure or a lock not granted: again in a minute.
  next_drop_ms_ = now + 60'000;
  // Two hours back: no writer whose clock agrees within that inserts there.
  auto r = conn_.exec("SELECT dropped, complete FROM "
                      "fleetd_journal_drop_partitions($1)",
                      {hour - 2});
  if (!r)
    return r.error();
  dropped_partitions_ += r->int64(0, 0);
  if (r->boolean(0, 1))
    next_drop_ms_ = (hour + 1) * hour_ms;
  return caf::none;
}

caf::expected<journal_lag> pg_journal::lag(journal_cursor after) {
  auto r = conn_.exec("SELECT entries, oldest_ms FROM "
                      "fleetd_journal_lag($1::text::xid8, $2)",
                      {after.xid, after.id});
  if (!r)
    return r.error();
  return journal_lag{r->int64(0, 0), r->int64(0, 1)};
}

caf::expected<bool> pg_journal::lease(const std::string& sink,
                                      const std::string& holder,
                                      std::chrono::milliseconds ttl) {
  auto now = clock_->now_ms();
  auto r = conn_.exec(
    "INSERT INTO sink_leases (sink, holder, expires_ms) VALUES ($1, $2, $3) "
    "ON CONFLICT (sink) DO UPDATE SET holder = EXCLUDED.holder, "
    "expires_ms = EXCLUDED.expires_ms WHERE sink_leases.holder = "
    "EXCLUDED.holder OR sink_leases.expires_ms < $4 RETURNING holder",
    {sink, holder, now + ttl.count(), now});
  if (!r)
    return r.error();
  return r->rows() > 0;
}

} // namespace fleetd
