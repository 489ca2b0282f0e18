#include "runtime/http_server.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// The device build serves plain HTTP only (local ingest): no TLS server.
#ifndef FLEETD_MBEDTLS
#  include <boost/beast/ssl.hpp>
#endif

#include "messages/error.hpp"
#include "messages/stream_codec.hpp"
#include "runtime/logger.hpp"
#include "runtime/text.hpp"
#include "runtime/tls_context.hpp"

namespace fleetd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
#ifndef FLEETD_MBEDTLS
namespace ssl = asio::ssl;
#endif
using tcp = asio::ip::tcp;
using local = asio::local::stream_protocol;
// Plain connections, TCP or Unix, share one stream type: one copy of the
// session's code in the (size-bound) device build.
using plain_stream = beast::basic_stream<asio::generic::stream_protocol>;

namespace {

class session_base;

// The device build serves no sync streams: the session's stream mode is
// never instantiated there.
#ifdef FLEETD_MBEDTLS
constexpr bool serves_streams = false;
#else
constexpr bool serves_streams = true;
#endif

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
  // start_local(): the Unix socket's listener and the path it created.
  local::acceptor local_acceptor{ioc};
  std::string local_path;
  asio::steady_timer accept_pause{ioc};
  std::thread thread;
  mutable std::mutex mtx;
  http_server_counters counts;
  int64_t closed = 0; // guarded by mtx: counts.connections_open from it
  // Connections by accept order (oldest first), and how many per address;
  // io thread only.
  std::map<uint64_t, std::shared_ptr<session_base>> sessions;
  std::map<std::string, size_t> per_address;
  uint64_t next_id = 0;
  // Claimed body bytes held now (io thread writes, counters() reads).
  std::atomic<size_t> inflight{0};
  // Closed when descriptors run out, so one connection can be shed.
  int reserve_fd = -1;
  std::atomic<bool> stopped{false}; // read by `respond` on any thread
  bool streams = false;              // accept_streams() was called
  std::atomic<size_t> streams_open{0};
  // TLS: the files and the context new connections use (swapped on reload).
  tls_files tls;
  tls_context_ptr tls_ctx; // guarded by mtx

  template <class Acceptor>
  void accept(Acceptor& acc);
  template <class Acceptor>
  void on_accept_error(const beast::error_code& ec, Acceptor& acc);
  bool admit(const std::string& address);
  bool evict_one();
  void shed_one(int listener);
  void start_session(tcp::socket socket, std::string address);
  void start_session(local::socket socket, std::string address);
  void forget(uint64_t id, const std::string& address);
  tls_context_ptr context() {
    std::lock_guard<std::mutex> guard{mtx};
    return tls_ctx;
  }
  void count(int64_t http_server_counters::*field) {
    std::lock_guard<std::mutex> guard{mtx};
    ++(counts.*field);
  }
  // Takes `n` body bytes from the in-flight budget; false when it has not.
  bool reserve(size_t n) {
    if (n > limits.max_inflight_bytes - std::min(inflight.load(),
                                                 limits.max_inflight_bytes))
      return false;
    inflight += n;
    return true;
  }
};

namespace {

// What the server's connection set holds, whatever the stream.
class session_base {
public:
  virtual ~session_base() = default;
  virtual void close() = 0;
  // -1: busy with a request (never evicted); 0: has not completed a request
  // (evicted first); 1: idle between requests.
  virtual int eviction_rank() const = 0;
  virtual const std::string& address() const = 0;
};

// "host:port" of a TCP client, "local" of a Unix socket's.
std::string peer_of(const tcp::socket& socket) {
  beast::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  return ec ? std::string{}
            : ep.address().to_string() + ":" + std::to_string(ep.port());
}

std::string peer_of(const local::socket&) {
  return "local";
}

// One connection; Stream is a plain_stream (TCP or Unix) or an ssl_stream
// over a tcp_stream.
template <class Stream>
class session : public session_base,
                public std::enable_shared_from_this<session<Stream>> {
public:
  template <class Socket, class... Ts>
  session(std::shared_ptr<http_server::impl> server, Socket socket,
          uint64_t id, std::string address, Ts&&... xs)
    : peer_(peer_of(socket)),
      stream_(std::move(socket), std::forward<Ts>(xs)...),
      server_(std::move(server)),
      id_(id),
      address_(std::move(address)) {
  }

  // A new connection's handshake and first request header share the header
  // time, which ends at `deadline` (accept + ingest.header-timeout).
  void start(std::chrono::steady_clock::time_point deadline) {
    deadline_ = deadline;
#ifndef FLEETD_MBEDTLS
    if constexpr (is_tls) {
      lowest().expires_at(deadline);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](
                                beast::error_code ec) { self->on_handshake(ec); });
      return;
    }
#endif
    read();
  }

  // The context this connection's TLS state was made from outlives it.
  void keep(tls_context_ptr ctx) {
    ctx_ = std::move(ctx);
  }

  void close() override {
    beast::error_code ec;
    lowest().socket().shutdown(asio::socket_base::shutdown_both, ec);
    lowest().close();
  }

  const std::string& address() const override {
    return address_;
  }

  int eviction_rank() const override {
    if (busy_)
      return -1;
    return completed_ > 0 && !reading_ ? 1 : 0;
  }

