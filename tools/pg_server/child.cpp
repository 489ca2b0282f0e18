#include "tools/pg_server/child.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tools/pg_server/waiting.hpp"

namespace fleetd {

using namespace std::chrono_literals;

temp_dir::temp_dir(const std::string& prefix) {
  std::string pattern = "/tmp/" + prefix + "-XXXXXX";
  if (::mkdtemp(pattern.data()) != nullptr)
    path_ = pattern;
}

temp_dir::~temp_dir() {
  std::error_code err;
  if (!path_.empty() && !::getenv("FLEETD_KEEP_TEMP"))
    std::filesystem::remove_all(path_, err);
}

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

void stop(pid_t pid, int sig) {
  if (pid <= 0)
    return;
  ::kill(pid, sig);
  if (!wait_for_child(pid, 15s)) {
    ::kill(pid, SIGKILL);
    wait_for_child(pid, 5s);
  }
}


} // namespace fleetd
