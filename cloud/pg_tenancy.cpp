#include "cloud/pg_tenancy.hpp"

#include "cloud/pg_migrate.hpp"
#include "messages/error.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace {

// `out`, filled by a transaction, unless the transaction failed with `err`.
template <class T>
caf::expected<T> or_error(const caf::error& err, T& out) {
  if (err)
    return err;
  return std::move(out);
}

} // namespace

caf::expected<pg_tenancy> pg_tenancy::open(const std::string& url,
                                           std::string secret,
                                           clock_ptr clock,
                                           pg::connect_options opts) {
  auto conn = open_node_connection(url, opts);
  if (!conn)
    return conn.error();
  return pg_tenancy{std::move(secret), std::move(clock), std::move(*conn)};
}

template <class F>
caf::error pg_tenancy::in_org(const std::string& org, F&& fn) {
  if (!conn_.ok()) {
    log_warning("pg_tenancy", "connection lost; connecting again");
    if (auto err = conn_.reset())
      return err;
  }
  return pg::transaction(conn_, org, std::forward<F>(fn));
}

template <class F>
caf::error pg_tenancy::reading(const std::string& org, F&& fn) {
  auto err = in_org(org, fn);
  if (is_error(err, ec::unreachable))
    err = in_org(org, fn);
  return err;
}

caf::expected<pg::result> pg_tenancy::exec(const char* sql,
                                           const pg::params& ps) {
  return conn_.exec(sql, ps);
}

caf::error pg_tenancy::changing(const char* sql, const pg::params& ps,
                                caf::error none) {
  auto r = exec(sql, ps);
  if (!r)
    return r.error();
  return r->affected() == 0 ? std::move(none) : caf::none;
}

caf::expected<pg::result> pg_tenancy::row_by_hash(const char* setting,
                                                  const char* sql,
                                                  const std::string& hash,
                                                  caf::error missing) {
  auto set = exec("SELECT set_config($1, encode($2, 'hex'), true)",
                  {setting, pg::param::bytea(hash)});
  if (!set)
    return set.error();
  auto r = exec(sql, {pg::param::bytea(hash)});
  if (!r)
    return r.error();
  if (r->rows() == 0)
    return missing;
  return r;
}

caf::expected<device_identity>
pg_tenancy::authenticate(const std::string& authorization) {
  auto key = key_of(authorization);
  if (!key)
    return key.error();
  auto h = hash(*key);
  caf::expected<device_identity> who{caf::error{}};
  auto err = reading("", [&]() -> caf::error {
    auto k = row_by_hash("app.key_hash",
                         "SELECT org, device, expires_ms FROM device_keys "
                         "WHERE hash = $1",
                         h, unknown_key_error());
    if (!k)
      return k.error();
    device_identity id{std::string{k->text(0, 0)}, std::string{k->text(0, 1)}};
    // The device's row is its org's: readable once the org is set.
    if (auto e = conn_.set_org(id.org))
      return e;
    auto d = exec("SELECT revoked_ms FROM devices WHERE org = $1 AND "
                  "device = $2",
                  {id.org, id.device});
    if (!d)
      return d.error();
    if (d->rows() == 0)
      return unknown_key_error();
    who = key_holder(std::move(id), k->int64(0, 2), d->int64(0, 0),
                     clock_->now_ms());
    return caf::none;
  });
  if (err)
    return err;
  return who;
}

caf::error pg_tenancy::insert_key(const std::string& org,
                                  const std::string& device,
                                  std::string& key) {
  key = new_device_key();
  auto r = exec("INSERT INTO device_keys (hash, org, device, created_ms) "
                "VALUES ($1, $2, $3, $4)",
                {pg::param::bytea(hash(key)), org, device, clock_->now_ms()});
  return r ? caf::none : r.error();
}

caf::error pg_tenancy::require_org(const std::string& org) {
  auto r = exec("SELECT 1 FROM orgs WHERE name = $1", {org});
  if (!r)
    return r.error();
  return r->rows() == 0 ? unknown_org_error(org) : caf::none;
}

