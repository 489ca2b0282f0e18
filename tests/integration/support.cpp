#include "support.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <set>
#include <fstream>
#include <sstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>
#include <doctest/doctest.h>
#include <sqlite3.h>

#include "messages/interfaces.hpp"
#include "messages/wire.hpp"
#include "runtime/node.hpp"

namespace fleetd::test {

std::vector<std::string> plain_http_unless_tls(const std::string& prog,
                                               std::vector<std::string> args) {
  auto name = prog.substr(prog.rfind('/') + 1);
  auto says = [&](const char* what) {
    for (auto& a : args)
      if (a.find(what) != std::string::npos)
        return true;
    return false;
  };
  if (name == "fleetd-cloud" && !says("ingest.tls-") && !says("ingest.insecure")) {
    args.emplace_back("--ingest.insecure=true");
    if (!says("ingest.anonymous"))
      args.emplace_back("--ingest.anonymous=true");
  }
  if (name == "fleetd" && !says("cloud.ca-file") && !says("cloud.insecure"))
    args.emplace_back("--cloud.insecure=true");
  if ((name == "fleetd" || name == "fleetd-cloud") && !says("console.tls-")
      && !says("console.insecure"))
    args.emplace_back("--console.insecure=true");
  return args;
}

process::process(std::string prog, std::vector<std::string> args,
                 std::string stderr_file, std::string stdout_file) {
  args = plain_http_unless_tls(prog, std::move(args));
  pid_ = fork();
  if (pid_ == 0) {
    auto fd = open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDERR_FILENO);
      dup2(fd, STDOUT_FILENO);
      close(fd);
    }
    auto out = stdout_file.empty()
                 ? -1
                 : open(stdout_file.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                        0644);
    if (out >= 0) {
      dup2(out, STDOUT_FILENO);
      close(out);
    }
    // The child must not inherit the test's blocked signal mask.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> argv;
    argv.push_back(prog.data());
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(prog.c_str(), argv.data());
    _exit(127);
  }
}

process::~process() {
  if (running()) {
    kill(pid_, SIGKILL);
    wait(std::chrono::seconds(5));
  }
}

void process::signal(int sig) {
  if (pid_ > 0 && !status_)
    kill(pid_, sig);
}

std::optional<int> process::wait(std::chrono::milliseconds timeout) {
  if (status_)
    return status_;
  status_ = wait_child(pid_, timeout);
  return status_;
}

bool process::running() {
  return pid_ > 0 && !wait(std::chrono::milliseconds(0));
}

std::string program(const std::string& name) {
  return std::string(FLEETD_BUILD_DIR) + "/" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
}

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

