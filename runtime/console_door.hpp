#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

namespace fleetd {

/// Loopback source ports of the console front's own connections to the
/// inner BASP listener; any other local process is turned away there.
class front_ports {
public:
  void add(uint16_t port);
  void remove(uint16_t port);
  bool contains(uint16_t port) const;

private:
  mutable std::mutex mtx_;
  std::set<uint16_t> ports_;
};

/// Publishes `whom` over plain BASP on 127.0.0.1 (a free port, returned) for
/// the console front only: a connection whose source port is not in `ports`
/// is closed before CAF reads a byte of it.
caf::expected<uint16_t> publish_inner(caf::actor_system& sys,
                                      caf::strong_actor_ptr whom,
                                      std::shared_ptr<const front_ports> ports);

/// The remote end of an already connected socket `fd` (a BASP peer that
/// published an actor); takes `fd`. The actor must offer `ifs`.
caf::expected<caf::strong_actor_ptr>
connect_over_socket(caf::actor_system& sys, int fd,
                    const std::set<std::string>& ifs);

/// Two connected loopback TCP sockets; the pair is checked to be ours.
caf::expected<std::pair<int, int>> loopback_pair();

} // namespace fleetd
