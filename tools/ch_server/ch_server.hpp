#pragma once

// A throwaway ClickHouse 18.16 server from Debian's clickhouse-server
// package (tools/install-deps) for the tests (tests/ch_fixture.hpp) and
// fleetd-bench. No test framework here: failures are strings.

#include <memory>
#include <string>

#include <sys/types.h>

namespace fleetd {

/// One ClickHouse server in a scratch directory: a <yandex> XML config of
/// its own, the HTTP interface on 127.0.0.1 at a free port and no other
/// listener (no native TCP, interserver or MySQL port). Users: `default`
/// without a password and `fleetd` with password(). As root it runs as the
/// clickhouse user when there is one (18.16 itself accepts root). Killed
/// by PID when dropped (the data is thrown away), and by the kernel when
/// the starting thread dies first (parent-death signal).
class ch_server {
public:
  /// Why a server is not up: `skip` when it cannot run here (not
  /// installed), else it should have started and did not.
  struct failure {
    bool skip = false;
    std::string why;
  };

  /// Starts a server; nullptr with `fail` filled when there is none.
  static std::unique_ptr<ch_server> start(failure& fail);

  ~ch_server();
  ch_server(const ch_server&) = delete;
  ch_server& operator=(const ch_server&) = delete;

  /// Kills the server (a crash), keeping its data and port.
  void stop();
  /// Starts it again after stop(), on the same port and data.
  bool restart(failure& fail);

  /// "http://127.0.0.1:<port>".
  std::string url() const;
  int http_port() const {
    return port_;
  }
  const std::string& password() const {
    return password_;
  }
  const std::string& dir() const {
    return dir_;
  }
  pid_t pid() const {
    return pid_;
  }
  /// Seconds from spawn to the first answer of /ping.
  double start_seconds() const {
    return start_seconds_;
  }

private:
  ch_server() = default;
  bool start_checked(failure& fail);
  bool launch(failure& fail);
  bool write_config(failure& fail);

  struct holder;
  std::unique_ptr<holder> holder_;
  std::string dir_;
  std::string password_;
  int port_ = 0;
  pid_t pid_ = 0;
  double start_seconds_ = 0;
};

} // namespace fleetd