caf::error pg_tenancy::insert_device(const std::string& org,
                                     const std::string& device,
                                     std::string& key) {
  if (auto e = require_org(org))
    return e;
  // Two nodes adding the same name: the second finds it taken.
  if (auto e = changing("INSERT INTO devices (org, device, created_ms) "
                        "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        {org, device, clock_->now_ms()},
                        device_exists_error(org, device)))
    return e;
  return insert_key(org, device, key);
}

caf::expected<std::string> pg_tenancy::add_device(const std::string& org,
                                                  const std::string& device) {
  std::string key;
  if (auto err = in_org(org, [&] { return insert_device(org, device, key); }))
    return err;
  return key;
}

caf::error pg_tenancy::use_token(const std::string& hash,
                                 const std::string& org) {
  auto now = clock_->now_ms();
  // Nodes racing for the last use: the row lock makes the loser re-check
  // uses_left after the winner committed, and change nothing.
  auto r = exec("UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE "
                "hash = $1 AND uses_left > 0 AND NOT revoked AND expires_ms "
                "> $2 RETURNING uses_left",
                {pg::param::bytea(hash), now});
  if (!r)
    return r.error();
  if (r->rows() > 0)
    return caf::none;
  // Changed meanwhile: say how, as a first look would have.
  auto t = exec("SELECT uses_left, expires_ms, revoked FROM enroll_tokens "
                "WHERE hash = $1 AND org = $2",
                {pg::param::bytea(hash), org});
  if (!t)
    return t.error();
  if (t->rows() == 0)
    return no_token_error();
  if (auto e = token_usable(t->boolean(0, 2), t->int64(0, 1), t->int64(0, 0),
                            now))
    return e;
  return used_up_error();
}

caf::expected<std::pair<device_identity, std::string>>
pg_tenancy::enroll(const std::string& authorization,
                   const std::string& device) {
  auto token = token_of(authorization);
  if (!token)
    return token.error();
  auto h = hash(*token);
  std::string org;
  std::string key;
  // The device and the use of the token commit together.
  auto err = in_org("", [&]() -> caf::error {
    auto t = row_by_hash("app.token_hash",
                         "SELECT org, uses_left, expires_ms, revoked FROM "
                         "enroll_tokens WHERE hash = $1",
                         h, no_token_error());
    if (!t)
      return t.error();
    org = std::string{t->text(0, 0)};
    if (auto e = token_usable(t->boolean(0, 3), t->int64(0, 2), t->int64(0, 1),
                              clock_->now_ms()))
      return e;
    if (auto e = check_device_name(device))
      return e;
    if (auto e = conn_.set_org(org))
      return e;
    if (auto e = use_token(h, org))
      return e;
    return insert_device(org, device, key);
  });
  if (err)
    return err;
  return std::make_pair(device_identity{org, device}, std::move(key));
}

caf::expected<org_quota> pg_tenancy::quota(const std::string& org) {
  org_quota out;
  if (org.empty())
    return out;
  auto err = reading(org, [&]() -> caf::error {
    auto r = exec("SELECT points_per_second, bytes_per_day FROM quotas "
                  "WHERE org = $1",
                  {org});
    if (!r)
      return r.error();
    if (r->rows() > 0)
      out = {r->int64(0, 0), r->int64(0, 1)};
    return caf::none;
  });
  return or_error(err, out);
}

caf::error pg_tenancy::create_org(const std::string& org) {
  return in_org("", [&] {
    return changing("INSERT INTO orgs (name, created_ms) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    {org, clock_->now_ms()},
                    make_error(ec::conflict, "org '" + org + "' exists"));
  });
}

caf::expected<std::vector<std::string>> pg_tenancy::org_names() {
  // Byte order, as SQLite sorts: the same listing on either backend.
  auto r = exec("SELECT name FROM orgs ORDER BY name COLLATE \"C\"");
  if (!r)
    return r.error();
  return r->texts(0);
}

