#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "messages/types.hpp"
#include "runtime/sqlite.hpp"

namespace fleetd {

/// What a rollout keeps across a cloud restart: its state and, for a
/// rollback, each changed device's settings before it changed.
struct rollout_record {
  rollout_status status;
  /// Device -> its settings before the rollout changed them.
  std::map<std::string, cloud_settings> previous;
  /// Devices whose push of the change the store confirmed: they carry it.
  std::set<std::string> pushed;
};

/// The cloud's rollouts in SQLite: tables `rollouts` and `rollout_previous`
/// in the embedded store's cloud.db (or a file of their own beside a
/// PostgreSQL store), and `rollout_pushed`. Calls block: only a detached actor makes them.
class rollout_book {
public:
  /// Opens (creating the tables) the database at `path`.
  static caf::expected<rollout_book> open(const std::string& path);

  /// Every org's rollout as last saved.
  caf::expected<std::vector<rollout_record>> load();

  /// Saves `x` in one transaction (its previous settings too), replacing
  /// what its org had.
  caf::error save(const rollout_record& x);

private:
  sqlite::database db_;
};

} // namespace fleetd
