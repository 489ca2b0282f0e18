// The store's caps: size and age limits, disk full as back-pressure.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "edge/capability.hpp"
#include "edge/sqlite_store.hpp"
#include "edge/storage.hpp"
#include "messages/error.hpp"
#include "fault_disk.hpp"
#include "scratch_dir.hpp"
#include "skip.hpp"

using namespace fleetd;

namespace {

metric_samples make_batch(int64_t ts, int series, int n) {
  metric_samples out;
  for (int i = 0; i < n; ++i) {
    metric_sample x;
    x.name = "m" + std::to_string(i % series);
    x.labels = {{"host", "h1"}, {"k", std::to_string(i % 7)}};
    x.timestamp_ms = ts;
    x.value = i * 1.5;
    out.push_back(std::move(x));
  }
  return out;
}

int64_t metrics_drops(sqlite_store& st) {
  auto d = st.drops();
  return d[drop_kind::metrics_synced] + d[drop_kind::metrics_queued_copy]
         + d[drop_kind::metrics_unsynced];
}

int64_t query_oldest(sqlite_store& st) {
  auto r = st.debug("storage");
  REQUIRE(r);
  auto pos = r->json.find("\"oldest_ms\":");
  REQUIRE(pos != std::string::npos);
  return std::stoll(r->json.substr(pos + 12));
}

int64_t rows(sqlite_store& st) {
  return st.stats().counters["metrics_rows"];
}

// A scratch directory that may have a tmpfs mounted on it (unmounted first).
struct tmp_dir {
  test::scratch_dir dir{"fleetd-storage"};
  std::string path = dir.path();
  ~tmp_dir() {
    umount(path.c_str());
  }
};

/// Where a disk-full case runs: a fault disk (any user) or a real tmpfs
/// (root only, skipped otherwise).
enum class disk_kind { fault, tmpfs };

/// A store's directory and clock, and its config on both; each test sets
/// the limits it is about.
struct store_fixture {
  tmp_dir dir;
  std::shared_ptr<manual_clock> clk
    = std::make_shared<manual_clock>(1'700'000'000'000);
  sqlite_store_config cfg;
  std::shared_ptr<test::fault_disk> fdisk;

  store_fixture() {
    cfg.path = dir.path + "/s.db";
    cfg.clock = clk;
  }

  /// Puts the store on a disk of `bytes`; false, with the case marked
  /// skipped, where that is not allowed (a tmpfs without root).
  bool on_small_disk(disk_kind kind, int64_t bytes) {
    if (kind == disk_kind::fault) {
      fdisk = test::fault_disk::make(bytes);
      cfg.disk = fdisk;
      return true;
    }
    auto size = "size=" + std::to_string(bytes);
    if (mount("tmpfs", dir.path.c_str(), "tmpfs", 0, size.c_str()) == 0)
      return true;
    test::skip(std::string("cannot mount a tmpfs (needs root): ")
               + std::strerror(errno));
    return false;
  }

  std::string ballast_path() const {
    return dir.path + "/ballast";
  }

  /// Another file takes `bytes` of the disk (-1: all that is left).
  void add_ballast(int64_t bytes) {
    if (fdisk) {
      fdisk->allocate(ballast_path(),
                      bytes < 0 ? fdisk->free_bytes(dir.path) : bytes);
      return;
    }
    std::ofstream ballast(ballast_path());
    std::string kb(1024, 'x');
    for (int64_t n = 0; (bytes < 0 || n < bytes) && ballast << kb
                        && ballast.flush();
         n += 1024)
      ;
  }

  void remove_ballast() {
    if (fdisk)
      fdisk->remove(ballast_path());
    else
      unlink(ballast_path().c_str());
  }
};

constexpr int64_t mib = 1024 * 1024;

} // namespace

