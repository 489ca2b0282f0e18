#include "runtime/node.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/io/publish.hpp>

#include "messages/error.hpp"
#include "messages/register.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

void declare_common_options(option_set& opts, common_options& x,
                            const std::string& default_data_dir,
                            int64_t default_console_port) {
  using namespace std::chrono_literals;
  opts.add("log.level", x.log_level, "info",
           "Least severe level to log: error, warning, info or debug");
  opts.add("log.file", x.log_file, "",
           "Also append log lines to this file (empty: stderr only)");
  opts.add("node.data-dir", x.data_dir, default_data_dir,
           "Directory for the node's databases and state files");
  opts.add("console.host", x.console_host, "127.0.0.1",
           "Address the console (fleetctl, CAF BASP) listens on; only "
           "127.0.0.1 until TLS certificates land");
  opts.add("console.port", x.console_port, default_console_port, "port",
           "TCP port of the console; 0 picks a free port (written to "
           "<data-dir>/console.port)",
           0, 65535);
  opts.add("console.heartbeat-interval", x.heartbeat_interval, 5s,
           "How often BASP peers exchange heartbeats", 100ms);
  opts.add("console.connection-timeout", x.connection_timeout, 30s,
           "Drop a BASP peer silent for this long", 1s);
  opts.add("node.stop-timeout", x.stop_timeout, 3s,
           "How long each actor may take to stop on SIGTERM/SIGINT", 100ms);
  opts.add("clock.speed", x.clock_speed, 1, "times",
           "Testing aid: run the node's clock (timestamps, intervals, "
           "backoff, retention) this many times faster than real time",
           1, 100000);
  opts.add("node.test-hooks", x.test_hooks, false,
           "Testing aid: let the console kill the node's supervised actors "
           "(fleetctl debug kill NAME) to show they are restarted; never in "
           "production");
}

caf::error validate_common_options(const common_options& x) {
  log_level lvl;
  if (!parse_log_level(x.log_level, lvl))
    return make_error(ec::bad_config, "log.level: '" + x.log_level
                                        + "' is not one of error, warning, "
                                          "info, debug");
  if (x.console_host != "127.0.0.1")
    return make_error(ec::bad_config,
                      "console.host: only 127.0.0.1 is allowed until the "
                      "console speaks TLS, got '"
                        + x.console_host + "'");
  if (x.data_dir.empty())
    return make_error(ec::bad_config, "node.data-dir: must not be empty");
  if (x.connection_timeout <= x.heartbeat_interval)
    return make_error(ec::bad_config,
                      "console.connection-timeout: must exceed "
                      "console.heartbeat-interval");
  return caf::none;
}

int parse_or_exit(const char* program, option_set& opts, int argc,
                  char** argv, const common_options& common,
                  const std::function<caf::error()>& validate) {
  auto fail = [&](const caf::error& err) {
    auto text = render(err);
    const std::string prefix = "bad_config: ";
    if (text.rfind(prefix, 0) == 0)
      text = text.substr(prefix.size());
    std::cerr << program << ": bad config: " << text << std::endl;
    return 2;
  };
  if (auto err = opts.parse(argc, argv))
    return fail(err);
  if (opts.help_requested()) {
    std::cout << opts.help();
    return 0;
  }
  if (opts.version_requested()) {
    std::cout << program << " " << fleetd_version() << "\n";
    return 0;
  }
  if (auto err = validate_common_options(common))
    return fail(err);
  if (validate)
    if (auto err = validate())
      return fail(err);
  log_level lvl = log_level::info;
  parse_log_level(common.log_level, lvl);
  if (auto err = logger::init(lvl, common.log_file))
    return fail(err);
  return -1;
}

node_config::node_config() {
  register_messages(*this);
  load<caf::io::middleman>();
  // Our own threads (Asio, signal wait) must not be counted as CAF work.
  set("scheduler.max-threads", 2);
}

node_config::node_config(const common_options& x) : node_config() {
  set("middleman.heartbeat-interval",
      caf::timespan{std::chrono::duration_cast<caf::timespan>(
        x.heartbeat_interval)});
  set("middleman.connection-timeout",
      caf::timespan{std::chrono::duration_cast<caf::timespan>(
        x.connection_timeout)});
  // BASP must not offer ConfigServ/SpawnServ to peers (docs/architecture.md section 6).
  set("middleman.attach-utility-actors", false);
}

void block_termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A closed peer must surface as an error value, not kill the process.
  signal(SIGPIPE, SIG_IGN);
}

