// install_size: which libraries count, ldd's lines read (hostile ones
// refused), and a real program measured as binary plus libraries.
#include <doctest/doctest.h>

#include <filesystem>

#include "messages/error.hpp"
#include "tools/bench/install_size.hpp"

using namespace fleetd;
using namespace fleetd::bench;

TEST_CASE("the C/C++ runtime is not counted, every other library is") {
  for (auto name : {"libc.so.6", "libm.so.6", "libgcc_s.so.1",
                    "libstdc++.so.6", "/lib64/ld-linux-x86-64.so.2",
                    "libpthread.so.0", "libdl.so.2", "librt.so.1",
                    "linux-vdso.so.1"})
    CHECK_MESSAGE(is_runtime_library(name), name);
  for (auto name : {"libcaf_core.so.0.17.6", "libcrypto.so.3", "libz.so.1",
                    "libcrypt.so.1", "libmvec.so.1"})
    CHECK_MESSAGE(!is_runtime_library(name), name);
}

TEST_CASE("ldd output: libraries with their paths, runtime ones left out") {
  auto libs = parse_ldd(
    "\tlinux-vdso.so.1 (0x00007ffd)\n"
    "\tlibcaf_core.so.0.17.6 => /lib/x86_64-linux-gnu/libcaf_core.so.0.17.6 "
    "(0x00007f12)\n"
    "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f13)\n"
    "\t/lib64/ld-linux-x86-64.so.2 (0x00007f14)\n");
  REQUIRE(libs);
  REQUIRE(libs->size() == 1);
  CHECK((*libs)[0].name == "libcaf_core.so.0.17.6");
  CHECK((*libs)[0].path == "/lib/x86_64-linux-gnu/libcaf_core.so.0.17.6");
}

TEST_CASE("ldd output with a missing library or no path is refused") {
  auto missing = parse_ldd("\tlibfoo.so.1 => not found\n");
  REQUIRE(!missing);
  CHECK(missing.error() == ec::decode_failed);
  auto pathless = parse_ldd("\tlibfoo.so.1 => garbage\n");
  REQUIRE(!pathless);
  CHECK(pathless.error() == ec::decode_failed);
}

TEST_CASE("a real program: its own bytes plus each library's real file, "
          "stripped or not") {
  auto r = measure_install_size(FLEETD_BUILD_DIR "/fleetd");
  REQUIRE_MESSAGE(r, caf::to_string(r.error()));
  REQUIRE(r->files.size() >= 2);
  CHECK(r->files.front().bytes
        == std::filesystem::file_size(FLEETD_BUILD_DIR "/fleetd"));
  uint64_t sum = 0;
  for (auto& f : r->files) {
    CHECK_MESSAGE(!std::filesystem::is_symlink(f.path), f.path);
    CHECK_MESSAGE(!is_runtime_library(f.name), f.name);
    sum += f.bytes;
  }
  CHECK(r->bytes == sum);
  // Stripped as a package installs it: this build keeps debug info.
  auto stripped = measure_install_size(FLEETD_BUILD_DIR "/fleetd", true);
  REQUIRE(stripped);
  CHECK(stripped->files.front().bytes < r->files.front().bytes);
  CHECK(stripped->bytes - stripped->files.front().bytes
        == r->bytes - r->files.front().bytes);
  CHECK(!measure_install_size("/nonexistent/fleetd"));
  CHECK(!measure_install_size("/nonexistent/fleetd", true));
}