private:
  static constexpr bool is_tls = !std::is_same_v<Stream, plain_stream>;

  auto& lowest() {
    return beast::get_lowest_layer(stream_);
  }

  void on_handshake(beast::error_code ec) {
    if (ec == asio::error::operation_aborted) {
      // Closed by the server (evicted, or stop): counted there.
      finish();
      return;
    }
    if (ec) {
      server_->count(ec == beast::error::timeout
                       ? &http_server_counters::header_timeouts
                       : &http_server_counters::tls_handshake_failures);
      log_warning_limited("http", "handshake", "TLS handshake with ", peer_,
                          " failed: ", ec.message());
      finish();
      return;
    }
#ifndef FLEETD_MBEDTLS
    if constexpr (is_tls) {
      auto* cert = SSL_get_peer_certificate(stream_.native_handle());
      client_cert_ = cert != nullptr;
      X509_free(cert);
      if (SSL_session_reused(stream_.native_handle()) == 1)
        server_->count(&http_server_counters::tls_resumed);
    }
#endif
    read();
  }

  // Waits for the first byte of the next request: a keep-alive connection
  // the idle time, a new one what is left of its header time.
  void read() {
    busy_ = false;
    reading_ = false;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->limits.max_header_bytes));
    parser_->body_limit(server_->limits.max_body_bytes);
    if (buffer_.size() > 0) {
      read_header();
      return;
    }
    if (completed_ > 0)
      lowest().expires_after(server_->limits.idle_timeout);
    else
      lowest().expires_at(deadline_);
    stream_.async_read_some(buffer_.prepare(first_read),
                            [self = this->shared_from_this()](
                              beast::error_code ec, size_t n) {
                              self->buffer_.commit(n);
                              if (ec)
                                self->on_header(ec);
                              else
                                self->read_header();
                            });
  }

  // A later request's header gets its own header time from its first byte.
  void read_header() {
    reading_ = true;
    if (completed_ > 0)
      lowest().expires_after(server_->limits.header_timeout);
    else
      lowest().expires_at(deadline_);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](
                              beast::error_code ec, size_t) {
                              self->on_header(ec);
                            });
  }

  // The header is in: take the body's bytes from the in-flight budget and
  // read it at no less than min_body_rate after a grace.
  void on_header(beast::error_code ec) {
    // A new connection's silence counts too; an idle keep-alive's does not.
    if (ec == beast::error::timeout && (reading_ || completed_ == 0)) {
      server_->count(&http_server_counters::header_timeouts);
      log_warning_limited("http", "slow_header", "closed ", peer_,
                          ": request header not complete within ",
                          server_->limits.header_timeout.count(), " ms");
      finish();
      return;
    }
    if (ec || parser_->is_done()) {
      on_read(ec);
      return;
    }
    auto length = parser_->content_length();
    if (!length) {
      server_->count(&http_server_counters::requests_rejected);
      reply_error(411, "length_required",
                  "a request body needs a Content-Length");
      return;
    }
    if (!server_->reserve(*length)) {
      server_->count(&http_server_counters::inflight_refused);
      log_warning_limited("http", "inflight", "503 to ", peer_,
                          ": request bodies in memory at the limit of ",
                          server_->limits.max_inflight_bytes, " bytes");
      reply_error(503, "busy", "too many request bodies in flight; retry",
                  "1");
      return;
    }
    reserved_ = *length;
    body_start_ = std::chrono::steady_clock::now();
    body_received_ = 0;
    read_body();
  }

  // The body must keep pace, not just finish in time: its first n bytes are
  // due by grace + n / min_body_rate after the header, so one that stalls
  // is closed after the grace, whatever length it claims.
  void read_body() {
    auto& lim = server_->limits;
    auto rate = std::max<uint64_t>(lim.min_body_rate, 1);
    lowest().expires_at(body_start_ + lim.header_timeout
                        + std::chrono::milliseconds(body_received_ * 1000
                                                    / rate));
    http::async_read_some(stream_, buffer_, *parser_,
                          [self = this->shared_from_this()](
                            beast::error_code ec, size_t n) {
                            self->body_received_ += n;
                            if (ec || self->parser_->is_done())
                              self->on_body(ec);
                            else
                              self->read_body();
                          });
  }

  void on_body(beast::error_code ec) {
    if (ec == beast::error::timeout) {
      server_->count(&http_server_counters::body_timeouts);
      log_warning_limited("http", "slow_body", "closed ", peer_,
                          ": request body slower than ",
                          server_->limits.min_body_rate, " bytes/s");
      finish();
      return;
    }
    on_read(ec);
  }

  void on_read(beast::error_code ec) {
    // A request read just before stop() must not reach the application.
    if (server_->stopped) {
      finish();
      return;
    }
    if (ec == http::error::end_of_stream || ec == beast::error::timeout
        || ec == asio::error::operation_aborted || ec == asio::error::eof
        || ec == asio::error::connection_reset) {
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
      log_limited(log_level::debug, "http", "bad_request", "bad request from ",
                  peer_, ": ", ec.message());
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
    dispatch();
  }

  // Hands the request to the application; the reply comes back via write.
  void dispatch() {
    server_->count(&http_server_counters::requests);
    busy_ = true;
    auto& msg = parser_->get();
    if constexpr (serves_streams)
      if (server_->streams && msg.method() == http::verb::get
          && msg.target() == stream_target
          && beast::iequals(msg[http::field::upgrade], stream_protocol)) {
        upgrade(std::string(msg[http::field::authorization]));
        return;
      }
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    http_request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.content_type = std::string(msg[http::field::content_type]);
    req.content_encoding = std::string(msg[http::field::content_encoding]);
    req.body = std::move(msg.body());
    req.authorization = std::string(msg[http::field::authorization]);
    hand_over(std::move(req), false);
  }

  // GET /v5/stream: 101, then frames until either side closes; past
  // max_streams a 503, and the client stays on HTTP.
  void upgrade(std::string authorization) {
    if (server_->streams_open >= server_->limits.max_streams) {
      server_->count(&http_server_counters::streams_refused);
      version_ = 11;
      keep_alive_ = true;
      write(text_reply(503, "busy", "too many sync streams; use HTTP"), "1");
      return;
    }
    ++server_->streams_open;
    server_->count(&http_server_counters::streams_opened);
    decoder_ = std::make_shared<stream_decompressor>();
    stream_auth_ = std::move(authorization);
    auto res = std::make_shared<http::response<http::empty_body>>(
      http::status::switching_protocols, 11);
    res->set(http::field::connection, "Upgrade");
    res->set(http::field::upgrade, stream_protocol);
    lowest().expires_after(server_->limits.read_timeout);
    http::async_write(stream_, *res,
                      [self = this->shared_from_this(), res](
                        beast::error_code ec, size_t) {
                        if (ec)
                          self->finish();
                        else
                          self->read_frame();
                      });
  }

  // Stream mode: the next frame whole in buffer_ (idle time before its
  // first byte, then the body's pace), or the connection closed.
  void read_frame() {
    busy_ = false;
    auto& lim = server_->limits;
    auto data = buffer_.data();
    std::string_view have(static_cast<const char*>(data.data()), data.size());
    size_t at = 0;
    uint64_t len = 0;
    auto end = frame_end(have, lim.max_body_bytes, at, &len);
    if (!end) {
      server_->count(&http_server_counters::stream_frames_rejected);
      log_warning_limited("http", "stream_frame", "closed stream of ", peer_,
                          ": ", render(end.error()));
      finish();
      return;
    }
    if (at > 0 && reserved_ == 0) {
      if (!server_->reserve(static_cast<size_t>(len))) {
        server_->count(&http_server_counters::inflight_refused);
        log_warning_limited("http", "inflight", "closed stream of ", peer_,
                            ": request bodies in memory at the limit");
        finish();
        return;
      }
      reserved_ = static_cast<size_t>(len);
    }
    if (*end > 0) {
      dispatch_frame(at, *end);
      return;
    }
    if (have.empty()) {
      reading_ = false;
      lowest().expires_after(lim.idle_timeout);
    } else {
      if (!reading_)
        body_start_ = std::chrono::steady_clock::now();
      reading_ = true;
      auto rate = std::max<uint64_t>(lim.min_body_rate, 1);
      lowest().expires_at(body_start_ + lim.header_timeout
                          + std::chrono::milliseconds(have.size() * 1000
                                                      / rate));
    }
    size_t want = reserved_ > 0 ? at + reserved_ - have.size() : first_read;
    stream_.async_read_some(
      buffer_.prepare(std::min<size_t>(want, 64 * 1024)),
      [self = this->shared_from_this()](beast::error_code ec, size_t n) {
        self->buffer_.commit(n);
        if (ec) {
          if (ec == beast::error::timeout && self->reading_)
            self->server_->count(&http_server_counters::body_timeouts);
          self->finish();
          return;
        }
        self->read_frame();
      });
  }

  void dispatch_frame(size_t at, size_t end) {
    server_->count(&http_server_counters::requests);
    server_->count(&http_server_counters::stream_frames);
    busy_ = true;
    reading_ = false;
    auto data = buffer_.data();
    http_request req;
    req.method = "POST";
    req.target = stream_target;
    req.body.assign(static_cast<const char*>(data.data()) + at, end - at);
    buffer_.consume(end);
    req.authorization = stream_auth_;
    req.stream = decoder_;
    hand_over(std::move(req), true);
  }

  // To the application; its answer is written as a response or a frame.
  void hand_over(http_request req, bool frame) {
    req.peer = peer_;
    req.client_cert = client_cert_;
    lowest().expires_never();
    auto self = this->shared_from_this();
    auto& ioc = server_->ioc;
    // The reply may come from any thread: hop back onto the io thread.
    server_->handler(std::move(req), [self, &ioc, frame](http_reply rep) {
      // After stop() nothing runs the loop: a posted write would only keep
      // the session and the server alive.
      if (self->server_->stopped)
        return;
      asio::post(ioc, [self, frame, rep = std::move(rep)]() mutable {
        ++self->completed_;
        if constexpr (serves_streams)
          if (frame) {
            self->write_frame(rep);
            return;
          }
        self->write(std::move(rep));
      });
    });
  }

  // Any answer but 200 ends the stream (the client does the same): its
  // context may be unusable, and a new one costs one upgrade.
  void write_frame(const http_reply& rep) {
    release();
    auto out = std::make_shared<std::string>(encode_answer_frame(rep, ""));
    lowest().expires_after(server_->limits.read_timeout);
    asio::async_write(stream_, asio::buffer(*out),
                      [self = this->shared_from_this(), out,
                       last = rep.status != 200](beast::error_code ec,
                                                 size_t) {
                        if (ec || last)
                          self->finish();
                        else
                          self->read_frame();
                      });
  }

  // The request could not be read whole: answer, then close.
  void reply_error(unsigned status, const char* code, const std::string& why,
                   const char* retry_after = nullptr) {
    keep_alive_ = false;
    busy_ = true;
    write(text_reply(static_cast<uint16_t>(status), code, why), retry_after);
  }

  void write(http_reply rep, const char* retry_after = nullptr) {
    // The application has the body no more: its bytes leave the budget.
    release();
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version_);
    res->result(rep.status);
    if (!rep.content_type.empty())
      res->set(http::field::content_type, rep.content_type);
    if (retry_after != nullptr)
      res->set(http::field::retry_after, retry_after);
    else if (rep.retry_after_s > 0)
      res->set(http::field::retry_after, std::to_string(rep.retry_after_s));
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

  void release() {
    server_->inflight -= reserved_;
    reserved_ = 0;
  }

  void finish() {
    release();
    if (decoder_) {
      decoder_.reset();
      --server_->streams_open;
    }
    close();
    server_->forget(id_, address_);
  }

  static constexpr size_t first_read = 1024;

  std::string peer_;
  Stream stream_;
  tls_context_ptr ctx_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http_server::impl> server_;
  uint64_t id_;
  std::string address_;
  size_t reserved_ = 0;
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::steady_clock::time_point body_start_;
  uint64_t body_received_ = 0;
  int64_t completed_ = 0;
  bool busy_ = false;
  bool reading_ = false;
  bool client_cert_ = false;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  // Stream mode (after a 101): the zstd context and the upgrade's token.
  std::shared_ptr<stream_decompressor> decoder_;
  std::string stream_auth_;
};

