#include "runtime/console_front.hpp"

#include <array>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#ifndef FLEETD_MBEDTLS
#  include <boost/asio/ssl.hpp>
#endif

#include "messages/error.hpp"
#include "runtime/basp_frames.hpp"
#include "runtime/config_check.hpp"
#include "runtime/tls_context.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace asio = boost::asio;
namespace ssl = tls_api;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {
class session;
} // namespace

struct console_front::impl : std::enable_shared_from_this<impl> {
  console_front_config cfg;
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer pause{ioc};
  tls_context_ptr tls;
  std::thread thread;
  std::set<std::shared_ptr<session>> sessions; // io thread only
  bool stopped = false;                        // io thread only
  mutable std::mutex mtx;
  console_front_counters counts;

  void count(int64_t console_front_counters::*field) {
    std::lock_guard<std::mutex> guard{mtx};
    ++(counts.*field);
  }

  void accept();
  void admit(tcp::socket socket);
};

namespace {

using front_ptr = std::shared_ptr<console_front::impl>;

// One console peer: TLS (or plain) outside, the inner BASP socket inside.
class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket socket, front_ptr front)
    : front_(std::move(front)),
      tls_(front_->tls),
      outer_(std::move(socket), tls_context()),
      inner_(front_->ioc),
      deadline_(front_->ioc),
      frames_(basp_direction::to_node, front_->cfg.max_frame_bytes,
              front_->cfg.guard_id) {
  }

  void start() {
    deadline_.expires_after(front_->cfg.handshake_timeout);
    deadline_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->frames_.handshake_seen())
        return;
      self->front_->count(&console_front_counters::handshake_timeouts);
      log_warning_limited("console", "handshake_timeout",
                          "closed a console peer that did not complete its "
                          "handshake in time");
      self->close();
    });
    if (!tls_)
      return connect_inner();
    outer_.async_handshake(ssl::stream_base::server,
                           [self = shared_from_this()](error_code ec) {
                             if (!ec)
                               return self->connect_inner();
                             if (ec == asio::error::operation_aborted)
                               return;
                             self->front_->count(
                               &console_front_counters::handshake_failures);
                             log_warning_limited("console", "tls",
                                                 "refused a console peer: "
                                                 "TLS: ",
                                                 ec.message());
                             self->close();
                           });
  }

  void close() {
    if (closed_)
      return;
    closed_ = true;
    error_code ignored;
    deadline_.cancel();
    outer_.lowest_layer().close(ignored);
    inner_.close(ignored);
    if (inner_port_ != 0)
      front_->cfg.ports->remove(inner_port_);
    if (frames_.dropped() > 0) {
      std::lock_guard<std::mutex> guard{front_->mtx};
      front_->counts.frames_dropped += frames_.dropped();
    }
    front_->sessions.erase(shared_from_this());
  }

private:
  ssl::context& tls_context() {
    // A plain console still needs a context for the stream type; unused.
    static ssl::context unused{ssl::context::tls_server};
    return tls_ ? *tls_ : unused;
  }

  void connect_inner() {
    error_code ec;
    auto lo = asio::ip::address_v4::loopback();
    inner_.open(tcp::v4(), ec);
    if (!ec)
      inner_.bind({lo, 0}, ec);
    if (ec) {
      log_warning_limited("console", "inner", "console: no inner socket: ",
                          ec.message());
      return close();
    }
    inner_port_ = inner_.local_endpoint(ec).port();
    front_->cfg.ports->add(inner_port_);
    inner_.async_connect({lo, front_->cfg.inner_port},
                         [self = shared_from_this()](error_code ec) {
                           if (ec)
                             return self->close();
                           self->read_outer();
                           self->read_inner();
                         });
  }

  template <class Handler>
  void read_some(asio::mutable_buffer buf, Handler h) {
    if (tls_)
      outer_.async_read_some(buf, std::move(h));
    else
      outer_.next_layer().async_read_some(buf, std::move(h));
  }

  // Peer -> node: every frame header is checked before CAF sees it.
  void read_outer() {
    read_some(asio::buffer(up_), [self = shared_from_this()](error_code ec,
                                                             size_t n) {
      if (ec)
        return self->close();
      self->pass_.clear();
      if (!self->frames_.feed(self->up_.data(), n, self->pass_)) {
        self->front_->count(&console_front_counters::frames_refused);
        log_warning_limited("console", "frame", "closed a console peer: ",
                            self->frames_.why());
        return self->close();
      }
      if (self->frames_.handshake_seen())
        self->deadline_.cancel();
      if (self->pass_.empty())
        return self->read_outer();
      asio::async_write(self->inner_, asio::buffer(self->pass_),
                        [self](error_code ec, size_t) {
                          if (ec)
                            return self->close();
                          self->read_outer();
                        });
    });
  }

  // Node -> peer: CAF's own bytes, passed as they come.
  void read_inner() {
    inner_.async_read_some(asio::buffer(down_), [self = shared_from_this()](
                                                  error_code ec, size_t n) {
      if (ec)
        return self->close();
      auto done = [self](error_code ec, size_t) {
        if (ec)
          return self->close();
        self->read_inner();
      };
      auto buf = asio::buffer(self->down_.data(), n);
      if (self->tls_)
        asio::async_write(self->outer_, buf, done);
      else
        asio::async_write(self->outer_.next_layer(), buf, done);
    });
  }

  front_ptr front_;
  // The context this session started with, kept alive across reloads.
  tls_context_ptr tls_;
  ssl::stream<tcp::socket> outer_;
  tcp::socket inner_;
  asio::steady_timer deadline_;
  basp_frames frames_;
  uint16_t inner_port_ = 0;
  bool closed_ = false;
  std::array<uint8_t, 16384> up_;
  std::array<uint8_t, 16384> down_;
  std::vector<uint8_t> pass_;
};

