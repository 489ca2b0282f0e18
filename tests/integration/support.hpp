#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "helpers.hpp"
#include "messages/types.hpp"
#include "scratch_dir.hpp"

namespace fleetd::test {

/// A fresh directory under /tmp, removed when the object dies.
using temp_dir = scratch_dir;

/// The arguments with plain HTTP on loopback switched on (ingest.insecure
/// and ingest.anonymous, cloud.insecure) for fleetd-cloud and fleetd, unless
/// they set TLS options themselves: most tests are about other things than
/// TLS and keys; the HTTPS and identity tests pass certificates and keys. Likewise a
/// plain loopback console (console.insecure) unless console.tls-* or
/// console.insecure are given.
std::vector<std::string> plain_http_unless_tls(const std::string& prog,
                                               std::vector<std::string> args);

/// One child process of a test (arguments through plain_http_unless_tls): a program of build/ with arguments.
class process {
public:
  /// stdout goes to `stdout_file` when given, else with stderr.
  process(std::string program, std::vector<std::string> args,
          std::string stderr_file, std::string stdout_file = "");
  ~process();

  pid_t pid() const {
    return pid_;
  }
  void signal(int sig);
  /// Waits up to `timeout` for the exit; its status, or nullopt if still alive.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();

private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

/// Path of a program built into build/.
std::string program(const std::string& name);

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& content);
bool exists(const std::string& path);
int64_t file_size(const std::string& path);

/// Runs a query on an SQLite file (read-only) and returns the first column
/// of each row as text; an empty vector on error.
std::vector<std::string> query(const std::string& db_path,
                               const std::string& sql);
int64_t query_int(const std::string& db_path, const std::string& sql);

/// Every metric row of a device's store, as sortable text lines.
std::vector<std::string> device_points(const std::string& device_db);
/// Every point a cloud store holds for `device_id`, as sortable text lines.
std::vector<std::string> cloud_points(const std::string& cloud_db,
                                      const std::string& device_id);

/// Every log line of a device's store, in store order, as text lines.
std::vector<std::string> device_logs(const std::string& device_db);
/// Every log line a cloud store holds for `device_id`, in arrival order.
std::vector<std::string> cloud_logs(const std::string& cloud_db,
                                    const std::string& device_id);
/// The device's events with row id <= `upto`, in store order.
std::vector<std::string> device_events(const std::string& device_db,
                                       int64_t upto);
/// Every event a cloud store holds for `device_id`, in arrival order.
std::vector<std::string> cloud_events(const std::string& cloud_db,
                                      const std::string& device_id);

/// The port a node wrote to `file` (console.port, ingest.port) once it
/// appears; 0 when it does not within `timeout`.
uint16_t port_from(const std::string& file,
                   std::chrono::milliseconds timeout = std::chrono::seconds(15));

/// Asks a node's console for its status; nullopt when unreachable.
std::optional<node_status> console_status(uint16_t port);

/// A named counter of a named actor in a status; -1 when absent.
int64_t counter(const node_status& st, const std::string& actor,
                const std::string& name);

/// The state of a named actor in a status; empty when absent.
std::string state_of(const node_status& st, const std::string& actor);

/// True once the device whose console listens on `console` has run all
/// `rounds` of its system collector (the last one stored) and has no batch
/// queued and no point left to batch; false when not within `deadline`.
bool device_drained(uint16_t console, int64_t rounds,
                    std::chrono::milliseconds deadline);

/// Checks (doctest CHECKs) that the cloud holds every metric point of the
/// device's file exactly once and in order, batches 1..N of its metrics
/// stream each once, and that the device has nothing left to send; returns
/// how many points the device committed.
size_t check_metrics_exactly_once(const std::string& device_db,
                                  const std::string& cloud_db,
                                  const std::string& device_id);

/// A field of /proc/PID/status in kB (VmHWM, VmRSS); -1 when absent.
int64_t proc_kb(pid_t pid, const std::string& field);

/// utime + stime of a process, in clock ticks.
int64_t cpu_ticks(pid_t pid);

/// The share of one core `pid` used over `window`, in percent (the window
/// is slept through: it measures, it does not wait for anything).
double cpu_percent(pid_t pid, std::chrono::milliseconds window);

/// Descriptors `pid` has open.
int open_fds(pid_t pid);

/// The lowest descriptor number `pid` has free: a limit at it leaves none.
int lowest_free_fd(pid_t pid);

/// A TCP connection to 127.0.0.1:`port`, from `source` (an IPv4 address,
/// e.g. 127.0.0.2) when given; -1 when it fails.
int tcp_connect(uint16_t port, const char* source = nullptr);

/// True once the peer closed `fd` (EOF or reset) within `timeout`.
bool closed_by_peer(int fd, std::chrono::milliseconds timeout);

/// fleetctl with `args` against the console on 127.0.0.1:`port`, its output
/// files in `dir`: (exit status, stdout).
std::pair<int, std::string> fleetctl(const std::string& dir, uint16_t port,
                                     std::vector<std::string> args);

/// The secret (a key, a token) a fleetctl command printed on its first line;
/// a failed command fails the test with its stderr.
std::string fleetctl_secret(const std::string& dir, uint16_t port,
                            std::vector<std::string> args);

/// The body of a device's POST /v1/sync (zstd protobuf) carrying one point
/// ("raw" at 1'700'000'000'000 ms) as batch `seq` of `device`.
std::string one_point_sync(const std::string& device, int64_t seq);

/// Runs a program to completion; returns (exit status, stderr text).
std::pair<int, std::string> run_to_end(const std::string& program,
                                       const std::vector<std::string>& args,
                                       std::chrono::milliseconds timeout);

} // namespace fleetd::test
