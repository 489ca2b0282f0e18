#include "tools/pg_server/pg_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include <libpq-fe.h>

#include "messages/error.hpp"
#include "runtime/pg.hpp"
#include "runtime/random.hpp"
#include "tools/pg_server/process.hpp"
#include "tools/pg_server/waiting.hpp"

namespace fleetd {

namespace {

using namespace std::chrono_literals;

// The directory holding initdb and postgres of PostgreSQL 15, or "";
// FLEETD_PG_BINDIR names another.
std::string find_bin_dir() {
  if (auto* dir = ::getenv("FLEETD_PG_BINDIR"))
    return executable(std::string{dir} + "/initdb") ? dir : "";
  for (const char* dir : {"/usr/lib/postgresql/15/bin", "/usr/local/bin"})
    if (executable(std::string{dir} + "/initdb")
        && executable(std::string{dir} + "/postgres"))
      return dir;
  return {};
}


bool pings(const std::string& conninfo) {
  return PQping(conninfo.c_str()) == PQPING_OK;
}

} // namespace

struct pg_server::holder {
  temp_dir scratch{"fleetd-pg"};
  // Every child of the server runs like this, with its own argv and log.
  child_spec base;

  child_spec with(std::vector<std::string> argv, const std::string& log) const {
    auto spec = base;
    spec.argv = std::move(argv);
    spec.log = scratch.path() + "/" + log;
    return spec;
  }
};

std::unique_ptr<pg_server> pg_server::start(failure& fail) {
  std::unique_ptr<pg_server> s{new pg_server};
  auto t0 = std::chrono::steady_clock::now();
  if (!s->start_checked(fail))
    return nullptr;
  s->start_seconds_ = seconds_since(t0);
  return s;
}

pg_server::~pg_server() {
  stop(bouncer_pid_, SIGTERM);
  // Immediate shutdown: no checkpoint of data that is thrown away next
  // (a fast one flushed seconds of CREATE DATABASE copies with fsync on).
  stop(server_pid_, SIGQUIT);
}

bool pg_server::start_checked(failure& fail) {
  bin_dir_ = find_bin_dir();
  if (bin_dir_.empty()) {
    fail = {true,
            "PostgreSQL 15 server binaries not installed (tools/install-deps)"};
    return false;
  }
  holder_ = std::make_unique<holder>();
  auto& base = holder_->base;
  if (::geteuid() == 0) {
    auto* pw = ::getpwnam("postgres");
    if (!pw) {
      fail = {true, "running as root, and there is no postgres user to run "
                    "the server as"};
      return false;
    }
    base.switch_user = true;
    base.uid = pw->pw_uid;
    base.gid = pw->pw_gid;
  }
  dir_ = holder_->scratch.path();
  base.cwd = dir_;
  if (dir_.empty()
      || (base.switch_user && ::chown(dir_.c_str(), base.uid, base.gid) != 0)) {
    fail = {false, "cannot make a directory for the server under /tmp"};
    return false;
  }
  auto rc = run(holder_->with({bin_dir_ + "/initdb", "-D", dir_ + "/data", "-U",
                               "postgres", "--auth-local=trust",
                               "--auth-host=scram-sha-256", "--no-sync", "-E",
                               "UTF8", "--locale=C", "--no-instructions"},
                              "initdb.log"),
                60s);
  if (rc != 0) {
    fail = {!base.switch_user, "initdb failed (" + std::to_string(rc)
                                 + "): " + read_tail(dir_ + "/initdb.log")};
    return false;
  }
  return start_postgres(fail) && setup_roles(fail);
}

bool pg_server::start_postgres(failure& fail) {
  // A port found free may be taken before the server binds it: retry.
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = free_port();
    auto p = std::to_string(port_);
    auto spec = holder_->with(
      {bin_dir_ + "/postgres", "-D", dir_ + "/data", "-c",
       "listen_addresses=127.0.0.1", "-c", "port=" + p, "-c",
       "unix_socket_directories=" + dir_, "-c", "fsync=on", "-c",
       "synchronous_commit=on", "-c", "shared_buffers=16MB", "-c",
       "max_connections=60", "-c", "timezone=UTC"},
      "postgres.log");
    spec.death_signal = SIGQUIT;
    server_pid_ = spawn(spec);
    if (server_pid_ < 0) {
      fail = {false, "cannot start postgres"};
      return false;
    }
    auto conninfo = "host=" + dir_ + " port=" + p
                    + " dbname=postgres user=postgres connect_timeout=2";
    bool exited = false;
    auto up = poll_until(
      [&] {
        if (wait_for_child(server_pid_, 0ms)) {
          exited = true;
          return true;
        }
        return pings(conninfo);
      },
      30s);
    if (up && !exited)
      return true;
    auto log = read_tail(dir_ + "/postgres.log");
    if (!exited)
      stop(server_pid_, SIGQUIT);
    server_pid_ = 0;
    fail = {false, "postgres did not start: " + log};
    if (log.find("could not bind") == std::string::npos)
      return false;
  }
  return false;
}

