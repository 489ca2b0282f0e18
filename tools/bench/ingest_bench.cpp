// fleetd-bench ingest: one cloud node under many devices, against its own
// codec and its own store measured alone in the same run.
//
// The node is a real fleetd-cloud child process (the program beside this
// one, or --cloud): its config, supervisor, relays, HTTPS endpoint, ingest,
// tenancy and cloud_store actors exactly as shipped, and its CPU time is
// read from /proc apart from the simulated devices' (both share this
// machine's cores). HTTPS with a throwaway self-signed certificate.
//
// 1. Enroll: --devices devices in one org, each added through the tenancy
//    store (its key hashed in tenancy.db or PostgreSQL before the node starts).
// 2. Devices: each has its own seeded node_exporter-like series (100,
//    bench/node_series.hpp), its own series session and the real encoder,
//    used as its sync actor uses it (edge/sync.cpp): a batch is
//    --scrapes-per-batch scrapes (10: 1000 points, tier 1's batch size),
//    encode_columnar against the session, the session advanced by decoding
//    the batch back (which must give the samples bit for bit), a SyncRequest
//    numbered 1, 2, ... in zstd-3. Batches are encoded before the clock
//    starts, so the devices' encoding does not take the node's CPU.
// 3. Send: --senders threads, each one keep-alive HTTPS connection (the
//    project's http_client) carrying its share of the devices round robin,
//    one request at a time, each with its device's key. Round 0 (sessions
//    start: every series defined inline) warms up; round 1 is a pilot whose
//    rate sizes the batches encoded for the measured phase (1.3x what the
//    pilot's rate would send in --seconds). Every request must be acked with
//    its own sequence. The measured phase gives points_per_s,
//    requests_per_s and latency percentiles (request sent to ack read).
// 4. The node stops (SIGTERM); its store must hold exactly the points it
//    acked.
// 5. Replay, the node gone: every acked batch again in round order. decode: decode_request (zstd, protobuf, checksum) +
//    decode_columnar_indexed (what the store runs) against the codec's own
//    per-device session, thread CPU time; decode_named the same with
//    decode_columnar, which copies a name and labels into every point.
//    raw: the same batch as the ingest actor hands it to the store, written
//    through the store class the node uses, straight from this process
//    (embedded_store::write or pg_store::write: one transaction per batch,
//    the store's one write path), wall time, on the same disk, into a fresh
//    file opened as the node opens its own, or a fresh database of the
//    same PostgreSQL through the same PgBouncer, with as many writers
//    (threads, each its own connection) as the node's store, each device
//    on the writer the node gives it; decoding is done before, on one
//    thread. The store keeps each device's series session and makes the
//    rows from it; that is its fastest way in (rows by name, format 1, cost
//    it a lookup per point). All three time only the batches of the
//    measured phase, written after the earlier ones.
// ratio = points_per_s / raw_points_per_s; devices_supported =
// points_per_s / (100 series / 30 s).
#include "tools/bench/ingest_bench.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "cloud/cloud_store.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/embedded_tenancy.hpp"
#include "cloud/pg_tenancy.hpp"
#include "cloud/pg_migrate.hpp"
#include "cloud/pg_store.hpp"
#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/metrics_codec.hpp"
#include "messages/wire.hpp"
#include "runtime/clock.hpp"
#include "runtime/http_client.hpp"
#include "runtime/pg.hpp"
#include "runtime/sqlite.hpp"
#include "tools/bench/bench_util.hpp"
#include "tools/bench/node_series.hpp"
#include "tools/bench/bench_tls.hpp"
#include "tools/pg_server/pg_server.hpp"