int64_t file_size(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

std::vector<std::string> query(const std::string& db_path,
                               const std::string& sql) {
  std::vector<std::string> out;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr)
      != SQLITE_OK) {
    sqlite3_close(db);
    return out;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      auto p = sqlite3_column_blob(st, 0);
      auto n = sqlite3_column_bytes(st, 0);
      out.emplace_back(p ? std::string(static_cast<const char*>(p),
                                       static_cast<size_t>(n))
                         : std::string{});
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

int64_t query_int(const std::string& db_path, const std::string& sql) {
  auto rows = query(db_path, sql);
  return rows.empty() ? -1 : std::atoll(rows.front().c_str());
}

namespace {

std::string point_line(const std::string& name, const std::string& labels,
                       const std::string& ts, const std::string& value) {
  return name + "{" + labels + "} " + ts + " " + value;
}

std::vector<std::string> points(const std::string& db, const std::string& sql) {
  // Columns come back joined by a separator that metric names cannot hold.
  auto rows = query(db, sql);
  std::vector<std::string> out;
  for (auto& r : rows) {
    std::vector<std::string> cols;
    size_t pos = 0;
    for (;;) {
      auto next = r.find('\x1e', pos);
      cols.push_back(r.substr(pos, next - pos));
      if (next == std::string::npos)
        break;
      pos = next + 1;
    }
    if (cols.size() == 4)
      out.push_back(point_line(cols[0], cols[1], cols[2], cols[3]));
  }
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace

std::vector<std::string> device_points(const std::string& device_db) {
  return points(device_db,
                "SELECT s.name || char(30) || hex(s.labels) || "
                "char(30) || m.ts || char(30) || printf('%016x', m.bits) "
                "FROM metrics m JOIN series s ON s.id = m.series_id");
}

std::vector<std::string> cloud_points(const std::string& cloud_db,
                                      const std::string& device_id) {
  return points(cloud_db,
                "SELECT s.name || char(30) || hex(s.labels) || "
                "char(30) || p.ts || char(30) || printf('%016x', p.bits) "
                "FROM points p JOIN series s ON s.id = p.series_id "
                "WHERE p.device_id = '"
                  + device_id + "'");
}

std::vector<std::string> device_logs(const std::string& device_db) {
  return query(device_db, "SELECT hex(labels) || ' ' || ts || ' ' || "
                          "hex(line) FROM logs ORDER BY id");
}

std::vector<std::string> cloud_logs(const std::string& cloud_db,
                                    const std::string& device_id) {
  return query(cloud_db, "SELECT hex(labels) || ' ' || ts || ' ' || hex(line) "
                         "FROM logs WHERE device_id = '"
                           + device_id + "' ORDER BY rowid");
}

std::vector<std::string> device_events(const std::string& device_db,
                                       int64_t upto) {
  return query(device_db, "SELECT ts || ' ' || kind || ' ' || hex(message) "
                          "FROM events WHERE id <= "
                            + std::to_string(upto) + " ORDER BY id");
}

std::vector<std::string> cloud_events(const std::string& cloud_db,
                                      const std::string& device_id) {
  return query(cloud_db, "SELECT ts || ' ' || kind || ' ' || hex(message) "
                         "FROM events WHERE device_id = '"
                           + device_id + "' ORDER BY rowid");
}

uint16_t port_from(const std::string& file, std::chrono::milliseconds timeout) {
  if (!eventually([&] { return exists(file) && !read_file(file).empty(); },
                  timeout))
    return 0;
  return static_cast<uint16_t>(std::stoi(read_file(file)));
}

std::optional<node_status> console_status(uint16_t port) {
  static node_config* cfg = new node_config;
  static caf::actor_system* sys = new caf::actor_system{*cfg};
  auto node = sys->middleman().remote_actor<inspector_actor>("127.0.0.1", port);
  if (!node)
    return std::nullopt;
  caf::scoped_actor self{*sys};
  std::optional<node_status> out;
  self->request(*node, std::chrono::seconds(5), status_atom::value)
    .receive([&](node_status& x) { out = std::move(x); },
             [](caf::error&) {
               // Unreachable: reported as nullopt.
             });
  return out;
}

int64_t counter(const node_status& st, const std::string& actor,
                const std::string& name) {
  for (auto& a : st.actors)
    if (a.name == actor) {
      auto i = a.counters.find(name);
      return i == a.counters.end() ? -1 : i->second;
    }
  return -1;
}

std::string state_of(const node_status& st, const std::string& actor) {
  for (auto& a : st.actors)
    if (a.name == actor)
      return a.state;
  return {};
}

bool device_drained(uint16_t console, int64_t rounds,
                    std::chrono::milliseconds deadline) {
  return eventually(
    [&] {
      auto st = console_status(console);
      // "done": the last round's store has been answered, not just sent.
      return st && counter(*st, "system_collector", "rounds") == rounds
             && state_of(*st, "system_collector") == "done"
             && counter(*st, "storage", "queued_batches") == 0
             && counter(*st, "storage", "unbatched_points") == 0;
    },
    deadline);
}

size_t check_metrics_exactly_once(const std::string& device_db,
                                  const std::string& cloud_db,
                                  const std::string& device_id) {
  auto sent = device_points(device_db);
  auto got = cloud_points(cloud_db, device_id);
  MESSAGE("device committed ", sent.size(), " points; cloud holds ",
          got.size());
  CHECK(got.size() == sent.size());
  CHECK(got == sent);
  // Sequences 1..N, each stored once, N = the last batch the device cut.
  auto last = query_int(device_db, "SELECT next_sequence - 1 FROM "
                                   "stream_state WHERE stream = 'metrics'");
  auto seqs = query(cloud_db, "SELECT sequence FROM batches WHERE device_id "
                              "= '" + device_id + "' AND stream = 'metrics' "
                              "ORDER BY sequence");
  CHECK(static_cast<int64_t>(seqs.size()) == last);
  for (size_t i = 0; i < seqs.size(); ++i)
    CHECK(std::stoll(seqs[i]) == static_cast<int64_t>(i) + 1);
  // This device's points (another's may share a series, time and value).
  auto mine = " FROM points WHERE device_id = '" + device_id + "'";
  CHECK(query_int(cloud_db, "SELECT count(*)" + mine)
        == query_int(cloud_db, "SELECT count(*) FROM (SELECT DISTINCT "
                               "series_id, ts, value" + mine + ")"));
  CHECK(query_int(device_db, "SELECT count(*) FROM sync_queue") == 0);
  return sent.size();
}

int64_t proc_kb(pid_t pid, const std::string& field) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);)
    if (line.rfind(field + ":", 0) == 0)
      return std::stoll(line.substr(field.size() + 1));
  return -1;
}

