#include "runtime/tls_probe.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>

#include "messages/error.hpp"
#include "runtime/tls_context.hpp"

#ifdef FLEETD_MBEDTLS
#  include <mbedtls/asn1.h>
#  include <mbedtls/error.h>
#  include <mbedtls/ssl.h>
#  include <mbedtls/x509_crt.h>
#else
#  include <openssl/err.h>
#  include <openssl/ssl.h>
#  include <openssl/x509v3.h>
#endif

namespace fleetd {

namespace {

[[maybe_unused]] bool is_ip(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1
         || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// An IP address SAN (4 or 16 raw bytes) as text.
std::string ip_text(const unsigned char* p, size_t len) {
  char out[INET6_ADDRSTRLEN] = {0};
  if (len == 4)
    inet_ntop(AF_INET, p, out, sizeof(out));
  else if (len == 16)
    inet_ntop(AF_INET6, p, out, sizeof(out));
  else
    return "(malformed address)";
  return out;
}

void set_timeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

caf::error handshake_error(const std::string& why) {
  return make_error(ec::io_error, "TLS handshake failed: " + why);
}

#ifdef FLEETD_MBEDTLS

std::string time_text(const mbedtls_x509_time& t) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02d %02d:%02d:%02d UTC", t.year,
                t.mon, t.day, t.hour, t.min, t.sec);
  return buf;
}

std::string dn_text(const mbedtls_x509_name* dn) {
  char buf[512];
  auto n = mbedtls_x509_dn_gets(buf, sizeof(buf), dn);
  return n < 0 ? std::string("(unreadable)") : std::string(buf);
}

// Sends what the session produced; false when the socket failed.
bool flush(mbed::session& s, int fd) {
  size_t sent = 0;
  while (sent < s.out.size()) {
    auto n = ::send(fd, s.out.data() + sent, s.out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    sent += static_cast<size_t>(n);
  }
  s.out.clear();
  return true;
}

#else

std::string bio_text(const std::function<void(BIO*)>& write) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio{BIO_new(BIO_s_mem()), BIO_free};
  if (!bio)
    return "";
  write(bio.get());
  char* data = nullptr;
  auto len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : "";
}

std::string name_text(X509_NAME* name) {
  return bio_text([name](BIO* b) {
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
  });
}

std::string asn1_time_text(const ASN1_TIME* t) {
  return bio_text([t](BIO* b) { ASN1_TIME_print(b, t); });
}

std::string openssl_error() {
  auto code = ERR_get_error();
  if (code == 0)
    return std::strerror(errno);
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

#endif

} // namespace

#ifdef FLEETD_MBEDTLS

caf::expected<tls_peer> probe_tls(int fd, const std::string& host,
                                  const tls_files& files,
                                  std::chrono::milliseconds timeout) {
  auto ctx = make_client_context(files);
  if (!ctx)
    return ctx.error();
  // Verified and recorded, not enforced: the certificate is shown either way.
  mbedtls_ssl_conf_authmode((*ctx)->native_handle(),
                            MBEDTLS_SSL_VERIFY_OPTIONAL);
  set_timeouts(fd, timeout);
  // The session checks an address against the IP SANs (mbedTLS 2.28 does
  // not); it is fed here from the blocking socket.
  mbed::session s{ctx->get()};
  if (!s.set_host_name(host))
    return handshake_error("cannot set the host name " + host);
  int ret;
  while ((ret = mbedtls_ssl_handshake(s.native_handle())) != 0) {
    if (!flush(s, fd))
      return handshake_error(std::string("send: ") + std::strerror(errno));
    if (ret == MBEDTLS_ERR_SSL_WANT_WRITE)
      continue;
    if (ret != MBEDTLS_ERR_SSL_WANT_READ) {
      char buf[200];
      mbedtls_strerror(ret, buf, sizeof(buf));
      return handshake_error(buf);
    }
    unsigned char chunk[4096];
    auto n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0)
      return handshake_error(n == 0 ? std::string("the server closed the "
                                                  "connection")
                                    : std::string("receive: ")
                                        + std::strerror(errno));
    s.in.insert(s.in.end(), chunk, chunk + n);
  }
  flush(s, fd);
  tls_peer out;
  out.version = mbedtls_ssl_get_version(s.native_handle());
  out.cipher = mbedtls_ssl_get_ciphersuite(s.native_handle());
  out.verify_error = s.verify_failure();
  out.verified = out.verify_error.empty();
  if (!out.verified) {
    auto flags = mbedtls_ssl_get_verify_result(s.native_handle());
    out.verify_problem =
      flags & (MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE)
        ? "validity"
      : flags & MBEDTLS_X509_BADCERT_CN_MISMATCH ? "name"
                                                 : "chain";
  }
  for (auto& c : out.verify_error)
    if (c == '\n')
      c = ';';
  if (auto crt = mbedtls_ssl_get_peer_cert(s.native_handle())) {
    out.subject = dn_text(&crt->subject);
    out.issuer = dn_text(&crt->issuer);
    out.not_before = time_text(crt->valid_from);
    out.not_after = time_text(crt->valid_to);
    for (auto san = &crt->subject_alt_names; san && san->buf.p;
         san = san->next) {
      auto tag = san->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK;
      if (tag == 2)
        out.names.emplace_back(reinterpret_cast<const char*>(san->buf.p),
                               san->buf.len);
      else if (tag == 7)
        out.names.push_back(ip_text(san->buf.p, san->buf.len));
    }
  }
  return out;
}