namespace fleetd::bench {

const char* ingest_summary =
  "one fleetd-cloud node over HTTPS from many simulated devices (own keys, "
  "sessions,\n      real encoder), on embedded SQLite or PostgreSQL behind "
  "PgBouncer; points/s,\n      p99, vs the codec alone and the store's own "
  "insert";

namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

// 2023-11-14T22:13:20Z; fixed so every run sends identical points.
constexpr int64_t start_ms = 1700000000000;
constexpr int64_t scrape_ms = 10000;
constexpr const char* org = "bench";
// The raw insert's org when it shares the node's database.
constexpr const char* raw_org = "bench-raw";
constexpr const char* epoch = "bench";
constexpr int zstd_level = 3;
constexpr size_t max_decoded_bytes = 64 * 1024 * 1024;
// What devices_supported assumes a device sends: 100 series every 30 s.
constexpr double device_points_per_s = 100.0 / 30.0;
// Rounds before the measured phase: sessions start, then the pilot.
constexpr int64_t warm_rounds = 2;
// Encoded bodies kept in memory for the measured phase, at most.
constexpr double max_body_memory = 1 << 30;

double seconds_since(steady_clock::time_point t0) {
  return std::chrono::duration<double>(steady_clock::now() - t0).count();
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

void progress(const ingest_options& opt, const std::string& text) {
  if (opt.progress)
    std::cerr << "ingest: " << text << std::endl;
}

// -- devices ------------------------------------------------------------------

struct sim_device {
  std::string name;
  std::string authorization;
  std::mt19937_64 rng;
  std::vector<series_def> defs;
  node_values values{{}};
  codec_context session;
  int64_t scrapes = 0;
  /// Encoded requests; bodies[k] carries sequence k + 1.
  std::vector<std::string> bodies;
  /// Batches the node acked (the next to send is bodies[acked]).
  int64_t acked = 0;
};

std::vector<sim_device> make_devices(int64_t n) {
  std::vector<sim_device> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    auto& d = out[static_cast<size_t>(i)];
    auto num = std::to_string(i);
    d.name = "dev-" + std::string(num.size() < 5 ? 5 - num.size() : 0, '0')
             + num;
    d.rng.seed(static_cast<uint64_t>(20240611 + i));
    d.defs = node_exporter_series(d.rng, start_ms);
    d.values = node_values(d.defs);
  }
  return out;
}

// The device's next batch, encoded as its sync actor encodes one.
void encode_next(sim_device& d, int64_t scrapes) {
  metric_samples xs;
  xs.reserve(static_cast<size_t>(scrapes) * d.defs.size());
  std::uniform_int_distribution<int64_t> jitter_ms(0, 40);
  for (int64_t s = 0; s < scrapes; ++s) {
    auto ts = start_ms + d.scrapes++ * scrape_ms + jitter_ms(d.rng);
    d.values.step(d.rng);
    auto& vs = d.values.values();
    for (size_t i = 0; i < d.defs.size(); ++i)
      xs.push_back({d.defs[i].name, d.defs[i].labels, ts, vs[i]});
  }
  auto columnar = encode_columnar(xs, d.session);
  auto back = decode_columnar(columnar, d.session);
  if (!back || !identical(*back, xs))
    fail(d.name + ": a columnar batch does not read back");
  encode_settings es;
  es.device_id = d.name;
  es.sequence = static_cast<int64_t>(d.bodies.size()) + 1;
  es.epoch = epoch;
  es.now_ms = xs.back().timestamp_ms;
  es.zstd_level = zstd_level;
  d.bodies.push_back(encode_columnar_request(es, columnar));
}

// `rounds` more batches of every device; devices are independent, so the
// cores share them (the node is idle meanwhile).
void encode_rounds(std::vector<sim_device>& devs, int64_t scrapes,
                   int64_t rounds) {
  auto n = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> threads;
  std::vector<std::string> errors(n);
  for (unsigned t = 0; t < n; ++t)
    threads.emplace_back([&, t] {
      try {
        for (size_t i = t; i < devs.size(); i += n)
          for (int64_t r = 0; r < rounds; ++r)
            encode_next(devs[i], scrapes);
      } catch (const bench_failure& f) {
        errors[t] = f.what;
      }
    });
  for (auto& t : threads)
    t.join();
  for (auto& e : errors)
    if (!e.empty())
      fail(e);
}

// -- processes ----------------------------------------------------------------

// CPU seconds of `roots` and their children (a server's backends).
double tree_cpu_seconds(const std::vector<pid_t>& roots) {
  double total = 0;
  for (auto& e : fs::directory_iterator("/proc")) {
    auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    auto pid = static_cast<pid_t>(std::stol(name));
    auto st = read_stat(pid);
    if (!st)
      continue;
    for (auto r : roots)
      if (r > 0 && (pid == r || st->ppid == r))
        total += st->cpu_s;
  }
  return total;
}

// -- the store ----------------------------------------------------------------

/// Writes one decoded batch the way the store itself does, no node in front.
using raw_writer = std::function<caf::expected<ingest_outcome>(
  const ingest_batch&)>;

/// What --store picks: how devices are enrolled in the node's tenancy
/// (tenancy.db beside the node, or the node's PostgreSQL), the node's flags
/// for the store, the store class the raw insert writes through, and how
/// the rows the node stored are counted.
struct store_choice {
  std::function<void(const std::string& node_dir, std::vector<sim_device>&)>
    enroll;
  std::vector<std::string> node_flags;
  /// The raw insert's writers: as many as the node's store has.
  std::function<std::vector<raw_writer>(const std::string& dir)> open_raw;
  std::function<int64_t(const std::string& node_dir)> stored_points;
  /// The bench's own PostgreSQL, if it started one (lives as long).
  std::shared_ptr<pg_server> server;