#ifndef FLEETD_MBEDTLS
using tls_session = session<beast::ssl_stream<beast::tcp_stream>>;

// A TLS connection before its first byte: only the socket and a timer, no
// TLS state yet (Asio's stream holds some 70 KiB of buffers), so a silent
// client costs next to nothing. Its first byte starts the handshake within
// what is left of the header time.
class tls_waiter : public session_base,
                   public std::enable_shared_from_this<tls_waiter> {
public:
  tls_waiter(std::shared_ptr<http_server::impl> server, tcp::socket socket,
             uint64_t id, std::string address, tls_context_ptr ctx)
    : socket_(std::move(socket)),
      timer_(socket_.get_executor()),
      server_(std::move(server)),
      id_(id),
      address_(std::move(address)),
      ctx_(std::move(ctx)),
      deadline_(std::chrono::steady_clock::now()
                + server_->limits.header_timeout) {
  }

  void start() {
    timer_.expires_at(deadline_);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      self->on_timeout(ec);
    });
    wait_readable();
  }

  void close() override {
    beast::error_code ec;
    timer_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  int eviction_rank() const override {
    return 0;
  }

  const std::string& address() const override {
    return address_;
  }

private:
  void wait_readable() {
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](beast::error_code ec) {
                         self->on_readable(ec);
                       });
  }

  void on_timeout(beast::error_code ec) {
    if (ec || done_)
      return;
    done_ = true;
    server_->count(&http_server_counters::header_timeouts);
    log_warning_limited("http", "handshake", "closed ", address_,
                        ": no TLS handshake within ",
                        server_->limits.header_timeout.count(), " ms");
    close();
    server_->forget(id_, address_);
  }

  // The client spoke: the connection becomes a TLS session in its slot.
  void on_readable(beast::error_code ec) {
    if (done_)
      return;
    char byte;
    auto peeked = ::recv(socket_.native_handle(), &byte, 1,
                         MSG_PEEK | MSG_DONTWAIT);
    if (!ec && peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // Woken with nothing to read (the reactor may): wait on, in time.
      wait_readable();
      return;
    }
    done_ = true;
    timer_.cancel();
    auto slot = server_->sessions.find(id_);
    // Readable because it closed without a byte: nothing to handshake with.
    if (ec || slot == server_->sessions.end() || peeked <= 0) {
      close();
      server_->forget(id_, address_);
      return;
    }
    auto s = std::make_shared<tls_session>(server_, std::move(socket_), id_,
                                           address_, *ctx_);
    s->keep(std::move(ctx_));
    slot->second = s;
    s->start(deadline_);
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  std::shared_ptr<http_server::impl> server_;
  uint64_t id_;
  std::string address_;
  tls_context_ptr ctx_;
  std::chrono::steady_clock::time_point deadline_;
  bool done_ = false;
};
#endif // FLEETD_MBEDTLS

} // namespace

