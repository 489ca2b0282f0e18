#include "edge/capability.hpp"

#include <stdlib.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/exit_reason.hpp>
#include <caf/message.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "scratch_dir.hpp"

#include "ask.hpp"
#include "heap_count.hpp"
#include "helpers.hpp"

#include "messages/error.hpp"
#include "messages/register.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace fs = std::filesystem;

namespace {

const std::string fixtures = FLEETD_SOURCE_DIR "/tests/edge/fixtures/capability";

constexpr int64_t clock_start_ms = 1'700'000'000'000;

constexpr int64_t MB = 1000 * 1000;
constexpr int64_t GB = 1000 * MB;

hardware machine(int64_t disk, int64_t ram) {
  hardware hw;
  hw.total_disk = disk;
  hw.available_disk = disk / 2;
  hw.total_ram = ram;
  hw.available_ram = ram / 2;
  hw.cpu_cores = 4;
  return hw;
}

bool has_reason(const capability_report& x, const std::string& text) {
  for (auto& reason : x.reasons)
    if (reason.find(text) != std::string::npos)
      return true;
  return false;
}

std::string all_reasons(const capability_report& x) {
  std::string out;
  for (auto& reason : x.reasons)
    out += reason + " | ";
  return out;
}

struct disk_size {
  int64_t total = 0;
  int64_t available = 0;
};

disk_size statvfs_of(const std::string& path) {
  struct statvfs fs {};
  REQUIRE(::statvfs(path.c_str(), &fs) == 0);
  auto block = static_cast<int64_t>(fs.f_frsize);
  return {block * static_cast<int64_t>(fs.f_blocks),
          block * static_cast<int64_t>(fs.f_bavail)};
}

/// "MemTotal: N kB" etc. for `total_kb` of RAM, half of it available.
std::string meminfo_text(int64_t total_kb) {
  return "MemTotal: " + std::to_string(total_kb) + " kB\n"
         + "MemFree: " + std::to_string(total_kb / 4) + " kB\n"
         + "MemAvailable: " + std::to_string(total_kb / 2) + " kB\n";
}

/// A fresh /proc look-alike the test rewrites; removed at scope exit.
class fake_proc {
public:
  fake_proc() {
    ok_ = scratch_.ok()
          && write("stat", "cpu  4 0 4 8 0 0 0 0 0 0\n"
                           "cpu0 2 0 2 4 0 0 0 0 0 0\n"
                           "cpu1 2 0 2 4 0 0 0 0 0 0\n");
  }

  fake_proc(const fake_proc&) = delete;
  fake_proc& operator=(const fake_proc&) = delete;

  bool ok() const {
    return ok_;
  }

  std::string root() const {
    return dir_.string();
  }

  bool write(const std::string& name, const std::string& text) {
    std::error_code err;
    fs::create_directories((dir_ / name).parent_path(), err);
    std::ofstream out{dir_ / name, std::ios::trunc};
    out << text;
    return static_cast<bool>(out);
  }

  bool remove(const std::string& name) {
    std::error_code err;
    return fs::remove(dir_ / name, err);
  }

private:
  test::scratch_dir scratch_{"fleetd-capability"};
  fs::path dir_ = scratch_.path();
  bool ok_ = false;
};

// -- a typed listener that forwards what it hears ----------------------------

using forwarder_actor = capability_listener;

forwarder_actor::behavior_type forwarder(caf::actor target) {
  return {
    [target](capabilities_atom, capability_report& x) {
      caf::anon_send(target, capabilities_atom::value, std::move(x));
    },
  };
}

// -- actor test helpers --------------------------------------------------------

/// Every call of the on_change hook, safe to read from the test thread.
struct change_log {
  std::mutex mtx;
  std::vector<std::pair<capability_report, capability_report>> calls;

  size_t size() {
    std::lock_guard<std::mutex> guard{mtx};
    return calls.size();
  }

  std::pair<capability_report, capability_report> at(size_t i) {
    std::lock_guard<std::mutex> guard{mtx};
    return calls.at(i);
  }
};

struct actor_fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  std::shared_ptr<manual_clock> clock;
  std::shared_ptr<change_log> changes = std::make_shared<change_log>();
  fake_proc proc;
  /// A real disk with a full build on it: well above 1 GB.
  std::string data_dir = FLEETD_BUILD_DIR;

  actor_fixture() : clock(std::make_shared<manual_clock>(clock_start_ms)) {
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
  }

  ~actor_fixture() {
    // A pending recheck timer would keep the system up.
    for (auto& x : spawned)
      (*self)->send_exit(x, caf::exit_reason::user_shutdown);
  }

  capability_config config() {
    capability_config cc;
    cc.proc_root = proc.root();
    cc.data_dir = data_dir;
    // Only the test's ticks re-check: nothing happens behind its back.
    cc.recheck_interval = std::chrono::hours(1);
    cc.clock = clock;
    cc.listeners = {caf::actor_cast<caf::actor>(*self)};
    auto log = changes;
    cc.on_change = [log](const capability_report& before,
                         const capability_report& now) {
      std::lock_guard<std::mutex> guard{log->mtx};
      log->calls.emplace_back(before, now);
    };
    return cc;
  }