  /// CPU seconds of the bench's own PostgreSQL and PgBouncer (0: none).
  double server_cpu_seconds() const {
    return server ? tree_cpu_seconds({server->server_pid(),
                                      server->bouncer_pid()})
                  : 0;
  }
};

// One org, and each device added with its own key, as `fleetctl` would.
void enroll_into(tenancy_backend& ten, std::vector<sim_device>& devs) {
  tenancy_command cmd;
  cmd.op = "org-create";
  cmd.org = org;
  if (auto made = ten.run(cmd); !made)
    fail("org-create: " + render(made.error()));
  cmd.op = "device-add";
  for (auto& d : devs) {
    cmd.device = d.name;
    auto added = ten.run(cmd);
    if (!added)
      fail("device-add " + d.name + ": " + render(added.error()));
    d.authorization = "Bearer " + added->secret;
  }
}

// The secret the node is started with (--tenancy.secret-file, node_args).
std::string bench_secret(const std::string& node_dir) {
  auto secret = load_or_create_secret(node_dir + "/tenancy.secret");
  if (!secret)
    fail("tenancy secret: " + render(secret.error()));
  return std::move(*secret);
}

void enroll_embedded(const std::string& node_dir,
                     std::vector<sim_device>& devs) {
  auto ten = embedded_tenancy::open(node_dir + "/tenancy.db",
                                    bench_secret(node_dir), make_system_clock());
  if (!ten)
    fail("tenancy.db: " + render(ten.error()));
  enroll_into(*ten, devs);
}

std::vector<raw_writer> open_embedded_raw(const std::string& dir) {
  // As the node opens its cloud.db (WAL, synchronous=FULL).
  auto st = embedded_store::open(dir + "/raw.db", make_system_clock());
  if (!st)
    fail("raw store: " + render(st.error()));
  auto p = std::make_shared<embedded_store>(std::move(*st));
  return {[p](const ingest_batch& b) { return p->write(b); }};
}

int64_t count_embedded_points(const std::string& node_dir) {
  auto db = sqlite::database::open_readonly(node_dir + "/cloud.db");
  if (!db)
    fail("cloud.db: " + render(db.error()));
  auto st = db->prepare("SELECT count(*) FROM points");
  if (!st)
    fail(render(st.error()));
  auto row = st->step();
  if (!row || !*row)
    fail("cloud.db: cannot count the points");
  return st->column_int(0);
}

// -- PostgreSQL ---------------------------------------------------------------

/// Where the node's rows go and where the raw insert's go.
struct pg_target {
  std::string node_url;
  std::string owner_url;
  std::string raw_url;
  std::string raw_owner_url;
};

void migrate_schema(const std::string& owner_url) {
  auto owner = pg::connection::open(owner_url);
  if (!owner)
    fail("schema owner: " + render(owner.error()));
  if (auto done = migrate(*owner); !done)
    fail("migrations: " + render(done.error()));
}

// Points of `org` the database at `url` holds (row security shows one org).
int64_t count_pg_points(const std::string& url, const std::string& of) {
  auto c = pg::connection::open(url);
  if (!c)
    fail("counting points: " + render(c.error()));
  int64_t n = -1;
  auto err = pg::transaction(*c, of, [&]() -> caf::error {
    auto r = c->exec("SELECT count(*) FROM points");
    if (!r)
      return r.error();
    n = r->int64(0, 0);
    return caf::none;
  });
  if (err)
    fail("counting points: " + render(err));
  return n;
}

// The bench's own server and PgBouncer (transaction pooling, as in
// production): one database for the node, one for the raw insert.
pg_target start_own_pg(store_choice& out) {
  pg_server::failure why;
  auto s = pg_server::start(why);
  if (!s)
    fail("PostgreSQL: " + why.why);
  if (!s->with_bouncer(why, 8))
    fail("PgBouncer: " + why.why);
  auto node = s->create_database("bench_node");
  auto raw = s->create_database("bench_raw");
  if (!node || !raw)
    fail("CREATE DATABASE: " + render(node ? raw.error() : node.error()));
  out.server = std::move(s);
  return {node->pooled_url, node->owner_url, raw->pooled_url,
          raw->owner_url};
}

// An existing server: node and raw rows share its database, apart by org;
// refused unless neither org has a point yet (a rerun would be duplicates).
pg_target existing_pg(const ingest_options& opt) {
  if (opt.postgresql_url.empty() || opt.postgresql_owner_url.empty())
    fail("--postgresql-url and --postgresql-owner-url go together");
  migrate_schema(opt.postgresql_owner_url);
  for (auto of : {org, raw_org})
    if (count_pg_points(opt.postgresql_url, of) != 0)
      fail("org '" + std::string{of}
           + "' already has points in that database: use an empty one");
  return {opt.postgresql_url, opt.postgresql_owner_url, opt.postgresql_url,
          opt.postgresql_owner_url};
}

store_choice choose_postgresql(const ingest_options& opt) {
  store_choice out;
  auto to = opt.postgresql_url.empty() && opt.postgresql_owner_url.empty()
              ? start_own_pg(out)
              : existing_pg(opt);
  // Tenancy lives in the node's database, like every node on PostgreSQL.
  out.enroll = [url = to.node_url, owner = to.owner_url](
                 const std::string& node_dir, std::vector<sim_device>& devs) {
    migrate_schema(owner); // the node would, but enrolling comes first
    auto ten = pg_tenancy::open(url, bench_secret(node_dir),
                                make_system_clock());
    if (!ten)
      fail("tenancy: " + render(ten.error()));
    enroll_into(*ten, devs);
  };
  out.node_flags = {"--store.backend=postgresql",
                    "--store.postgresql-url=" + to.node_url,
                    "--store.postgresql-owner-url=" + to.owner_url};
  out.node_flags.push_back("--store.postgresql-writers="
                           + std::to_string(opt.writers));
  out.open_raw = [to, n = opt.writers](const std::string&) {
    migrate_schema(to.raw_owner_url);
    // As the node opens it: its statement timeout, the same number of
    // writers, each on its own connection.
    pg::connect_options opts;
    opts.statement_timeout_ms = 30000;
    auto st = pg_store::open(to.raw_url, make_system_clock(), opts, n);
    if (!st)
      fail("raw store: " + render(st.error()));
    auto first = std::make_shared<pg_store>(std::move(*st));
    auto more = first->more_writers();
    if (!more)
      fail("raw store: " + render(more.error()));
    std::vector<std::shared_ptr<cloud_store_backend>> all{first};
    all.insert(all.end(), more->begin(), more->end());
    std::vector<raw_writer> out;
    for (auto& p : all)
      out.push_back([p](const ingest_batch& b) { return p->write(b); });
    return out;
  };
  out.stored_points = [url = to.node_url](const std::string&) {
    return count_pg_points(url, org);
  };
  return out;
}

store_choice choose_store(const ingest_options& opt) {
  if (opt.store == "embedded")
    return {enroll_embedded, {}, open_embedded_raw, count_embedded_points, {}};
  if (opt.store == "postgresql")
    return choose_postgresql(opt);
  fail("--store: embedded or postgresql, not '" + opt.store + "'");
}

// -- the node -----------------------------------------------------------------

/// A fleetd-cloud child process; killed if still running when dropped.
class node_process {
public:
  node_process(const std::string& program, std::vector<std::string> args,
               const std::string& log_file) {
    std::vector<char*> argv{const_cast<char*>(program.c_str())};
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      auto fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      execv(program.c_str(), argv.data());
      _exit(127);
    }
    if (pid_ < 0)
      fail(std::string("fork: ") + strerror(errno));
  }

