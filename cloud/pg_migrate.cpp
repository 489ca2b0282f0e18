#include "cloud/pg_migrate.hpp"

#include <ctime>
#include <map>

#include <openssl/evp.h>

#include "messages/error.hpp"

namespace fleetd {

namespace {

// "fleetd" and 1: the lock every migration step takes.
constexpr int64_t migrate_lock = 0x666c656574640001;

constexpr const char* ledger_sql = R"(
CREATE TABLE IF NOT EXISTS fleetd_schema_migrations (
  version integer PRIMARY KEY,
  name text NOT NULL,
  checksum text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()))";

std::string sha256_hex(const std::string& text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += digits[md[i] >> 4];
    out += digits[md[i] & 0xF];
  }
  return out;
}

// Versions must run 1..n without a gap: a missing file is an error.
caf::error check_order(const std::vector<pg_migration>& ms) {
  for (size_t i = 0; i < ms.size(); ++i)
    if (ms[i].version != static_cast<int>(i + 1))
      return make_error(ec::bad_config,
                        "migration " + ms[i].name + " has version "
                          + std::to_string(ms[i].version) + ", expected "
                          + std::to_string(i + 1));
  return caf::none;
}

// The applied versions and checksums, checked against `ms`; the version.
caf::expected<int> applied_version(pg::connection& c,
                                   const std::vector<pg_migration>& ms) {
  auto rows = c.exec("SELECT version, checksum FROM fleetd_schema_migrations "
                     "ORDER BY version");
  if (!rows)
    return rows.error();
  int version = 0;
  for (int r = 0; r < rows->rows(); ++r) {
    auto v = static_cast<int>(rows->int64(r, 0));
    if (v != version + 1)
      return make_error(ec::database_error,
                        "fleetd_schema_migrations lacks version "
                          + std::to_string(version + 1));
    if (v > static_cast<int>(ms.size()))
      return make_error(ec::bad_config,
                        "the database's schema (version " + std::to_string(v)
                          + ") is newer than this program's ("
                          + std::to_string(ms.size()) + ")");
    auto& m = ms[static_cast<size_t>(v - 1)];
    if (rows->text(r, 1) != sha256_hex(m.sql))
      return make_error(ec::bad_config, "migration " + m.name
                                          + " changed after it was applied");
    version = v;
  }
  return version;
}

// One transaction: lock, read the ledger, apply the next step if any.
// The version after it; `applied` tells whether this call applied it.
caf::expected<int> step(pg::connection& c, const std::vector<pg_migration>& ms,
                        bool& applied) {
  applied = false;
  int version = 0;
  auto err = pg::transaction(c, "", [&]() -> caf::error {
    if (auto r = c.exec("SELECT pg_advisory_xact_lock($1)", {migrate_lock}); !r)
      return r.error();
    if (auto r = c.exec_script(ledger_sql); !r)
      return r.error();
    auto v = applied_version(c, ms);
    if (!v)
      return v.error();
    version = *v;
    if (version == static_cast<int>(ms.size()))
      return caf::none;
    auto& m = ms[static_cast<size_t>(version)];
    // Functions made with SET search_path FROM CURRENT keep this path.
    if (auto r = c.exec("SELECT set_config('search_path', "
                        "quote_ident(current_schema()) || ', pg_temp', true)");
        !r)
      return r.error();
    if (auto r = c.exec_script(m.sql); !r)
      return make_error(static_cast<ec>(r.error().code()),
                        "migration " + m.name + ": " + error_text(r.error()));
    if (auto r = c.exec("INSERT INTO fleetd_schema_migrations (version, name, "
                        "checksum) VALUES ($1, $2, $3)",
                        {m.version, m.name, sha256_hex(m.sql)});
        !r)
      return r.error();
    version = m.version;
    applied = true;
    return caf::none;
  });
  if (err)
    return err;
  return version;
}

// "YYYY-MM-DD" of a UTC instant.
std::string utc_day(int64_t ms) {
  auto secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
  return buf;
}

} // namespace

const std::vector<pg_migration>& builtin_migrations() {
  static const std::vector<pg_migration> all = [] {
    std::vector<pg_migration> out;
    for (int i = 0; i < detail::builtin_migration_count; ++i) {
      auto& t = detail::builtin_migration_texts[i];
      out.push_back(pg_migration{t.version, t.name, t.sql});
    }
    return out;
  }();
  return all;
}

caf::expected<migrate_report>
migrate(pg::connection& owner, const std::vector<pg_migration>& migrations) {
  if (auto err = check_order(migrations))
    return err;
  migrate_report out;
  bool first = true;
  for (;;) {
    bool applied = false;
    auto version = step(owner, migrations, applied);
    if (!version)
      return version.error();
    if (first)
      out.from_version = applied ? *version - 1 : *version;
    first = false;
    out.to_version = *version;
    if (!applied)
      return out;
    ++out.applied;
  }
}

caf::expected<int> schema_version(pg::connection& conn) {
  auto r = conn.exec("SELECT coalesce(max(version), 0) FROM "
                     "fleetd_schema_migrations");
  if (!r) {
    if (conn.last_sqlstate() == "42P01")
      return 0;
    return r.error();
  }
  return static_cast<int>(r->int64(0, 0));
}

caf::error verify_app_role(pg::connection& app) {
  auto r = app.exec(
    "SELECT r.rolsuper, r.rolbypassrls, (SELECT string_agg(c.relname, ', ' "
    "ORDER BY c.relname) FROM pg_class c WHERE c.relrowsecurity AND "
    "c.relnamespace = current_schema()::regnamespace AND "
    "pg_has_role(current_user, c.relowner, 'USAGE')), current_user "
    "FROM pg_roles r WHERE r.rolname = current_user");
  if (!r)
    return r.error();
  std::string role{r->text(0, 3)};
  if (r->boolean(0, 0) || r->boolean(0, 1))
    return make_error(ec::bad_config,
                      "role " + role + " bypasses row level security "
                        + (r->boolean(0, 0) ? "(superuser)" : "(BYPASSRLS)")
                        + ": connect the node as a member of fleetd_app");
  if (!r->is_null(0, 2))
    return make_error(ec::bad_config, "role " + role + " owns "
                                        + std::string{r->text(0, 2)}
                                        + ": the node's role must not own the "
                                          "tables it reads");
  return caf::none;
}

caf::expected<pg::connection> open_node_connection(const std::string& url,
                                                   pg::connect_options opts) {
  auto app = pg::connection::open(url, opts);
  if (!app)
    return app.error();
  if (auto err = verify_app_role(*app))
    return err;
  auto version = schema_version(*app);
  if (!version)
    return version.error();
  if (*version < static_cast<int>(builtin_migrations().size()))
    return make_error(ec::storage_failed,
                      "the PostgreSQL schema is at version "
                        + std::to_string(*version) + ", this node needs "
                        + std::to_string(builtin_migrations().size()));
  return app;
}

caf::expected<int64_t> ensure_partitions(pg::connection& conn, int64_t day_ms,
                                         int days) {
  auto r = conn.exec("SELECT fleetd_ensure_partitions($1::date, $2)",
                     {utc_day(day_ms), days});
  if (!r)
    return r.error();
  return r->int64(0, 0);
}

caf::expected<std::vector<std::string>>
drop_partitions_before(pg::connection& conn, int64_t cutoff_ms) {
  auto r = conn.exec("SELECT fleetd_drop_partitions_before($1::date)",
                     {utc_day(cutoff_ms)});
  if (!r)
    return r.error();
  return r->texts(0);
}

} // namespace fleetd
