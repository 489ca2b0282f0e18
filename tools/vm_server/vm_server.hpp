#pragma once

// A throwaway VictoriaMetrics single-node server from Debian's
// victoria-metrics package (tools/install-deps), for the tests
// (tests/vm_fixture.hpp) and fleetd-bench fanout. No test framework here:
// failures are strings.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <sys/types.h>

#include <caf/expected.hpp>

namespace fleetd {

/// One VictoriaMetrics 1.79 in a scratch directory, on 127.0.0.1 at a free
/// port, with the smallest retention it allows (1 day) and deduplication of
/// identical timestamps (-dedup.minScrapeInterval=1ms, which the sink's
/// idempotence relies on). Stopped by PID when dropped, and by the kernel
/// when the starting thread dies first (parent-death signal).
class vm_server {
public:
  /// Why the server is not up: `skip` when it cannot run here (binary not
  /// installed), else it should have started and did not.
  struct failure {
    bool skip = false;
    std::string why;
  };

  static std::unique_ptr<vm_server> start(failure& fail);

  ~vm_server();
  vm_server(const vm_server&) = delete;
  vm_server& operator=(const vm_server&) = delete;

  /// Stops the server (SIGTERM, then SIGKILL); its data stays.
  void stop();
  /// Kills the server (SIGKILL: rows it held in memory only are lost); its
  /// data stays.
  void kill();
  /// Starts it again on the same port and data; false with `fail`.
  bool restart(failure& fail);

  /// http://127.0.0.1:<port>
  std::string url() const;
  uint16_t port() const {
    return static_cast<uint16_t>(port_);
  }
  pid_t pid() const {
    return pid_;
  }
  const std::string& dir() const {
    return dir_;
  }
  double start_seconds() const {
    return start_seconds_;
  }

  /// Makes rows written so far searchable (/internal/force_flush); new
  /// series are otherwise visible only after ~5 s.
  caf::error flush();

  /// GET `target` (e.g. /api/v1/export?match[]=...): the body of a 200.
  caf::expected<std::string> get(const std::string& target,
                                 size_t max_bytes = 64 << 20);

  /// POST `body` to `target` (e.g. /api/v1/import): ok on a 2xx.
  caf::error post(const std::string& target, const std::string& body);

  /// The sum of every series of `metric` on /metrics
  /// (vm_rows_invalid_total, vm_rows_ignored_total, ...).
  caf::expected<double> metric(const std::string& name);

private:
  vm_server() = default;
  bool launch(failure& fail);

  struct holder;
  std::unique_ptr<holder> holder_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = 0;
  double start_seconds_ = 0;
};

/// The sum of every series of `name` in Prometheus text `exposition` (any
/// server's /metrics); nullopt when it has none.
std::optional<double> metric_sum(const std::string& exposition,
                                 const std::string& name);

/// The export of `match` (a series selector): one JSON line per series.
std::string vm_export_target(const std::string& match);

} // namespace fleetd
