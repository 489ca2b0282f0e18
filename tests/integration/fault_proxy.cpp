#include "fault_proxy.hpp"

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

namespace fleetd::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

enum class kind { pass, delay, throttle, drop, blackhole };

struct mode_value {
  kind k = kind::pass;
  int64_t arg = 0; // ms for delay, bytes/s for throttle
};

/// How often a parked (blackholed) direction looks at the mode again.
constexpr auto poll_interval = std::chrono::milliseconds(10);
constexpr size_t max_chunk = 16384;

class connection;

} // namespace

struct fault_proxy::impl {
  explicit impl(uint16_t up) : upstream(up) {
  }

  uint16_t upstream;
  uint16_t port = 0;
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{
    ioc.get_executor()};
  tcp::acceptor acceptor{ioc};
  std::thread thread;
  mutable std::mutex mtx;
  mode_value mode;                             // guarded by mtx
  std::set<std::shared_ptr<connection>> conns; // io thread only
  std::atomic<int64_t> connections{0};
  std::atomic<int64_t> dropped{0};
  std::atomic<int64_t> bytes_up{0};
  std::atomic<int64_t> bytes_down{0};
  std::atomic<int64_t> open{0};
  std::atomic<int64_t> writing{0};
  fault_proxy::tap_fn tap; // set before traffic, then read on the io thread

  mode_value current() const {
    std::lock_guard<std::mutex> guard{mtx};
    return mode;
  }
  void set(mode_value m) {
    std::lock_guard<std::mutex> guard{mtx};
    mode = m;
  }
  void accept();
  void close_all(bool count_as_dropped);
};

namespace {

/// One direction of a connection: read a chunk, hold it as the mode says,
/// write it, repeat. Strictly sequential, so one buffer and one timer do.
struct pump {
  pump(asio::io_context& ioc, tcp::socket& f, tcp::socket& t,
       std::atomic<int64_t>& c, bool is_up)
    : from(f), to(t), counter(c), timer(ioc), buf(max_chunk), up(is_up) {
  }
  tcp::socket& from;
  tcp::socket& to;
  std::atomic<int64_t>& counter;
  asio::steady_timer timer;
  std::vector<char> buf;
  size_t len = 0;
  bool up;
  bool done = false; // `from` reached EOF; `to` was shut down for sending
};

class connection : public std::enable_shared_from_this<connection> {
public:
  connection(fault_proxy::impl& proxy, tcp::socket client)
    : proxy_(proxy),
      client_(std::move(client)),
      server_(proxy.ioc),
      up_(proxy.ioc, client_, server_, proxy.bytes_up, true),
      down_(proxy.ioc, server_, client_, proxy.bytes_down, false),
      id_(static_cast<uint64_t>(proxy.connections.load())) {
  }

  void start() {
    tcp::endpoint ep{asio::ip::address_v4::loopback(), proxy_.upstream};
    server_.async_connect(ep, [self = shared_from_this()](error_code ec) {
      if (self->closed_)
        return;
      if (ec) {
        self->close();
        return;
      }
      error_code ignored;
      self->client_.set_option(tcp::no_delay(true), ignored);
      self->server_.set_option(tcp::no_delay(true), ignored);
      self->read(self->up_);
      self->read(self->down_);
    });
  }

  void close() {
    if (closed_)
      return;
    closed_ = true;
    error_code ec;
    up_.timer.cancel();
    down_.timer.cancel();
    client_.shutdown(tcp::socket::shutdown_both, ec);
    client_.close(ec);
    server_.shutdown(tcp::socket::shutdown_both, ec);
    server_.close(ec);
    // Handlers still pending hold their own references.
    if (proxy_.conns.erase(shared_from_this()) > 0)
      --proxy_.open;
  }

private:
  void hold(pump& p, std::chrono::microseconds d, void (connection::*next)(pump&)) {
    p.timer.expires_after(d);
    p.timer.async_wait([self = shared_from_this(), &p, next](error_code) {
      if (!self->closed_)
        ((*self).*next)(p);
    });
  }

  void read(pump& p) {
    if (closed_)
      return;
    auto m = proxy_.current();
    if (m.k == kind::blackhole) {
      hold(p, poll_interval, &connection::read);
      return;
    }
    if (m.k == kind::drop) {
      close();
      return;
    }
    size_t cap = max_chunk;
    if (m.k == kind::throttle)
      cap = static_cast<size_t>(
        std::clamp<int64_t>(m.arg / 20, 1, static_cast<int64_t>(max_chunk)));
    p.from.async_read_some(
      asio::buffer(p.buf.data(), cap),
      [self = shared_from_this(), &p](error_code ec, size_t n) {
        if (self->closed_)
          return;
        if (ec) {
          if (ec == asio::error::eof)
            self->half_close(p);
          else
            self->close();
          return;
        }
        p.len = n;
        self->forward(p);
      });
  }