  ~node_process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  /// The ingest port the node wrote to `file`, once it did.
  uint16_t wait_port(const std::string& file, double timeout_s) {
    auto t0 = steady_clock::now();
    while (seconds_since(t0) < timeout_s) {
      std::ifstream in(file);
      int port = 0;
      if (in >> port && port > 0)
        return static_cast<uint16_t>(port);
      if (exited())
        fail("fleetd-cloud exited at start (see its log)");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    fail("fleetd-cloud wrote no port in " + format(timeout_s, 0) + " s");
  }

  /// User + system CPU seconds the node used so far.
  double cpu_seconds() const {
    auto st = read_stat(pid_);
    if (!st)
      fail("cannot read the node's /proc stat");
    return st->cpu_s;
  }

  /// SIGTERM, then waits; fails unless the node exits 0 in time.
  void stop(double timeout_s) {
    kill(pid_, SIGTERM);
    auto t0 = steady_clock::now();
    while (seconds_since(t0) < timeout_s) {
      if (exited()) {
        if (!WIFEXITED(status_) || WEXITSTATUS(status_) != 0)
          fail("fleetd-cloud did not stop cleanly (see its log)");
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    fail("fleetd-cloud did not stop in " + format(timeout_s, 0) + " s");
  }

private:
  bool exited() {
    if (pid_ <= 0)
      return true;
    if (waitpid(pid_, &status_, WNOHANG) != pid_)
      return false;
    pid_ = -1;
    return true;
  }

  pid_t pid_ = -1;
  int status_ = 0;
};

std::string cloud_program(const ingest_options& opt) {
  if (!opt.cloud_program.empty())
    return opt.cloud_program;
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    fail("cannot find this program's directory; pass --cloud PROGRAM");
  return (self.parent_path() / "fleetd-cloud").string();
}

std::vector<std::string> node_args(const std::string& node_dir,
                                   const tls_files& tls,
                                   const store_choice& store) {
  std::vector<std::string> out{
    "--node.data-dir=" + node_dir, "--ingest.host=127.0.0.1",
    "--ingest.port=0", "--ingest.tls-cert=" + tls.cert,
    "--ingest.tls-key=" + tls.key,
    // The console is not what is measured: loopback, plain, its port free.
    "--console.port=0", "--console.insecure=true", "--log.level=warning",
    "--tenancy.secret-file=" + node_dir + "/tenancy.secret"};
  out.insert(out.end(), store.node_flags.begin(), store.node_flags.end());
  return out;
}

// -- sending ------------------------------------------------------------------

struct phase_stats {
  int64_t points = 0;
  int64_t requests = 0;
  int64_t body_bytes = 0;
  std::vector<double> latency_ms;
  double seconds = 0;
  std::string error;

  void add(phase_stats&& x) {
    points += x.points;
    requests += x.requests;
    body_bytes += x.body_bytes;
    latency_ms.insert(latency_ms.end(), x.latency_ms.begin(),
                      x.latency_ms.end());
    if (error.empty())
      error = std::move(x.error);
  }
};

struct link_target {
  uint16_t port = 0;
  tls_files trust;
  int64_t points_per_batch = 0;
};

// Sends `d`'s next batch; an answer other than its ack is the error.
std::string send_one(http_client& client, sim_device& d,
                     const link_target& to, phase_stats& out) {
  auto& body = d.bodies[static_cast<size_t>(d.acked)];
  auto t0 = steady_clock::now();
  auto res = client.post("/v1/sync", body,
                         {{"Content-Type", "application/x-protobuf"},
                          {"Content-Encoding", "zstd"},
                          {"Authorization", d.authorization}});
  out.latency_ms.push_back(seconds_since(t0) * 1000);
  if (!res)
    return d.name + ": " + render(res.error());
  auto ack = decode_response(res->body);
  if (res->status != 200 || !ack || !ack->success
      || ack->last_sequence_ack != d.acked + 1)
    return d.name + " batch " + std::to_string(d.acked + 1) + ": HTTP "
           + std::to_string(res->status) + " " + res->error;
  ++d.acked;
  ++out.requests;
  out.points += to.points_per_batch;
  out.body_bytes += static_cast<int64_t>(body.size());
  return {};
}

// One sender: its devices' batches up to `rounds`, round by round, until
// the deadline.
phase_stats send_loop(std::vector<sim_device*> mine, const link_target& to,
                      int64_t rounds, steady_clock::time_point deadline) {
  phase_stats out;
  http_client client("127.0.0.1", to.port, std::chrono::seconds(60),
                     64 * 1024);
  if (auto err = client.use_tls(to.trust)) {
    out.error = render(err);
    return out;
  }
  for (bool more = true; more && steady_clock::now() < deadline;) {
    more = false;
    for (auto* d : mine) {
      if (d->acked >= rounds || steady_clock::now() >= deadline)
        continue;
      out.error = send_one(client, *d, to, out);
      if (!out.error.empty())
        return out;
      more = true;
    }
  }
  return out;
}

// Every device's batches up to `rounds`, over `senders` connections.
phase_stats run_phase(std::vector<sim_device>& devs, int64_t senders,
                      const link_target& to, int64_t rounds,
                      double max_seconds) {
  auto n = static_cast<size_t>(std::min<int64_t>(
    senders, static_cast<int64_t>(devs.size())));
  std::vector<std::vector<sim_device*>> shares(n);
  for (size_t i = 0; i < devs.size(); ++i)
    shares[i % n].push_back(&devs[i]);
  std::vector<phase_stats> stats(n);
  auto t0 = steady_clock::now();
  auto deadline = t0 + std::chrono::duration_cast<steady_clock::duration>(
                         std::chrono::duration<double>(max_seconds));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      stats[i] = send_loop(shares[i], to, rounds, deadline);
    });
  for (auto& t : threads)
    t.join();
  phase_stats out;
  out.seconds = seconds_since(t0);
  for (auto& s : stats)
    out.add(std::move(s));
  if (!out.error.empty())
    fail("sending: " + out.error);
  return out;
}

double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  auto k = static_cast<size_t>(std::ceil(p * static_cast<double>(xs.size())));
  k = std::min(xs.size() - 1, k > 0 ? k - 1 : 0);
  std::nth_element(xs.begin(), xs.begin() + static_cast<long>(k), xs.end());
  return xs[k];
}

