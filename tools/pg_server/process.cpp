#include "tools/pg_server/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "tools/pg_server/waiting.hpp"

namespace fleetd {

using namespace std::chrono_literals;

temp_dir::temp_dir(const std::string& prefix) {
  // $TMPDIR as mkdtemp(1) takes it: a bench's files on a chosen file system.
  auto base = ::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/"
                        + prefix + "-XXXXXX";
  if (::mkdtemp(pattern.data()) != nullptr)
    path_ = pattern;
}

temp_dir::~temp_dir() {
  std::error_code err;
  if (!path_.empty() && !::getenv("FLEETD_KEEP_TEMP"))
    std::filesystem::remove_all(path_, err);
}

// A port on 127.0.0.1 free a moment ago (0 when none could be bound).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0
            && ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  return ok ? ntohs(addr.sin_port) : 0;
}

bool executable(const std::string& path) {
  return ::access(path.c_str(), X_OK) == 0;
}

std::string read_tail(const std::string& path, size_t max) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  auto text = buf.str();
  return text.size() > max ? text.substr(text.size() - max) : text;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
    .count();
}

// Starts `spec` (-1 when it cannot). The child gets its death signal when
// this thread ends, so a crashed test leaves no server behind.
pid_t spawn(const child_spec& spec) {
  std::vector<char*> argv;
  for (auto& a : spec.argv)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int out = ::open(spec.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                   0644);
  int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out < 0 || in < 0)
    return -1;
  if (spec.switch_user && ::fchown(out, spec.uid, spec.gid) != 0)
    return -1;
  auto parent = ::getpid();
  auto pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    if (::chdir(spec.cwd.c_str()) != 0)
      ::_exit(126);
    if (spec.switch_user
        && (::setgroups(1, &spec.gid) != 0 || ::setgid(spec.gid) != 0
            || ::setuid(spec.uid) != 0))
      ::_exit(126);
    // After setuid, which clears it.
    ::prctl(PR_SET_PDEATHSIG, spec.death_signal);
    if (::getppid() != parent)
      ::_exit(126);
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out);
  ::close(in);
  return pid;
}

// Runs `spec` to its end: its exit status, or -1.
int run(const child_spec& spec, std::chrono::milliseconds deadline) {
  auto pid = spawn(spec);
  if (pid < 0)
    return -1;
  auto st = wait_for_child(pid, deadline);
  if (!st) {
    ::kill(pid, SIGKILL);
    wait_for_child(pid, 5s);
    return -1;
  }
  return *st;
}

// Sends `sig`, waits, then kills: the process is gone afterwards.
void stop(pid_t pid, int sig) {
  if (pid <= 0)
    return;
  ::kill(pid, sig);
  if (!wait_for_child(pid, 15s)) {
    ::kill(pid, SIGKILL);
    wait_for_child(pid, 5s);
  }
}

bool write_file(const std::string& path, const std::string& text,
                const child_spec& who) {
  {
    std::ofstream out(path);
    out << text;
    if (!out)
      return false;
  }
  ::chmod(path.c_str(), 0600);
  return !who.switch_user || ::chown(path.c_str(), who.uid, who.gid) == 0;
}

} // namespace fleetd