int64_t cpu_ticks(pid_t pid) {
  auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream in(stat.substr(stat.rfind(')') + 2));
  std::string skip;
  for (int i = 3; i < 14; ++i)
    in >> skip;
  int64_t utime = 0;
  int64_t stime = 0;
  in >> utime >> stime;
  return utime + stime;
}

double cpu_percent(pid_t pid, std::chrono::milliseconds window) {
  auto before = cpu_ticks(pid);
  auto start = std::chrono::steady_clock::now();
  // Measuring needs time to pass: this sleep is the window, not a wait.
  std::this_thread::sleep_for(window);
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - start)
                .count();
  return 100.0 * (cpu_ticks(pid) - before) / sysconf(_SC_CLK_TCK) / secs;
}

int open_fds(pid_t pid) {
  int n = 0;
  if (auto* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (readdir(d))
      ++n;
    closedir(d);
  }
  return n - 2;
}

int lowest_free_fd(pid_t pid) {
  std::set<int> used;
  if (auto* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (auto* e = readdir(d))
      if (e->d_name[0] != '.')
        used.insert(std::atoi(e->d_name));
    closedir(d);
  }
  int n = 0;
  while (used.count(n))
    ++n;
  return n;
}

int tcp_connect(uint16_t port, const char* source) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (source != nullptr) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, source, &src.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0) {
      close(fd);
      return -1;
    }
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool closed_by_peer(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1)
    return false;
  char c;
  return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

std::pair<int, std::string> fleetctl(const std::string& dir, uint16_t port,
                                     std::vector<std::string> args) {
  args.insert(args.begin(), {"--node", "127.0.0.1:" + std::to_string(port),
                             "--timeout=10s"});
  auto out = dir + "/ctl.out";
  write_file(out, "");
  process p{program("fleetctl"), args, dir + "/ctl.err", out};
  auto st = p.wait(std::chrono::seconds(30));
  return {st ? *st : -1, read_file(out)};
}

std::string fleetctl_secret(const std::string& dir, uint16_t port,
                            std::vector<std::string> args) {
  auto [rc, out] = fleetctl(dir, port, std::move(args));
  REQUIRE_MESSAGE(rc == 0, read_file(dir + "/ctl.err"));
  return out.substr(0, out.find('\n'));
}

std::pair<int, std::string> run_to_end(const std::string& prog,
                                       const std::vector<std::string>& args,
                                       std::chrono::milliseconds timeout) {
  temp_dir tmp;
  auto err_file = tmp.path() + "/stderr";
  process p{prog, args, err_file};
  auto st = p.wait(timeout);
  if (!st) {
    p.signal(SIGKILL);
    p.wait(std::chrono::seconds(5));
    return {-1, read_file(err_file)};
  }
  return {*st, read_file(err_file)};
}

std::string one_point_sync(const std::string& device, int64_t seq) {
  encode_settings es;
  es.device_id = device;
  es.sequence = seq;
  es.now_ms = 1'700'000'000'000;
  metric_sample x;
  x.name = "raw";
  x.timestamp_ms = es.now_ms;
  return encode_metrics_request(es, {x});
}

} // namespace fleetd::test
