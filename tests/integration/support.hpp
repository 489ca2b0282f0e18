#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "helpers.hpp"
#include "messages/types.hpp"
#include "pg_fixture.hpp"
#include "scratch_dir.hpp"

namespace fleetd::test {

/// A fresh directory under /tmp, removed when the object dies.
using temp_dir = scratch_dir;

/// The arguments with plain HTTP on loopback switched on (ingest.insecure
/// and ingest.anonymous, cloud.insecure) for fleetd-cloud and fleetd, unless
/// they set TLS options themselves: most tests are about other things than
/// TLS and keys; the HTTPS and identity tests pass certificates and keys. Likewise a
/// plain loopback console (console.insecure) unless console.tls-* or
/// console.insecure are given, and for fleetd the tables, not tier 1's
/// rounds file (storage.rounds-file=false), unless the test names it.
std::vector<std::string> plain_http_unless_tls(const std::string& prog,
                                               std::vector<std::string> args);

/// fleetd's arguments with storage.rounds-file=false unless they name it.
std::vector<std::string> tables_unless_named(std::vector<std::string> args);

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

/// Whether something accepts connections on 127.0.0.1:`port`.
bool listening(uint16_t port);

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

/// A cloud's stored rows as the checks read them, from the embedded SQLite
/// file or from PostgreSQL (one org's rows), in one shape for both.
class cloud_store {
public:
  /// What to read of one device; the columns of each row, text (integers in
  /// decimal, blobs as their bytes):
  enum class table {
    points,  ///< name, labels, ts, bits; in arrival order
    logs,    ///< labels, ts, line; in arrival order
    events,  ///< kind, ts, message, attributes; in arrival order
    batches, ///< stream, epoch, sequence; by stream, epoch, sequence
    streams, ///< stream, last_sequence, batches, duplicates; by stream
  };

  /// The embedded store's file (a path names it: the checks' old signature).
  cloud_store(std::string sqlite_path);
  /// PostgreSQL at `url` (the node's role): the rows of `org`.
  static cloud_store postgresql(std::string url, std::string org);

  bool embedded() const {
    return url_.empty();
  }
  /// The rows of `t` for `device` (the device's own id, without its org);
  /// empty when the store cannot be read.
  std::vector<std::vector<std::string>> rows(table t,
                                             const std::string& device) const;
  /// The batches of `device`'s `stream`.
  int64_t batches(const std::string& device, const std::string& stream) const;

private:
  cloud_store() = default;
  std::string path_;
  std::string url_;
  std::string org_;
  // Opened on first read, kept (copies share it): the checks poll.
  mutable std::shared_ptr<pg::connection> conn_;
};

/// How a test runs fleetd-cloud: on the embedded store of its data dir with
/// anonymous devices, or on PostgreSQL through PgBouncer with devices
/// enrolled into one org.
struct cloud_backend {
  /// nullopt: the embedded store.
  std::optional<pg_database> pg;
  std::string org = "fleet";
  /// The tenancy secret every node on `pg` shares (device keys are HMACs
  /// of it), in a directory the backend keeps.
  std::shared_ptr<scratch_dir> secret_dir;