// TLS 1.2 or later, our certificate, and a client certificate of our CA:
// unlike HTTPS, a console without one has nothing to answer.
caf::expected<tls_context_ptr> make_tls(const console_front_config& cfg) {
  auto ctx = make_server_context({cfg.tls_cert, cfg.tls_key, cfg.tls_ca});
  if (!ctx)
    return bad_config("console.tls-*: " + render(ctx.error()));
  (*ctx)->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  return ctx;
}

} // namespace

void console_front::impl::accept() {
  acceptor.async_accept([self = shared_from_this()](error_code ec,
                                                    tcp::socket socket) {
    if (self->stopped || ec == asio::error::operation_aborted)
      return;
    if (!ec)
      return self->admit(std::move(socket));
    // Out of descriptors (or the like): pause instead of spinning on it.
    self->count(&console_front_counters::accept_errors);
    log_warning_limited("console", "accept", "console: accept failed: ",
                        ec.message(), "; pausing 100ms");
    self->pause.expires_after(std::chrono::milliseconds(100));
    self->pause.async_wait([self](error_code ec) {
      if (!ec && !self->stopped)
        self->accept();
    });
  });
}

void console_front::impl::admit(tcp::socket socket) {
  if (sessions.size() >= cfg.max_connections) {
    count(&console_front_counters::rejected);
    log_warning_limited("console", "full", "console: refused a connection: ",
                        cfg.max_connections, " open (console.max-connections)");
    error_code ignored;
    socket.close(ignored);
  } else {
    count(&console_front_counters::accepted);
    auto s = std::make_shared<session>(std::move(socket), shared_from_this());
    sessions.insert(s);
    s->start();
  }
  accept();
}

console_front::console_front() : impl_(std::make_shared<impl>()) {
}

console_front::~console_front() {
  stop();
}

caf::expected<uint16_t> console_front::start(console_front_config cfg) {
  auto& x = *impl_;
  if (!cfg.tls_cert.empty()) {
    auto ctx = make_tls(cfg);
    if (!ctx)
      return ctx.error();
    x.tls = std::move(*ctx);
  }
  x.cfg = std::move(cfg);
  error_code ec;
  auto addr = asio::ip::make_address(x.cfg.host, ec);
  if (ec)
    return make_error(ec::bad_config, "console.host: not an IP address: "
                                        + x.cfg.host);
  tcp::endpoint ep{addr, x.cfg.port};
  x.acceptor.open(ep.protocol(), ec);
  if (!ec)
    x.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    x.acceptor.bind(ep, ec);
  if (!ec)
    x.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(ec::io_error, "console: cannot listen on " + x.cfg.host
                                      + ":" + std::to_string(x.cfg.port)
                                      + ": " + ec.message());
  auto bound = x.acceptor.local_endpoint().port();
  x.accept();
  auto self = impl_;
  x.thread = std::thread([self] { self->ioc.run(); });
  return bound;
}

void console_front::stop() {
  if (!impl_ || !impl_->thread.joinable())
    return;
  auto self = impl_;
  asio::post(self->ioc, [self] {
    self->stopped = true;
    error_code ec;
    self->acceptor.close(ec);
    self->pause.cancel();
    auto all = self->sessions;
    for (auto& s : all)
      s->close();
  });
  asio::post(self->ioc, [self] { self->ioc.stop(); });
  self->thread.join();
  // Run what the closes queued so the sessions release the front.
  self->ioc.restart();
  self->ioc.poll();
}

caf::error console_front::reload_tls() {
  // cfg is fixed once started; tls itself belongs to the front's thread.
  if (!impl_ || impl_->cfg.tls_cert.empty())
    return caf::none;
  // Read and checked here; swapped on the front's thread, which reads it.
  auto ctx = make_tls(impl_->cfg);
  if (!ctx)
    return ctx.error();
  auto self = impl_;
  asio::post(self->ioc, [self, fresh = std::move(*ctx)] { self->tls = fresh; });
  return caf::none;
}

console_front_counters console_front::counters() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->counts;
}

} // namespace fleetd