template <class Acceptor>
void http_server::impl::accept(Acceptor& acc) {
  using socket_type = typename Acceptor::protocol_type::socket;
  acc.async_accept([self = shared_from_this(), &acc](beast::error_code ec,
                                                     socket_type socket) {
    if (self->stopped || ec == asio::error::operation_aborted)
      return;
    if (ec) {
      self->on_accept_error(ec, acc);
      return;
    }
    beast::error_code aec;
    std::string address = "local";
    // A Unix socket's peers have no address: they share one.
    if constexpr (std::is_same_v<socket_type, tcp::socket>)
      address = socket.remote_endpoint(aec).address().to_string();
    if (aec || !self->admit(address)) {
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      self->count(&http_server_counters::connections_accepted);
      self->start_session(std::move(socket), std::move(address));
    }
    self->accept(acc);
  });
}

// Out of descriptors: free one (an evicted connection, else the reserve to
// shed the waiting one) and pause, so the loop neither spins nor floods.
template <class Acceptor>
void http_server::impl::on_accept_error(const beast::error_code& ec,
                                        Acceptor& acc) {
  auto no_fds = ec == asio::error::no_descriptors
                || ec.value() == ENFILE;
  if (no_fds) {
    count(&http_server_counters::accept_descriptor_exhausted);
    if (!evict_one())
      shed_one(acc.native_handle());
  }
  log_warning_limited("http", "accept", "accept failed: ", ec.message(),
                      "; pausing ", limits.accept_backoff.count(), " ms");
  accept_pause.expires_after(limits.accept_backoff);
  accept_pause.async_wait([self = shared_from_this(), &acc](beast::error_code) {
    if (!self->stopped)
      self->accept(acc);
  });
}

