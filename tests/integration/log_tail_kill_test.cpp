// fleetd following two log files while a writer appends to them and rotates
// them by rename and by copytruncate, a file is truncated in place, and
// fleetd is SIGKILLed 20 times at random moments: every line reaches the
// cloud exactly once, in the order written, per file. Run with the rounds
// file (tier 1's store) and with the tables.
//
// A truncation in place loses what was written after fleetd's last look
// and before it, by its nature; the test truncates only once fleetd has
// kept every line written so far (the writer waits for it), as an operator's
// `truncate -s 0` of a file already shipped would.
//
// A seed fixes the plan (rotations, kill points); rerun a failure with
// FLEETD_KILL_SEED=<the printed seed>.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int kills = 20;
constexpr const char* device_id = "tail-dev";

void append(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, text.data(), text.size())
          == static_cast<ssize_t>(text.size()));
  ::close(fd);
}

void copy_file(const std::string& from, const std::string& to) {
  append(to, read_file(from));
}

// The writer: appends numbered lines to each file, rotating now and then.
// Everything it does is under `mu` so the test can hold it still.
struct writer {
  std::string dir;
  std::mt19937 rng;
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> written;
  std::map<std::string, int> rotated;
  int renames = 0, copytruncates = 0, truncates = 0;

  std::string path(const std::string& name) const {
    return dir + "/" + name + ".log";
  }

  // `rotate`: may end with a rotation (none before fleetd knows the files).
  void step(bool rotate = true) {
    std::lock_guard<std::mutex> guard{mu};
    for (auto name : {"a", "b"}) {
      auto p = path(name);
      auto n = std::uniform_int_distribution<int>(1, 5)(rng);
      std::string text;
      for (int i = 0; i < n; ++i) {
        auto& lines = written[name];
        auto line = std::string(name) + " " + std::to_string(lines.size())
                    + " " + std::string(rng() % 60, 'x');
        lines.push_back(line);
        text += line + "\n";
      }
      append(p, text);
      // A rotation in about one step of 40, each kind alike; names keep
      // increasing as logrotate's dateext does, none deleted.
      auto dice = rotate ? rng() % 80 : 80;
      if (dice == 0) {
        auto to = p + "." + std::to_string(++rotated[name]);
        REQUIRE(::rename(p.c_str(), to.c_str()) == 0);
        ++renames;
      } else if (dice == 1) {
        copy_file(p, p + "." + std::to_string(++rotated[name]));
        REQUIRE(::truncate(p.c_str(), 0) == 0);
        ++copytruncates;
      }
    }
  }

  // Truncates `name`'s file in place (the caller made sure all was read).
  // (Renamed away by the last step: nothing to truncate this time.)
  void truncate_now(const std::string& name) {
    if (::truncate(path(name).c_str(), 0) == 0)
      ++truncates;
  }

  size_t total() {
    std::lock_guard<std::mutex> guard{mu};
    return written["a"].size() + written["b"].size();
  }
};

// The cloud's lines of each file (by the line's own name), arrival order.
std::map<std::string, std::vector<std::string>>
cloud_lines(const cloud_store& store) {
  std::map<std::string, std::vector<std::string>> out;
  for (auto& r : store.rows(cloud_store::table::logs, device_id))
    out[r[2].substr(0, r[2].find(' '))].push_back(r[2]);
  return out;
}

// Where the cloud's lines of each file first differ from those written.
std::string differences(const cloud_store& store,
                        std::map<std::string, std::vector<std::string>>& written) {
  auto got = cloud_lines(store);
  std::string out;
  for (auto name : {"a", "b"}) {
    auto& mine = written[name];
    auto& theirs = got[name];
    size_t k = 0;
    while (k < mine.size() && k < theirs.size() && mine[k] == theirs[k])
      ++k;
    out += std::string(name) + ": " + std::to_string(mine.size())
           + " written, " + std::to_string(theirs.size())
           + " in the cloud, first difference at " + std::to_string(k) + " ("
           + (k < theirs.size() ? theirs[k].substr(0, 12) : "-") + " vs "
           + (k < mine.size() ? mine[k].substr(0, 12) : "-") + "); ";
  }
  return out;
}

size_t cloud_total(const cloud_store& store) {
  return store.rows(cloud_store::table::logs, device_id).size();
}

