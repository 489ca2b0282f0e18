#include "runtime/http_server.hpp"

#include <atomic>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "messages/error.hpp"
#include "runtime/logger.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

class session;

// Every error answer names its code and message here, so `curl -v` shows
// why even when the body is protobuf.
constexpr const char* error_header = "X-Fleetd-Error";
constexpr size_t max_error_header = 256;

} // namespace

struct http_server::impl : std::enable_shared_from_this<http_server::impl> {
  http_limits limits;
  handler_fn handler;
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  std::thread thread;
  std::mutex mtx;
  http_server_counters counts;
  std::set<std::shared_ptr<session>> sessions; // io thread only
  std::atomic<bool> stopped{false}; // read by `respond` on any thread

  void accept();
  void count(int64_t http_server_counters::*field) {
    std::lock_guard<std::mutex> guard{mtx};
    ++(counts.*field);
  }
};

namespace {

class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket socket, std::shared_ptr<http_server::impl> server)
    : stream_(std::move(socket)), server_(std::move(server)) {
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec)
      peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void start() {
    read();
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

private:
  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->limits.max_header_bytes));
    parser_->body_limit(server_->limits.max_body_bytes);
    // First byte of a request may take the idle time; the rest the read time.
    stream_.expires_after(server_->limits.idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    // A request read just before stop() must not reach the application.
    if (server_->stopped) {
      finish();
      return;
    }
    if (ec == http::error::end_of_stream || ec == beast::error::timeout
        || ec == asio::error::operation_aborted) {
      finish();
      return;
    }
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      server_->count(&http_server_counters::requests_rejected);
      log_warning_limited("http", "rejected", "rejected request from ", peer_,
                          ": ", ec.message());
      reply_error(ec == http::error::body_limit ? 413 : 431, "too_large",
                  ec.message());
      return;
    }
    if (ec) {
      server_->count(&http_server_counters::requests_rejected);
      log_debug("http", "bad request from ", peer_, ": ", ec.message());
      reply_error(400, "bad_request", ec.message());
      return;
    }
    server_->count(&http_server_counters::requests);
    auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    http_request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.content_type = std::string(msg[http::field::content_type]);
    req.content_encoding = std::string(msg[http::field::content_encoding]);
    req.body = std::move(msg.body());
    req.peer = peer_;
    stream_.expires_never();
    auto self = shared_from_this();
    auto& ioc = server_->ioc;
    // The reply may come from any thread: hop back onto the io thread.
    server_->handler(std::move(req), [self, &ioc](http_reply rep) {
      // After stop() nothing runs the loop: a posted write would only keep
      // the session and the server alive.
      if (self->server_->stopped)
        return;
      asio::post(ioc, [self, rep = std::move(rep)]() mutable {
        self->write(std::move(rep));
      });
    });
  }

  // The request could not be read whole: answer, then close.
  void reply_error(unsigned status, const char* code, const std::string& why) {
    keep_alive_ = false;
    http_reply rep;
    rep.status = static_cast<uint16_t>(status);
    rep.content_type = "text/plain";
    rep.error = code + (": " + why);
    rep.body = why + "\n";
    write(std::move(rep));
  }

  void write(http_reply rep) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version_);
    res->result(rep.status);
    res->set(http::field::server, "fleetd-cloud");
    if (!rep.content_type.empty())
      res->set(http::field::content_type, rep.content_type);
    if (rep.status >= 400) {
      auto text = rep.error;
      if (text.empty())
        text = "http_" + std::to_string(rep.status) + ": "
               + std::string(obsolete_reason(res->result()));
      // A message may quote input: printable and bounded.
      res->set(error_header, printable(text, max_error_header));
    }
    res->keep_alive(keep_alive_);
    res->body() = std::move(rep.body);
    res->prepare_payload();
    stream_.expires_after(server_->limits.read_timeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec,
                                                       size_t) {
                        if (ec || !res->keep_alive()) {
                          self->finish();
                          return;
                        }
                        self->read();
                      });
  }

  void finish() {
    close();
    server_->sessions.erase(shared_from_this());
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http_server::impl> server_;
  std::string peer_;
  bool keep_alive_ = true;
  unsigned version_ = 11;
};

} // namespace

void http_server::impl::accept() {
  acceptor.async_accept([self = shared_from_this()](beast::error_code ec,
                                                    tcp::socket socket) {
    if (self->stopped || ec == asio::error::operation_aborted)
      return;
    if (!ec) {
      if (self->sessions.size() >= self->limits.max_connections) {
        self->count(&http_server_counters::connections_rejected);
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        self->count(&http_server_counters::connections_accepted);
        auto s = std::make_shared<session>(std::move(socket), self);
        self->sessions.insert(s);
        s->start();
      }
    } else {
      log_warning_limited("http", "accept", "accept failed: ", ec.message());
    }
    self->accept();
  });
}

http_server::http_server(http_limits limits, handler_fn handler)
  : impl_(std::make_shared<impl>()) {
  impl_->limits = limits;
  impl_->handler = std::move(handler);
}

http_server::~http_server() {
  stop();
}

caf::expected<uint16_t> http_server::start(const std::string& host,
                                           uint16_t port) {
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec)
    return make_error(ec::bad_config, "not an IP address: " + host);
  tcp::endpoint ep{addr, port};
  auto& acc = impl_->acceptor;
  acc.open(ep.protocol(), ec);
  if (!ec)
    acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    acc.bind(ep, ec);
  if (!ec)
    acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(ec::io_error, "cannot listen on " + host + ":"
                                      + std::to_string(port) + ": "
                                      + ec.message());
  auto bound = acc.local_endpoint().port();
  impl_->accept();
  auto self = impl_;
  impl_->thread = std::thread([self] { self->ioc.run(); });
  return bound;
}

void http_server::stop() {
  if (!impl_ || impl_->stopped)
    return;
  auto self = impl_;
  auto shutdown = [self] {
    self->stopped = true;
    beast::error_code ec;
    self->acceptor.close(ec);
    for (auto& s : self->sessions)
      s->close();
    self->sessions.clear();
  };
  if (self->thread.joinable()) {
    asio::post(self->ioc, shutdown);
    // Let pending handlers see the closed sockets, then stop the loop.
    asio::post(self->ioc, [self] { self->ioc.stop(); });
    self->thread.join();
  } else {
    // Never started (or failed to): nothing runs the loop.
    shutdown();
  }
  // Closing the sockets queued the aborted accept and reads behind the stop;
  // each holds the server (and sessions) alive, and the io_context holding
  // them is owned by the server: run them now so the cycle breaks and the
  // handler, the io_context and the sessions are released.
  self->ioc.restart();
  self->ioc.poll();
  self->stopped = true;
}

http_server_counters http_server::counters() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->counts;
}

} // namespace fleetd
