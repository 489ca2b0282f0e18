#include "tools/bench/install_size.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "messages/error.hpp"
#include "runtime/text.hpp"
#include "tools/pg_server/process.hpp"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace fleetd::bench {

namespace {

// ldd lists a few dozen lines; more is not its output.
constexpr uintmax_t max_ldd_output = 1 << 20;

// `name` in a directory of $PATH; `name` itself when in none.
std::string on_path(const std::string& name) {
  const char* env = std::getenv("PATH");
  std::string_view dirs = env ? env : "/usr/bin:/bin";
  while (!dirs.empty()) {
    auto dir = dirs.substr(0, dirs.find(':'));
    auto candidate = std::string{dir} + "/" + name;
    if (!dir.empty() && executable(candidate))
      return candidate;
    dirs.remove_prefix(std::min(dirs.size(), dir.size() + 1));
  }
  return name;
}

// Runs `argv` (its program looked up on $PATH) with its output into
// `out_file`; an error unless it exits 0.
caf::error run_into(std::vector<std::string> argv, const std::string& out_file) {
  child_spec spec;
  spec.argv = std::move(argv);
  spec.argv[0] = on_path(spec.argv[0]);
  spec.log = out_file;
  spec.cwd = fs::path(out_file).parent_path().string();
  if (run(spec, 60s) != 0)
    return make_error(ec::io_error, spec.argv[0] + " " + spec.argv.back()
                                      + " failed: " + read_tail(out_file));
  return caf::none;
}

caf::expected<std::string> read_bounded(const std::string& path) {
  std::error_code err;
  auto n = fs::file_size(path, err);
  if (err || n > max_ldd_output)
    return make_error(ec::too_large, path + " missing or past 1 MiB");
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
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

// The binary as measured: itself, or a stripped copy in `tmp`.
caf::expected<std::string> binary_to_measure(const std::string& program,
                                             bool strip, const temp_dir& tmp) {
  if (!strip)
    return program;
  auto copy = tmp.path() + "/" + fs::path(program).filename().string();
  if (auto err = run_into({"strip", "--strip-all", "-o", copy, program},
                          tmp.path() + "/strip.out"))
    return err;
  return copy;
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
  for (auto raw : split_lines(out)) {
    auto line = trim(raw);
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
  temp_dir tmp{"install-size"};
  auto binary = binary_to_measure(program, strip, tmp);
  if (!binary)
    return binary.error();
  auto ldd_out = tmp.path() + "/ldd.out";
  if (auto err = run_into({"ldd", *binary}, ldd_out))
    return err;
  auto text = read_bounded(ldd_out);
  if (!text)
    return text.error();
  auto libs = parse_ldd(*text);
  if (!libs)
    return libs.error();
  install_size result;
  result.files.push_back({program, *binary, 0});
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
