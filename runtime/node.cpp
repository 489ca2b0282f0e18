#include "runtime/node.hpp"
#include "runtime/page_file.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <fstream>
#include <iostream>
#include <sstream>
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/io/publish.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/register.hpp"
#include "runtime/config_check.hpp"
#include "runtime/console_client.hpp"
#include "runtime/console_door.hpp"
#include "runtime/console_front.hpp"
#include "runtime/console_guard.hpp"
#include "runtime/stats_reader.hpp"
#include "runtime/logger.hpp"
#include "runtime/tls.hpp"

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
           "IP address the console (fleetctl, CAF BASP over TLS) listens on; "
           "other than loopback only with console.tls-*");
  opts.add("console.port", x.console_port, default_console_port, "port",
           "TCP port of the console; 0 picks a free port (written to "
           "<data-dir>/console.port)",
           0, 65535);
  opts.add("console.tls-cert", x.console_tls_cert, "",
           "PEM certificate (chain) of the node's console; with tls-key and "
           "tls-ca required unless console.insecure; the three are re-read on SIGHUP");
  opts.add("console.tls-key", x.console_tls_key, "",
           "PEM private key of console.tls-cert");
  opts.add("console.tls-ca", x.console_tls_ca, "",
           "PEM CA certificate(s): a console client must present a "
           "certificate signed by one");
  opts.add("console.insecure", x.console_insecure, false,
           "Run the console without TLS; allowed on a loopback console.host "
           "only, and warned about at every start");
  opts.add("console.handshake-timeout", x.console_handshake_timeout, 10s,
           "Drop a console connection that has not completed TLS and its "
           "BASP handshake within this time",
           100ms);
  opts.add("console.max-connections", x.console_max_connections, 64,
           "connections", "Console connections open at once; more are "
           "closed at once",
           1, 4096);
  opts.add("console.max-frame-bytes", x.console_max_frame_bytes, 1 << 20,
           "bytes", "Largest BASP frame a console peer may send; a larger "
           "announced one closes the connection before anything is "
           "allocated",
           1024, 1 << 30);
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
  opts.add("node.actor-stats", x.actor_stats, true,
           "Measure every actor (mailbox depth, messages handled, handling "
           "time, errors, restarts) for fleetctl status and actors; off "
           "saves a few ns per message (fleetd-bench actor-stats)");
}

namespace {

// Certificates on both sides, or an explicitly insecure loopback console.
caf::error validate_console(const common_options& x) {
  in6_addr any;
  if (inet_pton(AF_INET, x.console_host.c_str(), &any) != 1
      && inet_pton(AF_INET6, x.console_host.c_str(), &any) != 1)
    return bad_config("console.host: '" + x.console_host
                      + "' is not an IP address");
  int files = !x.console_tls_cert.empty() + !x.console_tls_key.empty()
              + !x.console_tls_ca.empty();
  if (files != 0 && files != 3)
    return bad_config("console.tls-cert, console.tls-key, console.tls-ca: "
                      "give all three or none");
  if (files == 3 && x.console_insecure)
    return bad_config("console.insecure: true with console.tls-* given; "
                      "choose one");
  if (files == 0 && !x.console_insecure)
    return bad_config("console.tls-cert: the console needs console.tls-cert, "
                      "console.tls-key and console.tls-ca (or "
                      "console.insecure = true on a loopback console.host)");
  if (files == 0 && !is_loopback_host(x.console_host))
    return bad_config("console.insecure: only on a loopback console.host, "
                      "got '"
                      + x.console_host + "'");
  return caf::none;
}

} // namespace

caf::error validate_common_options(const common_options& x) {
  log_level lvl;
  if (!parse_log_level(x.log_level, lvl))
    return make_error(ec::bad_config, "log.level: '" + x.log_level
                                        + "' is not one of error, warning, "
                                          "info, debug");
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
  // A command (fleetd debug ...) runs no console: it only needs to reach one.
  if (opts.args().empty())
    if (auto err = validate_console(common))
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

void limit_malloc_arenas(int arenas) {
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr)
    mallopt(M_ARENA_MAX, arenas);
}

