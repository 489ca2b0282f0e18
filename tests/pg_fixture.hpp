#pragma once

// A throwaway PostgreSQL 15 server per test binary, and PgBouncer in front
// of it in transaction pooling when a test asks: real servers from Debian's
// packages (tools/install-deps), never mocks.

#include <memory>
#include <optional>
#include <string>

#include <sys/types.h>

#include "runtime/pg.hpp"

namespace fleetd::test {

/// The URLs of one fresh database of the shared server.
struct pg_database {
  std::string name;
  /// The schema's owner (runs migrations), straight to PostgreSQL.
  std::string owner_url;
  /// The node's login role (a member of fleetd_app), straight to PostgreSQL.
  std::string app_url;
  /// The node's role through PgBouncer; empty unless with_bouncer() ran.
  std::string pooled_url;
  /// The superuser, over the server's unix socket.
  std::string admin_url;
};

/// One PostgreSQL 15 server in a scratch directory: initdb (--no-sync, the
/// data dir is thrown away) and postgres running with fsync on, listening
/// on 127.0.0.1 at a free port and on a unix socket in that directory only.
/// As root it runs as the postgres user (initdb and PgBouncer refuse root),
/// with the scratch directory handed to it. Its roles: the superuser
/// postgres, fleetd_owner (owns each database), fleetd_node (login, member
/// of the group fleetd_app). Stopped by PID at exit (immediate shutdown:
/// the data is thrown away), and by the kernel when the test process dies
/// first (parent-death signal).
class pg_server {
public:
  /// This binary's server, started on first call; nullptr when it cannot
  /// run here (no server binaries, root without a postgres user, initdb
  /// refused as another user), `why` then says why: the case skips. A
  /// server that should start and does not fails the calling case.
  static pg_server* shared(std::string& why);

  ~pg_server();
  pg_server(const pg_server&) = delete;
  pg_server& operator=(const pg_server&) = delete;

  /// Starts PgBouncer (pool_mode = transaction, SCRAM auth from a generated
  /// userlist, a free port on 127.0.0.1) once; false with `why` when
  /// PgBouncer is not installed. Databases made after it get pooled_url.
  bool with_bouncer(std::string& why);

  /// A new database `<prefix>_<n>` owned by fleetd_owner.
  pg_database create_database(const std::string& prefix);

  /// A URL for `user` (fleetd_owner, fleetd_node) to `db`, direct or
  /// through PgBouncer.
  std::string url(const std::string& user, const std::string& db,
                  bool pooled = false) const;
  std::string admin_url(const std::string& db = "postgres") const;

  const std::string& dir() const {
    return dir_;
  }
  /// Seconds the server (initdb included) and PgBouncer took to start.
  double start_seconds() const {
    return start_seconds_;
  }
  double bouncer_start_seconds() const {
    return bouncer_start_seconds_;
  }
  pid_t server_pid() const {
    return server_pid_;
  }
  pid_t bouncer_pid() const {
    return bouncer_pid_;
  }

private:
  pg_server() = default;
  // The outcome of starting: "" when up, else why not ("skip: ..." first).
  std::string start();
  bool start_postgres(std::string& why);
  std::string setup_roles();
  std::string bouncer_config() const;

  // The scratch directory and how children run (as postgres when root).
  struct holder;
  std::unique_ptr<holder> holder_;
  std::string dir_;
  std::string bin_dir_;
  int port_ = 0;
  int bouncer_port_ = 0;
  pid_t server_pid_ = 0;
  pid_t bouncer_pid_ = 0;
  std::string owner_password_;
  std::string app_password_;
  int databases_ = 0;
  double start_seconds_ = 0;
  double bouncer_start_seconds_ = 0;
};

/// A fresh database of the shared server (PgBouncer started too when
/// `pooled`); nullopt with `why` when the case must skip.
std::optional<pg_database> fresh_pg_database(const std::string& prefix,
                                             std::string& why,
                                             bool pooled = false);

/// A connection to `url`; a failed check when there is none.
pg::connection pg_connect(const std::string& url,
                          pg::connect_options opts = {});

/// The result of `sql`; a failed check (naming the SQL) when it fails.
pg::result pg_must(pg::connection& c, const std::string& sql,
                   const pg::params& ps = {});

} // namespace fleetd::test