caf::expected<tenancy_backend::rows> pg_tenancy::list_orgs() {
  rows out;
  // Each org's rows are visible only with its org set: one at a time.
  auto err = reading("", [&]() -> caf::error {
    out.clear();
    auto names = org_names();
    if (!names)
      return names.error();
    for (auto& org : *names) {
      if (auto e = conn_.set_org(org))
        return e;
      auto r = exec("SELECT (SELECT count(*) FROM devices WHERE org = $1 AND "
                    "revoked_ms = 0), coalesce(q.points_per_second, 0), "
                    "coalesce(q.bytes_per_day, 0) FROM (SELECT 1) one LEFT "
                    "JOIN quotas q ON q.org = $1",
                    {org});
      if (!r)
        return r.error();
      out.push_back({org, std::to_string(r->int64(0, 0)),
                     std::to_string(r->int64(0, 1)),
                     std::to_string(r->int64(0, 2))});
    }
    return caf::none;
  });
  return or_error(err, out);
}

caf::expected<tenancy_backend::rows>
pg_tenancy::list_devices(const std::string& org) {
  rows out;
  auto now = clock_->now_ms();
  auto err = reading("", [&]() -> caf::error {
    out.clear();
    std::vector<std::string> orgs{org};
    if (org.empty()) {
      auto names = org_names();
      if (!names)
        return names.error();
      orgs = std::move(*names);
    }
    for (auto& o : orgs) {
      if (auto e = conn_.set_org(o))
        return e;
      auto r = exec("SELECT d.device, d.created_ms, d.revoked_ms, (SELECT "
                    "count(*) FROM device_keys k WHERE k.org = d.org AND "
                    "k.device = d.device AND (k.expires_ms = 0 OR "
                    "k.expires_ms > $2)) FROM devices d WHERE d.org = $1 "
                    "ORDER BY d.device COLLATE \"C\"",
                    {o, now});
      if (!r)
        return r.error();
      for (int i = 0; i < r->rows(); ++i)
        out.push_back({o, std::string{r->text(i, 0)},
                       time_text(r->int64(i, 1)), time_text(r->int64(i, 2)),
                       std::to_string(r->int64(i, 3))});
    }
    return caf::none;
  });
  return or_error(err, out);
}

caf::error pg_tenancy::renew_keys(const std::string& org,
                                  const std::string& device,
                                  int64_t overlap_ms, std::string& key) {
  // Locked: a revocation on another node waits for the new key.
  auto d = exec("SELECT revoked_ms FROM devices WHERE org = $1 AND device = "
                "$2 FOR UPDATE",
                {org, device});
  if (!d)
    return d.error();
  if (d->rows() == 0)
    return no_device_error(org, device);
  if (d->int64(0, 0) > 0)
    return revoked_device_error(device);
  // Keys in use keep working for the overlap, so the device can switch.
  auto old = exec("UPDATE device_keys SET expires_ms = $3 WHERE org = $1 AND "
                  "device = $2 AND (expires_ms = 0 OR expires_ms > $3)",
                  {org, device, clock_->now_ms() + overlap_ms});
  if (!old)
    return old.error();
  return insert_key(org, device, key);
}

caf::expected<std::string> pg_tenancy::rotate_key(const std::string& org,
                                                  const std::string& device,
                                                  int64_t overlap_ms) {
  std::string key;
  if (auto err = in_org(org, [&] {
        return renew_keys(org, device, overlap_ms, key);
      }))
    return err;
  return key;
}

caf::error pg_tenancy::revoke(const std::string& org,
                              const std::string& device) {
  return in_org(org, [&] {
    return changing("UPDATE devices SET revoked_ms = $3 WHERE org = $1 AND "
                    "device = $2 AND revoked_ms = 0",
                    {org, device, clock_->now_ms()},
                    no_active_device_error(org, device));
  });
}

