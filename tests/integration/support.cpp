#include "support.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <map>
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
#include "skip.hpp"

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
  if (name == "fleetd")
    args = tables_unless_named(std::move(args));
  return args;
}

std::vector<std::string> tables_unless_named(std::vector<std::string> args) {
  // These tests read a device's records from its tables (device_points);
  // tier 1's rounds file keeps them in a file of its own until it is
  // folded, and its own tests (device_crash_test, round_journal_test) ask
  // for it.
  for (auto& a : args)
    if (a.find("storage.rounds-file") != std::string::npos)
      return args;
  args.emplace_back("--storage.rounds-file=false");
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
    // Nor the test's descriptors: a listener it holds (a stand-in server)
    // would outlive the test's close of it in every child.
    ::close_range(3, ~0U, 0);
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

bool listening(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
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

namespace {

using table_rows = std::vector<std::vector<std::string>>;

/// Every column of each row of `sql` (read-only), parameter 1 bound to
/// `param` when given; blobs as their bytes, numbers as text.
table_rows sqlite_rows(const std::string& path, const std::string& sql,
                       const std::string* param = nullptr) {
  table_rows out;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr)
      != SQLITE_OK) {
    sqlite3_close(db);
    return out;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
    if (param)
      sqlite3_bind_text(st, 1, param->c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      auto& row = out.emplace_back();
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        auto p = sqlite3_column_blob(st, i);
        auto n = sqlite3_column_bytes(st, i);
        row.emplace_back(p ? std::string(static_cast<const char*>(p),
                                         static_cast<size_t>(n))
                           : std::string{});
      }
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

} // namespace

std::vector<std::string> query(const std::string& db_path,
                               const std::string& sql) {
  std::vector<std::string> out;
  for (auto& row : sqlite_rows(db_path, sql))
    out.push_back(row.empty() ? std::string{} : std::move(row.front()));
  return out;
}

int64_t query_int(const std::string& db_path, const std::string& sql) {
  auto rows = query(db_path, sql);
  return rows.empty() ? -1 : std::atoll(rows.front().c_str());
}

std::string hex(const std::string& bytes) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 0xf];
  }
  return out;
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

/// An integer's 64 bits as 16 hex digits, as printf('%016x') writes them.
std::string hex64(const std::string& decimal) {
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx",
           static_cast<unsigned long long>(std::stoll(decimal)));
  return buf;
}

/// One table's query on each backend, the device as parameter 1.
struct table_sql {
  const char* sqlite;
  const char* pg;
  std::vector<int> bytea; ///< columns PostgreSQL returns as bytea
};

const table_sql& sql_of(cloud_store::table t) {
  static const table_sql points{
    "SELECT s.name, s.labels, p.ts, p.bits FROM points p JOIN series s ON "
    "s.id = p.series_id WHERE p.device_id = ?1 ORDER BY p.rowid",
    "SELECT s.name, s.labels, p.ts, p.bits FROM points p JOIN series s ON "
    "s.id = p.series_id WHERE p.device = $1 ORDER BY p.id",
    {1}};
  static const table_sql logs{
    "SELECT labels, ts, line FROM logs WHERE device_id = ?1 ORDER BY rowid",
    "SELECT labels, ts, line FROM logs WHERE device = $1 ORDER BY id", {0}};
  static const table_sql events{
    "SELECT kind, ts, message, attributes FROM events WHERE device_id = ?1 "
    "ORDER BY rowid",
    "SELECT kind, ts, message, attributes FROM events WHERE device = $1 "
    "ORDER BY id",
    {3}};
  static const table_sql batches{
    "SELECT stream, epoch, sequence FROM batches WHERE device_id = ?1 "
    "ORDER BY stream, epoch, sequence",
    "SELECT stream, epoch, sequence FROM batches WHERE device = $1 "
    "ORDER BY stream, epoch, sequence",
    {}};
  static const table_sql streams{
    "SELECT stream, last_sequence, batches, duplicates FROM streams WHERE "
    "device_id = ?1 ORDER BY stream",
    "SELECT stream, last_sequence, batches, duplicates FROM streams WHERE "
    "device = $1 ORDER BY stream",
    {}};
  switch (t) {
    case cloud_store::table::points:
      return points;
    case cloud_store::table::logs:
      return logs;
    case cloud_store::table::events:
      return events;
    case cloud_store::table::batches:
      return batches;
    default:
      return streams;
  }
}