// Closes the reserve descriptor, accepts and closes one waiting connection,
// then takes the reserve back.
void http_server::impl::shed_one(int listener) {
  if (reserve_fd >= 0)
    ::close(reserve_fd);
  int fd = ::accept4(listener, nullptr, nullptr,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) {
    ::close(fd);
    count(&http_server_counters::connections_shed);
  }
  reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

// Per-address limit, then a slot: when full, the oldest connection that
// has not completed a request (else the oldest idle one) makes room.
bool http_server::impl::admit(const std::string& address) {
  if (per_address[address] >= limits.max_connections_per_address) {
    count(&http_server_counters::connections_over_address_limit);
    log_warning_limited("http", "per_address", "closed a connection from ",
                        printable(address, 64), ": it holds ",
                        limits.max_connections_per_address, " already");
    return false;
  }
  if (sessions.size() >= limits.max_connections && !evict_one()) {
    count(&http_server_counters::connections_rejected);
    return false;
  }
  return true;
}

bool http_server::impl::evict_one() {
  for (int rank = 0; rank <= 1; ++rank)
    for (auto& [id, s] : sessions)
      if (s->eviction_rank() == rank) {
        count(&http_server_counters::connections_evicted);
        // Its pending operation sees the closed socket and ends it; the
        // slot is free now.
        auto victim = s;
        victim->close();
        forget(id, victim->address());
        return true;
      }
  return false;
}

void http_server::impl::start_session(tcp::socket socket, std::string address) {
  auto id = next_id++;
  ++per_address[address];
#ifndef FLEETD_MBEDTLS
  if (auto ctx = context()) {
    auto w = std::make_shared<tls_waiter>(shared_from_this(), std::move(socket),
                                          id, address, std::move(ctx));
    sessions.emplace(id, w);
    w->start();
    return;
  }
#endif
  auto s = std::make_shared<session<plain_stream>>(
    shared_from_this(), std::move(socket), id, address);
  sessions.emplace(id, s);
  s->start(std::chrono::steady_clock::now() + limits.header_timeout);
}

void http_server::impl::start_session(local::socket socket,
                                      std::string address) {
  auto id = next_id++;
  ++per_address[address];
  auto s = std::make_shared<session<plain_stream>>(
    shared_from_this(), std::move(socket), id, address);
  sessions.emplace(id, s);
  s->start(std::chrono::steady_clock::now() + limits.header_timeout);
}

void http_server::impl::forget(uint64_t id, const std::string& address) {
  if (sessions.erase(id) == 0)
    return;
  {
    std::lock_guard<std::mutex> guard{mtx};
    ++closed;
  }
  auto i = per_address.find(address);
  if (i != per_address.end() && --i->second == 0)
    per_address.erase(i);
}

std::vector<std::pair<std::string, int64_t>>
named_counters(const http_server_counters& x) {
  return {{"connections_accepted", x.connections_accepted},
          {"connections_rejected", x.connections_rejected},
          {"connections_over_address_limit", x.connections_over_address_limit},
          {"connections_evicted", x.connections_evicted},
          {"connections_shed", x.connections_shed},
          {"connections_open", x.connections_open},
          {"requests", x.requests},
          {"requests_rejected", x.requests_rejected},
          {"header_timeouts", x.header_timeouts},
          {"body_timeouts", x.body_timeouts},
          {"inflight_refused", x.inflight_refused},
          {"inflight_bytes", x.inflight_bytes},
          {"accept_descriptor_exhausted", x.accept_descriptor_exhausted},
          {"tls_handshake_failures", x.tls_handshake_failures},
          {"tls_resumed", x.tls_resumed},
          {"client_cert_missing", x.client_cert_missing},
          {"streams_opened", x.streams_opened},
          {"streams_open", x.streams_open},
          {"stream_frames", x.stream_frames},
          {"stream_frames_rejected", x.stream_frames_rejected},
          {"streams_refused", x.streams_refused}};
}

http_server::http_server(http_limits limits, handler_fn handler)
  : impl_(std::make_shared<impl>()) {
  impl_->limits = limits;
  impl_->handler = std::move(handler);
}

http_server::~http_server() {
  stop();
  if (impl_->reserve_fd >= 0)
    ::close(impl_->reserve_fd);
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
  // Accepts that shed a connection must never block.
  if (!ec)
    acc.native_non_blocking(true, ec);
  if (impl_->reserve_fd < 0)
    impl_->reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  auto bound = acc.local_endpoint().port();
  impl_->accept(acc);
  auto self = impl_;
  impl_->thread = std::thread([self] { self->ioc.run(); });
  return bound;
}

caf::error http_server::start_local(const std::string& path) {
  auto fail = [&](const std::string& why) {
    return make_error(ec::io_error, "cannot listen on " + path + ": " + why);
  };
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
    return make_error(ec::bad_config, "a Unix socket path needs 1 to "
                                        + std::to_string(
                                          sizeof(sockaddr_un::sun_path) - 1)
                                        + " bytes: " + path);
  beast::error_code ec;
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    // A socket an earlier run left is replaced; a live one or a file is not.
    if (!S_ISSOCK(st.st_mode))
      return fail("it exists and is not a socket");
    local::socket probe{impl_->ioc};
    probe.connect(local::endpoint{path}, ec);
    if (!ec)
      return fail("another program serves it");
    ::unlink(path.c_str());
  }
  auto& acc = impl_->local_acceptor;
  acc.open(local{}, ec);
  if (!ec)
    acc.bind(local::endpoint{path}, ec);
  if (!ec)
    acc.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec)
    acc.native_non_blocking(true, ec);
  if (ec)
    return fail(ec.message());
  impl_->local_path = path;
  // Owner and group: who may write is who is in fleetd's group.
  ::chmod(path.c_str(), 0660);
  if (impl_->reserve_fd < 0)
    impl_->reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  impl_->accept(acc);
  auto self = impl_;
  impl_->thread = std::thread([self] { self->ioc.run(); });
  return caf::none;
}

