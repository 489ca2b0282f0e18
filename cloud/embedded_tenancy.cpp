#include "cloud/embedded_tenancy.hpp"

#include "messages/error.hpp"

namespace fleetd {

namespace {

constexpr const char* schema = R"(
CREATE TABLE IF NOT EXISTS orgs (
  name TEXT PRIMARY KEY,
  created_ms INTEGER NOT NULL,
  points_per_second INTEGER NOT NULL DEFAULT 0,
  bytes_per_day INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
  org TEXT NOT NULL,
  device TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  revoked_ms INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (org, device)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_keys (
  hash BLOB PRIMARY KEY,
  org TEXT NOT NULL,
  device TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS device_keys_by_device ON device_keys (org, device);
CREATE TABLE IF NOT EXISTS enroll_tokens (
  hash BLOB PRIMARY KEY,
  org TEXT NOT NULL,
  uses_left INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_tokens (
  hash BLOB PRIMARY KEY,
  id TEXT NOT NULL,
  org TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL DEFAULT 0,
  revoked_ms INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS api_tokens_by_org ON api_tokens (org, id);
)";

} // namespace

caf::expected<embedded_tenancy>
embedded_tenancy::open(const std::string& path, std::string secret,
                       clock_ptr clock) {
  auto db = sqlite::database::open(path, "FULL");
  if (!db)
    return db.error();
  if (auto err = db->exec(schema))
    return err;
  embedded_tenancy out;
  out.secret_ = std::move(secret);
  out.clock_ = std::move(clock);
  out.db_ = std::move(*db);
  return out;
}

caf::error embedded_tenancy::run_changing(sqlite::statement& st,
                                          caf::error none) {
  if (auto err = st.run())
    return err;
  return db_.changes() == 0 ? std::move(none) : caf::none;
}

caf::expected<sqlite::statement>
embedded_tenancy::row_by_hash(const char* sql, const std::string& secret,
                              caf::error missing) {
  auto st = db_.prepare(sql);
  if (!st)
    return st.error();
  st->bind_blob(1, hash(secret));
  auto row = st->step();
  if (!row)
    return row.error();
  if (!*row)
    return missing;
  return std::move(*st);
}

caf::expected<device_identity>
embedded_tenancy::authenticate(const std::string& authorization) {
  auto key = key_of(authorization);
  if (!key)
    return key.error();
  auto st = row_by_hash("SELECT k.org, k.device, k.expires_ms, d.revoked_ms "
                        "FROM device_keys k JOIN devices d ON d.org = k.org "
                        "AND d.device = k.device WHERE k.hash = ?1",
                        *key, unknown_key_error());
  if (!st)
    return st.error();
  return key_holder({st->column_text(0), st->column_text(1)},
                    st->column_int(2), st->column_int(3), clock_->now_ms());
}

caf::error embedded_tenancy::insert_key(const std::string& org,
                                        const std::string& device,
                                        std::string& key) {
  key = new_device_key();
  auto ins = db_.prepare("INSERT INTO device_keys (hash, org, device, "
                         "created_ms) VALUES (?1, ?2, ?3, ?4)");
  if (!ins)
    return ins.error();
  ins->bind_blob(1, hash(key)).bind(2, org).bind(3, device).bind(
    4, clock_->now_ms());
  return ins->run();
}

caf::error embedded_tenancy::require_org(const std::string& org) {
  auto st = db_.prepare("SELECT 1 FROM orgs WHERE name = ?1");
  if (!st)
    return st.error();
  st->bind(1, org);
  auto row = st->step();
  if (!row)
    return row.error();
  if (!*row)
    return unknown_org_error(org);
  return caf::none;
}

caf::error embedded_tenancy::insert_device(const std::string& org,
                                           const std::string& device,
                                           std::string& key) {
  if (auto e = require_org(org))
    return e;
  auto ins = db_.prepare("INSERT OR IGNORE INTO devices (org, device, "
                         "created_ms) VALUES (?1, ?2, ?3)");
  if (!ins)
    return ins.error();
  ins->bind(1, org).bind(2, device).bind(3, clock_->now_ms());
  if (auto e = run_changing(*ins, device_exists_error(org, device)))
    return e;
  return insert_key(org, device, key);
}

caf::expected<std::string>
embedded_tenancy::add_device(const std::string& org, const std::string& device) {
  std::string key;
  if (auto err = sqlite::transaction(
        db_, [&]() -> caf::error { return insert_device(org, device, key); }))
    return err;
  return key;
}

caf::expected<std::pair<device_identity, std::string>>
embedded_tenancy::enroll(const std::string& authorization,
                         const std::string& device) {
  auto token = token_of(authorization);
  if (!token)
    return token.error();
  auto st = row_by_hash("SELECT org, uses_left, expires_ms, revoked FROM "
                        "enroll_tokens WHERE hash = ?1",
                        *token, no_token_error());
  if (!st)
    return st.error();
  auto org = st->column_text(0);
  if (auto err = token_usable(st->column_int(3) != 0, st->column_int(2),
                              st->column_int(1), clock_->now_ms()))
    return err;
  if (auto err = check_device_name(device))
    return err;
  // The device and the use of the token commit together.
  std::string key;
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    if (auto e = insert_device(org, device, key))
      return e;
    auto use = db_.prepare("UPDATE enroll_tokens SET uses_left = uses_left "
                           "- 1 WHERE hash = ?1");
    if (!use)
      return use.error();
    use->bind_blob(1, hash(*token));
    return use->run();
  });
  if (err)
    return err;
  return std::make_pair(device_identity{org, device}, std::move(key));
}

caf::expected<org_quota> embedded_tenancy::quota(const std::string& org) {
  auto st = db_.prepare("SELECT points_per_second, bytes_per_day FROM orgs "
                        "WHERE name = ?1");
  if (!st)
    return st.error();
  st->bind(1, org);
  auto row = st->step();
  if (!row)
    return row.error();
  org_quota out;
  if (*row) {
    out.points_per_second = st->column_int(0);
    out.bytes_per_day = st->column_int(1);
  }
  return out;
}

caf::error embedded_tenancy::create_org(const std::string& org) {
  auto ins = db_.prepare("INSERT OR IGNORE INTO orgs (name, created_ms) "
                         "VALUES (?1, ?2)");
  if (!ins)
    return ins.error();
  ins->bind(1, org).bind(2, clock_->now_ms());
  return run_changing(*ins,
                      make_error(ec::conflict, "org '" + org + "' exists"));
}

caf::expected<tenancy_backend::rows> embedded_tenancy::list_orgs() {
  auto st = db_.prepare(
    "SELECT o.name, (SELECT count(*) FROM devices d WHERE d.org = o.name AND "
    "d.revoked_ms = 0), o.points_per_second, o.bytes_per_day FROM orgs o "
    "ORDER BY o.name");
  if (!st)
    return st.error();
  rows out;
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        out.push_back({r.column_text(0), std::to_string(r.column_int(1)),
                       std::to_string(r.column_int(2)),
                       std::to_string(r.column_int(3))});
      }))
    return err;
  return out;
}