TEST_CASE_FIXTURE(store_fixture, "the size cap holds within 5% and drops the "
                                 "oldest synced rows first") {
  cfg.limits.max_bytes = 2 * 1000 * 1000;
  cfg.limits.retention_ms = 0;
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  int64_t accepted = 0;
  int64_t seq = 1;
  // Hours of 10 s rounds: batch and ack half of what comes in.
  for (int round = 0; round < 2000; ++round) {
    clk->advance(10000);
    auto n = st->store(make_batch(clk->now_ms(), 50, 200));
    REQUIRE(n);
    accepted += *n;
    if (round % 2 == 1) {
      auto up = st->fetch("metrics", 300);
      REQUIRE(up);
      if (!up->samples.empty()) {
        queued_batch b;
        b.stream = "metrics";
        b.sequence = seq++;
        b.last_id = up->last_id;
        b.points = static_cast<int64_t>(up->samples.size());
        b.created_ms = clk->now_ms();
        b.body = "x";
        REQUIRE(st->enqueue(b));
        REQUIRE(st->ack("metrics", b.sequence, 0, {}, {}));
      }
    }
    CHECK(st->used_bytes() <= cfg.limits.max_bytes * 105 / 100);
  }
  auto d = st->drops();
  MESSAGE("used ", st->used_bytes(), " of ", cfg.limits.max_bytes, " bytes; ",
          rows(*st), " rows; drops synced=", d[drop_kind::metrics_synced],
          " queued_copy=", d[drop_kind::metrics_queued_copy],
          " unsynced=", d[drop_kind::metrics_unsynced]);
  CHECK(st->used_bytes() >= cfg.limits.max_bytes * 80 / 100);
  CHECK(d[drop_kind::metrics_synced] > 0);
  // Every accepted point is either still here or counted as dropped.
  CHECK(accepted == rows(*st) + metrics_drops(*st));
}

TEST_CASE_FIXTURE(store_fixture, "metrics older than the retention are "
                                 "dropped and counted") {
  cfg.limits.max_bytes = 0;
  cfg.limits.retention_ms = 3600 * 1000;
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  int64_t accepted = 0;
  // Four simulated hours of 10 s rounds.
  for (int round = 0; round < 4 * 360; ++round) {
    clk->advance(10000);
    auto n = st->store(make_batch(clk->now_ms(), 10, 10));
    REQUIRE(n);
    accepted += *n;
  }
  auto kept = rows(*st);
  // One hour of rounds plus at most one minute of slack (checked per minute).
  CHECK(kept >= 360 * 10);
  CHECK(kept <= (360 + 7) * 10);
  CHECK(accepted == kept + st->drops()[drop_kind::metrics_unsynced]);
}

TEST_CASE_FIXTURE(store_fixture, "ids of dropped rows are never given "
                                 "again, not even after a reopen") {
  // Metrics and logs rows take their ids from the store, not from
  // AUTOINCREMENT: a table emptied by retention must not restart at 1.
  cfg.limits.max_bytes = 0;
  cfg.limits.retention_ms = 3600 * 1000;
  int64_t last_id = 0;
  {
    auto st = sqlite_store::open(cfg);
    REQUIRE(st);
    REQUIRE(st->store(make_batch(clk->now_ms(), 10, 10)));
    REQUIRE(st->store_logs({log_line{{}, clk->now_ms() * 1000000, "a"}}));
    auto up = st->fetch("metrics", 1000);
    REQUIRE(up);
    last_id = up->last_id;
    REQUIRE(last_id >= 10);
    // Two hours later every row is past the retention: all are dropped.
    clk->advance(2 * 3600 * 1000);
    REQUIRE(st->enforce_limits());
    CHECK(rows(*st) == 0);
    CHECK(st->drops()[drop_kind::metrics_unsynced] == 10);
    CHECK(st->drops()[drop_kind::logs_unsynced] == 1);
  }
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  REQUIRE(st->store(make_batch(clk->now_ms(), 10, 1)));
  REQUIRE(st->store_logs({log_line{{}, clk->now_ms() * 1000000, "b"}}));
  auto up = st->fetch("metrics", 1000);
  REQUIRE(up);
  REQUIRE(up->samples.size() == 1);
  CHECK(up->last_id == last_id + 1);
  auto logs = st->fetch("logs", 1000);
  REQUIRE(logs);
  REQUIRE(logs->logs.size() == 1);
  CHECK(logs->last_id == 2);
}

