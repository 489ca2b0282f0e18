#include "tools/ch_server/ch_server.hpp"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <doctest/doctest.h>

#include "ch_fixture.hpp"
#include "runtime/http_client.hpp"
#include "skip.hpp"

using namespace fleetd;

namespace {

// "local_address:port" (hex, as /proc/net/tcp{,6} writes it) of every
// listening TCP socket process `pid` holds.
std::set<std::string> listeners_of(pid_t pid) {
  auto proc = "/proc/" + std::to_string(pid);
  std::set<std::string> inodes;
  for (auto& fd : std::filesystem::directory_iterator(proc + "/fd")) {
    std::error_code err;
    auto target = std::filesystem::read_symlink(fd.path(), err).string();
    if (target.rfind("socket:[", 0) == 0)
      inodes.insert(target.substr(8, target.size() - 9));
  }
  std::set<std::string> out;
  for (const char* table : {"/net/tcp", "/net/tcp6"}) {
    std::ifstream in(proc + table);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::istringstream words(line);
      std::string slot, local, remote, state, queues, timer, retr, uid, tmo,
        inode;
      words >> slot >> local >> remote >> state >> queues >> timer >> retr
        >> uid >> tmo >> inode;
      if (state == "0A" && inodes.count(inode) > 0)
        out.insert(local);
    }
  }
  return out;
}

std::string hex_port(int port) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04X", port);
  return buf;
}

} // namespace

TEST_CASE("clickhouse: a throwaway server listens on its HTTP port on "
          "127.0.0.1 and nowhere else") {
  std::string why;
  auto* server = test::shared_ch_server(why);
  if (!server)
    return test::skip(why);
  CHECK(listeners_of(server->pid())
        == std::set<std::string>{"0100007F:" + hex_port(server->http_port())});
  CHECK(test::ch_must(*server, "SELECT version()") == "18.16.1\n");
}

TEST_CASE("clickhouse: the fleetd user needs its password") {
  std::string why;
  auto* server = test::shared_ch_server(why);
  if (!server)
    return test::skip(why);
  http_client client{"127.0.0.1", static_cast<uint16_t>(server->http_port()),
                     std::chrono::seconds{10}, 4096};
  auto as = [&](const std::string& password) {
    auto res = client.post("/", "SELECT 42",
                           {{"X-ClickHouse-User", "fleetd"},
                            {"X-ClickHouse-Key", password}});
    REQUIRE(res);
    return *res;
  };
  CHECK(as("wrong").status == 401);
  auto ok = as(server->password());
  CHECK(ok.status == 200);
  CHECK(ok.body == "42\n");
}

TEST_CASE("clickhouse: a stopped server restarts on its port with its data") {
  std::string why;
  auto* server = test::shared_ch_server(why);
  if (!server)
    return test::skip(why);
  test::ch_must(*server, "CREATE TABLE kept (x UInt8) ENGINE = TinyLog");
  test::ch_must(*server, "INSERT INTO kept VALUES (7)");
  auto port = server->http_port();
  server->stop();
  CHECK(server->pid() == 0);
  ch_server::failure fail;
  REQUIRE_MESSAGE(server->restart(fail), fail.why);
  CHECK(server->http_port() == port);
  CHECK(test::ch_must(*server, "SELECT x FROM kept") == "7\n");
}
