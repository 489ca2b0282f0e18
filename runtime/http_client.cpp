#include "runtime/http_client.hpp"

#include <cstring>
#include <optional>

#include <poll.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#ifndef FLEETD_MBEDTLS
#  include <boost/asio/ssl/host_name_verification.hpp>
#  include <boost/beast/ssl.hpp>
#endif

#include "messages/error.hpp"
#include "messages/stream_codec.hpp"
#include "runtime/tls_context.hpp"

namespace fleetd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// The server closed the connection (over TLS often without close_notify).
bool closed_by_peer(const beast::error_code& ec) {
#ifdef FLEETD_MBEDTLS
  return ec == http::error::end_of_stream || ec == asio::error::eof;
#else
  return ec == http::error::end_of_stream
         || ec == asio::ssl::error::stream_truncated;
#endif
}

#ifdef FLEETD_MBEDTLS
using tls_stream = mbed::stream<beast::tcp_stream>;
#else
using tls_stream = beast::ssl_stream<beast::tcp_stream>;
#endif

} // namespace

struct http_client::impl {
  std::string host;
  uint16_t port;
  std::chrono::milliseconds timeout;
  size_t max_response_bytes;
  asio::io_context ioc{1};
  tls_context_ptr tls; // null: plain HTTP
  // One of the two is open while connected.
  std::optional<beast::tcp_stream> plain;
  std::optional<tls_stream> secure;
  beast::flat_buffer buffer;
  // Set once the connection was upgraded to a sync stream.
  std::unique_ptr<stream_compressor> streaming;

  bool connected() const {
    return plain || secure;
  }

  beast::tcp_stream& lowest() {
    return secure ? beast::get_lowest_layer(*secure) : *plain;
  }

  // An idle keep-alive connection with something to read was closed (or is
  // being closed) by the server: a request written there would be lost and
  // sent again, so the caller opens a new one instead.
  bool stale() {
    pollfd p{lowest().socket().native_handle(), POLLIN | POLLRDHUP, 0};
    return buffer.size() > 0 || ::poll(&p, 1, 0) != 0;
  }

  void reset() {
    plain.reset();
    secure.reset();
    buffer.clear();
    streaming.reset();
  }

  // Runs the io loop until the operation started by `start` completes.
  template <class Start>
  void run(Start&& start) {
    start();
    ioc.restart();
    ioc.run();
  }

  caf::error connect() {
    reset();
    if (tls)
      secure.emplace(ioc, *tls);
    else
      plain.emplace(ioc);
    buffer.clear();
    tcp::resolver resolver{ioc};
    beast::error_code ec;
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec)
      return make_error(ec::unreachable, "cannot resolve " + host + ": "
                                           + ec.message());
    lowest().expires_after(timeout);
    run([&] {
      lowest().async_connect(results,
                             [&](beast::error_code e, const tcp::endpoint&) {
                               ec = e;
                             });
    });
    if (ec) {
      reset();
      return make_error(ec::unreachable, "cannot connect to " + host + ":"
                                           + std::to_string(port) + ": "
                                           + ec.message());
    }
    lowest().socket().set_option(tcp::no_delay(true), ec);
    return secure ? handshake() : caf::none;
  }

  // TLS: SNI and the server certificate checked against the host name.
  caf::error handshake() {
    if (!expect_host()) {
      reset();
      return make_error(ec::unreachable, "cannot set TLS server name " + host);
    }
    offer_session();
    session_kept = false;
    beast::error_code ec;
    run([&] {
      secure->async_handshake(tls_api::stream_base::client,
                              [&](beast::error_code e) { ec = e; });
    });
    if (ec) {
      auto why = verify_failure();
      if (why.empty())
        why = ec.message();
      reset();
      return make_error(ec::tls_error, "TLS handshake with " + host + ":"
                                         + std::to_string(port)
                                         + " failed: " + why);
    }
    if (session_reused())
      ++resumed;
    return caf::none;
  }

  // TLS session resumption: a device syncing every few minutes, past the
  // server's idle timeout, reconnects each time; a resumed handshake skips
  // the certificates (0.5-4 KB each time). The session kept is the one the
  // last exchange ended with (a TLS 1.3 ticket comes after the handshake).
  int64_t resumed = 0;
  // Kept once a connection, after its first exchange: a copy each exchange
  // would re-parse the server's certificate (mbedTLS) for nothing.
  bool session_kept = false;