void run_kills(bool rounds_file) {
  temp_dir tmp;
  auto seed = std::getenv("FLEETD_KILL_SEED")
                ? static_cast<unsigned>(std::stoul(std::getenv("FLEETD_KILL_SEED")))
                : std::random_device{}();
  MESSAGE("seed ", seed, ", rounds file ", rounds_file, ", dir ", tmp.path());
  std::mt19937 plan(seed);
  writer w;
  w.dir = tmp.path() + "/logs";
  REQUIRE(::mkdir(w.dir.c_str(), 0755) == 0);
  w.rng.seed(seed + 1);
  process cloud{program("fleetd-cloud"),
                {"--node.data-dir=" + tmp.path() + "/cloud", "--ingest.port=0",
                 "--console.port=0"},
                tmp.path() + "/cloud.log"};
  auto port = port_from(tmp.path() + "/cloud/ingest.port");
  REQUIRE(port != 0);
  cloud_store store(tmp.path() + "/cloud/cloud.db");
  auto dev_dir = tmp.path() + "/device";
  auto device_args = std::vector<std::string>{
    "--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
    "--cloud.port=" + std::to_string(port), "--console.port=0",
    "--logs.paths=" + w.path("a") + ",other=" + w.path("b"),
    "--logs.start-at=beginning", "--logs.interval=50ms",
    "--collector.interval=1h", "--sync.interval=100ms",
    std::string("--storage.rounds-file=") + (rounds_file ? "true" : "false")};
  // The files exist before fleetd first looks, unrotated: a rotation now
  // would be history to it (logs.start-at), its lines never read.
  w.step(false);
  std::atomic<bool> stop{false};
  std::thread writing;
  for (int i = 0; i < kills; ++i) {
    CAPTURE(i);
    process device{program("fleetd"), device_args,
                   tmp.path() + "/device-" + std::to_string(i) + ".log"};
    if (i == 0) {
      // Rotations start once fleetd knows the files: one before its first
      // look would be history to it (logs.start-at).
      auto first = w.total();
      REQUIRE_MESSAGE(
        eventually([&] { return cloud_total(store) >= first; }, 60s),
        read_file(tmp.path() + "/device-0.log")
          << read_file(tmp.path() + "/cloud.log"));
      writing = std::thread([&] {
        while (!stop) {
          w.step();
          std::this_thread::sleep_for(2ms); // the writer's pace, not a wait
        }
      });
    }
    if (i % 5 == 4) {
      // A truncation in place, of a file fleetd has read to its end.
      std::lock_guard<std::mutex> guard{w.mu};
      auto name = i % 10 == 4 ? "a" : "b";
      auto want = w.written["a"].size() + w.written["b"].size();
      REQUIRE_MESSAGE(eventually([&] { return cloud_total(store) >= want; },
                                 60s),
                      differences(store, w.written)
                        << read_file(tmp.path() + "/device-"
                                     + std::to_string(i) + ".log"));
      w.truncate_now(name);
    }
    // Killed once the cloud got a random number of new lines (or at once).
    auto before = cloud_total(store);
    auto more = std::uniform_int_distribution<size_t>(0, 120)(plan);
    REQUIRE_MESSAGE(
      eventually([&] { return cloud_total(store) >= before + more; }, 60s),
      read_file(tmp.path() + "/device-" + std::to_string(i) + ".log"));
    device.signal(SIGKILL);
    REQUIRE(device.wait(10s));
  }
  stop = true;
  writing.join();
  process device{program("fleetd"), device_args,
                 tmp.path() + "/device-final.log"};
  auto want = w.total();
  CHECK_MESSAGE(eventually([&] { return cloud_total(store) >= want; }, 60s),
                read_file(tmp.path() + "/device-final.log"));
  auto got = cloud_lines(store);
  MESSAGE(kills, " kills; ", want, " lines written; ", w.renames,
          " rename rotations, ", w.copytruncates, " copytruncates, ",
          w.truncates, " truncations; ", cloud_total(store),
          " lines in the cloud");
  for (auto name : {"a", "b"}) {
    CAPTURE(name);
    auto& mine = w.written[name];
    auto& theirs = got[name];
    CHECK(theirs.size() == mine.size());
    // The first difference, if any, tells more than the sizes.
    size_t k = 0;
    while (k < mine.size() && k < theirs.size() && mine[k] == theirs[k])
      ++k;
    std::string around;
    for (size_t j = k >= 5 ? k - 5 : 0; j < theirs.size() && j < k + 40; ++j)
      around += theirs[j].substr(2, theirs[j].find(' ', 2) - 2) + " ";
    CHECK_MESSAGE(k == mine.size(), "first difference at line " << k << ": "
                                    << (k < theirs.size() ? theirs[k] : "-")
                                    << "; the cloud's from 5 before: "
                                    << around);
  }
  CHECK(w.renames + w.copytruncates > 0);
  device.signal(SIGTERM);
  CHECK(device.wait(10s) == 0);
  cloud.signal(SIGTERM);
  CHECK(cloud.wait(10s) == 0);
}

} // namespace

TEST_CASE("log files: rotations, truncations and 20 SIGKILLs; every line "
          "once, in order (rounds file)") {
  run_kills(true);
}

TEST_CASE("log files: rotations, truncations and 20 SIGKILLs; every line "
          "once, in order (tables)") {
  run_kills(false);
}