  capability_actor spawn_capability(capability_config cc) {
    auto hdl = sys->spawn(capability, std::move(cc));
    spawned.push_back(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  /// The next report a listener got; nullopt if none came in time.
  std::optional<capability_report> await_report() {
    std::optional<capability_report> out;
    (*self)->receive(
      [&](capabilities_atom, capability_report& x) { out = std::move(x); },
      caf::after(std::chrono::seconds(10)) >> [] {});
    return out;
  }

  /// True when no report arrives within `wait`.
  bool no_report_within(std::chrono::milliseconds wait) {
    bool quiet = false;
    (*self)->receive([&](capabilities_atom, capability_report&) {},
                     caf::after(wait) >> [&] { quiet = true; });
    return quiet;
  }

  actor_stats stats_of(const capability_actor& hdl) {
    actor_stats out;
    (*self)
      ->request(hdl, std::chrono::seconds(5), stats_atom::value)
      .receive([&](actor_stats& x) { out = std::move(x); },
               [&](caf::error& err) { out.state = "error: " + render(err); });
    return out;
  }

  capability_report report_of(const capability_actor& hdl) {
    capability_report out;
    (*self)
      ->request(hdl, std::chrono::seconds(5), capabilities_atom::value)
      .receive([&](capability_report& x) { out = std::move(x); },
               [&](caf::error& err) { FAIL("no report: " << render(err)); });
    return out;
  }

  std::vector<caf::actor> spawned;
};

/// The tests below need the data disk to be a tier-1 disk.
void require_big_disk(const std::string& path) {
  REQUIRE_MESSAGE(statvfs_of(path).total > GB,
                  path << " must be on a filesystem larger than 1 GB");
}

} // namespace

// -- pick_tier -------------------------------------------------------------------

TEST_CASE("tier 1 takes more than 1 GB of disk and more than 512 MB of RAM") {
  CHECK(pick_tier(machine(GB + 1, 512 * MB + 1)) == 1);
  CHECK(pick_tier(machine(250 * GB, 24 * GB)) == 1);
  // The tier table's ">" is strict, in decimal units.
  CHECK(pick_tier(machine(GB, 24 * GB)) == 2);
  CHECK(pick_tier(machine(250 * GB, 512 * MB)) == 2);
  // 1 GiB of disk is more than 1 GB; 512 MiB of RAM more than 512 MB.
  CHECK(pick_tier(machine(1024LL * 1024 * 1024, 512LL * 1024 * 1024)) == 1);
}

TEST_CASE("tier 2 takes more than 10 MB of disk and more than 100 MB of RAM") {
  CHECK(pick_tier(machine(10 * MB + 1, 100 * MB + 1)) == 2);
  CHECK(pick_tier(machine(GB, 512 * MB)) == 2);
  CHECK(pick_tier(machine(10 * MB, 24 * GB)) == 3);
  CHECK(pick_tier(machine(250 * GB, 100 * MB)) == 3);
}

TEST_CASE("anything smaller, or nothing known, is tier 3") {
  CHECK(pick_tier(machine(5 * MB, 64 * MB)) == 3);
  CHECK(pick_tier(hardware{}) == 3);
}

TEST_CASE("the defaults of each tier follow the tier table") {
  auto t1 = defaults_for_tier(1);
  CHECK(t1.tier == 1);
  CHECK(t1.sqlite);
  CHECK(t1.storage_bytes == 100 * MB);
  CHECK(t1.memory_points == 0);
  CHECK(t1.retention_ms == 7 * 24 * 3600 * 1000LL);
  CHECK(t1.sync_interval_ms == 5 * 60 * 1000);
  CHECK(t1.batch_size == 5000);
  CHECK(t1.zstd_level == 3);
  CHECK(t1.rounds_file);
  auto t2 = defaults_for_tier(2);
  CHECK(t2.tier == 2);
  CHECK(t2.sqlite);
  CHECK(t2.storage_bytes == 5 * MB);
  CHECK(t2.memory_points == 1000);
  CHECK(t2.retention_ms == 24 * 3600 * 1000LL);
  CHECK(t2.sync_interval_ms == 60 * 1000);
  CHECK(t2.batch_size == 100);
  CHECK(t2.zstd_level == 1);
  CHECK_FALSE(t2.rounds_file);
  auto t3 = defaults_for_tier(3);
  CHECK(t3.tier == 3);
  CHECK_FALSE(t3.sqlite);
  CHECK(t3.storage_bytes == 0);
  CHECK(t3.memory_points == 10);
  CHECK(t3.retention_ms == 0);
  CHECK(t3.sync_interval_ms == 10 * 1000);
  CHECK(t3.batch_size == 10);
  CHECK(t3.zstd_level == 0);
  CHECK_FALSE(t3.rounds_file);
}

TEST_CASE("storage.rounds-file: auto keeps the tier's, true and false "
          "override it and say so, and without SQLite it stays off") {
  auto with = [](const char* v, int64_t disk, int64_t ram,
                 const char* backend = "auto") {
    tier_overrides ov;
    ov.rounds_file = v;
    ov.backend = backend;
    return derive(machine(disk, ram), ov);
  };
  CHECK(with("auto", 250 * GB, 24 * GB).settings.rounds_file);
  CHECK_FALSE(with("auto", GB, 2 * GB).settings.rounds_file); // tier 2
  auto off = with("false", 250 * GB, 24 * GB);
  CHECK_FALSE(off.settings.rounds_file);
  INFO(all_reasons(off));
  CHECK(has_reason(off, "rounds_file off (storage.rounds-file)"));
  auto on2 = with("true", GB, 2 * GB);
  CHECK(on2.settings.rounds_file);
  CHECK(has_reason(on2, "rounds_file on (storage.rounds-file)"));
  auto mem = with("true", 250 * GB, 24 * GB, "memory");
  CHECK_FALSE(mem.settings.rounds_file);
  CHECK(has_reason(mem, "storage.rounds-file=true ignored: no SQLite store"));
}

// -- derive ----------------------------------------------------------------------

TEST_CASE("a big machine derives tier 1 and says which thresholds it passed") {
  auto x = derive(machine(250 * GB, 24 * GB), tier_overrides{});
  CHECK(x.detected_tier == 1);
  CHECK(x.settings == defaults_for_tier(1));
  REQUIRE(x.reasons.size() == 1);
  CHECK(x.reasons[0] == "tier 1: disk 250 GB > 1 GB and RAM 24 GB > 512 MB");
}

TEST_CASE("a machine just short of tier 1 names the threshold it missed") {
  auto x = derive(machine(GB, 2 * GB), tier_overrides{});
  CHECK(x.detected_tier == 2);
  CHECK(x.settings == defaults_for_tier(2));
  REQUIRE(!x.reasons.empty());
  CHECK(x.reasons[0]
        == "tier 2: not tier 1 (disk 1 GB is not > 1 GB); disk 1 GB > 10 MB "
           "and RAM 2 GB > 100 MB");
}

TEST_CASE("a value that rounds to its threshold shows its exact bytes") {
  auto x = derive(machine(GB + 4096, 2 * GB), tier_overrides{});
  CHECK(x.detected_tier == 1);
  REQUIRE(!x.reasons.empty());
  CHECK(x.reasons[0]
        == "tier 1: disk 1 GB (1000004096 bytes) > 1 GB and RAM 2 GB > 512 MB");
}

TEST_CASE("sizes print in decimal units, never as 1000 of the smaller one") {
  auto x = derive(machine(999'960'000, 511'960'000), tier_overrides{});
  REQUIRE(!x.reasons.empty());
  CHECK(x.reasons[0]
        == "tier 2: not tier 1 (disk 1 GB (999960000 bytes) is not > 1 GB and "
           "RAM 512 MB (511960000 bytes) is not > 512 MB); disk 1 GB > "
           "10 MB and RAM 512 MB > 100 MB");
}

TEST_CASE("a tiny machine says why it is not tier 2") {
  auto x = derive(machine(8 * MB, 64 * MB), tier_overrides{});
  CHECK(x.detected_tier == 3);
  CHECK(x.settings == defaults_for_tier(3));
  REQUIRE(!x.reasons.empty());
  CHECK(x.reasons[0]
        == "tier 3: not tier 2 (disk 8 MB is not > 10 MB and RAM 64 MB is "
           "not > 100 MB)");
}

TEST_CASE("tier 3 pinned on a big machine gives tier 3's settings, "
          "says pinned and still reports the detected tier") {
  tier_overrides ov;
  ov.tier = 3;
  auto x = derive(machine(250 * GB, 24 * GB), ov);
  CHECK(x.detected_tier == 1);
  CHECK(x.settings == defaults_for_tier(3));
  INFO(all_reasons(x));
  CHECK(has_reason(x, "tier 1: disk 250 GB > 1 GB"));
  CHECK(has_reason(x, "tier 3 pinned by config (detected tier 1)"));
}

TEST_CASE("a storage_bytes override replaces that setting alone and says so") {
  tier_overrides ov;
  ov.storage_bytes = 50 * MB;
  auto x = derive(machine(250 * GB, 24 * GB), ov);
  auto expected = defaults_for_tier(1);
  expected.storage_bytes = 50 * MB;
  CHECK(x.settings == expected);
  INFO(all_reasons(x));
  CHECK(has_reason(x, "storage_bytes 50000000 pinned by config "
                      "(derived 100000000)"));
}

TEST_CASE("every other override replaces its setting; zstd level 0 means "
          "uncompressed") {
  tier_overrides ov;
  ov.retention = std::chrono::hours(1);
  ov.sync_interval = std::chrono::seconds(30);
  ov.batch_size = 250;
  ov.zstd_level = 0;
  auto x = derive(machine(GB, 2 * GB), ov);
  CHECK(x.detected_tier == 2);
  CHECK(x.settings.tier == 2);
  CHECK(x.settings.storage_bytes == 5 * MB);
  CHECK(x.settings.retention_ms == 3600 * 1000);
  CHECK(x.settings.sync_interval_ms == 30 * 1000);
  CHECK(x.settings.batch_size == 250);
  CHECK(x.settings.zstd_level == 0);
  INFO(all_reasons(x));
  CHECK(has_reason(x, "retention_ms 3600000 pinned by config "
                      "(derived 86400000)"));
  CHECK(has_reason(x, "sync_interval_ms 30000 pinned by config "
                      "(derived 60000)"));
  CHECK(has_reason(x, "batch_size 250 pinned by config (derived 100)"));
  CHECK(has_reason(x, "zstd_level 0 pinned by config (derived 1)"));
}

TEST_CASE("default overrides derive everything and add no reasons") {
  auto x = derive(machine(GB, 2 * GB), tier_overrides{});
  CHECK(x.settings == defaults_for_tier(2));
  CHECK(x.reasons.size() == 1);
}

TEST_CASE("storage overrides on memory-only tier 3 are ignored and said so") {
  tier_overrides ov;
  ov.tier = 3;
  ov.storage_bytes = 50 * MB;
  ov.retention = std::chrono::hours(1);
  ov.batch_size = 20;
  auto x = derive(machine(250 * GB, 24 * GB), ov);
  CHECK_FALSE(x.settings.sqlite);
  CHECK(x.settings.storage_bytes == 0);
  CHECK(x.settings.retention_ms == 0);
  CHECK(x.settings.batch_size == 20);
  INFO(all_reasons(x));
  CHECK(has_reason(x, "storage_bytes 50000000 from config ignored: tier 3 "
                      "keeps no SQLite store"));
  CHECK(has_reason(x, "retention_ms 3600000 from config ignored"));
}

TEST_CASE("a pinned tier out of range is ignored and the detected one used") {
  tier_overrides ov;
  ov.tier = 7;
  auto x = derive(machine(250 * GB, 24 * GB), ov);
  CHECK(x.settings == defaults_for_tier(1));
  INFO(all_reasons(x));
  CHECK(has_reason(x, "tier 7 from config ignored"));
}

TEST_CASE("a data disk with less free space than the storage cap is warned "
          "about") {
  auto hw = machine(250 * GB, 24 * GB);
  hw.available_disk = 30 * MB;
  auto x = derive(hw, tier_overrides{});
  CHECK(x.settings.tier == 1);
  INFO(all_reasons(x));
  CHECK(has_reason(x, "warning: 30 MB available on the data disk, less than "
                      "the 100 MB storage cap"));
}

TEST_CASE("only the detected tier and the settings count as a change") {
  auto before = derive(machine(250 * GB, 24 * GB), tier_overrides{});
  auto fuller = machine(250 * GB, 24 * GB);
  fuller.available_disk = 2 * GB;
  fuller.available_ram = GB;
  CHECK_FALSE(differs(before, derive(fuller, tier_overrides{})));
  auto smaller = derive(machine(250 * GB, 200 * MB), tier_overrides{});
  CHECK(differs(before, smaller));
  auto text = describe_change(before, smaller);
  INFO(text);
  CHECK(text.rfind("tier 1 -> 2, detected_tier 1 -> 2, storage_bytes "
                   "100000000 -> 5000000",
                   0)
        == 0);
  CHECK(text.find("RAM 200 MB is not > 512 MB") != std::string::npos);
}

// -- read_hardware ---------------------------------------------------------------

TEST_CASE("the hardware comes from the fixture /proc and statvfs of the data "
          "dir") {
  auto hw = read_hardware(fixtures + "/proc", "/tmp");
  REQUIRE_MESSAGE(hw, render(hw.error()));
  CHECK(hw->total_ram == 3884360LL * 1024);
  CHECK(hw->available_ram == 2953412LL * 1024);
  CHECK(hw->cpu_cores == 4);
  auto disk = statvfs_of("/tmp");
  CHECK(hw->total_disk == disk.total);
  CHECK(hw->available_disk >= 0);
  CHECK(hw->available_disk <= hw->total_disk);
}

TEST_CASE("a kernel without MemAvailable gets MemFree + Buffers + Cached, "
          "and no stat file falls back to sysconf") {
  auto hw = read_hardware(fixtures + "/old-kernel", "/tmp");
  REQUIRE_MESSAGE(hw, render(hw.error()));
  CHECK(hw->total_ram == 255204LL * 1024);
  CHECK(hw->available_ram == (61440LL + 10240 + 40960) * 1024);
  CHECK(hw->cpu_cores == ::sysconf(_SC_NPROCESSORS_ONLN));
}

TEST_CASE("a missing meminfo or MemTotal is an error naming the file") {
  auto none = read_hardware(fixtures + "/nonexistent", "/tmp");
  REQUIRE_FALSE(none);
  CHECK(render(none.error()).find(fixtures + "/nonexistent/meminfo: cannot "
                                             "open")
        != std::string::npos);
  auto no_total = read_hardware(fixtures + "/no-memtotal", "/tmp");
  REQUIRE_FALSE(no_total);
  CHECK(render(no_total.error()).find("meminfo: no MemTotal")
        != std::string::npos);
}

TEST_CASE("a /proc file of many reads is read whole, up to 1 MiB; a longer "
          "one is an error naming it") {
  fake_proc proc;
  REQUIRE(proc.ok());
  // Read as it comes (no buffer of the cap): the field after 200 KB counts.
  std::string filler;
  while (filler.size() < 200'000)
    filler += "Filler" + std::to_string(filler.size()) + ": 1 kB\n";
  REQUIRE(proc.write("meminfo", filler + meminfo_text(8'000'000)));
  auto hw = read_hardware(proc.root(), "/tmp");
  REQUIRE_MESSAGE(hw, render(hw.error()));
  CHECK(hw->total_ram == 8'000'000LL * 1024);
  REQUIRE(proc.write("meminfo", std::string(1 << 20, '\n')
                                  + meminfo_text(8'000'000)));
  auto big = read_hardware(proc.root(), "/tmp");
  REQUIRE_FALSE(big);
  CHECK(render(big.error()).find("meminfo: larger than 1048576 bytes")
        != std::string::npos);
}

TEST_CASE("a malformed MemTotal is an error naming the field") {
  fake_proc proc;
  REQUIRE(proc.ok());
  REQUIRE(proc.write("meminfo", "MemTotal: lots kB\nMemAvailable: 1 kB\n"));
  auto hw = read_hardware(proc.root(), "/tmp");
  REQUIRE_FALSE(hw);
  CHECK(render(hw.error()).find("meminfo: MemTotal: cannot read 'lots kB'")
        != std::string::npos);
}

TEST_CASE("a data dir not created yet is measured on its nearest existing "
          "parent") {
  auto hw = read_hardware(fixtures + "/proc", "/tmp/fleetd-not-there/a/b/");
  REQUIRE_MESSAGE(hw, render(hw.error()));
  CHECK(hw->total_disk == statvfs_of("/tmp").total);
}

TEST_CASE("an empty data dir is an error") {
  auto hw = read_hardware(fixtures + "/proc", "");
  REQUIRE_FALSE(hw);
  CHECK(render(hw.error()).find("data directory") != std::string::npos);
}

TEST_CASE("the running kernel's /proc reads without errors") {
  auto hw = read_hardware("/proc", "/");
  REQUIRE_MESSAGE(hw, render(hw.error()));
  CHECK(hw->total_ram > 0);
  CHECK(hw->available_ram > 0);
  CHECK(hw->available_ram <= hw->total_ram);
  CHECK(hw->cpu_cores >= 1);
  CHECK(hw->total_disk > 0);
}

// -- cgroup limits ---------------------------------------------------------------

namespace {

/// A fake /proc with 8 GB of RAM and 2 CPUs; its "sys" subdirectory is the
/// fake /sys the cgroup files go under.
bool big_host(fake_proc& proc) {
  return proc.ok() && proc.write("meminfo", meminfo_text(8'000'000));
}

std::string joined(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += x + " | ";
  return out;
}

} // namespace

TEST_CASE("cgroup v2: memory.max and cpu.max below the host's lower RAM and "
          "CPUs, and the tier says why") {
  fake_proc proc;
  REQUIRE(big_host(proc));
  REQUIRE(proc.write("self/cgroup", "0::/kubepods/pod1\n"));
  REQUIRE(proc.write("sys/fs/cgroup/kubepods/pod1/memory.max", "268435456\n"));
  REQUIRE(proc.write("sys/fs/cgroup/kubepods/pod1/cpu.max", "100000 100000\n"));
  auto hw = read_hardware(proc.root(), FLEETD_BUILD_DIR, proc.root() + "/sys");
  REQUIRE_MESSAGE(hw, render(hw.error()));
  INFO(joined(hw->notes));
  CHECK(hw->total_ram == 268435456);
  CHECK(hw->available_ram == 268435456);
  CHECK(hw->cpu_cores == 1);
  REQUIRE(hw->notes.size() == 2);
  CHECK(hw->notes[0].find("RAM limited to 268.4 MB by cgroup v2 "
                          + proc.root() + "/sys/fs/cgroup/kubepods/pod1/memory.max "
                          "(host 8.2 GB)")
        == 0);
  CHECK(hw->notes[1].find("CPU cores limited to 1 by cgroup v2") == 0);
  require_big_disk(FLEETD_BUILD_DIR);
  auto x = derive(*hw, tier_overrides{});
  CHECK(x.detected_tier == 2);
  INFO(all_reasons(x));
  CHECK(has_reason(x, "RAM 268.4 MB is not > 512 MB"));
  CHECK(has_reason(x, "RAM limited to 268.4 MB by cgroup v2"));
}

TEST_CASE("cgroup v2: max means unlimited, a limit above the host's is "
          "ignored, no cgroup file is no limit") {
  fake_proc proc;
  REQUIRE(big_host(proc));
  auto sys = proc.root() + "/sys";
  auto host = read_hardware(proc.root(), "/tmp", sys);
  REQUIRE(host);
  CHECK(host->total_ram == 8'000'000LL * 1024);
  CHECK(host->cpu_cores == 2);
  CHECK(host->notes.empty());
  REQUIRE(proc.write("self/cgroup", "0::/\n"));
  REQUIRE(proc.write("sys/fs/cgroup/memory.max", "max\n"));
  REQUIRE(proc.write("sys/fs/cgroup/cpu.max", "max 100000\n"));
  auto unlimited = read_hardware(proc.root(), "/tmp", sys);
  REQUIRE(unlimited);
  CHECK(unlimited->total_ram == host->total_ram);
  CHECK(unlimited->cpu_cores == 2);
  CHECK(unlimited->notes.empty());
  REQUIRE(proc.write("sys/fs/cgroup/memory.max", "99999999999999\n"));
  REQUIRE(proc.write("sys/fs/cgroup/cpu.max", "800000 100000\n"));
  auto above = read_hardware(proc.root(), "/tmp", sys);
  REQUIRE(above);
  CHECK(above->total_ram == host->total_ram);
  CHECK(above->cpu_cores == 2);
  CHECK(above->notes.empty());
}

TEST_CASE("cgroup v1: memory.limit_in_bytes and cfs quota/period lower RAM "
          "and CPUs; a container's own cgroup at the mount root counts") {
  fake_proc proc;
  REQUIRE(big_host(proc));
  REQUIRE(proc.write("self/cgroup", "12:memory:/docker/abc\n"
                                    "5:cpu,cpuacct:/docker/abc\n"
                                    "0::/system.slice/docker.service\n"));
  REQUIRE(proc.write("sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
                     "134217728\n"));
  // No cgroup namespace: the container sees its cgroup at the root.
  REQUIRE(proc.write("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "50000\n"));
  REQUIRE(proc.write("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"));
  auto hw = read_hardware(proc.root(), "/tmp", proc.root() + "/sys");
  REQUIRE_MESSAGE(hw, render(hw.error()));
  INFO(joined(hw->notes));
  CHECK(hw->total_ram == 134217728);
  CHECK(hw->cpu_cores == 1);
  REQUIRE(hw->notes.size() == 2);
  CHECK(hw->notes[0].find("by cgroup v1 " + proc.root()
                          + "/sys/fs/cgroup/memory/docker/abc/"
                            "memory.limit_in_bytes")
        != std::string::npos);
  CHECK(hw->notes[1].find("cgroup/cpu/cpu.cfs_quota_us") != std::string::npos);
  CHECK(hw->notes[1].find("(quota 50000/100000, host 2)") != std::string::npos);
  // 134 MB of RAM: tier 2 at most, whatever the host has.
  CHECK(pick_tier(*hw) == 2);
}

TEST_CASE("cgroup v1: the unlimited page-rounded 2^63 and quota -1 keep the "
          "host's values") {
  fake_proc proc;
  REQUIRE(big_host(proc));
  REQUIRE(proc.write("self/cgroup", "12:memory:/\n5:cpu,cpuacct:/\n"));
  REQUIRE(proc.write("sys/fs/cgroup/memory/memory.limit_in_bytes",
                     "9223372036854771712\n"));
  REQUIRE(proc.write("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"));
  REQUIRE(proc.write("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"));
  auto hw = read_hardware(proc.root(), "/tmp", proc.root() + "/sys");
  REQUIRE(hw);
  CHECK(hw->total_ram == 8'000'000LL * 1024);
  CHECK(hw->cpu_cores == 2);
  CHECK(hw->notes.empty());
}

TEST_CASE("reading the hardware holds no buffer the size of the 1 MiB cap") {
  fake_proc proc;
  REQUIRE(big_host(proc));
  // A recheck runs every minute: a zeroed 1 MiB per file raised VmHWM ~1 MiB.
  auto before = test::heap_reset_peak();
  auto hw = read_hardware(proc.root(), "/tmp", proc.root() + "/sys");
  REQUIRE_MESSAGE(hw, render(hw.error()));
  CHECK(test::heap_peak() - before < 64 * 1024);
}

TEST_CASE("malformed or oversized cgroup files are named in the reasons and "
          "ignored") {
  fake_proc proc;
  REQUIRE(big_host(proc));
  REQUIRE(proc.write("self/cgroup", "0::/a\n"));
  REQUIRE(proc.write("sys/fs/cgroup/a/memory.max", "lots\n"));
  REQUIRE(proc.write("sys/fs/cgroup/a/cpu.max", std::string(5000, '7')));
  auto hw = read_hardware(proc.root(), "/tmp", proc.root() + "/sys");
  REQUIRE_MESSAGE(hw, render(hw.error()));
  INFO(joined(hw->notes));
  CHECK(hw->total_ram == 8'000'000LL * 1024);
  CHECK(hw->cpu_cores == 2);
  REQUIRE(hw->notes.size() == 2);
  CHECK(hw->notes[0] == "cgroup limit ignored: " + proc.root()
                          + "/sys/fs/cgroup/a/memory.max: cannot read 'lots'");
  CHECK(hw->notes[1].find("cpu.max: larger than 4096 bytes")
        != std::string::npos);
  REQUIRE(proc.write("sys/fs/cgroup/a/cpu.max", "1 2 3\n"));
  REQUIRE(proc.write("self/cgroup", "garbage without colons\n0::/a\n"));
  auto again = read_hardware(proc.root(), "/tmp", proc.root() + "/sys");
  REQUIRE(again);
  CHECK(again->cpu_cores == 2);
  CHECK(joined(again->notes).find("cannot read '1 2 3'") != std::string::npos);
  auto x = derive(*again, tier_overrides{});
  CHECK(x.detected_tier == pick_tier(*again));
  CHECK(has_reason(x, "cannot read 'lots'"));
}

TEST_CASE("detect falls back to tier 3 and says why when nothing is readable") {
  auto x = detect(fixtures + "/nonexistent", "/tmp", tier_overrides{});
  CHECK(x.detected_tier == 3);
  CHECK(x.settings == defaults_for_tier(3));
  REQUIRE(!x.reasons.empty());
  CHECK(x.reasons[0].rfind("hardware unreadable (io_error: ", 0) == 0);
  tier_overrides pinned;
  pinned.tier = 2;
  CHECK(detect(fixtures + "/nonexistent", "/tmp", pinned).settings.tier == 2);
}

// -- rendering -------------------------------------------------------------------

TEST_CASE("the JSON holds every field of the report, reasons escaped") {
  auto hw = machine(250 * GB, 24 * GB);
  tier_overrides ov;
  ov.storage_bytes = 50 * MB;
  auto x = derive(hw, ov);
  x.reasons.push_back("a \"quoted\" \\ line\nwith a break\x01");
  auto json = to_json(x);
  INFO(json);
  CHECK(json.front() == '{');
  CHECK(json.back() == '}');
  for (auto key :
       {"\"hardware\":{", "\"total_ram\":24000000000",
        "\"available_ram\":12000000000", "\"total_disk\":250000000000",
        "\"available_disk\":125000000000", "\"cpu_cores\":4",
        "\"detected_tier\":1", "\"settings\":{", "\"tier\":1",
        "\"sqlite\":true", "\"storage_bytes\":50000000",
        "\"memory_points\":0", "\"retention_ms\":604800000",
        "\"sync_interval_ms\":300000", "\"batch_size\":5000",
        "\"zstd_level\":3", "\"reasons\":[\"tier 1: disk 250 GB > 1 GB",
        "\"storage_bytes 50000000 pinned by config (derived 100000000)\"",
        "\"a \\\"quoted\\\" \\\\ line\\nwith a break\\u0001\"]}"})
    CHECK_MESSAGE(json.find(key) != std::string::npos, std::string{key});
  // Balanced and without raw control characters.
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    auto c = json[i];
    CHECK(static_cast<unsigned char>(c) >= 0x20);
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
      CHECK(depth >= 0);
    }
  }
  CHECK(depth == 0);
  CHECK_FALSE(in_string);
}

TEST_CASE("the text names tier, every setting and every reason") {
  tier_overrides ov;
  ov.tier = 2;
  auto x = derive(machine(250 * GB, 24 * GB), ov);
  auto text = to_text(x);
  INFO(text);
  for (auto part :
       {"RAM          24 GB total, 12 GB available",
        "disk         250 GB total, 125 GB available",
        "CPU cores    4", "tier           2 constrained (detected 1 full)",
        "SQLite, cap 5 MB (5000000 bytes); a database that cannot be "
        "opened stops the node",
        "retention    24h (86400000 ms)", "sync every   1min (60000 ms)",
        "batch size   100 points", "compression  zstd level 1",
        "  tier 2 pinned by config (detected tier 1)\n"})
    CHECK_MESSAGE(text.find(part) != std::string::npos, std::string{part});
  for (auto& reason : x.reasons)
    CHECK(text.find(reason) != std::string::npos);
  auto minimal = to_text(derive(machine(8 * MB, 64 * MB), tier_overrides{}));
  CHECK(minimal.find("memory only, current + last 10 readings per series")
        != std::string::npos);
  CHECK(minimal.find("compression  none") != std::string::npos);
}

TEST_CASE("capability types survive a caf::message through the serializer") {
  caf::actor_system_config cfg;
  register_messages(cfg);
  caf::actor_system sys{cfg};
  tier_overrides ov;
  ov.batch_size = 42;
  auto in = derive(machine(250 * GB, 24 * GB), ov);
  auto msg = caf::make_message(capabilities_atom::value, in, in.hw,
                               in.settings);
  std::vector<char> buf;
  {
    caf::binary_serializer sink{sys, buf};
    REQUIRE(!sink(msg));
  }
  caf::message out;
  caf::binary_deserializer source{sys, buf};
  REQUIRE(!source(out));
  REQUIRE((out.match_elements<capabilities_atom, capability_report, hardware,
                              tier_settings>()));
  auto& x = out.get_as<capability_report>(1);
  CHECK(x.detected_tier == in.detected_tier);
  CHECK(x.settings == in.settings);
  CHECK(x.reasons == in.reasons);
  CHECK(x.hw.total_disk == in.hw.total_disk);
  CHECK(x.hw.available_ram == in.hw.available_ram);
  CHECK(x.hw.cpu_cores == in.hw.cpu_cores);
  CHECK(out.get_as<tier_settings>(3) == in.settings);
}

// -- the actor -------------------------------------------------------------------

TEST_CASE("the actor tells listeners and the event hook when RAM drops below "
          "tier 1, and stays quiet while nothing changes") {
  actor_fixture f;
  require_big_disk(f.data_dir);
  REQUIRE(f.proc.ok());
  REQUIRE(f.proc.write("meminfo", meminfo_text(2'000'000)));
  auto hdl = f.spawn_capability(f.config());
  // The first check runs at spawn; without an initial report it is news.
  auto first = f.await_report();
  REQUIRE(first);
  CHECK(first->settings == defaults_for_tier(1));
  CHECK(first->hw.total_ram == 2'000'000LL * 1024);
  CHECK(first->hw.cpu_cores == 2);
  // An unchanged re-check is no news.
  (*f.self)->send(hdl, tick_atom::value);
  auto stats = f.stats_of(hdl);
  CHECK(stats.name == "capability");
  CHECK(stats.state == "tier 1");
  CHECK(stats.counters["checks"] == 2);
  CHECK(stats.counters["changes"] == 0);
  CHECK(stats.counters["tier"] == 1);
  CHECK(stats.counters["storage_bytes"] == 100 * MB);
  CHECK(stats.counters["total_ram"] == 2'000'000LL * 1024);
  CHECK(stats.counters["last_check_ms"] == clock_start_ms);
  CHECK(f.changes->size() == 0);
  CHECK(f.no_report_within(50ms));
  // RAM drops from 2 GB to 200 MB.
  f.clock->advance(60'000);
  REQUIRE(f.proc.write("meminfo", meminfo_text(200'000)));
  (*f.self)->send(hdl, tick_atom::value);
  auto second = f.await_report();
  REQUIRE(second);
  CHECK(second->detected_tier == 2);
  CHECK(second->settings == defaults_for_tier(2));
  CHECK(second->hw.total_ram == 200'000LL * 1024);
  stats = f.stats_of(hdl);
  CHECK(stats.state == "tier 2");
  CHECK(stats.counters["checks"] == 3);
  CHECK(stats.counters["changes"] == 1);
  CHECK(stats.counters["tier"] == 2);
  CHECK(stats.counters["batch_size"] == 100);
  CHECK(stats.counters["last_change_ms"] == clock_start_ms + 60'000);
  REQUIRE(f.changes->size() == 1);
  auto [before, now] = f.changes->at(0);
  CHECK(before.settings.tier == 1);
  CHECK(now.settings.tier == 2);
  // Still 200 MB: no second event, no second report.
  (*f.self)->send(hdl, tick_atom::value);
  stats = f.stats_of(hdl);
  CHECK(stats.counters["checks"] == 4);
  CHECK(stats.counters["changes"] == 1);
  CHECK(f.changes->size() == 1);
  CHECK(f.no_report_within(50ms));
  // The console's question gets the current report.
  auto current = f.report_of(hdl);
  CHECK(current.settings == defaults_for_tier(2));
  CHECK(current.reasons == second->reasons);
}

TEST_CASE("a cloud settings version that changes no setting is no "
          "capability_change, but listeners learn the version") {
  actor_fixture f;
  require_big_disk(f.data_dir);
  REQUIRE(f.proc.ok());
  REQUIRE(f.proc.write("meminfo", meminfo_text(2'000'000)));
  auto hdl = f.spawn_capability(f.config());
  REQUIRE(f.await_report());
  // Tier 1's own batch size: a new version, the same settings.
  cloud_settings same;
  same.version = 3;
  same.batch_size = defaults_for_tier(1).batch_size;
  (*f.self)->send(hdl, config_atom::value, same);
  auto heard = f.await_report();
  REQUIRE(heard);
  CHECK(heard->cloud.version == 3);
  CHECK(heard->settings == defaults_for_tier(1));
  auto stats = f.stats_of(hdl);
  CHECK(stats.counters["changes"] == 0);
  CHECK(f.changes->size() == 0);
  // The same version again, and a re-check: nothing at all.
  (*f.self)->send(hdl, config_atom::value, same);
  (*f.self)->send(hdl, tick_atom::value);
  CHECK(f.no_report_within(50ms));
  CHECK(f.changes->size() == 0);
  // A version that does change a setting is one event.
  cloud_settings other = same;
  other.version = 4;
  other.batch_size = 250;
  (*f.self)->send(hdl, config_atom::value, other);
  auto changed = f.await_report();
  REQUIRE(changed);
  CHECK(changed->settings.batch_size == 250);
  stats = f.stats_of(hdl);
  CHECK(stats.counters["changes"] == 1);
  REQUIRE(f.changes->size() == 1);
  CHECK(f.changes->at(0).second.settings.batch_size == 250);
}

TEST_CASE("the start line names every reason, and a pinned tier says so") {
  tier_overrides ov;
  ov.tier = 3;
  ov.batch_size = 5;
  auto hw = machine(250 * GB, 24 * GB);
  hw.notes.push_back("CPU cores limited to 1 by cgroup v2 /x/cpu.max");
  auto x = derive(hw, ov);
  REQUIRE(x.reasons.size() == 4);
  auto line = summary(x);
  CHECK(line.rfind("tier 3 minimal (pinned; detected tier 1): ", 0) == 0);
  for (auto& reason : x.reasons)
    CHECK_MESSAGE(line.find(reason) != std::string::npos, reason);
  CHECK(line.find("tier 3 pinned by config (detected tier 1)")
        != std::string::npos);
  auto detected = summary(derive(machine(GB, 2 * GB), tier_overrides{}));
  CHECK(detected == "tier 2 constrained: tier 2: not tier 1 (disk 1 GB is "
                    "not > 1 GB); disk 1 GB > 10 MB and RAM 2 GB > 100 MB");
}

TEST_CASE("debug capabilities answers the current report as text and JSON; "
          "other subjects are refused") {
  actor_fixture f;
  require_big_disk(f.data_dir);
  REQUIRE(f.proc.ok());
  REQUIRE(f.proc.write("meminfo", meminfo_text(200'000)));
  auto hdl = f.spawn_capability(f.config());
  auto report = f.report_of(hdl);
  debug_report got;
  (*f.self)
    ->request(hdl, 5s, debug_atom::value, std::string{"capabilities"})
    .receive([&](debug_report& x) { got = std::move(x); },
             [&](caf::error& err) { FAIL("no debug report: " << render(err)); });
  CHECK(got.text == to_text(report));
  CHECK(got.json == to_json(report));
  CHECK(got.text.find("tier           2 constrained") != std::string::npos);
  std::string refused;
  (*f.self)
    ->request(hdl, 5s, debug_atom::value, std::string{"storage"})
    .receive([&](debug_report&) { refused = "answered"; },
             [&](caf::error& err) { refused = render(err); });
  CHECK(refused.rfind("bad_config: ", 0) == 0);
  CHECK(refused.find("'storage'") != std::string::npos);
}

TEST_CASE("the report the other actors started with is not announced again") {
  actor_fixture f;
  require_big_disk(f.data_dir);
  REQUIRE(f.proc.ok());
  REQUIRE(f.proc.write("meminfo", meminfo_text(2'000'000)));
  auto cc = f.config();
  cc.initial = detect(f.proc.root(), f.data_dir, cc.overrides);
  REQUIRE(cc.initial->settings.tier == 1);
  auto hdl = f.spawn_capability(std::move(cc));
  auto stats = f.stats_of(hdl);
  CHECK(stats.counters["checks"] == 1);
  CHECK(stats.counters["changes"] == 0);
  CHECK(stats.counters["notifications"] == 0);
  CHECK(f.no_report_within(50ms));
  CHECK(f.changes->size() == 0);
}

TEST_CASE("an initial report that the first check contradicts is a change") {
  actor_fixture f;
  require_big_disk(f.data_dir);
  REQUIRE(f.proc.ok());
  REQUIRE(f.proc.write("meminfo", meminfo_text(200'000)));
  auto cc = f.config();
  cc.initial = derive(machine(250 * GB, 24 * GB), cc.overrides);
  auto hdl = f.spawn_capability(std::move(cc));
  auto report = f.await_report();
  REQUIRE(report);
  CHECK(report->settings.tier == 2);
  CHECK(f.stats_of(hdl).counters["changes"] == 1);
  REQUIRE(f.changes->size() == 1);
  CHECK(f.changes->at(0).first.settings.tier == 1);
}

TEST_CASE("a re-check that cannot read the hardware keeps the last report") {
  actor_fixture f;
  require_big_disk(f.data_dir);
  REQUIRE(f.proc.ok());
  REQUIRE(f.proc.write("meminfo", meminfo_text(2'000'000)));
  auto hdl = f.spawn_capability(f.config());
  REQUIRE(f.await_report());
  REQUIRE(f.proc.remove("meminfo"));
  (*f.self)->send(hdl, tick_atom::value);
  auto stats = f.stats_of(hdl);
  CHECK(stats.counters["checks"] == 2);
  CHECK(stats.counters["read_failures"] == 1);
  CHECK(stats.counters["changes"] == 0);
  CHECK(stats.counters["tier"] == 1);
  CHECK(f.no_report_within(50ms));
  CHECK(f.changes->size() == 0);
}

TEST_CASE("a pinned tier holds while the hardware shrinks, but the new "
          "detected tier is still news") {
  actor_fixture f;
  require_big_disk(f.data_dir);
  REQUIRE(f.proc.ok());
  REQUIRE(f.proc.write("meminfo", meminfo_text(2'000'000)));
  auto cc = f.config();
  cc.overrides.tier = 1;
  auto hdl = f.spawn_capability(std::move(cc));
  REQUIRE(f.await_report());
  REQUIRE(f.proc.write("meminfo", meminfo_text(200'000)));
  (*f.self)->send(hdl, tick_atom::value);
  auto report = f.await_report();
  REQUIRE(report);
  CHECK(report->settings == defaults_for_tier(1));
  CHECK(report->detected_tier == 2);
  auto stats = f.stats_of(hdl);
  CHECK(stats.state == "tier 1 (pinned; detected 2)");
  CHECK(stats.counters["changes"] == 1);
}

TEST_CASE("a typed actor declaring capability_listener hears the change") {
  actor_fixture f;
  require_big_disk(f.data_dir);
  REQUIRE(f.proc.ok());
  REQUIRE(f.proc.write("meminfo", meminfo_text(2'000'000)));
  auto fwd = f.sys->spawn(forwarder, caf::actor_cast<caf::actor>(*f.self));
  f.spawned.push_back(caf::actor_cast<caf::actor>(fwd));
  auto cc = f.config();
  cc.listeners = {caf::actor_cast<caf::actor>(fwd)};
  auto hdl = f.spawn_capability(std::move(cc));
  auto first = f.await_report();
  REQUIRE(first);
  CHECK(first->settings.tier == 1);
  REQUIRE(f.proc.write("meminfo", meminfo_text(50'000)));
  (*f.self)->send(hdl, tick_atom::value);
  auto second = f.await_report();
  REQUIRE(second);
  CHECK(second->settings == defaults_for_tier(3));
}

TEST_CASE("a listener that dies is forgotten, so restarts do not pile up") {
  actor_fixture f;
  require_big_disk(f.data_dir);
  REQUIRE(f.proc.ok());
  REQUIRE(f.proc.write("meminfo", meminfo_text(2'000'000)));
  auto hdl = f.spawn_capability(f.config());
  REQUIRE(f.await_report());
  for (int round = 0; round < 3; ++round) {
    auto fwd = f.sys->spawn(forwarder, caf::actor_cast<caf::actor>(*f.self));
    (*f.self)->send(hdl, capabilities_atom::value,
                    caf::actor_cast<caf::actor>(fwd));
    REQUIRE(f.await_report()); // the registration's first report
    CHECK(f.stats_of(hdl).counters["listeners"] == 2);
    caf::anon_send_exit(fwd, caf::exit_reason::kill);
    CHECK(test::eventually(
      [&] { return f.stats_of(hdl).counters["listeners"] == 1; }, 5s));
  }
}

TEST_CASE("the actor re-checks on its own timer") {
  actor_fixture f;
  require_big_disk(f.data_dir);
  REQUIRE(f.proc.ok());
  REQUIRE(f.proc.write("meminfo", meminfo_text(2'000'000)));
  auto cc = f.config();
  cc.recheck_interval = 5ms;
  auto hdl = f.spawn_capability(std::move(cc));
  REQUIRE(f.await_report());
  REQUIRE(f.proc.write("meminfo", meminfo_text(200'000)));
  // No tick from the test: the timer finds the change.
  auto report = f.await_report();
  REQUIRE(report);
  CHECK(report->settings.tier == 2);
  CHECK(f.stats_of(hdl).counters["checks"] >= 2);
}

TEST_CASE("storage.backend decides the store the settings describe; no "
          "fallback that does not exist is claimed") {
  tier_overrides ov;
  ov.tier = 2;
  auto sqlite = derive(machine(250 * GB, 24 * GB), ov);
  CHECK(sqlite.settings.sqlite);
  CHECK(to_text(sqlite).find("when SQLite is unusable") == std::string::npos);
  ov.backend = "memory";
  auto memory = derive(machine(250 * GB, 24 * GB), ov);
  CHECK_FALSE(memory.settings.sqlite);
  CHECK(memory.settings.memory_points == 1000);
  CHECK(to_text(memory).find("memory only, a ring of the last 1000 points")
        != std::string::npos);
  CHECK(to_text(memory).find("storage.backend=memory") != std::string::npos);
  ov.tier = 3;
  ov.backend = "sqlite";
  auto pinned = derive(machine(8 * MB, 64 * MB), ov);
  CHECK(pinned.settings.sqlite);
  CHECK(to_text(pinned).find("storage.backend=sqlite") != std::string::npos);
  // Derived again (a recheck), the same settings: no change to report.
  CHECK_FALSE(differs(pinned, derive(machine(8 * MB, 64 * MB), ov)));
}

TEST_CASE("a capability actor spawned with a bad config stops with the "
          "option's name") {
  capability_config c;
  CHECK(!validate(c));
  c.overrides.backend = "disk";
  auto reason = fleetd::test::exit_reason_of(capability, c);
  CHECK(reason == ec::bad_config);
  CHECK(render(reason).find("storage.backend") != std::string::npos);
  c.overrides.backend = "auto";
  c.proc_root = "/nonexistent-proc";
  CHECK(render(validate(c)).find("host.proc") != std::string::npos);
}
