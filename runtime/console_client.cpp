#include "runtime/console_client.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef FLEETD_MBEDTLS
#  include <mbedtls/net_sockets.h>
#  include <mbedtls/sha256.h>
#else
#  include <openssl/err.h>
#  include <openssl/pem.h>
#  include <openssl/ssl.h>
#  include <openssl/x509v3.h>
#endif

#include <caf/actor_cast.hpp>
#include <caf/io/middleman.hpp>

#include "messages/error.hpp"
#include "runtime/basp_frames.hpp"
#include "runtime/console_door.hpp"
#include "runtime/tls_context.hpp"

namespace fleetd {

namespace {

std::string hex_of(const unsigned char* p, unsigned n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out;
}

// "AB:cd:..." -> "abcd...".
std::string normal_hex(const std::string& x) {
  std::string out;
  for (auto c : x)
    if (c != ':')
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A TCP connection within `timeout`; blocking afterwards.
caf::expected<int> tcp_connect(const std::string& host, uint16_t port,
                               std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res)
      != 0)
    return make_error(ec::io_error, "cannot resolve " + host);
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard{res, freeaddrinfo};
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return make_error(ec::io_error, std::string("socket: ") + strerror(errno));
  int rc = connect(fd, res->ai_addr, res->ai_addrlen);
  pollfd p{fd, POLLOUT, 0};
  int err = rc == 0 ? 0 : errno;
  if (err == EINPROGRESS) {
    err = poll(&p, 1, static_cast<int>(timeout.count())) == 1 ? 0 : ETIMEDOUT;
    socklen_t len = sizeof(err);
    if (err == 0)
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  }
  if (err != 0) {
    close(fd);
    return make_error(ec::io_error, "cannot connect to " + host + ":"
                                      + std::to_string(port) + ": "
                                      + strerror(err));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

caf::error untrusted(const std::string& why) {
  return make_error(ec::io_error,
                    "console: the node's certificate is not trusted: " + why);
}

// The node's certificate has SHA-256 `got`; `want` is the pinned one.
caf::error pinned(const std::string& got, const std::string& want) {
  if (got == normal_hex(want))
    return caf::none;
  return make_error(ec::io_error, "console: the node's certificate has "
                                  "fingerprint "
                                    + got + ", not the one expected");
}

// The TLS client context of `cfg`; `fd` is closed when it does not load.
caf::expected<tls_context_ptr> client_context(int fd,
                                              const console_client_config& cfg) {
  auto ctx = make_client_context({cfg.cert, cfg.key, cfg.ca});
  if (!ctx)
    close(fd);
  return ctx;
}

#ifndef FLEETD_MBEDTLS
caf::error tls_error(const std::string& what) {
  std::string text = what;
  char buf[256];
  while (auto e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof(buf));
    text += std::string(text == what ? ": " : "; ") + buf;
  }
  return make_error(ec::io_error, text);
}

std::string sha256_of(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  X509_digest(cert, EVP_sha256(), md, &n);
  return hex_of(md, n);
}

using link_ptr = std::shared_ptr<SSL>;

// The node's certificate must carry `name` (an IP or a DNS name).
void expect_name(SSL* ssl, const std::string& name) {
  in6_addr ip;
  bool is_ip = inet_pton(AF_INET, name.c_str(), &ip) == 1
               || inet_pton(AF_INET6, name.c_str(), &ip) == 1;
  auto* param = SSL_get0_param(ssl);
  if (is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    SSL_set1_host(ssl, name.c_str());
  }
}

// TLS handshake on `fd` (taken), with the name or the fingerprint checked.
caf::expected<link_ptr> handshake(int fd, const std::string& host,
                                 const console_client_config& cfg) {
  auto ctx = client_context(fd, cfg);
  if (!ctx)
    return ctx.error();
  // The context lives as long as the connection that uses it.
  link_ptr ssl{SSL_new((*ctx)->native_handle()), [ctx = *ctx](SSL* s) {
                close(SSL_get_fd(s));
                SSL_free(s);
              }};
  SSL_set_fd(ssl.get(), fd);
  if (cfg.fingerprint.empty())
    expect_name(ssl.get(), cfg.server_name.empty() ? host : cfg.server_name);
  if (SSL_connect(ssl.get()) != 1) {
    auto verify = SSL_get_verify_result(ssl.get());
    if (verify != X509_V_OK)
      return untrusted(X509_verify_cert_error_string(verify));
    return tls_error("console: TLS handshake failed");
  }
  if (!cfg.fingerprint.empty()) {
    X509* peer = SSL_get1_peer_certificate(ssl.get());
    auto got = peer ? sha256_of(peer) : std::string{};
    X509_free(peer);
    if (auto err = pinned(got, cfg.fingerprint))
      return err;
  }
  return ssl;
}

int link_fd(const link_ptr& ssl) {
  return SSL_get_fd(ssl.get());
}

// > 0: bytes written; 0: try again (`want_write`: once writable); < 0: failed.
int link_write(const link_ptr& ssl, const char* p, int n, bool& want_write) {
  int r = SSL_write(ssl.get(), p, n);
  if (r > 0)
    return r;
  auto e = SSL_get_error(ssl.get(), r);
  want_write = e == SSL_ERROR_WANT_WRITE;
  return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
}

// > 0: bytes read; 0: none yet; < 0: closed or failed.
int link_read(const link_ptr& ssl, char* p, int n) {
  int r = SSL_read(ssl.get(), p, n);
  if (r > 0)
    return r;
  auto e = SSL_get_error(ssl.get(), r);
  return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

caf::expected<std::string> file_sha256(const std::string& pem_file) {
  std::unique_ptr<FILE, int (*)(FILE*)> f{fopen(pem_file.c_str(), "r"), fclose};
  if (!f)
    return make_error(ec::io_error, "cannot read certificate '" + pem_file
                                      + "'");
  X509* cert = PEM_read_X509(f.get(), nullptr, nullptr, nullptr);
  if (!cert)
    return tls_error("not a PEM certificate: '" + pem_file + "'");
  auto out = sha256_of(cert);
  X509_free(cert);
  return out;
}

#else
// One TLS connection over the socket it closes.
struct tls_link {
  tls_context_ptr ctx;
  std::unique_ptr<mbed::session> tls;
  mbedtls_net_context net;
  ~tls_link() {
    tls.reset();
    mbedtls_net_free(&net);
  }
};
using link_ptr = std::shared_ptr<tls_link>;

std::string sha256_hex(const unsigned char* p, size_t n) {
  unsigned char md[32];
  mbedtls_sha256_ret(p, n, md, 0);
  return hex_of(md, sizeof(md));
}

// TLS handshake on `fd` (taken), with the name or the fingerprint checked.
caf::expected<link_ptr> handshake(int fd, const std::string& host,
                                  const console_client_config& cfg) {
  auto ctx = client_context(fd, cfg);
  if (!ctx)
    return ctx.error();
  auto link = std::make_shared<tls_link>();
  mbedtls_net_init(&link->net);
  link->net.fd = fd;
  link->ctx = *ctx;
  link->tls = std::make_unique<mbed::session>(ctx->get());
  auto* ssl = link->tls->native_handle();
  mbedtls_ssl_set_bio(ssl, &link->net, mbedtls_net_send, mbedtls_net_recv,
                      nullptr);
  if (cfg.fingerprint.empty()
      && !link->tls->set_host_name(cfg.server_name.empty() ? host
                                                            : cfg.server_name))
    return make_error(ec::io_error, "console: cannot set the TLS server name");
  if (int ret = link->tls->handshake(); ret != 0) {
    auto why = link->tls->verify_failure();
    if (!why.empty())
      return untrusted(why);
    return make_error(ec::io_error, "console: TLS handshake failed: "
                                      + mbed::tls_error_code(ret).message());
  }
  if (!cfg.fingerprint.empty()) {
    auto* peer = mbedtls_ssl_get_peer_cert(ssl);
    auto got = peer ? sha256_hex(peer->raw.p, peer->raw.len) : std::string{};
    if (auto err = pinned(got, cfg.fingerprint))
      return err;
  }
  return link;
}

int link_fd(const link_ptr& link) {
  return link->net.fd;
}

// > 0: bytes written; 0: try again (`want_write`: once writable); < 0: failed.
int link_write(const link_ptr& link, const char* p, int n, bool& want_write) {
  int r = mbedtls_ssl_write(link->tls->native_handle(),
                            reinterpret_cast<const unsigned char*>(p), n);
  if (r > 0)
    return r;
  want_write = r == MBEDTLS_ERR_SSL_WANT_WRITE;
  return r == MBEDTLS_ERR_SSL_WANT_WRITE || r == MBEDTLS_ERR_SSL_WANT_READ
           ? 0
           : -1;
}

// > 0: bytes read; 0: none yet; < 0: closed or failed.
int link_read(const link_ptr& link, char* p, int n) {
  int r = mbedtls_ssl_read(link->tls->native_handle(),
                           reinterpret_cast<unsigned char*>(p), n);
  if (r > 0)
    return r;
  return r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE ? 0
                                                                          : -1;
}

caf::expected<std::string> file_sha256(const std::string& pem_file) {
  mbedtls_x509_crt crt;
  mbedtls_x509_crt_init(&crt);
  int ret = mbedtls_x509_crt_parse_file(&crt, pem_file.c_str());
  std::string out;
  if (ret >= 0 && crt.raw.len > 0)
    out = sha256_hex(crt.raw.p, crt.raw.len);
  mbedtls_x509_crt_free(&crt);
  if (out.empty())
    return make_error(ec::io_error, "not a PEM certificate: '" + pem_file
                                      + "': "
                                      + mbed::tls_error_code(ret).message());
  return out;
}
#endif

// Moves bytes between the TLS connection and CAF's end of the loopback
// pipe until either closes; checks the node's frame headers.
void pump(link_ptr link, int local, uint32_t max_frame) {
  int net = link_fd(link);
  fcntl(net, F_SETFL, fcntl(net, F_GETFL) | O_NONBLOCK);
  basp_frames frames{basp_direction::to_console, max_frame, 0};
  std::vector<char> out; // local -> node, not yet taken by the TLS write
  std::vector<uint8_t> pass;
  char buf[16384];
  for (;;) {
    bool want_write = false;
    while (!out.empty()) {
      int n = link_write(link, out.data(), static_cast<int>(out.size()),
                         want_write);
      if (n < 0)
        return void(close(local));
      if (n == 0)
        break;
      out.erase(out.begin(), out.begin() + n);
    }
    for (;;) {
      int n = link_read(link, buf, sizeof(buf));
      if (n < 0)
        return void(close(local));
      if (n == 0)
        break;
      pass.clear();
      if (!frames.feed(reinterpret_cast<uint8_t*>(buf), n, pass)
          || write(local, pass.data(), pass.size())
               != static_cast<ssize_t>(pass.size()))
        return void(close(local));
    }
    pollfd fds[2] = {{net, static_cast<short>(POLLIN | (want_write ? POLLOUT : 0)), 0},
                     {local, static_cast<short>(out.empty() ? POLLIN : 0), 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR)
      return void(close(local));
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      auto n = read(local, buf, sizeof(buf));
      if (n <= 0)
        return void(close(local));
      out.assign(buf, buf + n);
    }
  }
}

} // namespace

caf::expected<std::string> certificate_fingerprint(const std::string& pem_file) {
  return file_sha256(pem_file);
}

caf::expected<inspector_actor>
connect_console(caf::actor_system& sys, const std::string& host, uint16_t port,
                const console_client_config& cfg) {
  if (cfg.cert.empty() && cfg.key.empty() && cfg.ca.empty())
    return sys.middleman().remote_actor<inspector_actor>(host, port);
  auto fd = tcp_connect(host, port, cfg.timeout);
  if (!fd)
    return fd.error();
  auto ssl = handshake(*fd, host, cfg);
  if (!ssl)
    return ssl.error();
  auto pipe = loopback_pair();
  if (!pipe)
    return pipe.error();
  std::thread{pump, *ssl, pipe->second, cfg.max_frame_bytes}.detach();
  auto ptr = connect_over_socket(sys, pipe->first,
                                 sys.message_types<inspector_actor>());
  if (!ptr)
    return ptr.error();
  return caf::actor_cast<inspector_actor>(std::move(*ptr));
}

} // namespace fleetd
