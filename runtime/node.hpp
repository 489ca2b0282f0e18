#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>

#include "messages/interfaces.hpp"
#include "runtime/options.hpp"

namespace fleetd {

/// Options every node program has; declared once in declare_common_options.
struct common_options {
  std::string log_level;
  std::string log_file;
  std::string data_dir;
  std::string console_host;
  int64_t console_port = 0;
  std::string console_tls_cert;
  std::string console_tls_key;
  std::string console_tls_ca;
  bool console_insecure = false;
  option_set::duration console_handshake_timeout{};
  int64_t console_max_connections = 0;
  int64_t console_max_frame_bytes = 0;
  option_set::duration heartbeat_interval{};
  option_set::duration connection_timeout{};
  option_set::duration stop_timeout{};
  /// Simulated time: the node's clock runs this many times faster.
  int64_t clock_speed = 1;
  /// Testing aid: the console may kill supervised actors (debug kill NAME).
  bool test_hooks = false;
  /// Per-actor statistics (runtime/counted.hpp) on.
  bool actor_stats = true;
};

void declare_common_options(option_set& opts, common_options& x,
                            const std::string& default_data_dir,
                            int64_t default_console_port);

/// Checks what option types cannot: levels, hosts, paths.
caf::error validate_common_options(const common_options& x);

/// Parses argv, prints help or one clear error line; returns the exit code to
/// leave with, or -1 to go on. Also starts the logger.
int parse_or_exit(const char* program, option_set& opts, int argc, char** argv,
                  const common_options& common,
                  const std::function<caf::error()>& validate);

/// The actor-system config of every fleetd program: project types registered,
/// middleman loaded with heartbeats and connection timeouts switched on.
class node_config : public caf::actor_system_config {
public:
  explicit node_config(const common_options& x);
  node_config();
};

/// At most `arenas` malloc arenas (glibc's default is up to eight a core,
/// each keeping what its threads freed), unless MALLOC_ARENA_MAX is set;
/// call first thing in main.
void limit_malloc_arenas(int arenas);

/// Blocks of `bytes` or more are mmapped and given back when freed, and the
/// heap trimmed past `bytes` free at its top: glibc otherwise raises both
/// after the first such block is freed, so a batch's transient buffers stay
/// in the heap. MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ win.
void fix_malloc_thresholds(int bytes);

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it
/// starts later; call first thing in main.
void block_termination_signals();

/// Waits until SIGINT or SIGTERM arrives; returns the signal number. Each
/// SIGHUP on the way calls `on_hangup` and goes on waiting.
int wait_for_termination(const std::function<void()>& on_hangup = {});

/// Declares a program's options into a fresh set; returns its common part.
using redeclare_fn = std::function<std::shared_ptr<common_options>(option_set&)>;

/// SIGHUP: reads argv and the config file again, reopens the log file (for
/// logrotate) and applies log.level and log.file live; any other option whose
/// value differs from `running` is logged as needing a restart. A bad config
/// is logged and changes nothing. Never stops the node.
void reload_settings(const char* program, const option_set& running, int argc,
                     char** argv, const redeclare_fn& redeclare);

class console_front;

/// A running console: the front on console.host:console.port and, behind
/// it, a guard of the inspector published on an inner loopback port.
struct console_listener {
  std::shared_ptr<console_front> front;
  caf::strong_actor_ptr guard;
  /// Answers `stats` for the inspector's status ("console").
  caf::actor stats;
  uint16_t port = 0;
  uint16_t inner_port = 0;
  ~console_listener();
};
using console_ptr = std::unique_ptr<console_listener>;

/// Starts the console (TLS with client certificates, or plain when
/// console.insecure on loopback, said in the log); writes the bound port to
/// `<data_dir>/console.port`. Takes ConfigServ and SpawnServ out of the
/// registry: no peer has any business with them.
caf::expected<console_ptr> publish_console(caf::actor_system& sys,
                                           const inspector_actor& inspector,
                                           const common_options& x);

/// Stops listening for the console (first step of a shutdown).
/// SIGHUP: the console front reads its TLS files again (logged on error;
/// connections in flight keep theirs).
void reload_console_tls(const char* program, const console_ptr& console);

void unpublish_console(caf::actor_system& sys, console_ptr& console);

/// How this program reaches its own node's console (`fleetd debug`): with
/// the node's certificate, and the node's certificate pinned.
caf::expected<inspector_actor> connect_own_console(caf::actor_system& sys,
                                                   const common_options& x,
                                                   uint16_t port);

/// Writes `value` to `path` atomically (temp file + rename); `durable`:
/// the temp file is fsynced before and its directory after the rename, so
/// a power cut leaves the old or the new content, never an empty file.
caf::error write_file_atomically(const std::string& path,
                                 const std::string& value,
                                 bool durable = false);

/// Takes the exclusive lock `<dir>/<name>.lock` (flock) for the life of the
/// process; returns the descriptor, or ec::io_error naming who holds it.
caf::expected<int> lock_data_dir(const std::string& dir, const std::string& name);

/// Creates a directory and its parents; fails with a clear message.
caf::error ensure_directory(const std::string& path);

/// Stops actors in reverse start order (Seastar's rule): each gets an exit
/// message and up to `timeout` to terminate; returns how many were late.
class stop_list {
public:
  void add(std::string name, caf::actor handle);
  int stop_all(caf::actor_system& sys, std::chrono::milliseconds timeout);

private:
  std::vector<std::pair<std::string, caf::actor>> actors_;
};

} // namespace fleetd
