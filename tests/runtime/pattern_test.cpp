// POSIX ERE patterns as node_exporter's filter flags use them: unanchored
// matching, node_exporter's default patterns in ERE, clear errors.
#include "runtime/pattern.hpp"

#include <utility>

#include <doctest/doctest.h>

using namespace fleetd;

TEST_CASE("matching is unanchored: a pattern anchors itself") {
  pattern p{"lo"};
  REQUIRE(p.ok());
  CHECK(p.matches("lo"));
  CHECK(p.matches("eth_lo0"));
  pattern anchored{"^lo$"};
  REQUIRE(anchored.ok());
  CHECK(anchored.matches("lo"));
  CHECK_FALSE(anchored.matches("lo0"));
  CHECK_FALSE(anchored.matches("xlo"));
}

TEST_CASE("node_exporter's default filters in ERE select what its own do") {
  pattern disks{"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme[0-9]+n[0-9]+p)[0-9]+$"};
  REQUIRE(disks.ok());
  for (auto x : {"ram0", "loop12", "fd0", "sda1", "vdb3", "xvda1",
                 "nvme0n1p2"})
    CHECK_MESSAGE(disks.matches(x), x);
  for (auto x : {"sda", "vda", "nvme0n1", "zram0", "mmcblk0", "dm-0"})
    CHECK_FALSE_MESSAGE(disks.matches(x), x);
  pattern mounts{"^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|"
                 "var/lib/containers/storage/.+)($|/)"};
  REQUIRE(mounts.ok());
  for (auto x : {"/dev", "/dev/shm", "/proc", "/run/user/0", "/sys/fs/cgroup",
                 "/var/lib/docker/overlay2/x"})
    CHECK_MESSAGE(mounts.matches(x), x);
  for (auto x : {"/", "/boot", "/device", "/var/lib/docker", "/home"})
    CHECK_FALSE_MESSAGE(mounts.matches(x), x);
}

TEST_CASE("a bad pattern says why, with the pattern") {
  pattern p{"(unclosed"};
  CHECK_FALSE(p.ok());
  CHECK_FALSE(p.empty());
  CHECK(p.error().find("(unclosed") != std::string::npos);
  CHECK(p.error().size() > std::string{"'(unclosed': "}.size());
  CHECK_FALSE(p.matches("unclosed"));
  CHECK(pattern_error("[a-") != "");
  CHECK(pattern_error("^ok$") == "");
}

TEST_CASE("Perl's \\d is refused instead of silently matching a 'd'") {
  pattern p{"^sd\\d+$"};
  CHECK_FALSE(p.ok());
  CHECK(p.error().find("[0-9]") != std::string::npos);
  // An escaped backslash before a d is a backslash and a d.
  CHECK(pattern{"a\\\\d"}.ok());
}

TEST_CASE("no pattern matches nothing; a moved pattern keeps matching") {
  pattern none;
  CHECK(none.empty());
  CHECK_FALSE(none.matches(""));
  pattern a{"^x"};
  pattern b{std::move(a)};
  CHECK(b.matches("xy"));
  pattern c;
  c = std::move(b);
  CHECK(c.matches("xy"));
  CHECK(c.expr() == "^x");
}