caf::expected<tenancy_backend::rows>
embedded_tenancy::list_devices(const std::string& org) {
  auto now = clock_->now_ms();
  auto st = db_.prepare(
    "SELECT d.org, d.device, d.created_ms, d.revoked_ms, (SELECT count(*) FROM "
    "device_keys k WHERE k.org = d.org AND k.device = d.device AND "
    "(k.expires_ms = 0 OR k.expires_ms > ?2)) FROM devices d WHERE ?1 = '' "
    "OR d.org = ?1 ORDER BY d.org, d.device");
  if (!st)
    return st.error();
  st->bind(1, org).bind(2, now);
  rows out;
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        out.push_back({r.column_text(0), r.column_text(1),
                       time_text(r.column_int(2)), time_text(r.column_int(3)),
                       std::to_string(r.column_int(4))});
      }))
    return err;
  return out;
}

caf::expected<std::string>
embedded_tenancy::rotate_key(const std::string& org, const std::string& device,
                             int64_t overlap_ms) {
  std::string key;
  auto now = clock_->now_ms();
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    auto st = db_.prepare("SELECT revoked_ms FROM devices WHERE org = ?1 AND "
                          "device = ?2");
    if (!st)
      return st.error();
    st->bind(1, org).bind(2, device);
    auto row = st->step();
    if (!row)
      return row.error();
    if (!*row)
      return no_device_error(org, device);
    if (st->column_int(0) > 0)
      return revoked_device_error(device);
    // Keys in use keep working for the overlap, so the device can switch.
    auto old = db_.prepare("UPDATE device_keys SET expires_ms = ?3 WHERE "
                           "org = ?1 AND device = ?2 AND (expires_ms = 0 OR "
                           "expires_ms > ?3)");
    if (!old)
      return old.error();
    old->bind(1, org).bind(2, device).bind(3, now + overlap_ms);
    if (auto e = old->run())
      return e;
    return insert_key(org, device, key);
  });
  if (err)
    return err;
  return key;
}

