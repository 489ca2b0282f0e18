#include "cloud/embedded_tenancy.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include "messages/error.hpp"
#include "runtime/random.hpp"

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
)";

constexpr const char* key_prefix = "fdk_";
constexpr const char* token_prefix = "fdt_";
// 256 random bits as hex after the prefix.
constexpr size_t secret_bytes = 32;
constexpr size_t secret_length = 4 + 2 * secret_bytes;

// The secret of "Bearer <prefix><hex>", or empty when it has another shape
// (nothing of a malformed header is hashed, stored or echoed).
std::string bearer(const std::string& authorization, const char* prefix) {
  const std::string scheme = "Bearer ";
  if (authorization.size() != scheme.size() + secret_length
      || authorization.compare(0, scheme.size(), scheme) != 0)
    return {};
  auto secret = authorization.substr(scheme.size());
  if (secret.compare(0, 4, prefix) != 0)
    return {};
  for (size_t i = 4; i < secret.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(secret[i])))
      return {};
  return secret;
}

std::string time_text(int64_t ms) {
  return ms == 0 ? "-" : std::to_string(ms);
}

} // namespace

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.')
    return false;
  for (auto c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_'
        && c != '-')
      return false;
  return true;
}

caf::expected<std::string> load_or_create_secret(const std::string& path) {
  std::ifstream in(path);
  if (in) {
    std::string hex;
    std::getline(in, hex);
    if (hex.size() != 2 * secret_bytes)
      return make_error(ec::bad_config, "tenancy.secret-file '" + path
                                          + "': expected 64 hex digits");
    return hex;
  }
  auto hex = random_hex(secret_bytes);
  auto fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return make_error(ec::io_error, "cannot create '" + path
                                      + "': " + strerror(errno));
  auto line = hex + "\n";
  bool ok = ::write(fd, line.data(), line.size())
              == static_cast<ssize_t>(line.size())
            && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok)
    return make_error(ec::io_error, "cannot write '" + path + "'");
  return hex;
}

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

std::string embedded_tenancy::hash(const std::string& secret) const {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
       out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
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
  if (authorization.empty())
    return make_error(ec::missing_key, "the request carries no device key "
                                       "(Authorization: Bearer ...)");
  auto key = bearer(authorization, key_prefix);
  if (key.empty())
    return make_error(ec::unknown_key, "no device holds this key");
  auto st = row_by_hash("SELECT k.org, k.device, k.expires_ms, d.revoked_ms "
                        "FROM device_keys k JOIN devices d ON d.org = k.org "
                        "AND d.device = k.device WHERE k.hash = ?1",
                        key,
                        make_error(ec::unknown_key, "no device holds this key"));
  if (!st)
    return st.error();
  device_identity who{st->column_text(0), st->column_text(1)};
  if (st->column_int(3) > 0)
    return make_error(ec::revoked_key, "device " + who.org + "/" + who.device
                                         + " is revoked");
  auto expires = st->column_int(2);
  if (expires > 0 && expires <= clock_->now_ms())
    return make_error(ec::expired_key, "this key of " + who.org + "/"
                                         + who.device
                                         + " was rotated out");
  return who;
}

caf::error embedded_tenancy::insert_key(const std::string& org,
                                        const std::string& device,
                                        std::string& key) {
  key = key_prefix + random_hex(secret_bytes);
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
    return make_error(ec::unknown_org, "no org named '" + org + "'");
  return caf::none;
}

caf::error embedded_tenancy::insert_device(const std::string& org,
                                           const std::string& device,
                                           std::string& key) {
  if (!valid_name(device))
    return make_error(ec::conflict, "device names are 1-64 of A-Z a-z 0-9 . _ "
                                    "-, not '" + device.substr(0, 64) + "'");
  if (auto e = require_org(org))
    return e;
  auto ins = db_.prepare("INSERT OR IGNORE INTO devices (org, device, "
                         "created_ms) VALUES (?1, ?2, ?3)");
  if (!ins)
    return ins.error();
  ins->bind(1, org).bind(2, device).bind(3, clock_->now_ms());
  if (auto e = run_changing(*ins,
        make_error(ec::conflict, "device '" + device + "' exists in org '"
                                      + org
                                      + "' (rotate-key gives it a new key)")))
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
  auto token = bearer(authorization, token_prefix);
  if (token.empty())
    return make_error(ec::bad_enroll_token, "no such enrollment token");
  auto st = row_by_hash("SELECT org, uses_left, expires_ms, revoked FROM "
                        "enroll_tokens WHERE hash = ?1",
                        token,
                        make_error(ec::bad_enroll_token,
                                   "no such enrollment token"));
  if (!st)
    return st.error();
  auto org = st->column_text(0);
  if (st->column_int(3) != 0)
    return make_error(ec::bad_enroll_token, "the enrollment token is revoked");
  if (st->column_int(2) <= clock_->now_ms())
    return make_error(ec::bad_enroll_token, "the enrollment token expired");
  if (st->column_int(1) <= 0)
    return make_error(ec::bad_enroll_token, "the enrollment token is used up");
  // The device and the use of the token commit together.
  std::string key;
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    if (auto e = insert_device(org, device, key))
      return e;
    auto use = db_.prepare("UPDATE enroll_tokens SET uses_left = uses_left "
                           "- 1 WHERE hash = ?1");
    if (!use)
      return use.error();
    use->bind_blob(1, hash(token));
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

caf::expected<tenancy_answer>
embedded_tenancy::create_org(const std::string& org) {
  if (!valid_name(org))
    return make_error(ec::conflict, "org names are 1-64 of A-Z a-z 0-9 . _ -, "
                                    "not '" + org.substr(0, 64) + "'");
  auto ins = db_.prepare("INSERT OR IGNORE INTO orgs (name, created_ms) "
                         "VALUES (?1, ?2)");
  if (!ins)
    return ins.error();
  ins->bind(1, org).bind(2, clock_->now_ms());
  if (auto err = run_changing(*ins,
        make_error(ec::conflict, "org '" + org + "' exists")))
    return err;
  return tenancy_answer{{"org"}, {{org}}, {}};
}

caf::expected<tenancy_answer> embedded_tenancy::list_orgs() {
  auto st = db_.prepare(
    "SELECT o.name, (SELECT count(*) FROM devices d WHERE d.org = o.name AND "
    "d.revoked_ms = 0), o.points_per_second, o.bytes_per_day FROM orgs o "
    "ORDER BY o.name");
  if (!st)
    return st.error();
  tenancy_answer out{{"org", "devices", "points_per_second", "bytes_per_day"},
                     {},
                     {}};
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        out.rows.push_back({r.column_text(0), std::to_string(r.column_int(1)),
                            std::to_string(r.column_int(2)),
                            std::to_string(r.column_int(3))});
      }))
    return err;
  return out;
}