// -- replay: the codec alone, the store alone ---------------------------------

struct replay_stats {
  int64_t points = 0;
  double decode_cpu_s = 0;
  double raw_wall_s = 0;
  double raw_cpu_s = 0;
  double named_cpu_s = 0;
};

// One body as the ingest actor hands it to the store (envelope decoded and
// verified, still columnar), and its points decoded against the codec's own
// session of the device: the codec's whole work on it. `named` decodes as
// decode_columnar (a name and labels copied into every point), else as the
// store does (decode_columnar_indexed).
struct decoded {
  ingest_batch batch;
  int64_t points = 0;
};

decoded decode_one(const std::string& body, codec_context& ctx, bool named) {
  auto req = decode_request(body, true, max_decoded_bytes);
  if (!req)
    fail("replay: " + render(req.error()));
  decode_budget budget{req->decode_budget > 0 ? req->decode_budget
                                              : max_decoded_bytes};
  caf::error err;
  size_t n = 0;
  if (named) {
    auto xs = decode_columnar(req->columnar, ctx, budget);
    err = xs ? caf::error{} : xs.error();
    n = xs ? xs->size() : 0;
  } else {
    auto xs = decode_columnar_indexed(req->columnar, ctx, budget);
    err = xs ? caf::error{} : xs.error();
    n = xs ? xs->size() : 0;
  }
  if (err)
    fail("replay: " + render(err));
  return {std::move(*req), static_cast<int64_t>(n)};
}

struct replay_sessions {
  codec_context named;
  codec_context indexed;
};

// A batch decoded and ready for the raw insert.
struct raw_batch {
  ingest_batch batch;
  int64_t points = 0;
};

// Batch `k` of device `d`: decoded both ways (the codec alone, timed when
// `timed`), then stamped for the raw insert.
raw_batch decode_for_raw(sim_device& dev, int64_t k, replay_sessions& s,
                         bool timed, replay_stats& out) {
  auto& body = dev.bodies[static_cast<size_t>(k)];
  auto cpu0 = thread_cpu_seconds();
  decode_one(body, s.named, true);
  auto cpu1 = thread_cpu_seconds();
  auto d = decode_one(body, s.indexed, false);
  auto cpu2 = thread_cpu_seconds();
  // Stamped as ingest stamps it (org/device), in the raw run's own org.
  d.batch.device_id = std::string(raw_org) + "/" + d.batch.device_id;
  if (timed) {
    out.named_cpu_s += cpu1 - cpu0;
    out.decode_cpu_s += cpu2 - cpu1;
  }
  return {std::move(d.batch), d.points};
}