void full_disk_keeps_newest(store_fixture& f, disk_kind kind) {
  if (!f.on_small_disk(kind, 2 * mib))
    return;
  auto& cfg = f.cfg;
  auto& clk = f.clk;
  cfg.limits.max_bytes = 100 * 1000 * 1000; // far above the disk: disk wins
  cfg.limits.retention_ms = 0;
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  int64_t accepted = 0;
  int64_t rejected = 0;
  int64_t last_ts_ok = 0;
  for (int round = 0; round < 600; ++round) {
    clk->advance(10000);
    auto n = st->store(make_batch(clk->now_ms(), 40, 200));
    if (n) {
      accepted += *n;
      last_ts_ok = clk->now_ms();
    } else {
      CHECK(static_cast<ec>(n.error().code()) == ec::disk_full);
      rejected += 200;
    }
  }
  auto d = st->drops();
  MESSAGE("accepted ", accepted, ", rejected ", rejected, ", rows ", rows(*st),
          ", dropped unsynced ", d[drop_kind::metrics_unsynced]);
  // The disk filled up: the store dropped old rows to keep the newest.
  CHECK(d[drop_kind::metrics_unsynced] > 0);
  CHECK(last_ts_ok == clk->now_ms());
  CHECK(accepted == rows(*st) + metrics_drops(*st));
  CHECK(d[drop_kind::metrics_rejected] == rejected);
  // Another file takes the remaining space; then it is freed again.
  f.add_ballast(-1);
  int64_t failed_while_full = 0;
  for (int round = 0; round < 20; ++round) {
    clk->advance(10000);
    if (!st->store(make_batch(clk->now_ms(), 40, 200)))
      ++failed_while_full;
  }
  f.remove_ballast();
  auto before = st->drops();
  clk->advance(10000);
  auto n = st->store(make_batch(clk->now_ms(), 40, 200));
  REQUIRE(n);
  CHECK_FALSE(st->under_pressure());
  MESSAGE("stores failed while a ballast file filled the disk: ",
          failed_while_full, " of 20");
  CHECK(st->stats().counters["under_pressure"] == 0);
  CHECK(before[drop_kind::metrics_rejected] >= rejected);
}

TEST_CASE_FIXTURE(store_fixture, "a full disk is back-pressure: newest data "
                                 "kept, drops exact, recovery") {
  full_disk_keeps_newest(*this, disk_kind::fault);
}

TEST_CASE_FIXTURE(store_fixture, "on a tmpfs: a full disk is back-pressure: newest data "
                                 "kept, drops exact, recovery") {
  full_disk_keeps_newest(*this, disk_kind::tmpfs);
}

void full_disk_logs(store_fixture& f, disk_kind kind) {
  if (!f.on_small_disk(kind, 2 * mib))
    return;
  auto& cfg = f.cfg;
  auto& clk = f.clk;
  cfg.limits.max_bytes = 100 * 1000 * 1000; // far above the disk: disk wins
  cfg.limits.retention_ms = 0;
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  int64_t accepted = 0;
  int64_t rejected = 0;
  bool last_ok = false;
  for (int round = 0; round < 400; ++round) {
    clk->advance(10000);
    log_lines xs;
    for (int i = 0; i < 50; ++i)
      xs.push_back(log_line{{{"job", "app"}}, clk->now_ms() * 1000000 + i,
                            std::string(60, static_cast<char>('a' + i % 26))
                              + std::to_string(round)});
    auto n = st->store_logs(xs);
    last_ok = static_cast<bool>(n);
    if (n) {
      accepted += *n;
    } else {
      CHECK(static_cast<ec>(n.error().code()) == ec::disk_full);
      rejected += 50;
    }
  }
  auto d = st->drops();
  auto kept = st->stats().counters["logs_rows"];
  MESSAGE("log lines accepted ", accepted, ", rejected ", rejected, ", rows ",
          kept, ", dropped unsynced ", d[drop_kind::logs_unsynced]);
  // The disk filled up: old lines went to keep the newest.
  CHECK(d[drop_kind::logs_unsynced] > 0);
  CHECK(last_ok);
  CHECK(accepted == kept + d[drop_kind::logs_unsynced]);
  CHECK(d[drop_kind::logs_rejected] == rejected);
}

TEST_CASE_FIXTURE(store_fixture, "log lines on a full disk are back-pressure "
                                 "too: newest kept, every line stored or "
                                 "counted") {
  full_disk_logs(*this, disk_kind::fault);
}

TEST_CASE_FIXTURE(store_fixture, "on a tmpfs: log lines on a full disk are back-pressure "
                                 "too: newest kept, every line stored or "
                                 "counted") {
  full_disk_logs(*this, disk_kind::tmpfs);
}