#ifdef FLEETD_MBEDTLS
  mbedtls_ssl_session saved_session;
  bool has_saved_session = false;
  std::string offered_id;

  impl() {
    mbedtls_ssl_session_init(&saved_session);
  }
  ~impl() {
    mbedtls_ssl_session_free(&saved_session);
  }

  void offer_session() {
    offered_id.clear();
    if (has_saved_session
        && mbedtls_ssl_set_session(secure->native_handle(), &saved_session)
             == 0)
      offered_id.assign(reinterpret_cast<const char*>(saved_session.id),
                        saved_session.id_len);
  }

  // A server that takes the session (or its ticket) answers its id.
  bool session_reused() {
    auto* s = secure->native_handle()->session;
    return !offered_id.empty() && s != nullptr
           && offered_id.size() == s->id_len
           && std::memcmp(offered_id.data(), s->id, s->id_len) == 0;
  }

  void keep_session() {
    forget_session();
    has_saved_session
      = mbedtls_ssl_get_session(secure->native_handle(), &saved_session) == 0;
  }

  void forget_session() {
    mbedtls_ssl_session_free(&saved_session);
    mbedtls_ssl_session_init(&saved_session);
    has_saved_session = false;
  }
#else
  SSL_SESSION* saved_session = nullptr;

  ~impl() {
    if (saved_session)
      SSL_SESSION_free(saved_session);
  }

  void offer_session() {
    if (saved_session)
      SSL_set_session(secure->native_handle(), saved_session);
  }

  bool session_reused() {
    return SSL_session_reused(secure->native_handle()) == 1;
  }

  // A copy: OpenSSL marks the connection's own session not resumable when
  // the connection ends without a close_notify, as an idle one does.
  void keep_session() {
    auto* s = SSL_get_session(secure->native_handle());
    if (!s || !SSL_SESSION_is_resumable(s))
      return;
    auto* copy = SSL_SESSION_dup(s);
    if (!copy)
      return;
    forget_session();
    saved_session = copy;
  }

  void forget_session() {
    if (saved_session)
      SSL_SESSION_free(saved_session);
    saved_session = nullptr;
  }
#endif

#ifdef FLEETD_MBEDTLS
  bool expect_host() {
    return secure->tls().set_host_name(host);
  }

  std::string verify_failure() {
    return secure->tls().verify_failure();
  }
#else
  bool expect_host() {
    beast::error_code ec;
    asio::ip::make_address(host, ec);
    if (ec && !SSL_set_tlsext_host_name(secure->native_handle(), host.c_str()))
      return false;
    secure->set_verify_callback(asio::ssl::host_name_verification(host));
    return true;
  }

  std::string verify_failure() {
    auto verify = SSL_get_verify_result(secure->native_handle());
    return verify == X509_V_OK ? std::string{}
                               : X509_verify_cert_error_string(verify);
  }
#endif

  template <class Stream>
  std::optional<http_response>
  exchange_on(Stream& stream, http::request<http::string_body>& req,
              beast::error_code& ec, bool& wrote_nothing);

  std::optional<http_response>
  exchange(http::request<http::string_body>& req, beast::error_code& ec,
           bool& wrote_nothing) {
    if (secure)
      return exchange_on(*secure, req, ec, wrote_nothing);
    return exchange_on(*plain, req, ec, wrote_nothing);
  }

  // `unanswered`: the write failed, or the peer closed before any byte of
  // an answer (a stream it had just ended): safe to send again.
  template <class Stream>
  caf::expected<http_response> frame_on(Stream& stream,
                                        const std::string& framed,
                                        bool& unanswered);

  caf::expected<http_response> frame(const std::string& framed,
                                     bool& unanswered) {
    if (secure)
      return frame_on(*secure, framed, unanswered);
    return frame_on(*plain, framed, unanswered);
  }

};

