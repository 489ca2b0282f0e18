#include "tools/bench/install_size.hpp"

#include <array>
#include <filesystem>

#include <sys/wait.h>
#include <unistd.h>

#include "messages/error.hpp"

namespace fs = std::filesystem;

namespace fleetd::bench {

namespace {

// ldd lists a few dozen lines; more than this is no ldd output.
constexpr size_t max_ldd_output = 1 << 20;

// Runs `ldd program` (no shell: the path is one argument) and returns its
// standard output; an error when it cannot run or exits non-zero.
caf::expected<std::string> run_ldd(const std::string& program) {
  int fds[2];
  if (pipe(fds) != 0)
    return make_error(ec::io_error, "cannot make a pipe for ldd");
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return make_error(ec::io_error, "cannot fork ldd");
  }
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execlp("ldd", "ldd", program.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  std::array<char, 4096> buf;
  ssize_t n;
  while ((n = read(fds[0], buf.data(), buf.size())) > 0
         && out.size() < max_ldd_output)
    out.append(buf.data(), static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return make_error(ec::io_error, "ldd " + program + " failed");
  if (out.size() >= max_ldd_output)
    return make_error(ec::too_large, "ldd output past 1 MiB");
  return out;
}

std::string_view trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos)
    return {};
  auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// One ldd line: "name => /path (0x...)", "/lib64/ld-linux... (0x...)" or
// "linux-vdso.so.1 (0x...)"; `file` gets the name and the path.
caf::error parse_ldd_line(std::string_view line, installed_file& file) {
  auto arrow = line.find("=>");
  auto name = trim(line.substr(0, std::min(arrow, line.find(" ("))));
  file.name = std::string{name};
  auto rest = arrow == std::string_view::npos ? name
                                              : trim(line.substr(arrow + 2));
  if (rest.rfind("not found", 0) == 0)
    return make_error(ec::decode_failed, file.name + " not found");
  file.path = std::string{trim(rest.substr(0, rest.find(" (")))};
  if (file.path.empty() || file.path.front() != '/')
    return make_error(ec::decode_failed,
                      "ldd line without a path: " + std::string{line});
  return caf::none;
}

} // namespace

bool is_runtime_library(std::string_view soname) {
  static constexpr std::string_view runtime[] = {
    "linux-vdso.so", "linux-gate.so", "libc.so",    "libm.so",
    "libgcc_s.so",   "libstdc++.so",  "ld-linux",   "libpthread.so",
    "libdl.so",      "librt.so"};
  auto base = soname.substr(soname.rfind('/') + 1);
  for (auto prefix : runtime)
    if (base.rfind(prefix, 0) == 0)
      return true;
  return false;
}

caf::expected<std::vector<installed_file>>
parse_ldd(std::string_view out) {
  std::vector<installed_file> files;
  while (!out.empty()) {
    auto eol = out.find('\n');
    auto line = trim(out.substr(0, eol));
    out = eol == std::string_view::npos ? std::string_view{}
                                        : out.substr(eol + 1);
    auto name = line.substr(0, line.find_first_of(" \t"));
    if (line.empty() || is_runtime_library(name))
      continue;
    installed_file f;
    if (auto err = parse_ldd_line(line, f))
      return err;
    files.push_back(std::move(f));
  }
  return files;
}

caf::expected<install_size> measure_install_size(const std::string& program) {
  auto out = run_ldd(program);
  if (!out)
    return out.error();
  auto libs = parse_ldd(*out);
  if (!libs)
    return libs.error();
  install_size result;
  result.files.push_back({program, program, 0});
  result.files.insert(result.files.end(), libs->begin(), libs->end());
  for (auto& f : result.files) {
    std::error_code err;
    f.path = fs::canonical(f.path, err).string();
    if (!err)
      f.bytes = fs::file_size(f.path, err);
    if (err)
      return make_error(ec::io_error, "cannot read " + f.path);
    result.bytes += f.bytes;
  }
  return result;
}

} // namespace fleetd::bench