caf::expected<std::string> pg_tenancy::create_token(const std::string& org,
                                                    int64_t uses,
                                                    int64_t ttl_ms) {
  auto token = new_enroll_token();
  auto now = clock_->now_ms();
  auto err = in_org(org, [&]() -> caf::error {
    if (auto e = require_org(org))
      return e;
    auto r = exec("INSERT INTO enroll_tokens (hash, org, uses_left, "
                  "expires_ms, created_ms) VALUES ($1, $2, $3, $4, $5)",
                  {pg::param::bytea(hash(token)), org, uses, now + ttl_ms,
                   now});
    return r ? caf::none : r.error();
  });
  return or_error(err, token);
}

caf::expected<int64_t> pg_tenancy::revoke_tokens(const std::string& org) {
  int64_t n = 0;
  auto err = in_org(org, [&]() -> caf::error {
    auto r = exec("UPDATE enroll_tokens SET revoked = true WHERE org = $1 "
                  "AND NOT revoked",
                  {org});
    if (!r)
      return r.error();
    n = r->affected();
    return caf::none;
  });
  return or_error(err, n);
}

caf::error pg_tenancy::set_quota(const std::string& org, org_quota q) {
  return in_org(org, [&]() -> caf::error {
    if (auto e = require_org(org))
      return e;
    auto r = exec("INSERT INTO quotas (org, points_per_second, bytes_per_day) "
                  "VALUES ($1, $2, $3) ON CONFLICT (org) DO UPDATE SET "
                  "points_per_second = EXCLUDED.points_per_second, "
                  "bytes_per_day = EXCLUDED.bytes_per_day",
                  {org, q.points_per_second, q.bytes_per_day});
    return r ? caf::none : r.error();
  });
}

caf::expected<std::string>
pg_tenancy::authenticate_api(const std::string& authorization) {
  auto token = api_token_of(authorization);
  if (!token)
    return token.error();
  auto h = hash(*token);
  caf::expected<std::string> org{caf::error{}};
  auto err = reading("", [&]() -> caf::error {
    auto t = row_by_hash("app.api_token_hash",
                         "SELECT org, expires_ms, revoked_ms FROM api_tokens "
                         "WHERE hash = $1",
                         h, unknown_api_token_error());
    if (!t)
      return t.error();
    org = api_token_holder(std::string{t->text(0, 0)}, t->int64(0, 1),
                           t->int64(0, 2), clock_->now_ms());
    return caf::none;
  });
  if (err)
    return err;
  return org;
}

caf::expected<std::string> pg_tenancy::create_api_token(const std::string& org,
                                                        int64_t ttl_ms) {
  auto token = new_api_token();
  auto h = hash(token);
  auto now = clock_->now_ms();
  auto err = in_org(org, [&]() -> caf::error {
    if (auto e = require_org(org))
      return e;
    auto r = exec("INSERT INTO api_tokens (hash, id, org, created_ms, "
                  "expires_ms) VALUES ($1, $2, $3, $4, $5)",
                  {pg::param::bytea(h), api_token_id(h), org, now,
                   ttl_ms == 0 ? int64_t{0} : now + ttl_ms});
    return r ? caf::none : r.error();
  });
  return or_error(err, token);
}

caf::expected<tenancy_backend::rows>
pg_tenancy::list_api_tokens(const std::string& org) {
  rows out;
  auto err = reading(org, [&]() -> caf::error {
    out.clear();
    auto r = exec("SELECT id, created_ms, expires_ms, revoked_ms FROM "
                  "api_tokens WHERE org = $1 ORDER BY created_ms, id COLLATE "
                  "\"C\"",
                  {org});
    if (!r)
      return r.error();
    for (int i = 0; i < r->rows(); ++i)
      out.push_back({org, std::string{r->text(i, 0)},
                     time_text(r->int64(i, 1)), time_text(r->int64(i, 2)),
                     time_text(r->int64(i, 3))});
    return caf::none;
  });
  return or_error(err, out);
}

caf::error pg_tenancy::revoke_api_token(const std::string& org,
                                        const std::string& id) {
  return in_org(org, [&] {
    return changing("UPDATE api_tokens SET revoked_ms = $3 WHERE org = $1 "
                    "AND id = $2 AND revoked_ms = 0",
                    {org, id, clock_->now_ms()},
                    no_api_token_error(org, id));
  });
}

} // namespace fleetd