// One exchange on the open stream; `ec` tells why it failed.
template <class Stream>
std::optional<http_response>
http_client::impl::exchange_on(Stream& stream,
                             http::request<http::string_body>& req,
                             beast::error_code& ec, bool& wrote_nothing) {
  wrote_nothing = true;
  lowest().expires_after(timeout);
  http::async_write(stream, req, [&](beast::error_code e, size_t n) {
    ec = e;
    if (n > 0)
      wrote_nothing = false;
  });
  ioc.restart();
  ioc.run();
  if (ec)
    return std::nullopt;
  http::response_parser<http::string_body> parser;
  parser.body_limit(max_response_bytes);
  lowest().expires_after(timeout);
  bool got_bytes = false;
  // The header first: Beast 1.74 loses a response's body_limit error when
  // it parses eagerly (as async_read does) and body bytes arrive together
  // with the header, so the limit is checked here before the body is read.
  http::async_read_header(stream, buffer, parser,
                          [&](beast::error_code e, size_t n) {
                            ec = e;
                            got_bytes = n > 0;
                          });
  ioc.restart();
  ioc.run();
  if (ec) {
    // A stale keep-alive connection closes before answering anything.
    wrote_nothing = !got_bytes && closed_by_peer(ec);
    return std::nullopt;
  }
  if (auto len = parser.content_length(); len && *len > max_response_bytes) {
    ec = http::error::body_limit;
    return std::nullopt;
  }
  if (!parser.is_done()) {
    http::async_read(stream, buffer, parser,
                     [&](beast::error_code e, size_t) { ec = e; });
    ioc.restart();
    ioc.run();
    if (ec)
      return std::nullopt;
  }
  if (secure && !session_kept) {
    keep_session();
    session_kept = true;
  }
  auto& res = parser.get();
  http_response out;
  out.status = res.result_int();
  out.content_type = std::string(res[http::field::content_type]);
  out.retry_after = std::string(res[http::field::retry_after]);
  out.error = std::string(res["X-Fleetd-Error"]);
  out.body = std::move(res.body());
  if (!res.keep_alive())
    reset();
  return out;
}

// One frame out, its answer frame in (at most max_response_bytes).
template <class Stream>
caf::expected<http_response>
http_client::impl::frame_on(Stream& stream, const std::string& framed,
                            bool& unanswered) {
  beast::error_code ec;
  unanswered = true;
  lowest().expires_after(timeout);
  run([&] {
    asio::async_write(stream, asio::buffer(framed),
                      [&](beast::error_code e, size_t) { ec = e; });
  });
  if (ec)
    unanswered = ec == asio::error::broken_pipe
                 || ec == asio::error::connection_reset || closed_by_peer(ec);
  auto failed = [&](const beast::error_code& e) -> caf::error {
    if (e == beast::error::timeout)
      return make_error(ec::timeout, "no answer from " + host + ":"
                                       + std::to_string(port) + " in time");
    return make_error(ec::unreachable, e.message());
  };
  if (ec)
    return failed(ec);
  lowest().expires_after(timeout);
  for (;;) {
    auto data = buffer.data();
    std::string_view have(static_cast<const char*>(data.data()), data.size());
    size_t at = 0;
    auto end = frame_end(have, max_response_bytes, at);
    if (!end)
      return end.error();
    if (*end > 0) {
      auto ans = decode_answer_frame(have.substr(at, *end - at));
      buffer.consume(*end);
      if (!ans)
        return ans.error();
      http_response out;
      out.status = ans->status;
      out.content_type = std::move(ans->content_type);
      out.error = std::move(ans->error);
      out.retry_after = std::move(ans->retry_after);
      out.body = std::move(ans->body);
      return out;
    }
    size_t n = 0;
    run([&] {
      stream.async_read_some(buffer.prepare(16 * 1024),
                             [&](beast::error_code e, size_t got) {
                               ec = e;
                               n = got;
                             });
    });
    buffer.commit(n);
    if (ec) {
      unanswered = buffer.size() == 0
                   && (ec == asio::error::eof
                       || ec == asio::error::connection_reset
                       || closed_by_peer(ec));
      return failed(ec);
    }
    unanswered = false;
  }
}

http_client::http_client(std::string host, uint16_t port,
                         std::chrono::milliseconds timeout,
                         size_t max_response_bytes)
  : impl_(std::make_unique<impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
  impl_->timeout = timeout;
  impl_->max_response_bytes = max_response_bytes;
}

