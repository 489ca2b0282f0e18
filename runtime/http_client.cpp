#include "runtime/http_client.hpp"

#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "messages/error.hpp"

namespace fleetd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct http_client::impl {
  std::string host;
  uint16_t port;
  std::chrono::milliseconds timeout;
  size_t max_response_bytes;
  asio::io_context ioc{1};
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  caf::error connect() {
    stream.emplace(ioc);
    buffer.clear();
    tcp::resolver resolver{ioc};
    beast::error_code ec;
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec)
      return make_error(ec::unreachable, "cannot resolve " + host + ": "
                                           + ec.message());
    stream->expires_after(timeout);
    stream->async_connect(results,
                          [&](beast::error_code e, const tcp::endpoint&) {
                            ec = e;
                          });
    ioc.restart();
    ioc.run();
    if (ec) {
      stream.reset();
      return make_error(ec::unreachable, "cannot connect to " + host + ":"
                                           + std::to_string(port) + ": "
                                           + ec.message());
    }
    stream->socket().set_option(tcp::no_delay(true), ec);
    return caf::none;
  }

  // One exchange on the open stream; `ec` tells why it failed.
  std::optional<http_response>
  exchange(http::request<http::string_body>& req, beast::error_code& ec,
           bool& wrote_nothing) {
    wrote_nothing = true;
    stream->expires_after(timeout);
    http::async_write(*stream, req, [&](beast::error_code e, size_t n) {
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
    stream->expires_after(timeout);
    bool got_bytes = false;
    // The header first: Beast 1.74 loses a response's body_limit error when
    // it parses eagerly (as async_read does) and body bytes arrive together
    // with the header, so the limit is checked here before the body is read.
    http::async_read_header(*stream, buffer, parser,
                            [&](beast::error_code e, size_t n) {
                              ec = e;
                              got_bytes = n > 0;
                            });
    ioc.restart();
    ioc.run();
    if (ec) {
      // A stale keep-alive connection closes before answering anything.
      wrote_nothing = !got_bytes && ec == http::error::end_of_stream;
      return std::nullopt;
    }
    if (auto len = parser.content_length(); len && *len > max_response_bytes) {
      ec = http::error::body_limit;
      return std::nullopt;
    }
    if (!parser.is_done()) {
      http::async_read(*stream, buffer, parser,
                       [&](beast::error_code e, size_t) { ec = e; });
      ioc.restart();
      ioc.run();
      if (ec)
        return std::nullopt;
    }
    auto& res = parser.get();
    http_response out;
    out.status = res.result_int();
    out.content_type = std::string(res[http::field::content_type]);
    out.retry_after = std::string(res[http::field::retry_after]);
    out.error = std::string(res["X-Fleetd-Error"]);
    out.body = std::move(res.body());
    if (!res.keep_alive())
      stream.reset();
    return out;
  }
};

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

void http_client::close() {
  if (impl_->stream) {
    beast::error_code ec;
    impl_->stream->socket().shutdown(tcp::socket::shutdown_both, ec);
    impl_->stream.reset();
  }
}

caf::expected<http_response> http_client::post(
  const std::string& target, const std::string& body,
  const std::vector<std::pair<std::string, std::string>>& headers) {
  return send(true, target, body, headers);
}

caf::expected<http_response> http_client::get(const std::string& target) {
  return send(false, target, {}, {});
}

caf::expected<http_response> http_client::send(
  bool post, const std::string& target, const std::string& body,
  const std::vector<std::pair<std::string, std::string>>& headers) {
  http::request<http::string_body> req{post ? http::verb::post
                                            : http::verb::get,
                                       target, 11};
  req.set(http::field::host, impl_->host + ":" + std::to_string(impl_->port));
  req.set(http::field::user_agent, "fleetd");
  for (auto& kv : headers)
    req.set(kv.first, kv.second);
  req.keep_alive(true);
  req.body() = body;
  req.prepare_payload();
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = impl_->stream.has_value();
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
    if (reused && ec == http::error::end_of_stream)
      continue;
    if (ec == beast::error::timeout)
      return make_error(ec::timeout, "no answer from " + impl_->host + ":"
                                       + std::to_string(impl_->port)
                                       + " in time");
    return make_error(ec::unreachable, ec.message());
  }
  return make_error(ec::unreachable, "connection closed by peer");
}

} // namespace fleetd