// Each writer on a thread of its own writes its batches in order; their
// points, wall time of the whole and CPU time of the threads.
void write_raw(const std::vector<raw_writer>& raw,
               std::vector<std::vector<raw_batch>>& work, replay_stats* out) {
  std::vector<std::string> errors(raw.size());
  std::vector<double> cpu(raw.size());
  std::vector<std::thread> threads;
  auto t0 = steady_clock::now();
  for (size_t w = 0; w < raw.size(); ++w)
    threads.emplace_back([&, w] {
      auto c0 = thread_cpu_seconds();
      for (auto& x : work[w]) {
        auto res = raw[w](x.batch);
        if (!res || res->stored != x.points) {
          errors[w] = res ? "stored " + std::to_string(res->stored)
                          : render(res.error());
          return;
        }
      }
      cpu[w] = thread_cpu_seconds() - c0;
    });
  for (auto& t : threads)
    t.join();
  for (auto& e : errors)
    if (!e.empty())
      fail("raw store: " + e);
  if (!out)
    return;
  out->raw_wall_s += seconds_since(t0);
  for (size_t w = 0; w < raw.size(); ++w) {
    out->raw_cpu_s += cpu[w];
    for (auto& x : work[w])
      out->points += x.points;
  }
}

// Every acked batch again, round by round, each device's on the writer the
// node gives it (writer_of); rounds >= `from` are timed, after the others
// are written.
replay_stats replay(std::vector<sim_device>& devs,
                    const std::vector<raw_writer>& raw, int64_t from) {
  replay_stats out;
  std::vector<replay_sessions> sessions(devs.size());
  int64_t rounds = 0;
  for (auto& d : devs)
    rounds = std::max(rounds, d.acked);
  std::vector<std::vector<raw_batch>> warm(raw.size());
  std::vector<std::vector<raw_batch>> timed(raw.size());
  for (int64_t k = 0; k < rounds; ++k)
    for (size_t i = 0; i < devs.size(); ++i) {
      if (k >= devs[i].acked)
        continue;
      auto x = decode_for_raw(devs[i], k, sessions[i], k >= from, out);
      auto w = writer_of(x.batch.device_id, raw.size());
      (k >= from ? timed : warm)[w].push_back(std::move(x));
    }
  write_raw(raw, warm, nullptr);
  write_raw(raw, timed, &out);
  return out;
}

// -- one run ------------------------------------------------------------------

// Rounds of batches to encode for the measured phase, from the pilot's rate.
int64_t rounds_for(const ingest_options& opt, const phase_stats& pilot,
                   const std::vector<sim_device>& devs) {
  auto rate = pilot.points / std::max(pilot.seconds, 1e-3);
  auto per_round = static_cast<double>(devs.size())
                   * static_cast<double>(opt.scrapes_per_batch) * 100;
  auto want = std::ceil(1.3 * rate * opt.seconds / per_round);
  auto body_bytes = static_cast<double>(pilot.body_bytes)
                    / std::max<int64_t>(pilot.requests, 1);
  auto cap = std::floor(max_body_memory
                        / (body_bytes * static_cast<double>(devs.size())));
  return static_cast<int64_t>(std::max(1.0, std::min(want, cap)));
}

struct session_run {
  phase_stats measured;
  double node_cpu_s = 0;
  double server_cpu_s = 0;
  int64_t acked_points = 0;
};

// Starts the node, sends warm-up, pilot and measured rounds, stops it.
session_run drive_node(const ingest_options& opt, const store_choice& store,
                       std::vector<sim_device>& devs, const bench_pki& pki,
                       const std::string& node_dir) {
  node_process node(cloud_program(opt), node_args(node_dir, pki.server, store),
                    node_dir + "/node.log");
  link_target to{node.wait_port(node_dir + "/ingest.port", 30),
                 pki.client,
                 opt.scrapes_per_batch * 100};
  session_run out;
  encode_rounds(devs, opt.scrapes_per_batch, 1);
  out.acked_points += run_phase(devs, opt.senders, to, 1, 600).points;
  encode_rounds(devs, opt.scrapes_per_batch, 1);
  auto pilot = run_phase(devs, opt.senders, to, 2, 600);
  out.acked_points += pilot.points;
  auto rounds = rounds_for(opt, pilot, devs);
  progress(opt, "pilot " + format(pilot.points / pilot.seconds, 0)
                  + " points/s; encoding " + std::to_string(rounds)
                  + " rounds of " + std::to_string(devs.size()) + " batches");
  encode_rounds(devs, opt.scrapes_per_batch, rounds);
  progress(opt, "measuring for " + format(opt.seconds, 0) + " s");
  auto cpu0 = node.cpu_seconds();
  auto server0 = store.server_cpu_seconds();
  out.measured = run_phase(devs, opt.senders, to, warm_rounds + rounds,
                           opt.seconds);
  out.node_cpu_s = node.cpu_seconds() - cpu0;
  out.server_cpu_s = store.server_cpu_seconds() - server0;
  out.acked_points += out.measured.points;
  if (out.measured.seconds < opt.seconds * 0.9)
    progress(opt, "the encoded batches ran out after "
                    + format(out.measured.seconds, 1) + " s");
  node.stop(60);
  return out;
}