http_client::~http_client() = default;

int64_t http_client::resumed() const {
  return impl_->resumed;
}

caf::error http_client::use_tls(const tls_files& files) {
  auto ctx = make_client_context(files);
  if (!ctx)
    return ctx.error();
  close();
  impl_->tls = std::move(*ctx);
  // A session of the old context would carry its identity (or none).
  impl_->forget_session();
  return caf::none;
}

void http_client::close() {
  if (impl_->connected()) {
    beast::error_code ec;
    impl_->lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    impl_->reset();
  }
}

caf::expected<http_response> http_client::post(
  const std::string& target, const std::string& body,
  const std::vector<std::pair<std::string, std::string>>& headers) {
  return send(true, target, body, headers);
}

caf::expected<http_response> http_client::get(
  const std::string& target,
  const std::vector<std::pair<std::string, std::string>>& headers) {
  return send(false, target, {}, headers);
}

caf::expected<http_response> http_client::send(
  bool post, const std::string& target, const std::string& body,
  const std::vector<std::pair<std::string, std::string>>& headers) {
  http::request<http::string_body> req{post ? http::verb::post
                                            : http::verb::get,
                                       target, 11};
  // An IPv6 address goes in brackets there, as in a URL.
  auto& host = impl_->host;
  req.set(http::field::host, (host.find(':') == std::string::npos
                                ? host
                                : "[" + host + "]")
                               + ":" + std::to_string(impl_->port));
  for (auto& kv : headers)
    req.set(kv.first, kv.second);
  req.keep_alive(true);
  req.body() = body;
  req.prepare_payload();
  // A sync stream speaks frames only: HTTP goes on a new connection.
  if (impl_->streaming)
    close();
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (impl_->connected() && impl_->stale()) {
      close();
      ++stale_closes_;
    }
    bool reused = impl_->connected();
    if (!reused) {
      if (auto err = impl_->connect())
        return err;
      ++connects_;
    }
    beast::error_code ec;
    bool wrote_nothing = false;
    auto res = impl_->exchange(req, ec, wrote_nothing);
    if (res)
      return std::move(*res);
    close();
    // Retrying is safe only on a reused connection the server had closed.
    if (reused && wrote_nothing)
      continue;
    if (reused && closed_by_peer(ec))
      continue;
    if (ec == beast::error::timeout)
      return make_error(ec::timeout, "no answer from " + impl_->host + ":"
                                       + std::to_string(impl_->port)
                                       + " in time");
    return make_error(ec::unreachable, ec.message());
  }
  return make_error(ec::unreachable, "connection closed by peer");
}

bool http_client::streaming() const {
  return impl_->streaming != nullptr;
}

caf::expected<http_response> http_client::stream_post(
  const std::string& plain, int level,
  const std::vector<std::pair<std::string, std::string>>& headers) {
  last_frame_bytes_ = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (impl_->streaming && impl_->stale()) {
      close();
      ++stale_closes_;
    }
    bool reused = impl_->streaming != nullptr;
    if (!reused) {
      auto up = headers;
      up.emplace_back("Connection", "Upgrade");
      up.emplace_back("Upgrade", stream_protocol);
      auto res = send(false, stream_target, {}, up);
      if (!res || res->status != 101)
        return res;
      // No body came with the 101, and only frames follow it.
      if (!impl_->connected())
        return make_error(ec::unreachable, "stream closed at its upgrade");
      impl_->streaming = std::make_unique<stream_compressor>(level);
    }
    auto framed = impl_->streaming->frame(plain);
    if (!framed) {
      close();
      return framed.error();
    }
    last_frame_bytes_ = static_cast<int64_t>(framed->size());
    bool unanswered = false;
    auto res = impl_->frame(*framed, unanswered);
    if (res && res->status == 200)
      return res;
    // Any other answer ends the stream on both sides.
    close();
    if (res)
      return res;
    // A kept stream the node ended just before: once more on a new one (a
    // batch that did arrive is acked again as a duplicate).
    if (!(reused && unanswered))
      return res;
    ++stale_closes_;
  }
  return make_error(ec::unreachable, "connection closed by peer");
}

} // namespace fleetd
