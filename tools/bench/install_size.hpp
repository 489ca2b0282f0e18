#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>

namespace fleetd::bench {

/// One installed file: the binary or a library it loads (real file, symlinks
/// resolved) and its size in bytes.
struct installed_file {
  std::string name; // as ldd names it (the soname), or the binary's path
  std::string path; // the real file
  uint64_t bytes = 0;
};

/// What installing a program on a device takes beyond the C/C++ runtime.
struct install_size {
  uint64_t bytes = 0;               // sum over files
  std::vector<installed_file> files; // the binary first, then its libraries
};

/// True for the libraries every Linux system has and that are not counted:
/// libc, libm, libgcc_s, libstdc++, ld-linux, libpthread, libdl, librt (and
/// the kernel's linux-vdso, which is no file).
bool is_runtime_library(std::string_view soname);

/// Parses `ldd` output: every library it lists except the runtime ones, as
/// name and path (bytes unset). ec::decode_failed when a library is "not
/// found" or a line has no path.
caf::expected<std::vector<installed_file>>
parse_ldd(std::string_view ldd_output);

/// The binary at `program` plus every non-runtime library `ldd` says it
/// loads, each measured as its real file; with `strip`, the binary as a
/// package installs it (a `strip --strip-all` copy: no debug info). ec::io_error
/// when ldd or strip cannot run or a file cannot be read.
caf::expected<install_size> measure_install_size(const std::string& program,
                                                 bool strip = false);

} // namespace fleetd::bench