void fix_malloc_thresholds(int bytes) {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr)
    mallopt(M_MMAP_THRESHOLD, bytes);
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr)
    mallopt(M_TRIM_THRESHOLD, bytes);
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
  if (!err)
    err = validate_console(*common);
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
                                 const std::string& value, bool durable) {
  auto tmp = path + ".tmp";
  auto fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return make_error(ec::io_error, "cannot write '" + tmp + "': "
                                      + strerror(errno));
  bool ok = ::write(fd, value.data(), value.size())
              == static_cast<ssize_t>(value.size())
            && (!durable || ::fsync(fd) == 0);
  ::close(fd);
  if (!ok)
    return make_error(ec::io_error, "cannot write '" + tmp + "': "
                                      + strerror(errno));
  if (rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(ec::io_error, "cannot rename '" + tmp + "': "
                                      + strerror(errno));
  return durable ? sync_dir_of(path) : caf::none;
}

console_listener::~console_listener() = default;

namespace {

console_front_config front_config(const common_options& x) {
  console_front_config out;
  out.host = x.console_host;
  out.port = static_cast<uint16_t>(x.console_port);
  out.tls_cert = x.console_tls_cert;
  out.tls_key = x.console_tls_key;
  out.tls_ca = x.console_tls_ca;
  out.handshake_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
    x.console_handshake_timeout);
  out.max_connections = static_cast<size_t>(x.console_max_connections);
  out.max_frame_bytes = static_cast<uint32_t>(x.console_max_frame_bytes);
  out.ports = std::make_shared<front_ports>();
  return out;
}

} // namespace

caf::expected<console_ptr> publish_console(caf::actor_system& sys,
                                           const inspector_actor& inspector,
                                           const common_options& x) {
  // Not for peers (docs/security.md, Console); the front refuses them too.
  sys.registry().erase(caf::atom("ConfigServ"));
  sys.registry().erase(caf::atom("SpawnServ"));
  auto out = std::make_unique<console_listener>();
  out->guard = spawn_console_guard(sys, inspector);
  auto cfg = front_config(x);
  cfg.guard_id = out->guard->id();
  auto inner = publish_inner(sys, out->guard, cfg.ports);
  if (!inner)
    return inner.error();
  out->inner_port = cfg.inner_port = *inner;
  out->front = std::make_shared<console_front>();
  auto port = out->front->start(std::move(cfg));
  if (!port) {
    sys.middleman().unpublish(caf::actor_cast<caf::actor>(out->guard),
                              out->inner_port);
    return port.error();
  }
  out->port = *port;
  std::string mode = x.console_insecure ? "insecure" : "tls";
  auto read = [front = out->front, guard = out->guard, mode] {
    auto c = front->counters();
    actor_stats s;
    s.name = "console";
    s.state = mode;
    s.counters = {{"accepted", c.accepted},
                  {"rejected", c.rejected},
                  {"handshake_timeouts", c.handshake_timeouts},
                  {"handshake_failures", c.handshake_failures},
                  {"frames_refused", c.frames_refused},
                  {"frames_dropped", c.frames_dropped},
                  {"accept_errors", c.accept_errors},
                  {"messages_dropped",
                   static_cast<console_guard*>(guard->get())->dropped()}};
    return s;
  };
  out->stats = caf::actor_cast<caf::actor>(sys.spawn(stats_reader, read));
  caf::scoped_actor self{sys};
  self->send(inspector, report_atom::value, std::string("console"), out->stats);
  if (x.console_insecure)
    log_warning("console", "console.insecure: the console on ",
                x.console_host, ":", *port,
                " speaks plain BASP, without TLS or client certificates");
  if (auto err = write_file_atomically(x.data_dir + "/console.port",
                                       std::to_string(*port) + "\n"))
    return err;
  return out;
}

void reload_console_tls(const char* program, const console_ptr& console) {
  if (!console)
    return;
  if (auto err = console->front->reload_tls())
    log_error(program, "SIGHUP: console TLS files not reloaded, serving with "
                       "the previous ones: ", render(err));
}

void unpublish_console(caf::actor_system& sys, console_ptr& console) {
  if (!console)
    return;
  console->front->stop();
  caf::anon_send_exit(console->stats, caf::exit_reason::user_shutdown);
  sys.middleman().unpublish(caf::actor_cast<caf::actor>(console->guard),
                            console->inner_port);
}

caf::expected<inspector_actor> connect_own_console(caf::actor_system& sys,
                                                   const common_options& x,
                                                   uint16_t port) {
  console_client_config cfg;
  cfg.cert = x.console_tls_cert;
  cfg.key = x.console_tls_key;
  cfg.ca = x.console_tls_ca;
  if (!cfg.cert.empty()) {
    auto own = certificate_fingerprint(cfg.cert);
    if (!own)
      return own.error();
    cfg.fingerprint = *own;
  }
  // The certificate is pinned, so any address of this host will do.
  bool any = x.console_host == "0.0.0.0" || x.console_host == "::";
  auto host = any ? std::string("127.0.0.1") : x.console_host;
  return connect_console(sys, host, port, cfg);
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
