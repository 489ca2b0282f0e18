#include "running_nodes.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <sstream>

namespace fleetd::test {

using namespace std::chrono_literals;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

uint16_t port_in(const std::string& file) {
  auto port = port_from(file);
  REQUIRE(port != 0);
  return port;
}

split_run ctl_split(uint16_t port, std::vector<std::string> args) {
  temp_dir tmp;
  std::vector<std::string> argv{"--node", "127.0.0.1:" + std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  process p{program("fleetctl"), argv, tmp.path() + "/err",
            tmp.path() + "/out"};
  auto st = p.wait(30s);
  CHECK(st);
  return {st ? *st : -1, read_file(tmp.path() + "/out"),
          read_file(tmp.path() + "/err")};
}

running_nodes::running_nodes(const std::string& cloud_id,
                             const std::string& device_id) {
  cloud = std::make_unique<process>(
    program("fleetd-cloud"),
    std::vector<std::string>{"--node.data-dir=" + cloud_dir,
                             "--node.id=" + cloud_id, "--ingest.port=0",
                             "--console.port=0"},
    tmp.path() + "/cloud.log");
  auto ingest = port_in(cloud_dir + "/ingest.port");
  cloud_console = port_in(cloud_dir + "/console.port");
  device = std::make_unique<process>(
    program("fleetd"),
    std::vector<std::string>{
      "--node.data-dir=" + dev_dir, "--device.id=" + device_id,
      "--cloud.port=" + std::to_string(ingest), "--console.port=0",
      "--collector.interval=50ms", "--sync.interval=50ms",
      "--sync.backoff-base=20ms", "--sync.backoff-cap=200ms"},
    tmp.path() + "/device.log");
  dev_console = port_in(dev_dir + "/console.port");
  // Data flows end to end before anyone looks.
  REQUIRE(eventually(
    [&] {
      auto st = console_status(cloud_console);
      return st && counter(*st, "ingest", "points") > 0;
    },
    30s));
  REQUIRE(eventually(
    [&] {
      auto st = console_status(dev_console);
      return st && counter(*st, "sync_metrics", "records_synced") > 0;
    },
    30s));
}

running_nodes::~running_nodes() {
  for (auto* p : {device.get(), cloud.get()})
    if (p) {
      p->signal(SIGTERM);
      p->wait(10s);
    }
}

std::pair<int, std::string> running_nodes::ctl(uint16_t port,
                                               std::vector<std::string> args) {
  std::vector<std::string> argv{"--node", at(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  auto out = run_to_end(program("fleetctl"), argv, 30s);
  // -1: still running at the deadline (and killed).
  CHECK(out.first != -1);
  return out;
}

} // namespace fleetd::test