table_rows pg_rows(pg::connection& c, const std::string& org,
                   const table_sql& sql, const std::string& device) {
  table_rows out;
  if (!c.ok() && c.reset())
    return out;
  if (c.begin(org))
    return out;
  auto r = c.exec(sql.pg, {device});
  c.rollback();
  if (!r)
    return out;
  for (int i = 0; i < r->rows(); ++i) {
    auto& row = out.emplace_back();
    for (int k = 0; k < r->columns(); ++k) {
      bool bytes = std::count(sql.bytea.begin(), sql.bytea.end(), k) > 0;
      row.emplace_back(bytes ? r->bytea(i, k) : std::string(r->text(i, k)));
    }
  }
  return out;
}

} // namespace

cloud_store::cloud_store(std::string sqlite_path)
  : path_(std::move(sqlite_path)) {
}

cloud_store cloud_store::postgresql(std::string url, std::string org) {
  cloud_store out;
  out.url_ = std::move(url);
  out.org_ = std::move(org);
  return out;
}

table_rows cloud_store::rows(table t, const std::string& device) const {
  auto& sql = sql_of(t);
  if (embedded())
    return sqlite_rows(path_, sql.sqlite, &device);
  if (!conn_) {
    auto c = pg::connection::open(url_);
    if (!c)
      return {};
    conn_ = std::make_shared<pg::connection>(std::move(*c));
  }
  return pg_rows(*conn_, org_, sql, device);
}

int64_t cloud_store::batches(const std::string& device,
                             const std::string& stream) const {
  int64_t n = 0;
  for (auto& row : rows(table::batches, device))
    n += row[0] == stream ? 1 : 0;
  return n;
}

std::string cloud_backend::name() const {
  return pg ? "postgresql" : "embedded";
}

std::vector<std::string> cloud_backend::node_flags() const {
  if (!pg)
    return {};
  return {"--store.backend=postgresql",
          "--store.postgresql-url=" + pg->pooled_url,
          "--store.postgresql-owner-url=" + pg->owner_url,
          "--tenancy.secret-file=" + secret_dir->file("tenancy.secret"),
          "--ingest.anonymous=false"};
}

cloud_store cloud_backend::store(const std::string& data_dir) const {
  if (!pg)
    return cloud_store(data_dir + "/cloud.db");
  return cloud_store::postgresql(pg->app_url, org);
}

std::vector<std::string> cloud_backend::device_flags(const std::string& dir,
                                                     uint16_t console) const {
  if (!pg)
    return {};
  REQUIRE(fleetctl(dir, console, {"org", "create", org}).first == 0);
  // Uses to spare: a device killed before it kept its key enrolls again.
  auto token = fleetctl_secret(dir, console,
                               {"enroll", "create", "--org", org, "--uses",
                                "100", "--expires", "1h"});
  return {"--cloud.enroll-token=" + token};
}

std::optional<cloud_backend> postgresql_backend(const std::string& prefix,
                                                std::string& why) {
  auto db = fresh_pg_database(prefix, why, true);
  if (!db)
    return std::nullopt;
  cloud_backend out;
  out.pg = std::move(*db);
  out.secret_dir = std::make_shared<scratch_dir>("fleetd-secret");
  write_file(out.secret_dir->file("tenancy.secret"), std::string(64, 'a')
                                                       + "\n");
  return out;
}

void on_postgresql(const std::string& prefix,
                   const std::function<void(const cloud_backend&)>& body) {
  std::string why;
  auto backend = postgresql_backend(prefix, why);
  if (!backend)
    return skip(why);
  body(*backend);
}

std::string unhex(const std::string& text) {
  std::string out;
  for (size_t i = 0; i + 1 < text.size(); i += 2)
    out += static_cast<char>(std::stoi(text.substr(i, 2), nullptr, 16));
  return out;
}

std::vector<std::string> device_points(const std::string& device_db) {
  return points(device_db,
                "SELECT s.name || char(30) || hex(s.labels) || "
                "char(30) || m.ts || char(30) || printf('%016x', m.bits) "
                "FROM metrics m JOIN series s ON s.id = m.series_id");
}