void fill_result(const session_run& s, const replay_stats& rp,
                 ingest_result& r) {
  auto& m = s.measured;
  r.points = m.points;
  r.requests = m.requests;
  r.seconds = m.seconds;
  r.points_per_s = m.points / m.seconds;
  r.requests_per_s = m.requests / m.seconds;
  r.p50_ms = percentile(m.latency_ms, 0.50);
  r.p99_ms = percentile(m.latency_ms, 0.99);
  r.bytes_per_point = static_cast<double>(m.body_bytes)
                      / std::max<int64_t>(m.points, 1);
  r.node_cpu_cores = s.node_cpu_s / m.seconds;
  r.node_cpu_us_per_point = s.node_cpu_s * 1e6 / std::max<int64_t>(m.points, 1);
  r.server_cpu_cores = s.server_cpu_s / m.seconds;
  r.server_cpu_us_per_point =
    s.server_cpu_s * 1e6 / std::max<int64_t>(m.points, 1);
  r.decode_points_per_s_per_core = rp.points / std::max(rp.decode_cpu_s, 1e-9);
  r.decode_named_points_per_s_per_core =
    rp.points / std::max(rp.named_cpu_s, 1e-9);
  r.raw_points_per_s = rp.points / std::max(rp.raw_wall_s, 1e-9);
  r.raw_cpu_us_per_point = rp.raw_cpu_s * 1e6 / std::max<int64_t>(rp.points, 1);
  r.ratio = r.points_per_s / r.raw_points_per_s;
  r.devices_supported = r.points_per_s / device_points_per_s;
}

ingest_result run_checked(const ingest_options& opt) {
  auto store = choose_store(opt);
  auto node_dir = opt.dir + "/node";
  fs::create_directories(node_dir);
  auto pki = make_bench_pki(opt.dir);
  auto devs = make_devices(opt.devices);
  auto t0 = steady_clock::now();
  store.enroll(node_dir, devs);
  progress(opt, "enrolled " + std::to_string(devs.size()) + " devices in "
                  + format(seconds_since(t0), 1) + " s");
  auto run = drive_node(opt, store, devs, pki, node_dir);
  ingest_result r;
  r.acked_points = run.acked_points;
  r.stored_points = store.stored_points(node_dir);
  if (r.stored_points != r.acked_points)
    fail("the node acked " + std::to_string(r.acked_points)
         + " points but its store holds " + std::to_string(r.stored_points));
  progress(opt, "replaying the batches: the codec alone, the store alone");
  auto rp = replay(devs, store.open_raw(opt.dir), warm_rounds);
  progress(opt, "replayed " + std::to_string(rp.points) + " points: decode "
                  + format(rp.decode_cpu_s, 2) + " s CPU, store "
                  + format(rp.raw_wall_s, 2) + " s (" + format(rp.raw_cpu_s, 2)
                  + " s CPU)");
  fill_result(run, rp, r);
  return r;
}

// -- command line -------------------------------------------------------------

std::string parse_number(const std::string& arg, const std::string& value,
                         ingest_options& opt) {
  if (arg == "--seconds") {
    double v = 0;
    if (!parse_double(value, v) || v <= 0 || v > 3600)
      return arg + ": expected seconds in (0, 3600], got '" + value + "'";
    opt.seconds = v;
    return {};
  }
  struct bound {
    const char* name;
    int64_t lo, hi;
    int64_t* field;
  };
  // Senders: the node takes 64 connections per address by default.
  bound bounds[] = {{"--devices", 1, 100000, &opt.devices},
                    {"--writers", 1, 32, &opt.writers},
                    {"--senders", 1, 64, &opt.senders},
                    {"--scrapes-per-batch", 1, 1000, &opt.scrapes_per_batch}};
  for (auto& b : bounds) {
    if (arg != b.name)
      continue;
    int64_t v = 0;
    if (!parse_int(value, v) || v < b.lo || v > b.hi)
      return arg + ": expected an integer in [" + std::to_string(b.lo) + ", "
             + std::to_string(b.hi) + "], got '" + value + "'";
    *b.field = v;
    return {};
  }
  return "unknown argument '" + arg + "'";
}

std::string parse_args(const std::vector<std::string>& args,
                       ingest_options& opt) {
  arg_cursor cur(args);
  while (cur.next()) {
    auto arg = cur.name();
    std::string value;
    if (!cur.value(value) || value.empty())
      return arg + ": missing value";
    if (arg == "--store")
      opt.store = value;
    else if (arg == "--postgresql-url")
      opt.postgresql_url = value;
    else if (arg == "--postgresql-owner-url")
      opt.postgresql_owner_url = value;
    else if (arg == "--dir")
      opt.dir = value;
    else if (arg == "--cloud")
      opt.cloud_program = value;
    else if (auto err = parse_number(arg, value, opt); !err.empty())
      return err;
  }
  if (opt.store != "embedded" && opt.store != "postgresql")
    return "--store: embedded or postgresql, not '" + opt.store + "'";
  return {};
}

} // namespace

ingest_result run_ingest(const ingest_options& opt) {
  try {
    return run_checked(opt);
  } catch (const bench_failure& f) {
    ingest_result r;
    r.error = f.what;
    return r;
  }
}

