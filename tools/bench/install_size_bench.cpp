#include "tools/bench/install_size_bench.hpp"

#include <cstdio>
#include <filesystem>
#include <iostream>

#include <caf/deep_to_string.hpp>

#include "tools/bench/bench_util.hpp"
#include "tools/bench/install_size.hpp"

namespace fs = std::filesystem;

namespace fleetd::bench {

const char* install_size_summary =
  "what installing fleetd takes: the device build's binary plus every "
  "library it\n      loads beyond the C/C++ runtime, vs the normal build's; "
  "bytes, ratio";

std::string install_size_usage() {
  return "usage: fleetd-bench install-size [--device PROGRAM] "
         "[--baseline PROGRAM]\n\n"
         "Measures PROGRAM, stripped as a package installs it (strip "
         "--strip-all), plus\nevery library `ldd PROGRAM` lists, symlinks "
         "resolved to the real files, except\nlibc, libm, libgcc_s, "
         "libstdc++, ld-linux, libpthread, libdl, librt (and\nlinux-vdso). "
         "--device defaults to build-device/fleetd (made\nby tools/build "
         "--device), --baseline to the fleetd beside this program.\n"
         "Prints each file on stderr and one line on stdout:\n\n"
         "  BENCH install_size install_bytes=.. baseline_install_bytes=.. "
         "ratio=..\n"
         "    binary_bytes=.. baseline_binary_bytes=.. libraries=.. "
         "baseline_libraries=..\n";
}

namespace {

struct install_options {
  std::string device;
  std::string baseline;
};

// The source tree's build/ holds this program; build-device/ is its sibling.
install_options default_options() {
  std::error_code ec;
  auto self = fs::read_symlink("/proc/self/exe", ec);
  if (ec)
    return {};
  auto dir = self.parent_path();
  return {(dir.parent_path() / "build-device" / "fleetd").string(),
          (dir / "fleetd").string()};
}

install_size measured(const std::string& label, const std::string& program) {
  if (program.empty() || !fs::exists(program))
    fail(label + " program '" + program + "' missing"
         + (label == "device" ? " (build it: tools/build --device)" : ""));
  auto r = measure_install_size(program, true);
  if (!r)
    fail(label + ": " + caf::to_string(r.error()));
  for (auto& f : r->files)
    std::cerr << label << ": " << f.bytes << " " << f.name << " -> " << f.path
              << "\n";
  return std::move(*r);
}

} // namespace

int run_install_size_bench(const std::vector<std::string>& args) {
  auto opt = default_options();
  arg_cursor cur{args};
  while (cur.next()) {
    std::string* target = cur.name() == "--device"     ? &opt.device
                          : cur.name() == "--baseline" ? &opt.baseline
                                                       : nullptr;
    if (!target || !cur.value(*target)) {
      std::cerr << "fleetd-bench install-size: bad option " << cur.name()
                << "\n" << install_size_usage();
      return 2;
    }
  }
  try {
    auto dev = measured("device", opt.device);
    auto base = measured("baseline", opt.baseline);
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.3f",
                  static_cast<double>(dev.bytes)
                    / static_cast<double>(base.bytes));
    std::cout << "BENCH install_size install_bytes=" << dev.bytes
              << " baseline_install_bytes=" << base.bytes
              << " ratio=" << ratio
              << " binary_bytes=" << dev.files.front().bytes
              << " baseline_binary_bytes=" << base.files.front().bytes
              << " libraries=" << dev.files.size() - 1
              << " baseline_libraries=" << base.files.size() - 1 << std::endl;
    return 0;
  } catch (const bench_failure& f) {
    std::cerr << "fleetd-bench install-size: " << f.what << std::endl;
    return 1;
  }
}

} // namespace fleetd::bench
