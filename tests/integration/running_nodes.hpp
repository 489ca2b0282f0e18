#pragma once

// One fleetd-cloud and one fleetd syncing to it, and fleetctl against them:
// the console tests' shared start.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "support.hpp"

namespace fleetd::test {

/// The lines of `text`, without their '\n'.
std::vector<std::string> lines_of(const std::string& text);

/// The port a node wrote to `file`; REQUIREs one.
uint16_t port_in(const std::string& file);

/// What a fleetctl run wrote to stdout and to stderr, apart.
struct split_run {
  int rc = -1;
  std::string out;
  std::string err;
};

/// fleetctl with `args` against the console on 127.0.0.1:`port`.
split_run ctl_split(uint16_t port, std::vector<std::string> args);

/// One cloud and one device syncing to it, both with consoles on free
/// ports; data flows end to end before the constructor returns.
struct running_nodes {
  temp_dir tmp;
  std::string cloud_dir = tmp.path() + "/cloud";
  std::string dev_dir = tmp.path() + "/device";
  std::unique_ptr<process> cloud;
  std::unique_ptr<process> device;
  uint16_t cloud_console = 0;
  uint16_t dev_console = 0;

  running_nodes(const std::string& cloud_id, const std::string& device_id);
  ~running_nodes();

  static std::string at(uint16_t port) {
    return "127.0.0.1:" + std::to_string(port);
  }

  /// Runs fleetctl; its exit status and everything it wrote.
  std::pair<int, std::string> ctl(uint16_t port,
                                  std::vector<std::string> args);
};

} // namespace fleetd::test