int wait_for_termination(const std::function<void()>& on_hangup) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0)
      continue; // Interrupted: wait again.
    if (sig != SIGHUP)
      return sig;
    if (on_hangup)
      on_hangup();
  }
}

// Options that apply live on SIGHUP; every other change needs a restart.
const char* const live_options[] = {"log.level", "log.file"};

void reload_settings(const char* program, const option_set& running, int argc,
                     char** argv, const redeclare_fn& redeclare) {
  option_set fresh(program, "");
  auto common = redeclare(fresh);
  auto err = fresh.parse(argc, argv);
  if (!err)
    err = validate_common_options(*common);
  log_level lvl = log_level::info;
  if (!err && parse_log_level(common->log_level, lvl))
    err = logger::init(lvl, common->log_file);
  if (err) {
    log_error(program, "SIGHUP: settings not reloaded: ", render(err));
    return;
  }
  // "key = value" lines in declaration order, the same in both sets.
  std::istringstream was(running.dump());
  std::istringstream now(fresh.dump());
  std::string a;
  std::string b;
  while (std::getline(was, a) && std::getline(now, b)) {
    if (a == b)
      continue;
    auto key = b.substr(0, b.find(" = "));
    bool live = false;
    for (auto x : live_options)
      live = live || key == x;
    if (live)
      log_info(program, "SIGHUP: ", b);
    else
      log_warning(program, "SIGHUP: ", b, " (running with ",
                  a.substr(a.find(" = ") + 3), "): needs a restart");
  }
  log_info(program, "SIGHUP: log reopened, log.level ", common->log_level);
}

caf::error ensure_directory(const std::string& path) {
  std::string partial;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || (path[i] == '/' && i > 0)) {
      partial = path.substr(0, i);
      if (mkdir(partial.c_str(), 0750) != 0 && errno != EEXIST)
        return make_error(ec::io_error, "cannot create directory '" + partial
                                          + "': " + strerror(errno));
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return make_error(ec::io_error, "'" + path + "' is not a directory");
  if (access(path.c_str(), W_OK) != 0)
    return make_error(ec::io_error, "directory '" + path + "' is not writable");
  return caf::none;
}

caf::expected<int> lock_data_dir(const std::string& dir,
                                 const std::string& name) {
  auto path = dir + "/" + name + ".lock";
  auto fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    return make_error(ec::io_error, "cannot open " + path + ": "
                                      + strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return make_error(ec::io_error, "another " + name + " uses " + dir);
  }
  return fd;
}

caf::error write_file_atomically(const std::string& path,
                                 const std::string& value) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << value;
    out.flush();
    if (!out)
      return make_error(ec::io_error, "cannot write '" + tmp + "'");
  }
  if (rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(ec::io_error, "cannot rename '" + tmp + "': "
                                      + strerror(errno));
  return caf::none;
}

caf::expected<uint16_t> publish_console(caf::actor_system& sys,
                                        const inspector_actor& inspector,
                                        const common_options& x) {
  auto port = sys.middleman().publish(inspector,
                                      static_cast<uint16_t>(x.console_port),
                                      x.console_host.c_str(), true);
  if (!port)
    return make_error(ec::io_error,
                      "console: cannot listen on " + x.console_host + ":"
                        + std::to_string(x.console_port) + ": "
                        + sys.render(port.error()));
  if (auto err = write_file_atomically(x.data_dir + "/console.port",
                                       std::to_string(*port) + "\n"))
    return err;
  return *port;
}

void unpublish_console(caf::actor_system& sys, const inspector_actor& inspector,
                       uint16_t port) {
  sys.middleman().unpublish(inspector, port);
}

void stop_list::add(std::string name, caf::actor handle) {
  actors_.emplace_back(std::move(name), std::move(handle));
}

int stop_list::stop_all(caf::actor_system& sys,
                        std::chrono::milliseconds timeout) {
  int late = 0;
  caf::scoped_actor self{sys};
  for (auto i = actors_.rbegin(); i != actors_.rend(); ++i) {
    auto& [name, handle] = *i;
    if (!handle)
      continue;
    self->monitor(handle);
    self->send_exit(handle, caf::exit_reason::user_shutdown);
    bool down = false;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!down) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        break;
      self->receive(
        [&](const caf::down_msg& dm) { down = dm.source == handle.address(); },
        caf::after(left) >> [] {
          // Deadline passed; the loop condition reports it.
        });
    }
    if (!down) {
      ++late;
      log_warning("node", "actor '", name, "' did not stop within ",
                  to_duration_text(timeout));
    } else {
      log_debug("node", "stopped ", name);
    }
  }
  actors_.clear();
  return late;
}

} // namespace fleetd
