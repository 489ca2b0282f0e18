#include "cloud/rollout_book.hpp"

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include "messages/error.hpp"

namespace fleetd {

namespace {

constexpr const char* schema = R"(
CREATE TABLE IF NOT EXISTS rollouts (
  org TEXT PRIMARY KEY,
  status BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_previous (
  org TEXT NOT NULL,
  device_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  batch_size INTEGER NOT NULL,
  sync_interval_ms INTEGER NOT NULL,
  retention_ms INTEGER NOT NULL,
  zstd_level INTEGER NOT NULL,
  PRIMARY KEY (org, device_id)
);
CREATE TABLE IF NOT EXISTS rollout_pushed (
  org TEXT NOT NULL,
  device_id TEXT NOT NULL,
  PRIMARY KEY (org, device_id)
);
)";

} // namespace

caf::expected<rollout_book> rollout_book::open(const std::string& path) {
  auto db = sqlite::database::open(path, "FULL");
  if (!db)
    return db.error();
  if (auto err = db->exec(schema))
    return err;
  rollout_book out;
  out.db_ = std::move(*db);
  return out;
}

caf::expected<std::vector<rollout_record>> rollout_book::load() {
  std::vector<rollout_record> out;
  auto st = db_.prepare("SELECT org, status FROM rollouts ORDER BY org");
  if (!st)
    return st.error();
  caf::error bad;
  auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
    auto bytes = r.column_blob(1);
    std::vector<char> buf(bytes.begin(), bytes.end());
    rollout_record x;
    caf::binary_deserializer source{nullptr, buf};
    if (auto e = source(x.status)) {
      if (!bad)
        bad = make_error(ec::storage_failed, "rollout of org '"
                                               + r.column_text(0)
                                               + "' cannot be read back");
      return;
    }
    out.push_back(std::move(x));
  });
  if (err)
    return err;
  if (bad)
    return bad;
  for (auto& x : out) {
    auto prev = db_.prepare("SELECT device_id, version, batch_size, "
                            "sync_interval_ms, retention_ms, zstd_level FROM "
                            "rollout_previous WHERE org = ?1");
    if (!prev)
      return prev.error();
    prev->bind(1, x.status.org);
    if (auto e = sqlite::each_row(*prev, [&](sqlite::statement& r) {
          x.previous[r.column_text(0)]
            = cloud_settings{r.column_int(1), r.column_int(2),
                             r.column_int(3), r.column_int(4),
                             r.column_int(5)};
        }))
      return e;
    auto pushed = db_.prepare("SELECT device_id FROM rollout_pushed WHERE "
                              "org = ?1");
    if (!pushed)
      return pushed.error();
    pushed->bind(1, x.status.org);
    if (auto e = sqlite::each_row(*pushed, [&](sqlite::statement& r) {
          x.pushed.insert(r.column_text(0));
        }))
      return e;
  }
  return out;
}

caf::error rollout_book::save(const rollout_record& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  auto copy = x.status;
  if (auto err = sink(copy))
    return err;
  return sqlite::transaction(db_, [&]() -> caf::error {
    auto up = db_.prepare("INSERT INTO rollouts (org, status) VALUES (?1, ?2) "
                          "ON CONFLICT (org) DO UPDATE SET status = ?2");
    if (!up)
      return up.error();
    up->bind(1, x.status.org)
      .bind_blob(2, std::string_view(buf.data(), buf.size()));
    if (auto err = up->run())
      return err;
    auto del = db_.prepare("DELETE FROM rollout_previous WHERE org = ?1");
    if (!del)
      return del.error();
    del->bind(1, x.status.org);
    if (auto err = del->run())
      return err;
    auto ins = db_.prepare(
      "INSERT INTO rollout_previous (org, device_id, version, batch_size, "
      "sync_interval_ms, retention_ms, zstd_level) VALUES (?1, ?2, ?3, ?4, "
      "?5, ?6, ?7)");
    if (!ins)
      return ins.error();
    for (auto& [device, s] : x.previous) {
      ins->reset();
      ins->bind(1, x.status.org).bind(2, device).bind(3, s.version)
        .bind(4, s.batch_size).bind(5, s.sync_interval_ms)
        .bind(6, s.retention_ms).bind(7, s.zstd_level);
      if (auto err = ins->run())
        return err;
    }
    auto del_pushed = db_.prepare("DELETE FROM rollout_pushed WHERE org = ?1");
    if (!del_pushed)
      return del_pushed.error();
    del_pushed->bind(1, x.status.org);
    if (auto err = del_pushed->run())
      return err;
    auto ins_pushed = db_.prepare("INSERT INTO rollout_pushed (org, "
                                  "device_id) VALUES (?1, ?2)");
    if (!ins_pushed)
      return ins_pushed.error();
    for (auto& device : x.pushed) {
      ins_pushed->reset();
      ins_pushed->bind(1, x.status.org).bind(2, device);
      if (auto err = ins_pushed->run())
        return err;
    }
    return caf::error{};
  });
}

} // namespace fleetd
