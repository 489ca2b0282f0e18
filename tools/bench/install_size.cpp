#include "tools/bench/install_size.hpp"

#include <array>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "messages/error.hpp"

namespace fs = std::filesystem;

namespace fleetd::bench {

namespace {

// ldd and strip say a few dozen lines; more is not their output.
constexpr size_t max_output = 1 << 20;

// Runs `argv` (no shell: a path is one argument) and returns its standard
// output; an error when it cannot run or exits non-zero.
caf::expected<std::string> run_capture(std::vector<std::string> argv) {
  int fds[2];
  if (pipe(fds) != 0)
    return make_error(ec::io_error, "cannot make a pipe for " + argv[0]);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return make_error(ec::io_error, "cannot fork " + argv[0]);
  }
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  std::array<char, 4096> buf;
  ssize_t n;
  while ((n = read(fds[0], buf.data(), buf.size())) > 0
         && out.size() < max_output)
    out.append(buf.data(), static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return make_error(ec::io_error, argv[0] + " " + argv.back() + " failed");
  if (out.size() >= max_output)
    return make_error(ec::too_large, argv[0] + " output past 1 MiB");
  return out;
}

// A stripped copy of `program` in a fresh temp directory, removed with it.
struct stripped_copy {
  std::string dir;
  std::string path;
  ~stripped_copy() {
    if (!dir.empty())
      fs::remove_all(dir);
  }
};

caf::error strip_into(const std::string& program, stripped_copy& copy) {
  std::string tmpl = (fs::temp_directory_path() / "install-size-XXXXXX");
  if (!mkdtemp(tmpl.data()))
    return make_error(ec::io_error, "cannot make a temp directory");
  copy.dir = tmpl;
  copy.path = copy.dir + "/" + fs::path(program).filename().string();
  auto out = run_capture({"strip", "--strip-all", "-o", copy.path, program});
  return out ? caf::none : out.error();
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

caf::expected<install_size> measure_install_size(const std::string& program,
                                                 bool strip) {
  stripped_copy copy;
  if (strip)
    if (auto err = strip_into(program, copy))
      return err;
  auto out = run_capture({"ldd", strip ? copy.path : program});
  if (!out)
    return out.error();
  auto libs = parse_ldd(*out);
  if (!libs)
    return libs.error();
  install_size result;
  result.files.push_back({program, strip ? copy.path : program, 0});
  result.files.insert(result.files.end(), libs->begin(), libs->end());
  for (auto& f : result.files) {
    std::error_code err;
    auto real = fs::canonical(f.path, err).string();
    if (!err)
      f.bytes = fs::file_size(real, err);
    if (err)
      return make_error(ec::io_error, "cannot read " + f.path);
    f.path = &f == &result.files.front() ? program : real;
    result.bytes += f.bytes;
  }
  return result;
}

} // namespace fleetd::bench