void full_disk_event(store_fixture& f, disk_kind kind) {
  if (!f.on_small_disk(kind, 1 * mib))
    return;
  auto& cfg = f.cfg;
  cfg.limits.reserve_bytes = 0;
  {
    auto st = sqlite_store::open(cfg);
    REQUIRE(st);
    REQUIRE(!st->record_event("boot", "before the disk filled"));
    REQUIRE(!st->checkpoint());
    // Nothing left for the WAL to grow into.
    f.add_ballast(-1);
    auto err = st->record_event("pressure", "while the disk is full");
    REQUIRE(err);
    CHECK(static_cast<ec>(err.code()) == ec::disk_full);
    CHECK(st->drops()[drop_kind::events_rejected] == 1);
    f.remove_ballast();
    // The next event that fits also persists the count.
    REQUIRE(!st->record_event("recovered", "room again"));
    CHECK(st->drops()[drop_kind::events_rejected] == 1);
  }
  auto again = sqlite_store::open(cfg);
  REQUIRE(again);
  CHECK(again->drops()[drop_kind::events_rejected] == 1);
}

TEST_CASE_FIXTURE(store_fixture, "an event that cannot be recorded on a full "
                                 "disk is counted") {
  full_disk_event(*this, disk_kind::fault);
}

TEST_CASE_FIXTURE(store_fixture, "on a tmpfs: an event that cannot be recorded on a full "
                                 "disk is counted") {
  full_disk_event(*this, disk_kind::tmpfs);
}

TEST_CASE_FIXTURE(store_fixture, "tier 2's caps hold over 30 simulated hours: "
                                 "5 MB and one day") {
  auto tier = defaults_for_tier(2);
  REQUIRE(tier.sqlite);
  cfg.limits.max_bytes = tier.storage_bytes;
  cfg.limits.retention_ms = tier.retention_ms;
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  int64_t accepted = 0;
  int64_t worst = 0;
  for (int round = 0; round < 30 * 360; ++round) {
    clk->advance(10000);
    auto n = st->store(make_batch(clk->now_ms(), 40, 40));
    REQUIRE(n);
    accepted += *n;
    worst = std::max(worst, st->used_bytes());
  }
  auto oldest = query_oldest(*st);
  MESSAGE("tier 2: worst ", worst, " of ", tier.storage_bytes,
          " bytes; oldest row ", (clk->now_ms() - oldest) / 3600000.0,
          " h old");
  CHECK(worst <= tier.storage_bytes * 105 / 100);
  CHECK(clk->now_ms() - oldest <= tier.retention_ms + 60000);
  CHECK(accepted == rows(*st) + metrics_drops(*st));
}

void short_disk_wal(store_fixture& f, disk_kind kind) {
  if (!f.on_small_disk(kind, 8 * mib))
    return;
  auto& cfg = f.cfg;
  auto& clk = f.clk;
  // The default cap allows a 5 MB WAL; this disk has less than 8 MB.
  cfg.limits.max_bytes = 100 * 1000 * 1000;
  cfg.limits.retention_ms = 0;
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  CHECK(st->checkpoint_bound() <= 2 * 1024 * 1024);
  int64_t largest = 0;
  int64_t bound = st->checkpoint_bound();
  for (int round = 0; round < 400; ++round) {
    clk->advance(10000);
    REQUIRE(st->store(make_batch(clk->now_ms(), 50, 100)));
    struct stat wal;
    auto size = ::stat((cfg.path + "-wal").c_str(), &wal) == 0 ? wal.st_size
                                                                : 0;
    largest = std::max<int64_t>(largest, size);
    bound = std::max(bound, st->checkpoint_bound());
  }
  MESSAGE("largest WAL ", largest, " bytes, bound ", bound);
  // One transaction past the autocheckpoint may overshoot by its own pages.
  CHECK(largest <= bound + 64 * 1024);
  CHECK(rows(*st) == 400 * 100);
}

TEST_CASE_FIXTURE(store_fixture, "on a disk shorter than two WAL bounds "
                                 "the WAL is checkpointed within a quarter of "
                                 "the free space") {
  short_disk_wal(*this, disk_kind::fault);
}

TEST_CASE_FIXTURE(store_fixture, "on a tmpfs: on a disk shorter than two WAL bounds "
                                 "the WAL is checkpointed within a quarter of "
                                 "the free space") {
  short_disk_wal(*this, disk_kind::tmpfs);
}
