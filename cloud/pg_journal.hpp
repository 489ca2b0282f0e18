#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "cloud/journal.hpp"
#include "runtime/clock.hpp"
#include "runtime/pg.hpp"

namespace fleetd {

/// The PostgreSQL journal (cloud/migrations/0002_journal.sql) as a sink
/// reads it, on its own connection as the node's role. Rows are read in
/// (xid, id) order and only below every running transaction's xid, so a
/// row committed later never lands behind a cursor; the cross-org reads go
/// through the schema's SECURITY DEFINER functions. BLOCKING.
class pg_journal : public journal_reader {
public:
  static caf::expected<pg_journal> open(const std::string& url,
                                        clock_ptr clock, journal_config cfg,
                                        pg::connect_options opts = {});

  caf::expected<journal_cursor> cursor(const std::string& sink) override;
  caf::expected<journal_chunk> read(journal_cursor after,
                                    journal_read_bounds max) override;
  caf::error advance(const std::string& sink, journal_cursor to) override;
  /// Deletes the passed rows, then (at most once an hour, or a minute after
  /// a lock it did not get) drops the empty partitions of hours at least
  /// two hours old.
  caf::expected<int64_t>
  prune(const std::vector<std::string>& sinks) override;
  caf::expected<journal_lag> lag(journal_cursor after) override;
  /// The sink_leases row: taken when free, expired (by this node's clock)
  /// or already this holder's; renewed to now + ttl.
  caf::expected<bool> lease(const std::string& sink, const std::string& holder,
                            std::chrono::milliseconds ttl) override;

  /// Old empty partitions this reader dropped so far.
  int64_t dropped_partitions() const {
    return dropped_partitions_;
  }

private:
  caf::error drop_partitions();

  clock_ptr clock_;
  journal_config cfg_;
  pg::connection conn_;
  int64_t next_drop_ms_ = 0;
  int64_t dropped_partitions_ = 0;
};

} // namespace fleetd
