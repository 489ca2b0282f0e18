#pragma once

// The device build's TLS (FLEETD_MBEDTLS): mbedTLS behind the small part of
// Asio's ssl API that the HTTP client and the console front use, so those
// files name `ssl::context` and `ssl::stream` on both builds.

#include <memory>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/error_code.hpp>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

namespace fleetd::mbed {

/// mbedTLS error codes (negative ints) as error_codes.
const boost::system::error_category& tls_category();

inline boost::system::error_code tls_error_code(int ret) {
  return {-ret, tls_category()};
}

enum verify_mode { verify_none = 0, verify_peer = 1,
                   verify_fail_if_no_peer_cert = 2 };

/// One configuration (role, trust, own certificate) shared by connections.
class context {
public:
  enum method { tls_client, tls_server };
  explicit context(method m);
  ~context();
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  /// Empty: the file loaded; otherwise what mbedTLS said.
  std::string use_certificate_chain_file(const std::string& path);
  std::string use_private_key_file(const std::string& path);
  std::string load_verify_file(const std::string& path);
  std::string set_default_verify_paths();
  bool check_private_key();
  /// False when the random generator found no entropy: nothing will work.
  bool seeded() const { return seeded_; }
  void set_verify_mode(int mode);
  mbedtls_ssl_config* native_handle() { return &conf_; }

private:
  std::string own_identity();
  mbedtls_ssl_config conf_;
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
  mbedtls_x509_crt ca_;
  mbedtls_x509_crt cert_;
  mbedtls_pk_context key_;
  bool has_cert_ = false;
  bool has_key_ = false;
  bool seeded_ = false;
};

struct stream_base {
  enum handshake_type { client, server };
};

/// One TLS connection's state: the mbedTLS session fed from memory buffers
/// that the stream moves to and from its socket.
class session {
public:
  explicit session(context* ctx);
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  /// SNI and the name (DNS or IP) the server certificate must carry.
  bool set_host_name(const std::string& host);
  /// One handshake step; a certificate the peer sent must verify even
  /// where sending one is optional.
  int handshake();
  /// Why the peer's certificate was refused; empty when it was not.
  std::string verify_failure();
  mbedtls_ssl_context* native_handle() { return &ssl_; }

  std::vector<unsigned char> in;  // received, not yet taken by mbedTLS
  std::vector<unsigned char> out; // produced by mbedTLS, not yet sent

private:
  static int send(void* self, const unsigned char* buf, size_t len);
  static int recv(void* self, unsigned char* buf, size_t len);
  static int verify(void* self, mbedtls_x509_crt* crt, int depth,
                    uint32_t* flags);
  mbedtls_ssl_context ssl_;
  std::string ip_; // raw bytes of an IP host, checked against iPAddress SANs
};

/// An asynchronous TLS stream over `Next` (a tcp::socket or Beast's
/// tcp_stream): one read and one write may run at once, as with Asio's.
template <class Next>
class stream {
public:
  using next_layer_type = Next;
  using executor_type = typename Next::executor_type;

  template <class Arg>
  stream(Arg&& arg, context& ctx)
    : next_(std::forward<Arg>(arg)), tls_(std::make_unique<session>(&ctx)) {
  }

  executor_type get_executor() { return next_.get_executor(); }
  Next& next_layer() { return next_; }
  auto& lowest_layer() { return next_.lowest_layer(); }
  mbedtls_ssl_context* native_handle() { return tls_->native_handle(); }
  session& tls() { return *tls_; }

  template <class Handler>
  auto async_handshake(stream_base::handshake_type, Handler&& h) {
    return run<void(boost::system::error_code)>(
      [this](size_t& n) {
        n = 0;
        return tls_->handshake();
      },
      std::forward<Handler>(h));
  }

  template <class Buffers, class Handler>
  auto async_read_some(const Buffers& bufs, Handler&& h) {
    return some(bufs, std::forward<Handler>(h), [](auto* ssl, auto buf) {
      return mbedtls_ssl_read(ssl, static_cast<unsigned char*>(buf.data()),
                              buf.size());
    });
  }

  template <class Buffers, class Handler>
  auto async_write_some(const Buffers& bufs, Handler&& h) {
    return some(bufs, std::forward<Handler>(h), [](auto* ssl, auto buf) {
      return mbedtls_ssl_write(ssl,
                               static_cast<const unsigned char*>(buf.data()),
                               buf.size());
    });
  }

private:
  // `io` on the first non-empty buffer: a partial read or write is allowed.
  template <class Buffers, class Handler, class Io>
  auto some(const Buffers& bufs, Handler&& h, Io io) {
    auto buf = first(boost::asio::buffer_sequence_begin(bufs),
                     boost::asio::buffer_sequence_end(bufs));
    return run<void(boost::system::error_code, size_t)>(
      [this, buf, io](size_t& n) {
        int r = io(tls_->native_handle(), buf);
        n = r > 0 ? size_t(r) : 0;
        return r;
      },
      std::forward<Handler>(h));
  }

  // The first non-empty buffer of a sequence.
  template <class It>
  static auto first(It begin, It end) {
    using buffer = std::decay_t<decltype(*begin)>;
    for (auto it = begin; it != end; ++it) {
      buffer b = *it;
      if (b.size() > 0)
        return b;
    }
    return buffer{};
  }

  // Calls `step` until it neither wants bytes read nor has bytes to send:
  // mbedTLS writes to and reads from memory, this moves those bytes.
  template <class Sig, class Step>
  struct op {
    stream* s;
    Step step;
    int state = 0; // 0 start, 1 step, 2 flushed, 3 read
    int result = 0;
    size_t n = 0;
    std::shared_ptr<std::vector<unsigned char>> buf;

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {},
                    size_t got = 0) {
      if (state == 0) {
        state = 1; // never complete inside the initiating function
        return boost::asio::post(s->get_executor(), std::move(self));
      }
      if (state == 2)
        s->writing_ = false;
      if (state == 3 && !ec)
        s->tls_->in.insert(s->tls_->in.end(), buf->begin(),
                           buf->begin() + got);
      if (ec)
        return finish(self, ec);
      if (state != 2)
        result = step(n);
      // One writer at a time: a flush in progress takes these bytes too.
      if (!s->tls_->out.empty() && !s->writing_) {
        s->writing_ = true;
        state = 2;
        buf = std::make_shared<std::vector<unsigned char>>();
        buf->swap(s->tls_->out);
        auto b = boost::asio::buffer(*buf);
        return boost::asio::async_write(s->next_, b, std::move(self));
      }
      if (result == MBEDTLS_ERR_SSL_WANT_READ) {
        state = 3;
        buf = std::make_shared<std::vector<unsigned char>>(16 * 1024 + 64);
        auto b = boost::asio::buffer(*buf);
        return s->next_.async_read_some(b, std::move(self));
      }
      if (result == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        return finish(self, boost::asio::error::eof);
      if (result < 0)
        return finish(self, tls_error_code(result));
      finish(self, {});
    }

    template <class Self>
    void finish(Self& self, boost::system::error_code ec) {
      buf.reset();
      if constexpr (std::is_same_v<Sig, void(boost::system::error_code)>)
        self.complete(ec);
      else
        self.complete(ec, ec ? 0 : n);
    }
  };

  template <class Sig, class Step, class Handler>
  auto run(Step step, Handler&& h) {
    return boost::asio::async_compose<Handler, Sig>(
      op<Sig, Step>{this, std::move(step), 0, 0, 0, nullptr}, h, next_);
  }

  Next next_;
  std::unique_ptr<session> tls_;
  bool writing_ = false;
};

} // namespace fleetd::mbed
