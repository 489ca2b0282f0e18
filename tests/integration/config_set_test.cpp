// fleetd config set/get/unset on a running device with a real cloud: each
// setting the seed's guide names (compression, sync_interval,
// metric_interval, retention, store_logs) takes effect without a restart,
// seen in the node's status and answers; it survives a SIGTERM and a
// SIGKILL restart; `config get` names each value's source (default, tier,
// file, flag, cloud, local set); unset goes back to the layer below; a bad
// key or value exits 2 and leaves the file alone.
#include <doctest/doctest.h>

#include <csignal>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "cfg-dev";

struct nodes {
  temp_dir tmp;
  std::string cloud_dir = tmp.path() + "/cloud";
  std::string dev_dir = tmp.path() + "/device";
  std::string ini = tmp.path() + "/edge.ini";
  std::string log_file = tmp.path() + "/app.log";
  std::unique_ptr<process> cloud;
  std::unique_ptr<process> device;
  uint16_t ingest = 0;
  uint16_t cloud_console = 0;
  uint16_t console = 0;
  /// More options for the node and its commands.
  std::vector<std::string> extra;

  void start_cloud() {
    cloud = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{"--node.data-dir=" + cloud_dir,
                               "--ingest.port=0", "--console.port=0"},
      tmp.path() + "/cloud.log");
    ingest = port_from(cloud_dir + "/ingest.port");
    cloud_console = port_from(cloud_dir + "/console.port");
    REQUIRE(ingest != 0);
    REQUIRE(cloud_console != 0);
  }

  /// The device's options, the same for the node and its commands.
  std::vector<std::string> options() const {
    std::vector<std::string> opts{"--config=" + ini, "--node.data-dir=" + dev_dir,
            std::string{"--device.id="} + device_id,
            "--cloud.port=" + std::to_string(ingest), "--console.port=0",
            "--tier.pin=1",
            // flag: metric_interval and sync_interval come from here.
            "--collector.interval=1h", "--sync.interval=300ms",
            "--load.series=5", "--load.interval=100ms",
            "--logs.paths=" + log_file, "--logs.start-at=beginning",
            "--logs.interval=50ms",
            "--sync.backoff-base=20ms", "--sync.backoff-cap=200ms"};
    opts.insert(opts.end(), extra.begin(), extra.end());
    return opts;
  }

  void start_device() {
    ::unlink((dev_dir + "/console.port").c_str());
    device = std::make_unique<process>(program("fleetd"), options(),
                                       tmp.path() + "/device.log");
    console = port_from(dev_dir + "/console.port");
    REQUIRE_MESSAGE(console != 0, read_file(tmp.path() + "/device.log"));
  }

  /// `fleetd ARGS` with the device's options: (exit status, output).
  std::pair<int, std::string> fleetd(std::vector<std::string> args) {
    auto opts = options();
    args.insert(args.end(), opts.begin(), opts.end());
    return run_to_end(program("fleetd"), args, 60s);
  }

  int64_t status_counter(const std::string& actor, const std::string& name) {
    auto st = console_status(console);
    return st ? counter(*st, actor, name) : -1;
  }

  bool shows(const std::string& actor, const std::string& name,
             int64_t value) {
    return eventually([&] { return status_counter(actor, name) == value; },
                      20s);
  }

  void append_log(int lines) {
    std::ofstream out(log_file, std::ios::app);
    for (int i = 0; i < lines; ++i)
      out << "line " << i << "\n";
  }
};

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

/// The `config get` line of `key` ("key = value  (source...)").
std::string line_of(const std::string& out, const std::string& key) {
  auto at = out.find(key + " = ");
  if (at == std::string::npos)
    return "";
  return out.substr(at, out.find('\n', at) - at);
}

// The settings as local set made them, seen in the running node's status.
void check_applied(nodes& n) {
  CHECK(n.shows("capability", "sync_interval_ms", 3'600'000));
  CHECK(n.shows("sync_metrics", "interval_ms", 3'600'000));
  CHECK(n.shows("capability", "zstd_level", 0));
  CHECK(n.shows("sync_logs", "zstd_level", 0));
  CHECK(n.shows("system_collector", "interval_ms", 100));
  CHECK(n.shows("capability", "retention_ms", 3 * 3'600'000));
  CHECK(n.shows("storage", "store_logs", 0));
}

} // namespace

