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
#include <boost/beast/ssl.hpp>

#include "messages/error.hpp"
#include "runtime/logger.hpp"
#include "runtime/text.hpp"
#include "runtime/tls_context.hpp"

namespace fleetd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

class session_base;

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
  std::set<std::shared_ptr<session_base>> sessions; // io thread only
  std::atomic<bool> stopped{false}; // read by `respond` on any thread
  // TLS: the files and the context new connections use (swapped on reload).
  tls_files tls;
  tls_context_ptr tls_ctx; // guarded by mtx

  void accept();
  void start_session(tcp::socket socket);
  tls_context_ptr context() {
    std::lock_guard<std::mutex> guard{mtx};
    return tls_ctx;
  }
  void count(int64_t http_server_counters::*field) {
    std::lock_guard<std::mutex> guard{mtx};
    ++(counts.*field);
  }
};

namespace {

// What the server's connection set holds, whatever the stream.
class session_base {
public:
  virtual ~session_base() = default;
  virtual void close() = 0;
};

// One connection; Stream is a tcp_stream or an ssl_stream over one.
template <class Stream>
class session : public session_base,
                public std::enable_shared_from_this<session<Stream>> {
public:
  template <class... Ts>
  session(std::shared_ptr<http_server::impl> server, tcp::socket socket,
          Ts&&... xs)
    : stream_(std::move(socket), std::forward<Ts>(xs)...),
      server_(std::move(server)) {
    beast::error_code ec;
    auto ep = lowest().socket().remote_endpoint(ec);
    if (!ec)
      peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void start() {
    if constexpr (is_tls) {
      // A client that never completes the handshake gets the read time.
      lowest().expires_after(server_->limits.read_timeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](
                                beast::error_code ec) { self->on_handshake(ec); });
    } else {
      read();
    }
  }

  // The context this connection's TLS state was made from outlives it.
  void keep(tls_context_ptr ctx) {
    ctx_ = std::move(ctx);
  }

  void close() override {
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
  }

private:
  static constexpr bool is_tls = !std::is_same_v<Stream, beast::tcp_stream>;

  beast::tcp_stream& lowest() {
    return beast::get_lowest_layer(stream_);
  }

  void on_handshake(beast::error_code ec) {
    if (ec) {
      server_->count(&http_server_counters::tls_handshake_failures);
      log_warning_limited("http", "handshake", "TLS handshake with ", peer_,
                          " failed: ", ec.message());
      finish();
      return;
    }
    if constexpr (is_tls) {
      auto* cert = SSL_get_peer_certificate(stream_.native_handle());
      client_cert_ = cert != nullptr;
      X509_free(cert);
    }
    read();
  }
  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->limits.max_header_bytes));
    parser_->body_limit(server_->limits.max_body_bytes);
    // First byte of a request may take the idle time; the rest the read time.
    lowest().expires_after(server_->limits.idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
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
    if (is_tls && !server_->tls.ca.empty() && !client_cert_) {
      server_->count(&http_server_counters::client_cert_missing);
      log_warning_limited("http", "client_cert", "request from ", peer_,
                          " without a client certificate");
      reply_error(403, "client_certificate_required",
                  "this endpoint requires a client certificate");
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
    req.authorization = std::string(msg[http::field::authorization]);
    req.peer = peer_;
    req.client_cert = client_cert_;
    lowest().expires_never();
    auto self = this->shared_from_this();
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
    lowest().expires_after(server_->limits.read_timeout);
    http::async_write(stream_, *res,
                      [self = this->shared_from_this(), res](beast::error_code ec,
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
    server_->sessions.erase(this->shared_from_this());
  }

  Stream stream_;
  tls_context_ptr ctx_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http_server::impl> server_;
  std::string peer_;
  bool client_cert_ = false;
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
        self->start_session(std::move(socket));
      }
    } else {
      log_warning_limited("http", "accept", "accept failed: ", ec.message());
    }
    self->accept();
  });
}

void http_server::impl::start_session(tcp::socket socket) {
  if (auto ctx = context()) {
    auto s = std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(
      shared_from_this(), std::move(socket), *ctx);
    s->keep(std::move(ctx));
    sessions.insert(s);
    s->start();
  } else {
    auto s = std::make_shared<session<beast::tcp_stream>>(shared_from_this(),
                                                          std::move(socket));
    sessions.insert(s);
    s->start();
  }
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

caf::error http_server::use_tls(const tls_files& files) {
  auto ctx = make_server_context(files);
  if (!ctx)
    return ctx.error();
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->tls = files;
  impl_->tls_ctx = std::move(*ctx);
  return caf::none;
}

caf::error http_server::reload_tls() {
  tls_files files;
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    if (!impl_->tls_ctx)
      return caf::none;
    files = impl_->tls;
  }
  // A bad file keeps the running context: connections go on as before.
  auto ctx = make_server_context(files);
  if (!ctx)
    return ctx.error();
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->tls_ctx = std::move(*ctx);
  return caf::none;
}

http_server_counters http_server::counters() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->counts;
}

} // namespace fleetd
