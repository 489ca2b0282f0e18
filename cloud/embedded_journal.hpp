#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "cloud/journal.hpp"
#include "runtime/clock.hpp"
#include "runtime/sqlite.hpp"

namespace fleetd {

/// Creates the journal's tables in the embedded store's database (the
/// store calls it at open; so does the reader).
caf::error create_journal_schema(sqlite::database& db);

/// Appends `x` to the journal inside the caller's open transaction, after
/// checking `cfg`'s bounds (ec::journal_full past them, nothing written).
caf::error append_journal(sqlite::database& db, const journal_config& cfg,
                          const journal_entry& x, int64_t now_ms);

/// The embedded store's journal as a sink reads it, on its own connection
/// to the store's file (WAL: readers never block the ingest writer). One
/// writer: rowid order is commit order; AUTOINCREMENT never reuses an id.
class embedded_journal : public journal_reader {
public:
  static caf::expected<embedded_journal>
  open(const std::string& path, clock_ptr clock, journal_config cfg);

  caf::expected<journal_cursor> cursor(const std::string& sink) override;
  caf::expected<journal_chunk> read(journal_cursor after,
                                    journal_read_bounds max) override;
  caf::error advance(const std::string& sink, journal_cursor to) override;
  caf::expected<int64_t>
  prune(const std::vector<std::string>& sinks) override;
  caf::expected<journal_lag> lag(journal_cursor after) override;
  /// One node owns an embedded store: the lease is always this holder's.
  caf::expected<bool> lease(const std::string& sink, const std::string& holder,
                            std::chrono::milliseconds ttl) override;

private:
  clock_ptr clock_;
  journal_config cfg_;
  sqlite::database db_;
};

} // namespace fleetd