  /// A chunk was read: hold it back as the mode says, then send it.
  void forward(pump& p) {
    auto m = proxy_.current();
    switch (m.k) {
      case kind::pass:
        send(p);
        return;
      case kind::delay:
        hold(p, std::chrono::milliseconds(m.arg), &connection::send);
        return;
      case kind::throttle: {
        auto us = static_cast<int64_t>(p.len) * 1000000 / std::max<int64_t>(m.arg, 1);
        hold(p, std::chrono::microseconds(us), &connection::send);
        return;
      }
      case kind::blackhole:
        hold(p, poll_interval, &connection::forward);
        return;
      case kind::drop:
        close();
        return;
    }
  }

  void send(pump& p) {
    // Counted before the mode is read: once a test has set blackhole or
    // drop and then sees writing == 0, no chunk moves any more.
    ++proxy_.writing;
    auto m = proxy_.current();
    if (m.k == kind::blackhole) {
      --proxy_.writing;
      hold(p, poll_interval, &connection::send);
      return;
    }
    if (m.k == kind::drop) {
      --proxy_.writing;
      close();
      return;
    }
    asio::async_write(p.to, asio::buffer(p.buf.data(), p.len),
                      [self = shared_from_this(), &p](error_code ec, size_t n) {
                        if (!self->closed_ && !ec) {
                          p.counter += static_cast<int64_t>(n);
                          if (self->proxy_.tap)
                            self->proxy_.tap(self->id_, p.up,
                                             {p.buf.data(), n});
                        }
                        --self->proxy_.writing;
                        if (self->closed_)
                          return;
                        if (ec) {
                          self->close();
                          return;
                        }
                        self->read(p);
                      });
  }

  void half_close(pump& p) {
    p.done = true;
    error_code ec;
    p.to.shutdown(tcp::socket::shutdown_send, ec);
    if (up_.done && down_.done)
      close();
  }

  fault_proxy::impl& proxy_;
  tcp::socket client_;
  tcp::socket server_;
  pump up_;
  pump down_;
  uint64_t id_;
  bool closed_ = false;
};

} // namespace

void fault_proxy::impl::accept() {
  acceptor.async_accept([this](error_code ec, tcp::socket s) {
    if (!acceptor.is_open())
      return;
    if (!ec) {
      ++connections;
      if (current().k == kind::drop) {
        ++dropped;
        error_code ignored;
        s.shutdown(tcp::socket::shutdown_both, ignored);
        s.close(ignored);
      } else {
        auto c = std::make_shared<connection>(*this, std::move(s));
        conns.insert(c);
        ++open;
        c->start();
      }
    }
    accept();
  });
}

void fault_proxy::impl::close_all(bool count_as_dropped) {
  auto all = conns; // close() erases from the set
  for (auto& c : all) {
    if (count_as_dropped)
      ++dropped;
    c->close();
  }
}

fault_proxy::fault_proxy(uint16_t upstream_port)
  : impl_(std::make_shared<impl>(upstream_port)) {
  tcp::endpoint ep{asio::ip::address_v4::loopback(), 0};
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  impl_->port = impl_->acceptor.local_endpoint().port();
  impl_->accept();
  impl_->thread = std::thread([i = impl_.get()] { i->ioc.run(); });
}

fault_proxy::~fault_proxy() {
  stop();
}

uint16_t fault_proxy::port() const {
  return impl_->port;
}

void fault_proxy::pass() {
  impl_->set({kind::pass, 0});
}

void fault_proxy::delay(std::chrono::milliseconds ms) {
  impl_->set({kind::delay, static_cast<int64_t>(ms.count())});
}

void fault_proxy::throttle(int64_t bytes_per_s) {
  impl_->set({kind::throttle, bytes_per_s});
}

void fault_proxy::drop() {
  impl_->set({kind::drop, 0});
  asio::post(impl_->ioc, [i = impl_.get()] { i->close_all(true); });
}

void fault_proxy::blackhole() {
  impl_->set({kind::blackhole, 0});
}

void fault_proxy::tap(tap_fn f) {
  impl_->tap = std::move(f);
}

std::string fault_proxy::mode() const {
  auto m = impl_->current();
  switch (m.k) {
    case kind::pass:
      return "pass";
    case kind::delay:
      return "delay(" + std::to_string(m.arg) + "ms)";
    case kind::throttle:
      return "throttle(" + std::to_string(m.arg) + "B/s)";
    case kind::drop:
      return "drop";
    case kind::blackhole:
      return "blackhole";
  }
  return "?";
}

fault_proxy::counters fault_proxy::stats() const {
  counters c;
  c.connections = impl_->connections.load();
  c.dropped = impl_->dropped.load();
  c.bytes_up = impl_->bytes_up.load();
  c.bytes_down = impl_->bytes_down.load();
  c.open = impl_->open.load();
  c.writing = impl_->writing.load();
  return c;
}

void fault_proxy::stop() {
  if (!impl_->thread.joinable())
    return;
  asio::post(impl_->ioc, [i = impl_.get()] {
    error_code ec;
    i->acceptor.close(ec);
    i->close_all(false);
    i->work.reset();
    i->ioc.stop();
  });
  impl_->thread.join();
  // Pending handlers (and the connections they hold) go with the io_context.
}

} // namespace fleetd::test