void http_server::stop() {
  if (!impl_ || impl_->stopped)
    return;
  auto self = impl_;
  auto shutdown = [self] {
    self->stopped = true;
    beast::error_code ec;
    self->acceptor.close(ec);
    self->local_acceptor.close(ec);
    if (!self->local_path.empty())
      ::unlink(self->local_path.c_str());
    for (auto& kv : self->sessions)
      kv.second->close();
    self->per_address.clear();
    self->accept_pause.cancel();
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

http_reply text_reply(uint16_t status, const std::string& code,
                      std::string text) {
  http_reply out;
  out.status = status;
  out.content_type = "text/plain";
  if (status >= 400)
    out.error = code + ": " + text;
  out.body = std::move(text) + "\n";
  return out;
}

void http_server::accept_streams() {
  impl_->streams = true;
}

caf::error http_server::use_tls(const tls_files& files) {
#ifdef FLEETD_MBEDTLS
  return make_error(ec::tls_error, "the device build serves no HTTPS ("
                                     + files.cert + ")");
#else
  auto ctx = make_server_context(files);
  if (!ctx)
    return ctx.error();
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->tls = files;
  impl_->tls_ctx = std::move(*ctx);
  return caf::none;
#endif
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
  auto out = impl_->counts;
  out.connections_open = out.connections_accepted - impl_->closed;
  out.inflight_bytes = static_cast<int64_t>(impl_->inflight.load());
  out.streams_open = static_cast<int64_t>(impl_->streams_open.load());
  return out;
}

} // namespace fleetd
