#include "runtime/console_door.hpp"

#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/io/basp_broker.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/io/network/doorman_impl.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "messages/error.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

void front_ports::add(uint16_t port) {
  std::lock_guard<std::mutex> guard{mtx_};
  ports_.insert(port);
}

void front_ports::remove(uint16_t port) {
  std::lock_guard<std::mutex> guard{mtx_};
  ports_.erase(port);
}

bool front_ports::contains(uint16_t port) const {
  std::lock_guard<std::mutex> guard{mtx_};
  return ports_.count(port) > 0;
}

namespace {

uint16_t port_of(int fd, bool peer) {
  sockaddr_in sa{};
  socklen_t len = sizeof(sa);
  auto rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &len)
                 : getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return rc == 0 && sa.sin_family == AF_INET ? ntohs(sa.sin_port) : 0;
}

caf::expected<int> loopback_listener() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0
      || listen(fd, 64) != 0) {
    auto err = make_error(ec::io_error, std::string("console: loopback "
                                                    "listener: ")
                                          + strerror(errno));
    if (fd >= 0)
      close(fd);
    return err;
  }
  return fd;
}

// CAF's own doorman, with one check before the accepted socket reaches BASP.
class front_doorman : public caf::io::network::doorman_impl {
public:
  front_doorman(caf::io::network::default_multiplexer& mpx, int fd,
                std::shared_ptr<const front_ports> ports)
    : doorman_impl(mpx, fd), ports_(std::move(ports)) {
  }

  bool new_connection() override {
    if (detached())
      return false;
    auto& mpx = acceptor_.backend();
    auto fd = acceptor_.accepted_socket();
    if (!ports_->contains(port_of(fd, true))) {
      log_warning_limited("console", "inner", "closed a local connection to "
                                              "the inner console port");
      close(fd);
      return true;
    }
    caf::io::network::nonblocking(fd, true);
    auto scribe = mpx.new_scribe(fd);
    auto hdl = scribe->hdl();
    parent()->add_scribe(std::move(scribe));
    return doorman::new_connection(&mpx, hdl);
  }

private:
  std::shared_ptr<const front_ports> ports_;
};

caf::actor basp_broker(caf::actor_system& sys) {
  return sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
}

} // namespace

caf::expected<uint16_t> publish_inner(caf::actor_system& sys,
                                      caf::strong_actor_ptr whom,
                                      std::shared_ptr<const front_ports> ports) {
  auto fd = loopback_listener();
  if (!fd)
    return fd.error();
  auto port = port_of(*fd, false);
  caf::io::network::nonblocking(*fd, true);
  auto& mpx = static_cast<caf::io::network::default_multiplexer&>(
    sys.middleman().backend());
  caf::io::doorman_ptr door = caf::make_counted<front_doorman>(mpx, *fd,
                                                               std::move(ports));
  auto sigs = whom->get()->message_types();
  caf::anon_send(basp_broker(sys), caf::publish_atom::value, std::move(door),
                 port, std::move(whom), std::move(sigs));
  return port;
}

caf::expected<caf::strong_actor_ptr>
connect_over_socket(caf::actor_system& sys, int fd,
                    const std::set<std::string>& ifs) {
  caf::io::network::nonblocking(fd, true);
  auto scribe = sys.middleman().backend().new_scribe(fd);
  caf::scoped_actor self{sys};
  caf::expected<caf::strong_actor_ptr> out{caf::strong_actor_ptr{}};
  self
    ->request(basp_broker(sys), std::chrono::seconds(30),
              caf::connect_atom::value, std::move(scribe), uint16_t{0})
    .receive(
      [&](caf::node_id&, caf::strong_actor_ptr& ptr,
          std::set<std::string>& sigs) {
        if (!ptr)
          out = make_error(ec::io_error, "the node publishes no console");
        else if (sigs != ifs)
          out = make_error(ec::io_error, "the node's console speaks another "
                                         "interface (another version?)");
        else
          out = std::move(ptr);
      },
      [&](caf::error& err) { out = std::move(err); });
  return out;
}

caf::expected<std::pair<int, int>> loopback_pair() {
  auto listener = loopback_listener();
  if (!listener)
    return listener.error();
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port_of(*listener, false));
  int a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int b = -1;
  if (a >= 0 && connect(a, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0)
    b = accept4(*listener, nullptr, nullptr, SOCK_CLOEXEC);
  close(*listener);
  // Another local process may have raced us to the port: the peer must be a.
  if (b >= 0 && port_of(b, true) == port_of(a, false))
    return std::make_pair(a, b);
  if (a >= 0)
    close(a);
  if (b >= 0)
    close(b);
  return make_error(ec::io_error, "console: no loopback socket pair");
}

} // namespace fleetd
