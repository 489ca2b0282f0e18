#pragma once

// Children and scratch space of the throwaway servers (pg_server,
// ch_server): free ports, temp dirs, spawning as another user with a
// parent-death signal, stopping by PID.

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/types.h>

namespace fleetd {

/// A port on 127.0.0.1 free a moment ago (0 when none could be bound).
int free_port();

/// A fresh directory $TMPDIR/<prefix>-XXXXXX (/tmp without TMPDIR), removed
/// at scope exit (kept when FLEETD_KEEP_TEMP is set, to look at after a
/// failure).
class temp_dir {
public:
  explicit temp_dir(const std::string& prefix);
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const {
    return path_;
  }

private:
  std::string path_;
};

bool executable(const std::string& path);

/// The last `max` bytes of a file (a server's log, for a failure message).
std::string read_tail(const std::string& path, size_t max = 1500);

double seconds_since(std::chrono::steady_clock::time_point t0);

// How a child runs: as whom, where its output goes, what ends it.
struct child_spec {
  std::vector<std::string> argv;
  std::string log;
  std::string cwd;
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  // What the child gets when this thread ends (a test that crashed).
  int death_signal = SIGKILL;
};

/// Starts `spec` (-1 when it cannot). The child gets its death signal when
/// the calling thread ends, so a crashed test leaves no server behind.
pid_t spawn(const child_spec& spec);

/// Runs `spec` to its end: its exit status, or -1.
int run(const child_spec& spec, std::chrono::milliseconds deadline);

/// Sends `sig`, waits, then kills: the process is gone afterwards.
void stop(pid_t pid, int sig);

/// Writes `text` to `path` (mode 0600), owned by `who`'s user when it
/// switches user.
bool write_file(const std::string& path, const std::string& text,
                const child_spec& who);

} // namespace fleetd
