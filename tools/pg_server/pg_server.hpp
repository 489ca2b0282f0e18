#pragma once

// A throwaway PostgreSQL 15 server, and PgBouncer in front of it in
// transaction pooling on request: real servers from Debian's packages
// (tools/install-deps) for the tests (tests/pg_fixture.hpp) and for
// fleetd-bench. No test framework here: failures are strings.

#include <memory>
#include <string>

#include <sys/types.h>

#include <caf/expected.hpp>

namespace fleetd {

/// The URLs of one fresh database of a pg_server.
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
/// of the group fleetd_app). Stopped by PID when dropped (immediate
/// shutdown: the data is thrown away), and by the kernel when the starting
/// thread dies first (parent-death signal).
class pg_server {
public:
  /// Why a server or PgBouncer is not up: `skip` when it cannot run here
  /// (no binaries, root without a postgres user, initdb refused as another
  /// user), else it should have started and did not.
  struct failure {
    bool skip = false;
    std::string why;
  };

  /// Starts a server; nullptr with `fail` filled when there is none.
  static std::unique_ptr<pg_server> start(failure& fail);

  ~pg_server();
  pg_server(const pg_server&) = delete;
  pg_server& operator=(const pg_server&) = delete;

  /// Starts PgBouncer (pool_mode = transaction, SCRAM auth from a generated
  /// userlist, a free port on 127.0.0.1, `pool_size` server connections per
  /// database and user) once; false with `fail` when it is not up.
  /// Databases made after it get pooled_url.
  bool with_bouncer(failure& fail, int pool_size = 4);

  /// A new database `<prefix>_<n>` owned by fleetd_owner.
  caf::expected<pg_database> create_database(const std::string& prefix);

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
  bool start_checked(failure& fail);
  bool start_postgres(failure& fail);
  bool setup_roles(failure& fail);
  std::string bouncer_config(int pool_size) const;

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

} // namespace fleetd
