// A second process holding a write lock on fleetd.db at start: fleetd stops
// with a message naming the file and the lock and leaves the file as it is;
// once the lock is gone it starts on the same file and delivers the rows it
// had not synced before (a locked database is not a corrupt one).
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <filesystem>

#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

/// A forked child that holds BEGIN IMMEDIATE on `db` until `release()`.
class lock_holder {
public:
  explicit lock_holder(const std::string& db) {
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    REQUIRE(pipe(hold_) == 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      close(ready[0]);
      close(hold_[1]);
      sqlite3* h = nullptr;
      char ok = '0';
      if (sqlite3_open(db.c_str(), &h) == SQLITE_OK
          && sqlite3_exec(h, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr)
               == SQLITE_OK)
        ok = '1';
      (void) !write(ready[1], &ok, 1);
      char c;
      // Holds the lock until the parent closes its end.
      while (read(hold_[0], &c, 1) > 0) {
      }
      sqlite3_exec(h, "ROLLBACK", nullptr, nullptr, nullptr);
      sqlite3_close(h);
      _exit(ok == '1' ? 0 : 3);
    }
    close(ready[1]);
    close(hold_[0]);
    char ok = 0;
    REQUIRE(read(ready[0], &ok, 1) == 1);
    close(ready[0]);
    locked_ = ok == '1';
  }

  bool locked() const {
    return locked_;
  }

  /// Ends the transaction and the child; its exit status.
  int release() {
    if (pid_ <= 0)
      return -1;
    close(hold_[1]);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  ~lock_holder() {
    release();
  }

private:
  pid_t pid_ = -1;
  int hold_[2] = {-1, -1};
  bool locked_ = false;
};

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : std::filesystem::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace

TEST_CASE("a database locked by another process stops fleetd untouched; "
          "after the lock is gone its unsynced rows are delivered") {
  temp_dir tmp;
  auto dir = tmp.path() + "/device";
  auto db = dir + "/fleetd.db";
  auto device_args = [&](const std::string& port) {
    return std::vector<std::string>{
      "--node.data-dir=" + dir, "--device.id=locked-dev",
      "--cloud.port=" + port,   "--console.port=0",
      "--collector.interval=1h", "--collector.rounds=1",
      "--load.series=20",       "--load.interval=10ms",
      "--load.rounds=10",       "--sync.interval=50ms",
      "--sync.batch-size=50"};
  };
  // 1. Rows that never reached a cloud (there is none on port 1).
  {
    process device{program("fleetd"), device_args("1"),
                   tmp.path() + "/first.log"};
    REQUIRE(eventually(
      [&] {
        return query_int(db, "SELECT count(*) FROM metrics") >= 200;
      },
      20s));
    device.signal(SIGTERM);
    REQUIRE(device.wait(20s) == 0);
  }
  auto unsynced = device_points(db);
  REQUIRE(unsynced.size() >= 200);
  auto bytes = read_file(db);
  auto files = entries(dir);
  // 2. Another process holds the write lock: fleetd says so and stops.
  lock_holder holder{db};
  REQUIRE(holder.locked());
  auto [rc, err] = run_to_end(program("fleetd"), device_args("1"), 60s);
  INFO("stderr: " << err);
  CHECK(rc != 0);
  CHECK(err.find(db) != std::string::npos);
  CHECK(err.find("lock") != std::string::npos);
  CHECK(err.find("left as it is") != std::string::npos);
  CHECK(read_file(db) == bytes);
  auto after = entries(dir);
  for (auto& name : after)
    CHECK(name.find(".corrupt-") == std::string::npos);
  REQUIRE(holder.release() == 0);
  // 3. The lock is gone: the same file, the old rows, now delivered.
  auto cloud_dir = tmp.path() + "/cloud";
  process cloud{program("fleetd-cloud"),
                {"--node.data-dir=" + cloud_dir, "--ingest.port=0",
                 "--console.port=0"},
                tmp.path() + "/cloud.log"};
  auto port = port_from(cloud_dir + "/ingest.port");
  REQUIRE(port > 0);
  process device{program("fleetd"), device_args(std::to_string(port)),
                 tmp.path() + "/second.log"};
  auto cloud_db = cloud_dir + "/cloud.db";
  auto delivered = [&] {
    auto got = cloud_points(cloud_db, "locked-dev");
    return std::includes(got.begin(), got.end(), unsynced.begin(),
                         unsynced.end());
  };
  CHECK(eventually(delivered, 60s));
  MESSAGE(unsynced.size(), " rows unsynced before the lock; ",
          cloud_points(cloud_db, "locked-dev").size(), " at the cloud");
  device.signal(SIGTERM);
  CHECK(device.wait(20s) == 0);
  cloud.signal(SIGTERM);
  CHECK(cloud.wait(20s) == 0);
}