std::vector<std::string> cloud_points(const cloud_store& cloud,
                                      const std::string& device_id) {
  std::vector<std::string> out;
  for (auto& r : cloud.rows(cloud_store::table::points, device_id))
    out.push_back(point_line(r[0], hex(r[1]), r[2], hex64(r[3])));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> device_logs(const std::string& device_db) {
  return query(device_db, "SELECT hex(labels) || ' ' || ts || ' ' || "
                          "hex(line) FROM logs ORDER BY id");
}

std::vector<std::string> cloud_logs(const cloud_store& cloud,
                                    const std::string& device_id) {
  std::vector<std::string> out;
  for (auto& r : cloud.rows(cloud_store::table::logs, device_id))
    out.push_back(hex(r[0]) + " " + r[1] + " " + hex(r[2]));
  return out;
}

std::vector<std::string> device_events(const std::string& device_db,
                                       int64_t upto) {
  return query(device_db, "SELECT ts || ' ' || kind || ' ' || hex(message) "
                          "FROM events WHERE id <= "
                            + std::to_string(upto) + " ORDER BY id");
}

std::vector<std::string> cloud_events(const cloud_store& cloud,
                                      const std::string& device_id) {
  std::vector<std::string> out;
  for (auto& r : cloud.rows(cloud_store::table::events, device_id))
    out.push_back(r[1] + " " + r[0] + " " + hex(r[2]));
  return out;
}

std::map<std::string, std::vector<int64_t>>
cloud_sequences(const cloud_store& cloud, const std::string& device,
                const std::string& stream) {
  std::map<std::string, std::vector<int64_t>> out;
  for (auto& r : cloud.rows(cloud_store::table::batches, device))
    if (r[0] == stream)
      out[r[1]].push_back(std::stoll(r[2]));
  return out;
}

std::vector<std::string> doubled_points(const cloud_store& cloud,
                                        const std::string& device) {
  std::map<std::string, int> seen;
  for (auto& r : cloud.rows(cloud_store::table::points, device))
    ++seen[r[0] + "{" + hex(r[1]) + "} " + r[2] + " " + r[3]];
  std::vector<std::string> out;
  for (auto& [line, n] : seen)
    if (n > 1)
      out.push_back(line + " x" + std::to_string(n));
  return out;
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

namespace {

int64_t stream_state(const std::string& device_db, const std::string& stream,
                     const std::string& column) {
  return query_int(device_db, "SELECT " + column + " FROM stream_state WHERE "
                              "stream = '" + stream + "'");
}

/// Checks one stream's batches; returns how many there are.
int64_t check_sequences(const std::string& device_db, const cloud_store& cloud,
                        const std::string& device, const std::string& stream) {
  CAPTURE(stream);
  auto cut = stream_state(device_db, stream, "next_sequence - 1");
  auto acked = stream_state(device_db, stream, "acked_sequence");
  auto by_epoch = cloud_sequences(cloud, device, stream);
  CHECK(by_epoch.size() <= 1);
  auto seqs = by_epoch.empty() ? std::vector<int64_t>{}
                               : by_epoch.begin()->second;
  auto n = static_cast<int64_t>(seqs.size());
  if (stream == "events") {
    CHECK(n >= acked);
    CHECK(n <= cut);
  } else {
    CHECK(n == cut);
  }
  for (int64_t i = 0; i < n; ++i)
    CHECK(seqs[static_cast<size_t>(i)] == i + 1);
  return n;
}

/// Checks the cloud holds the device's points exactly; returns how many.
size_t check_points(const std::string& device_db, const cloud_store& cloud,
                    const std::string& device) {
  auto sent = device_points(device_db);
  auto got = cloud_points(cloud, device);
  MESSAGE("device committed ", sent.size(), " points; cloud holds ",
          got.size());
  CHECK(got.size() == sent.size());
  CHECK(got == sent);
  return sent.size();
}

} // namespace

size_t check_metrics_exactly_once(const std::string& device_db,
                                  const cloud_store& cloud,
                                  const std::string& device_id) {
  auto n = check_points(device_db, cloud, device_id);
  check_sequences(device_db, cloud, device_id, "metrics");
  // This device's points (another's may share a series, time and value).
  CHECK(doubled_points(cloud, device_id).empty());
  CHECK(query_int(device_db, "SELECT count(*) FROM sync_queue") == 0);
  return n;
}

bool device_synced_all(uint16_t console, const std::string& device_db,
                       int64_t rounds, std::chrono::milliseconds deadline) {
  // The collector counts a round when it asks storage to keep it, before
  // storage has written it; so "rounds == N" alone can pass while the last
  // round is still in flight, and SIGTERM then leaves it unsent. Hence also:
  // the collector reports "done" (its last store answered), and, read after
  // that, the store itself has acked every row.
  auto state = [&](const char* stream, const char* column) {
    return stream_state(device_db, stream, column);
  };
  auto unacked = [&](const char* stream) {
    return state(stream, "next_sequence - 1 - acked_sequence");
  };
  return eventually(
    [&] {
      auto st = console_status(console);
      if (!st || counter(*st, "load_generator", "rounds") != rounds
          || state_of(*st, "load_generator") != "done"
          || state_of(*st, "system_collector") != "done"
          || counter(*st, "storage", "queued_batches") != 0
          || counter(*st, "storage", "unbatched_points") != 0
          || counter(*st, "storage", "unbatched_logs") != 0
          || counter(*st, "storage", "unbatched_events") != 0)
        return false;
      return state("metrics", "acked_upto")
               == query_int(device_db, "SELECT max(id) FROM metrics")
             && state("logs", "acked_upto")
                  == query_int(device_db, "SELECT max(id) FROM logs")
             && unacked("metrics") == 0 && unacked("logs") == 0
             && unacked("events") == 0 && state("events", "acked_upto") > 0;
    },
    deadline);
}

records_checked check_records_exactly_once(const std::string& device_db,
                                           const cloud_store& cloud,
                                           const std::string& device) {
  records_checked out;
  out.points = check_points(device_db, cloud, device);
  auto lines = device_logs(device_db);
  auto got_lines = cloud_logs(cloud, device);
  MESSAGE("device wrote ", lines.size(), " log lines; cloud holds ",
          got_lines.size());
  CHECK(got_lines == lines);
  out.log_lines = lines.size();
  // Events recorded after the drain (shutdown) may not have been sent.
  auto events = device_events(device_db,
                              stream_state(device_db, "events", "acked_upto"));
  auto got_events = cloud_events(cloud, device);
  MESSAGE("device recorded ", events.size(), " synced events; cloud holds ",
          got_events.size());
  CHECK(got_events == events);
  out.events = events.size();
  for (auto stream : {"metrics", "logs", "events"})
    out.batches += check_sequences(device_db, cloud, device, stream);
  CHECK(doubled_points(cloud, device).empty());
  CHECK(query_int(device_db, "SELECT count(*) FROM sync_queue") == 0);
  return out;
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

namespace {

// Per thread: (run time in ns, voluntary context switches).
std::map<std::string, std::pair<int64_t, int64_t>> thread_counts(pid_t pid) {
  std::map<std::string, std::pair<int64_t, int64_t>> out;
  auto dir = "/proc/" + std::to_string(pid) + "/task";
  auto* d = opendir(dir.c_str());
  if (d == nullptr)
    return out;
  while (auto* e = readdir(d)) {
    if (e->d_name[0] == '.')
      continue;
    auto task = dir + "/" + e->d_name;
    int64_t run_ns = -1;
    std::istringstream(read_file(task + "/schedstat")) >> run_ns;
    std::istringstream status(read_file(task + "/status"));
    int64_t switches = -1;
    for (std::string line; std::getline(status, line);)
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0)
        switches = std::stoll(line.substr(line.find(':') + 1));
    // A thread that ended while being read is left out.
    if (run_ns >= 0 && switches >= 0)
      out[e->d_name] = {run_ns, switches};
  }
  closedir(d);
  return out;
}

} // namespace

thread_activity measure_activity(pid_t pid, std::chrono::milliseconds window) {
  auto before = thread_counts(pid);
  auto start = std::chrono::steady_clock::now();
  // Measuring needs time to pass: this sleep is the window, not a wait.
  std::this_thread::sleep_for(window);
  auto after = thread_counts(pid);
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - start)
                .count();
  int64_t run_ns = 0;
  int64_t switches = 0;
  // Threads started in the window count from zero.
  for (auto& [tid, now] : after) {
    auto was = before.count(tid) ? before[tid] : std::pair<int64_t, int64_t>{};
    run_ns += now.first - was.first;
    switches += now.second - was.second;
  }
  return {100.0 * run_ns / 1e9 / secs, switches / secs};
}

int accept_queue(uint16_t port) {
  char local[16];
  std::snprintf(local, sizeof(local), ":%04X", port);
  for (auto file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::istringstream in(read_file(file));
    std::string line;
    std::getline(in, line); // the column names
    while (std::getline(in, line)) {
      // sl local_address rem_address st tx_queue:rx_queue ...
      std::istringstream row(line);
      std::string sl, addr, rem, st, queues;
      row >> sl >> addr >> rem >> st >> queues;
      // A listener's rx_queue is its accept queue's length.
      if (st == "0A" && addr.size() > 5
          && addr.compare(addr.size() - 5, 5, local) == 0)
        return static_cast<int>(
          std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16));
    }
  }
  return -1;
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
  // Bytes the peer wrote before closing (a handshake) are read past: only
  // end of stream or a reset within the deadline counts.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[512];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1)
      return false;
    auto n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK
                   && errno != EINTR))
      return true;
  }
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

std::string fleetd_out(const std::string& dir, std::vector<std::string> args) {
  auto out = dir + "/../cmd.out";
  args = tables_unless_named(std::move(args));
  std::string line;
  for (auto& a : args)
    line += " '" + a + "'";
  auto cmd = program("fleetd") + line + " --node.data-dir=" + dir + " >" + out
             + " 2>/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return read_file(out);
}

int64_t json_int(const std::string& json, const std::string& key,
                 size_t from) {
  auto needle = "\"" + key + "\":";
  auto i = json.find(needle, from);
  if (i == std::string::npos)
    return -1;
  return std::stoll(json.substr(i + needle.size()));
}

} // namespace fleetd::test