bool pg_server::setup_roles(failure& fail) {
  owner_password_ = random_hex(16);
  app_password_ = random_hex(16);
  auto admin = pg::connection::open(admin_url());
  if (!admin) {
    fail = {false, "cannot connect as the superuser: " + render(admin.error())};
    return false;
  }
  auto done = admin->exec_script(
    "CREATE ROLE fleetd_owner LOGIN PASSWORD '" + owner_password_
    + "'; CREATE ROLE fleetd_app NOLOGIN; CREATE ROLE fleetd_node LOGIN "
      "PASSWORD '"
    + app_password_ + "' IN ROLE fleetd_app;");
  if (!done) {
    fail = {false, "cannot create the roles: " + render(done.error())};
    return false;
  }
  return true;
}

std::string pg_server::bouncer_config(int pool_size) const {
  std::ostringstream out;
  out << "[databases]\n"
      << "* = host=127.0.0.1 port=" << port_ << "\n"
      << "[pgbouncer]\n"
      << "listen_addr = 127.0.0.1\n"
      << "listen_port = " << bouncer_port_ << "\n"
      << "unix_socket_dir =\n"
      << "auth_type = scram-sha-256\n"
      << "auth_file = " << dir_ << "/userlist.txt\n"
      << "pool_mode = transaction\n"
      << "default_pool_size = " << pool_size << "\n"
      << "max_client_conn = 200\n"
      << "ignore_startup_parameters = extra_float_digits\n";
  return out.str();
}

bool pg_server::with_bouncer(failure& fail, int pool_size) {
  if (bouncer_pid_ > 0)
    return true;
  std::string bin;
  for (const char* candidate : {"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"})
    if (executable(candidate))
      bin = candidate;
  if (bin.empty()) {
    fail = {true, "PgBouncer not installed (tools/install-deps)"};
    return false;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto who = holder_->with({}, "pgbouncer.log");
  bouncer_port_ = free_port();
  auto users = "\"fleetd_owner\" \"" + owner_password_
               + "\"\n\"fleetd_node\" \"" + app_password_ + "\"\n";
  if (!write_file(dir_ + "/userlist.txt", users, who)
      || !write_file(dir_ + "/pgbouncer.ini", bouncer_config(pool_size), who)) {
    fail = {false, "cannot write PgBouncer's files in " + dir_};
    return false;
  }
  who.argv = {bin, dir_ + "/pgbouncer.ini"};
  who.death_signal = SIGTERM;
  bouncer_pid_ = spawn(who);
  if (bouncer_pid_ <= 0) {
    bouncer_pid_ = 0;
    fail = {false, "cannot start PgBouncer"};
    return false;
  }
  auto conninfo = "host=127.0.0.1 port=" + std::to_string(bouncer_port_)
                  + " dbname=postgres user=fleetd_node password="
                  + app_password_ + " connect_timeout=2";
  bool up = poll_until(
    [&] {
      return !wait_for_child(bouncer_pid_, 0ms) && pings(conninfo);
    },
    30s);
  if (!up) {
    auto log = read_tail(dir_ + "/pgbouncer.log");
    stop(bouncer_pid_, SIGKILL);
    bouncer_pid_ = 0;
    fail = {false, "PgBouncer did not start: " + log};
    return false;
  }
  bouncer_start_seconds_ = seconds_since(t0);
  return true;
}

caf::expected<pg_database>
pg_server::create_database(const std::string& prefix) {
  pg_database out;
  out.name = prefix + "_" + std::to_string(++databases_);
  auto admin = pg::connection::open(admin_url());
  if (!admin)
    return admin.error();
  auto made = admin->exec_script("CREATE DATABASE " + out.name
                                 + " OWNER fleetd_owner");
  if (!made)
    return made.error();
  out.owner_url = url("fleetd_owner", out.name);
  out.app_url = url("fleetd_node", out.name);
  if (bouncer_pid_ > 0)
    out.pooled_url = url("fleetd_node", out.name, true);
  out.admin_url = admin_url(out.name);
  return out;
}

std::string pg_server::url(const std::string& user, const std::string& db,
                           bool pooled) const {
  auto& password = user == "fleetd_owner" ? owner_password_ : app_password_;
  return "postgresql://" + user + ":" + password + "@127.0.0.1:"
         + std::to_string(pooled ? bouncer_port_ : port_) + "/" + db;
}

std::string pg_server::admin_url(const std::string& db) const {
  return "postgresql:///" + db + "?host=" + dir_ + "&port="
         + std::to_string(port_) + "&user=postgres";
}

} // namespace fleetd