std::string ingest_line(const ingest_options& opt, const ingest_result& r) {
  std::ostringstream out;
  out << "BENCH ingest store=" << opt.store << " devices=" << opt.devices
      << " points_per_s=" << format(r.points_per_s, 0)
      << " requests_per_s=" << format(r.requests_per_s, 1)
      << " p99_ms=" << format(r.p99_ms, 2)
      << " decode_points_per_s_per_core="
      << format(r.decode_points_per_s_per_core, 0)
      << " raw_points_per_s=" << format(r.raw_points_per_s, 0)
      << " ratio=" << format(r.ratio, 3)
      << " devices_supported=" << format(r.devices_supported, 0)
      << " senders=" << opt.senders
      << " writers=" << (opt.store == "postgresql" ? opt.writers : 1)
      << " batch=" << opt.scrapes_per_batch * 100
      << " seconds=" << format(r.seconds, 1) << " p50_ms="
      << format(r.p50_ms, 2) << " bytes_per_point="
      << format(r.bytes_per_point, 3) << " node_cpu_cores="
      << format(r.node_cpu_cores, 2) << " node_cpu_us_per_point="
      << format(r.node_cpu_us_per_point, 2) << " raw_cpu_us_per_point="
      << format(r.raw_cpu_us_per_point, 2)
      << " decode_named_points_per_s_per_core="
      << format(r.decode_named_points_per_s_per_core, 0);
  if (r.server_cpu_cores > 0)
    out << " pg_cpu_cores=" << format(r.server_cpu_cores, 2)
        << " pg_cpu_us_per_point=" << format(r.server_cpu_us_per_point, 2);
  return out.str();
}

std::string ingest_usage() {
  return "usage: fleetd-bench ingest --store embedded|postgresql [--devices N] "
         "[--seconds S]\n"
         "                           [--senders C] [--scrapes-per-batch K] "
         "[--writers W]\n"
         "                           [--dir DIR] [--cloud PROGRAM]\n"
         "                           [--postgresql-url URL "
         "--postgresql-owner-url URL]\n\n"
         "Starts a fleetd-cloud node (HTTPS on 127.0.0.1, a throwaway "
         "certificate), enrolls N\nsimulated devices in its tenancy store, "
         "and sends their numbered SyncRequests\n(100 node_exporter-like "
         "series each, its own series session, the real encoder,\nzstd-3) "
         "over C keep-alive HTTPS connections for S seconds after a warm-up "
         "and a\npilot round. Then, the node stopped, decodes the same "
         "batches on one thread (the\ncodec alone) and writes the same rows "
         "through the store class itself (the store\nalone: embedded_store, "
         "or pg_store with W writers on W threads). Prints\n"
         "  BENCH ingest store=... devices=N points_per_s=... "
         "requests_per_s=... p99_ms=...\n"
         "    decode_points_per_s_per_core=... raw_points_per_s=... "
         "ratio=... devices_supported=...\n"
         "    senders=C writers=W batch=... seconds=... p50_ms=... "
         "bytes_per_point=...\n    node_cpu_cores=... "
         "node_cpu_us_per_point=... raw_cpu_us_per_point=...\n"
         "    decode_named_points_per_s_per_core=... [pg_cpu_cores=... "
         "pg_cpu_us_per_point=...]\n"
         "ratio = points_per_s / raw_points_per_s; devices_supported = "
         "points_per_s / (100\nseries / 30 s). Targets: decode >= 3 M "
         "points/s/core, ratio >= 0.7.\npg_cpu_*: the bench's own PostgreSQL "
         "and PgBouncer over the measured phase.\n\n"
         "With --store postgresql and no URL the bench starts its own "
         "PostgreSQL 15 and\nPgBouncer (transaction pooling, as in "
         "production) from Debian's packages in a\ntemp dir (as root: run "
         "as the postgres user), one database for the node and\none for "
         "the raw insert; the node migrates its own (store.postgresql-owner-"
         "url).\n\n"
         "  --store S                 embedded (SQLite files of the node) or "
         "postgresql\n"
         "  --postgresql-url URL      an existing, empty database instead: "
         "the node's role\n"
         "                            (a member of fleetd_app; through "
         "PgBouncer in production)\n"
         "  --postgresql-owner-url URL  its schema owner (the bench and the "
         "node migrate);\n"
         "                            node and raw rows go to orgs bench and "
         "bench-raw\n"
         "  --writers W               postgresql: the node's "
         "store.postgresql-writers and the\n"
         "                            raw insert's threads, 1-32 (default 2)\n"
         "  --devices N               simulated devices (default 200)\n"
         "  --seconds S               length of the measured phase (default "
         "15)\n"
         "  --senders C               concurrent connections, 1-64 (default "
         "8)\n"
         "  --scrapes-per-batch K     scrapes per batch (default 10: 1000 "
         "points)\n"
         "  --dir DIR                 where the databases go (default: a "
         "fresh temp dir, removed)\n"
         "  --cloud PROGRAM           fleetd-cloud to start (default: the one "
         "beside fleetd-bench)\n";
}

int run_ingest_bench(const std::vector<std::string>& args) {
  ingest_options opt;
  if (auto err = parse_args(args, opt); !err.empty()) {
    std::cerr << "fleetd-bench ingest: " << err << "\n" << ingest_usage();
    return 2;
  }
  bool own_dir = false;
  if (auto err = prepare_dir(opt.dir, own_dir); !err.empty()) {
    std::cerr << "fleetd-bench ingest: " << err << std::endl;
    return 1;
  }
  auto r = run_ingest(opt);
  if (own_dir) {
    std::error_code ec;
    fs::remove_all(opt.dir, ec);
  }
  if (!r.error.empty()) {
    std::cerr << "fleetd-bench ingest: " << r.error << std::endl;
    return 1;
  }
  std::cout << ingest_line(opt, r) << std::endl;
  return 0;
}

} // namespace fleetd::bench