TEST_CASE("fleetd config set changes each setting live, persists it across "
          "SIGTERM and SIGKILL, and config get names every source") {
  nodes n;
  // file: retention comes from the INI.
  write_file(n.ini, "[storage]\nretention = 2h\n");
  write_file(n.log_file, "");
  n.start_cloud();
  n.start_device();
  n.append_log(3);
  REQUIRE(n.shows("capability", "retention_ms", 2 * 3'600'000));

  // Before any local setting: default, tier, file, flag.
  auto got = n.fleetd({"config", "get"});
  INFO(got.second);
  REQUIRE(got.first == 0);
  CHECK(has(line_of(got.second, "compression"), "zstd:3  (tier"));
  CHECK(has(line_of(got.second, "sync_interval"), "300ms  (flag"));
  CHECK(has(line_of(got.second, "metric_interval"), "1h  (flag"));
  CHECK(has(line_of(got.second, "retention"), "2h  (file"));
  CHECK(has(line_of(got.second, "store_logs"), "true  (default"));

  // cloud: the operator's sync interval arrives with an ack.
  auto pushed = fleetctl(n.tmp.path(), n.cloud_console,
                         {"config", device_id, "--set.sync-interval=400ms"});
  REQUIRE_MESSAGE(pushed.first == 0, pushed.second);
  REQUIRE(n.shows("capability", "cloud_settings_version", 1));
  CHECK(n.shows("sync_metrics", "interval_ms", 400));
  got = n.fleetd({"config", "get", "sync_interval"});
  CHECK(got.first == 0);
  CHECK(has(got.second, "sync_interval = 400ms  (cloud"));
  CHECK(!has(got.second, "compression"));

  // Logs are kept before store_logs=false.
  REQUIRE(eventually(
    [&] { return n.status_counter("storage", "logs_stored") >= 3; }, 20s));

  // local set: each takes effect in the running node.
  auto rounds = n.status_counter("system_collector", "rounds");
  for (auto set : {"sync_interval=1h", "compression=none",
                   "metric_interval=100ms", "retention=3h",
                   "store_logs=false"}) {
    auto r = n.fleetd({"config", "set", set});
    CAPTURE(set);
    CHECK_MESSAGE(r.first == 0, r.second);
  }
  check_applied(n);
  // metric_interval: rounds come every 100 ms, not every hour.
  CHECK(eventually(
    [&] {
      return n.status_counter("system_collector", "rounds") >= rounds + 10;
    },
    20s));
  // store_logs=false: new lines are counted as not kept, none stored.
  auto stored = n.status_counter("storage", "logs_stored");
  n.append_log(5);
  CHECK(eventually(
    [&] { return n.status_counter("storage", "log_lines_not_kept") >= 5; },
    20s));
  CHECK(n.status_counter("storage", "logs_stored") == stored);
  // retention: the store's own answer cuts at now - 3h.
  auto clean = n.fleetd({"maintenance", "clean", "--json"});
  REQUIRE_MESSAGE(clean.first == 0, clean.second);
  auto cutoff = json_int(clean.second, "retention_cutoff_ms");
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  CHECK(cutoff > now_ms - 3 * 3'600'000 - 60'000);
  CHECK(cutoff < now_ms - 3 * 3'600'000 + 60'000);

  got = n.fleetd({"config", "get"});
  CHECK(has(line_of(got.second, "sync_interval"),
            "1h  (local set: over cloud 400ms)"));
  CHECK(has(line_of(got.second, "compression"), "none  (local set: over tier"));
  CHECK(has(line_of(got.second, "metric_interval"),
            "100ms  (local set: over flag 1h)"));
  CHECK(has(line_of(got.second, "retention"), "3h  (local set: over file 2h)"));
  CHECK(has(line_of(got.second, "store_logs"),
            "false  (local set: over default true)"));
  auto json = n.fleetd({"config", "get", "store_logs", "--json"});
  CHECK(has(json.second, "\"key\":\"store_logs\",\"value\":\"false\","
                         "\"source\":\"local set\""));

  // Survives a clean stop and a kill: read back before anything runs.
  for (int sig : {SIGTERM, SIGKILL}) {
    CAPTURE(sig);
    n.device->signal(sig);
    REQUIRE(n.device->wait(20s).has_value());
    n.start_device();
    check_applied(n);
  }

  // unset: back to the layer below, live.
  auto r = n.fleetd({"config", "unset", "sync_interval"});
  CHECK_MESSAGE(r.first == 0, r.second);
  CHECK(has(r.second, "sync_interval = 400ms  (cloud"));
  CHECK(n.shows("sync_metrics", "interval_ms", 400));

  // Bad key or value: exit 2, a clear message, the file as it was.
  auto file = read_file(n.dev_dir + "/settings.local");
  auto bad_key = n.fleetd({"config", "set", "colour=blue"});
  CHECK(bad_key.first == 2);
  CHECK(has(bad_key.second, "unknown setting 'colour'"));
  auto bad_value = n.fleetd({"config", "set", "sync_interval=soon"});
  CHECK(bad_value.first == 2);
  CHECK(has(bad_value.second, "sync_interval: 'soon' is not a duration"));
  CHECK(n.fleetd({"config", "set", "compression=zstd:42"}).first == 2);
  CHECK(n.fleetd({"config", "set", "store_logs=maybe"}).first == 2);
  CHECK(n.fleetd({"config", "unset", "nothing"}).first == 2);
  CHECK(n.fleetd({"config", "get", "nothing"}).first == 2);
  CHECK(read_file(n.dev_dir + "/settings.local") == file);

  n.device->signal(SIGTERM);
  CHECK(n.device->wait(20s) == 0);
  // Without a node: the file and the store say the same.
  got = n.fleetd({"config", "get"});
  CHECK(got.first == 0);
  CHECK(has(line_of(got.second, "sync_interval"), "400ms  (cloud"));
  CHECK(has(line_of(got.second, "store_logs"), "false  (local set"));
  n.cloud->signal(SIGTERM);
  CHECK(n.cloud->wait(20s) == 0);
}

namespace {

// The store's files as they are (the database, its WAL, the rounds file):
// name, size and mtime of each file but settings.local, the lock and the
// WAL index (-shm: shared memory where any reader marks its snapshot).
std::string store_files(const std::string& dir) {
  std::string out;
  auto* d = ::opendir(dir.c_str());
  REQUIRE(d != nullptr);
  std::vector<std::string> names;
  while (auto* e = ::readdir(d))
    names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (auto& name : names) {
    struct stat st;
    if (name.rfind("settings.local", 0) == 0
        || name.find("lock") != std::string::npos
        || name.find("-shm") != std::string::npos || ::stat((dir + "/" + name).c_str(), &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    out += name + " " + std::to_string(st.st_size) + " "
           + std::to_string(st.st_mtim.tv_sec) + "."
           + std::to_string(st.st_mtim.tv_nsec) + "\n";
  }
  return out;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace

TEST_CASE("without a node, maintenance clean and debug capabilities run with "
          "settings.local, and config get/set leave the store untouched") {
  nodes n;
  // file: 2h; `config set` keeps 3h, which clean must honour.
  write_file(n.ini, "[storage]\nretention = 2h\n");
  write_file(n.log_file, "line\n");
  n.start_cloud();
  n.start_device();
  REQUIRE(eventually(
    [&] { return n.status_counter("storage", "logs_stored") >= 1; }, 20s));
  // Killed: what the last rounds left unfolded stays for the next start.
  n.device->signal(SIGKILL);
  REQUIRE(n.device->wait(20s).has_value());

  auto files = store_files(n.dev_dir);
  REQUIRE(!files.empty());
  auto set = n.fleetd({"config", "set", "retention=3h"});
  REQUIRE_MESSAGE(set.first == 0, set.second);
  CHECK(has(line_of(set.second, "retention"), "3h  (local set: over file 2h)"));
  auto got = n.fleetd({"config", "get"});
  CHECK(got.first == 0);
  CHECK(has(line_of(got.second, "retention"), "3h  (local set"));
  // A look writes nothing to the store.
  CHECK(store_files(n.dev_dir) == files);

  auto caps = n.fleetd({"debug", "capabilities", "--json"});
  REQUIRE_MESSAGE(caps.first == 0, caps.second);
  CHECK(json_int(caps.second, "retention_ms") == 3 * 3'600'000);

  // clean cuts at now - 3h (settings.local), not at the file's 2h.
  auto db = n.dev_dir + "/fleetd.db";
  auto clean = n.fleetd({"maintenance", "clean", "--json"});
  REQUIRE_MESSAGE(clean.first == 0, clean.second);
  auto cutoff = json_int(clean.second, "retention_cutoff_ms");
  CHECK(cutoff > now_ms() - 3 * 3'600'000 - 60'000);
  CHECK(cutoff < now_ms() - 3 * 3'600'000 + 60'000);
  n.cloud->signal(SIGTERM);
  CHECK(n.cloud->wait(20s) == 0);
}

TEST_CASE("a restarted storage actor on a memory store keeps store_logs=false") {
  nodes n;
  n.extra = {"--storage.backend=memory", "--node.test-hooks=true"};
  write_file(n.ini, "");
  write_file(n.log_file, "");
  n.start_cloud();
  n.start_device();
  auto r = n.fleetd({"config", "set", "store_logs=false"});
  REQUIRE_MESSAGE(r.first == 0, r.second);
  REQUIRE(n.shows("storage", "store_logs", 0));
  auto killed = fleetctl(n.tmp.path(), n.console, {"debug", "kill", "storage"});
  REQUIRE_MESSAGE(killed.second == "killed storage\n", killed.second);
  REQUIRE(n.shows("supervisor", "storage.restarts", 1));
  // The new incarnation heard the settings: lines are not kept.
  CHECK(n.shows("storage", "store_logs", 0));
  n.append_log(4);
  CHECK(eventually(
    [&] { return n.status_counter("storage", "log_lines_not_kept") >= 4; },
    20s));
  n.device->signal(SIGTERM);
  CHECK(n.device->wait(20s) == 0);
  n.cloud->signal(SIGTERM);
  CHECK(n.cloud->wait(20s) == 0);
}