#else

caf::expected<tls_peer> probe_tls(int fd, const std::string& host,
                                  const tls_files& files,
                                  std::chrono::milliseconds timeout) {
  auto ctx = make_client_context(files);
  if (!ctx)
    return ctx.error();
  // Verified and recorded, not enforced: the certificate is shown either way.
  SSL_CTX_set_verify((*ctx)->native_handle(), SSL_VERIFY_NONE, nullptr);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl{
    SSL_new((*ctx)->native_handle()), SSL_free};
  if (!ssl)
    return handshake_error(openssl_error());
  auto param = SSL_get0_param(ssl.get());
  if (is_ip(host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl.get(), host.c_str());
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }
  set_timeouts(fd, timeout);
  SSL_set_fd(ssl.get(), fd);
  ERR_clear_error();
  if (SSL_connect(ssl.get()) != 1)
    return handshake_error(openssl_error());
  tls_peer out;
  out.version = SSL_get_version(ssl.get());
  out.cipher = SSL_get_cipher_name(ssl.get());
  auto result = SSL_get_verify_result(ssl.get());
  out.verified = result == X509_V_OK;
  if (!out.verified) {
    out.verify_error = X509_verify_cert_error_string(result);
    out.verify_problem =
      result == X509_V_ERR_CERT_HAS_EXPIRED
          || result == X509_V_ERR_CERT_NOT_YET_VALID
        ? "validity"
      : result == X509_V_ERR_HOSTNAME_MISMATCH
          || result == X509_V_ERR_IP_ADDRESS_MISMATCH
        ? "name"
        : "chain";
  }
  std::unique_ptr<X509, decltype(&X509_free)> cert{
    SSL_get1_peer_certificate(ssl.get()), X509_free};
  if (cert) {
    out.subject = name_text(X509_get_subject_name(cert.get()));
    out.issuer = name_text(X509_get_issuer_name(cert.get()));
    out.not_before = asn1_time_text(X509_get0_notBefore(cert.get()));
    out.not_after = asn1_time_text(X509_get0_notAfter(cert.get()));
    auto sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); ++i) {
      auto gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type == GEN_DNS)
        out.names.emplace_back(
          reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
          static_cast<size_t>(ASN1_STRING_length(gn->d.dNSName)));
      else if (gn->type == GEN_IPADD)
        out.names.push_back(
          ip_text(ASN1_STRING_get0_data(gn->d.iPAddress),
                  static_cast<size_t>(ASN1_STRING_length(gn->d.iPAddress))));
    }
    GENERAL_NAMES_free(sans);
  }
  SSL_shutdown(ssl.get());
  return out;
}

#endif

} // namespace fleetd