caf::expected<tenancy_answer>
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
  tenancy_answer out{{"org", "device", "created_ms", "revoked_ms", "keys"},
                     {},
                     {}};
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        out.rows.push_back({r.column_text(0), r.column_text(1),
                            time_text(r.column_int(2)),
                            time_text(r.column_int(3)),
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
      return make_error(ec::unknown_device, "no device '" + device
                                              + "' in org '" + org + "'");
    if (st->column_int(0) > 0)
      return make_error(ec::revoked_key, "device '" + device + "' is revoked");
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

caf::expected<tenancy_answer>
embedded_tenancy::revoke(const std::string& org, const std::string& device) {
  auto st = db_.prepare("UPDATE devices SET revoked_ms = ?3 WHERE org = ?1 "
                        "AND device = ?2 AND revoked_ms = 0");
  if (!st)
    return st.error();
  st->bind(1, org).bind(2, device).bind(3, clock_->now_ms());
  if (auto err = run_changing(*st,
        make_error(ec::unknown_device, "no active device '" + device
                                            + "' in org '" + org + "'")))
    return err;
  return tenancy_answer{{"org", "device", "state"}, {{org, device, "revoked"}},
                        {}};
}

caf::expected<std::string>
embedded_tenancy::create_token(const std::string& org, int64_t uses,
                               int64_t ttl_ms) {
  if (uses < 1 || ttl_ms < 1)
    return make_error(ec::conflict, "a token needs --uses >= 1 and a "
                                    "positive --expires");
  if (auto err = require_org(org))
    return err;
  auto token = token_prefix + random_hex(secret_bytes);
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

caf::expected<tenancy_answer>
embedded_tenancy::revoke_tokens(const std::string& org) {
  auto st = db_.prepare("UPDATE enroll_tokens SET revoked = 1 WHERE org = ?1 "
                        "AND revoked = 0");
  if (!st)
    return st.error();
  st->bind(1, org);
  if (auto err = st->run())
    return err;
  return tenancy_answer{{"org", "tokens_revoked"},
                        {{org, std::to_string(db_.changes())}},
                        {}};
}

caf::expected<tenancy_answer>
embedded_tenancy::set_quota(const tenancy_command& cmd) {
  if (cmd.points_per_second < 0 || cmd.bytes_per_day < 0)
    return make_error(ec::conflict, "quotas are >= 0 (0: unlimited)");
  auto st = db_.prepare("UPDATE orgs SET points_per_second = ?2, "
                        "bytes_per_day = ?3 WHERE name = ?1");
  if (!st)
    return st.error();
  st->bind(1, cmd.org).bind(2, cmd.points_per_second).bind(3,
                                                           cmd.bytes_per_day);
  if (auto err = run_changing(*st,
        make_error(ec::unknown_org, "no org named '" + cmd.org + "'")))
    return err;
  return tenancy_answer{{"org", "points_per_second", "bytes_per_day"},
                        {{cmd.org, std::to_string(cmd.points_per_second),
                          std::to_string(cmd.bytes_per_day)}},
                        {}};
}

caf::expected<tenancy_answer> embedded_tenancy::run(const tenancy_command& cmd) {
  // The commands that make a key or token answer it once, as the secret.
  auto with_secret = [&](caf::expected<std::string> secret,
                         std::vector<std::string> row)
    -> caf::expected<tenancy_answer> {
    if (!secret)
      return secret.error();
    return tenancy_answer{{"org", "device"}, {std::move(row)}, *secret};
  };
  if (cmd.op == "org-create")
    return create_org(cmd.org);
  if (cmd.op == "org-list")
    return list_orgs();
  if (cmd.op == "device-add")
    return with_secret(add_device(cmd.org, cmd.device), {cmd.org, cmd.device});
  if (cmd.op == "device-list")
    return list_devices(cmd.org);
  if (cmd.op == "rotate-key")
    return with_secret(rotate_key(cmd.org, cmd.device, cmd.duration_ms),
                       {cmd.org, cmd.device});
  if (cmd.op == "revoke")
    return revoke(cmd.org, cmd.device);
  if (cmd.op == "enroll-create")
    return with_secret(create_token(cmd.org, cmd.uses, cmd.duration_ms),
                       {cmd.org, "*"});
  if (cmd.op == "enroll-revoke")
    return revoke_tokens(cmd.org);
  if (cmd.op == "quota-set")
    return set_quota(cmd);
  return make_error(ec::conflict, "unknown tenancy command '"
                                    + cmd.op.substr(0, 32) + "'");
}

} // namespace fleetd