caf::error embedded_tenancy::revoke(const std::string& org,
                                    const std::string& device) {
  auto st = db_.prepare("UPDATE devices SET revoked_ms = ?3 WHERE org = ?1 "
                        "AND device = ?2 AND revoked_ms = 0");
  if (!st)
    return st.error();
  st->bind(1, org).bind(2, device).bind(3, clock_->now_ms());
  return run_changing(*st, no_active_device_error(org, device));
}

caf::expected<std::string>
embedded_tenancy::create_token(const std::string& org, int64_t uses,
                               int64_t ttl_ms) {
  if (auto err = require_org(org))
    return err;
  auto token = new_enroll_token();
  auto now = clock_->now_ms();
  auto ins = db_.prepare("INSERT INTO enroll_tokens (hash, org, uses_left, "
                         "expires_ms, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!ins)
    return ins.error();
  ins->bind_blob(1, hash(token)).bind(2, org).bind(3, uses).bind(
    4, now + ttl_ms).bind(5, now);
  if (auto err = ins->run())
    return err;
  return token;
}

caf::expected<int64_t>
embedded_tenancy::revoke_tokens(const std::string& org) {
  auto st = db_.prepare("UPDATE enroll_tokens SET revoked = 1 WHERE org = ?1 "
                        "AND revoked = 0");
  if (!st)
    return st.error();
  st->bind(1, org);
  if (auto err = st->run())
    return err;
  return static_cast<int64_t>(db_.changes());
}

caf::error embedded_tenancy::set_quota(const std::string& org, org_quota q) {
  auto st = db_.prepare("UPDATE orgs SET points_per_second = ?2, "
                        "bytes_per_day = ?3 WHERE name = ?1");
  if (!st)
    return st.error();
  st->bind(1, org).bind(2, q.points_per_second).bind(3, q.bytes_per_day);
  return run_changing(*st, unknown_org_error(org));
}

caf::expected<std::string>
embedded_tenancy::authenticate_api(const std::string& authorization) {
  auto token = api_token_of(authorization);
  if (!token)
    return token.error();
  auto st = row_by_hash("SELECT org, expires_ms, revoked_ms FROM api_tokens "
                        "WHERE hash = ?1",
                        *token, unknown_api_token_error());
  if (!st)
    return st.error();
  return api_token_holder(st->column_text(0), st->column_int(1),
                          st->column_int(2), clock_->now_ms());
}

caf::expected<std::string>
embedded_tenancy::create_api_token(const std::string& org, int64_t ttl_ms) {
  if (auto err = require_org(org))
    return err;
  auto token = new_api_token();
  auto now = clock_->now_ms();
  auto ins = db_.prepare("INSERT INTO api_tokens (hash, id, org, created_ms, "
                         "expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!ins)
    return ins.error();
  auto h = hash(token);
  ins->bind_blob(1, h).bind(2, api_token_id(h)).bind(3, org).bind(4, now).bind(
    5, ttl_ms == 0 ? 0 : now + ttl_ms);
  if (auto err = ins->run())
    return err;
  return token;
}

caf::expected<tenancy_backend::rows>
embedded_tenancy::list_api_tokens(const std::string& org) {
  auto st = db_.prepare("SELECT org, id, created_ms, expires_ms, revoked_ms "
                        "FROM api_tokens WHERE org = ?1 ORDER BY created_ms, "
                        "id");
  if (!st)
    return st.error();
  st->bind(1, org);
  rows out;
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        out.push_back({r.column_text(0), r.column_text(1),
                       time_text(r.column_int(2)), time_text(r.column_int(3)),
                       time_text(r.column_int(4))});
      }))
    return err;
  return out;
}

caf::error embedded_tenancy::revoke_api_token(const std::string& org,
                                              const std::string& id) {
  auto st = db_.prepare("UPDATE api_tokens SET revoked_ms = ?3 WHERE org = ?1 "
                        "AND id = ?2 AND revoked_ms = 0");
  if (!st)
    return st.error();
  st->bind(1, org).bind(2, id).bind(3, clock_->now_ms());
  return run_changing(*st, no_api_token_error(org, id));
}

} // namespace fleetd