  /// "postgresql" or "embedded", for the test's messages.
  std::string name() const;
  /// fleetd-cloud's flags for the store.
  std::vector<std::string> node_flags() const;
  /// The store a node with `data_dir` writes.
  cloud_store store(const std::string& data_dir) const;
  /// fleetd's flags to be let in by the node whose console is `console`:
  /// an enrollment token of a new org (PostgreSQL), none (embedded);
  /// fleetctl's files go to `dir`.
  std::vector<std::string> device_flags(const std::string& dir,
                                        uint16_t console) const;
};

/// PostgreSQL through PgBouncer, a fresh database named after `prefix`;
/// nullopt with `why` when PostgreSQL cannot run here (the case skips).
std::optional<cloud_backend> postgresql_backend(const std::string& prefix,
                                                std::string& why);

/// Runs `body` with the cloud on PostgreSQL through PgBouncer (a fresh
/// database named after `prefix`); the case skips when PostgreSQL cannot run.
void on_postgresql(const std::string& prefix,
                   const std::function<void(const cloud_backend&)>& body);

/// The bytes of SQLite hex() text (the rows below write blobs so).
std::string unhex(const std::string& text);

/// Bytes as upper-case hex, as SQLite's hex() writes them.
std::string hex(const std::string& bytes);

/// Every metric row of a device's store, as sortable text lines.
std::vector<std::string> device_points(const std::string& device_db);
/// Every point a cloud store holds for `device_id`, as sortable text lines.
std::vector<std::string> cloud_points(const cloud_store& cloud,
                                      const std::string& device_id);

/// Every log line of a device's store, in store order, as text lines.
std::vector<std::string> device_logs(const std::string& device_db);
/// Every log line a cloud store holds for `device_id`, in arrival order.
std::vector<std::string> cloud_logs(const cloud_store& cloud,
                                    const std::string& device_id);
/// The device's events with row id <= `upto`, in store order.
std::vector<std::string> device_events(const std::string& device_db,
                                       int64_t upto);
/// Every event a cloud store holds for `device_id`, in arrival order.
std::vector<std::string> cloud_events(const cloud_store& cloud,
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
                                  const cloud_store& cloud,
                                  const std::string& device_id);

/// The sequences `cloud` holds for `device`'s `stream`, by epoch, sorted.
std::map<std::string, std::vector<int64_t>>
cloud_sequences(const cloud_store& cloud, const std::string& device,
                const std::string& stream);

/// Points `cloud` holds for `device` twice or more (same series, time and
/// value), as text lines; empty when none.
std::vector<std::string> doubled_points(const cloud_store& cloud,
                                        const std::string& device);

/// True once the device (its console, its file) has run all `rounds` of its
/// load generator and its collector, has batched every row and has seen
/// every batch acked; false when not within `deadline`.
bool device_synced_all(uint16_t console, const std::string& device_db,
                       int64_t rounds, std::chrono::milliseconds deadline);

/// What check_records_exactly_once compared.
struct records_checked {
  size_t points = 0;
  size_t log_lines = 0;
  size_t events = 0;
  int64_t batches = 0;
};

/// Checks (doctest CHECKs), once the device has stopped, that `cloud` holds
/// every metric point, log line and event of the device's file exactly once
/// and in order (events: up to the last row the device saw acked; it records
/// some while it stops), and per stream one epoch with batches 1..N (N: the
/// batches the device cut; for events between the last acked and the last
/// cut).
records_checked check_records_exactly_once(const std::string& device_db,
                                           const cloud_store& cloud,
                                           const std::string& device);

/// A field of /proc/PID/status in kB (VmHWM, VmRSS); -1 when absent.
int64_t proc_kb(pid_t pid, const std::string& field);

/// utime + stime of a process, in clock ticks.
int64_t cpu_ticks(pid_t pid);

/// The share of one core `pid` used over `window`, in percent (the window
/// is slept through: it measures, it does not wait for anything).
double cpu_percent(pid_t pid, std::chrono::milliseconds window);

/// What a process's threads did over a window: CPU (each thread's
/// schedstat, in ns, not clock ticks) and voluntary context switches, i.e.
/// how often a thread blocked and was woken again.
struct thread_activity {
  double cpu_percent = 0;
  double wakeups_per_s = 0;
};

/// `pid`'s thread_activity over `window` (slept through, as cpu_percent).
thread_activity measure_activity(pid_t pid, std::chrono::milliseconds window);

/// Connections waiting in the accept queue of the TCP listener on
/// 127.0.0.1 or any address at `port`; -1 when there is none.
int accept_queue(uint16_t port);

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

/// The stdout alone of `fleetd ARGS --node.data-dir=DIR` (run_to_end mixes
/// in stderr's log lines); REQUIREs exit status 0.
std::string fleetd_out(const std::string& dir, std::vector<std::string> args);

/// The integer after `"key":` in `json`, searching from `from`; -1 if absent.
int64_t json_int(const std::string& json, const std::string& key,
                 size_t from = 0);

/// Runs a program to completion; returns (exit status, stderr text).
std::pair<int, std::string> run_to_end(const std::string& program,
                                       const std::vector<std::string>& args,
                                       std::chrono::milliseconds timeout);

} // namespace fleetd::test
