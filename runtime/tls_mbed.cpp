#include "runtime/tls_context.hpp"

#include <cstring>

#include <arpa/inet.h>

#include <mbedtls/error.h>

#include "messages/error.hpp"

namespace fleetd::mbed {

namespace {

std::string describe(int ret) {
  char buf[160];
  mbedtls_strerror(ret, buf, sizeof(buf));
  return buf;
}

class category : public boost::system::error_category {
public:
  const char* name() const noexcept override {
    return "mbedtls";
  }
  std::string message(int ev) const override {
    return describe(-ev);
  }
};

} // namespace

const boost::system::error_category& tls_category() {
  static category instance;
  return instance;
}

context::context(method m) {
  mbedtls_ssl_config_init(&conf_);
  mbedtls_entropy_init(&entropy_);
  mbedtls_ctr_drbg_init(&drbg_);
  mbedtls_x509_crt_init(&ca_);
  mbedtls_x509_crt_init(&cert_);
  mbedtls_pk_init(&key_);
  seeded_ = mbedtls_ctr_drbg_seed(&drbg_, mbedtls_entropy_func, &entropy_,
                                  nullptr, 0)
            == 0;
  mbedtls_ssl_config_defaults(&conf_,
                              m == tls_server ? MBEDTLS_SSL_IS_SERVER
                                              : MBEDTLS_SSL_IS_CLIENT,
                              MBEDTLS_SSL_TRANSPORT_STREAM,
                              MBEDTLS_SSL_PRESET_DEFAULT);
  mbedtls_ssl_conf_min_version(&conf_, MBEDTLS_SSL_MAJOR_VERSION_3,
                               MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_rng(&conf_, mbedtls_ctr_drbg_random, &drbg_);
  mbedtls_ssl_conf_authmode(&conf_, MBEDTLS_SSL_VERIFY_NONE);
}

context::~context() {
  mbedtls_ssl_config_free(&conf_);
  mbedtls_pk_free(&key_);
  mbedtls_x509_crt_free(&cert_);
  mbedtls_x509_crt_free(&ca_);
  mbedtls_ctr_drbg_free(&drbg_);
  mbedtls_entropy_free(&entropy_);
}

std::string context::use_certificate_chain_file(const std::string& path) {
  int ret = mbedtls_x509_crt_parse_file(&cert_, path.c_str());
  if (ret != 0)
    return describe(ret);
  has_cert_ = true;
  return own_identity();
}

std::string context::use_private_key_file(const std::string& path) {
  int ret = mbedtls_pk_parse_keyfile(&key_, path.c_str(), nullptr);
  if (ret != 0)
    return describe(ret);
  has_key_ = true;
  return own_identity();
}

// Certificate and key go to the configuration once both are loaded.
std::string context::own_identity() {
  if (!has_cert_ || !has_key_)
    return {};
  int ret = mbedtls_ssl_conf_own_cert(&conf_, &cert_, &key_);
  return ret == 0 ? std::string{} : describe(ret);
}

std::string context::load_verify_file(const std::string& path) {
  int ret = mbedtls_x509_crt_parse_file(&ca_, path.c_str());
  if (ret < 0)
    return describe(ret);
  if (ret > 0) // some certificates in the file did not parse
    return "not a PEM certificate file";
  mbedtls_ssl_conf_ca_chain(&conf_, &ca_, nullptr);
  return {};
}

std::string context::set_default_verify_paths() {
  // Debian's store; certificates mbedTLS cannot parse are skipped.
  int ret = mbedtls_x509_crt_parse_path(&ca_, "/etc/ssl/certs");
  if (ret < 0 || ca_.raw.len == 0)
    return "no usable certificate in /etc/ssl/certs";
  mbedtls_ssl_conf_ca_chain(&conf_, &ca_, nullptr);
  return {};
}

bool context::check_private_key() {
  return has_cert_ && has_key_ && mbedtls_pk_check_pair(&cert_.pk, &key_) == 0;
}

void context::set_verify_mode(int mode) {
  int auth = MBEDTLS_SSL_VERIFY_NONE;
  if (mode & verify_fail_if_no_peer_cert)
    auth = MBEDTLS_SSL_VERIFY_REQUIRED;
  else if (mode & verify_peer)
    // A server: verify what a client sends, the application decides about
    // a missing certificate; a client always requires the server's.
    auth = conf_.endpoint == MBEDTLS_SSL_IS_CLIENT ? MBEDTLS_SSL_VERIFY_REQUIRED
                                                   : MBEDTLS_SSL_VERIFY_OPTIONAL;
  mbedtls_ssl_conf_authmode(&conf_, auth);
}

session::session(context* ctx) {
  mbedtls_ssl_init(&ssl_);
  mbedtls_ssl_setup(&ssl_, ctx->native_handle());
  mbedtls_ssl_set_bio(&ssl_, this, send, recv, nullptr);
}

session::~session() {
  mbedtls_ssl_free(&ssl_);
}

int session::send(void* self, const unsigned char* buf, size_t len) {
  auto& out = static_cast<session*>(self)->out;
  out.insert(out.end(), buf, buf + len);
  return static_cast<int>(len);
}

int session::recv(void* self, unsigned char* buf, size_t len) {
  auto& in = static_cast<session*>(self)->in;
  if (in.empty())
    return MBEDTLS_ERR_SSL_WANT_READ;
  len = std::min(len, in.size());
  std::memcpy(buf, in.data(), len);
  in.erase(in.begin(), in.begin() + len);
  return static_cast<int>(len);
}

bool session::set_host_name(const std::string& host) {
  unsigned char raw[16];
  if (inet_pton(AF_INET, host.c_str(), raw) == 1)
    ip_.assign(reinterpret_cast<char*>(raw), 4);
  else if (inet_pton(AF_INET6, host.c_str(), raw) == 1)
    ip_.assign(reinterpret_cast<char*>(raw), 16);
  if (!ip_.empty()) {
    // mbedTLS 2.28 matches DNS names only: an address is checked in verify.
    mbedtls_ssl_set_verify(&ssl_, verify, this);
    return true;
  }
  return mbedtls_ssl_set_hostname(&ssl_, host.c_str()) == 0;
}

// The leaf certificate must list the address as an iPAddress SAN.
int session::verify(void* self, mbedtls_x509_crt* crt, int depth,
                    uint32_t* flags) {
  if (depth != 0)
    return 0;
  auto& ip = static_cast<session*>(self)->ip_;
  constexpr int ip_tag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7;
  for (auto* san = &crt->subject_alt_names; san && san->buf.p; san = san->next)
    if (san->buf.tag == ip_tag && san->buf.len == ip.size()
        && std::memcmp(san->buf.p, ip.data(), ip.size()) == 0)
      return 0;
  *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  return 0;
}

int session::handshake() {
  int ret = mbedtls_ssl_handshake(&ssl_);
  if (ret == 0 && mbedtls_ssl_get_peer_cert(&ssl_)
      && mbedtls_ssl_get_verify_result(&ssl_) != 0)
    return MBEDTLS_ERR_X509_CERT_VERIFY_FAILED;
  return ret;
}

std::string session::verify_failure() {
  uint32_t flags = mbedtls_ssl_get_verify_result(&ssl_);
  if (flags == 0 || flags == uint32_t(-1))
    return {};
  char buf[512];
  mbedtls_x509_crt_verify_info(buf, sizeof(buf), "", flags);
  std::string why = buf;
  while (!why.empty() && why.back() == '\n')
    why.pop_back();
  return why;
}

} // namespace fleetd::mbed

namespace fleetd {

namespace {

using mbed::context;

// A failure names what was being loaded.
caf::error loaded(const char* what, const std::string& path,
                  const std::string& why) {
  if (why.empty())
    return caf::none;
  return make_error(ec::bad_config,
                    std::string(what) + " '" + path + "': " + why);
}

caf::expected<tls_context_ptr> new_context(context::method m) {
  auto ctx = std::make_shared<context>(m);
  if (!ctx->seeded())
    return make_error(ec::tls_error, "mbedTLS: no entropy for its generator");
  return ctx;
}

caf::error load_identity(context& ctx, const tls_files& files) {
  if (auto err = loaded("certificate", files.cert,
                        ctx.use_certificate_chain_file(files.cert)))
    return err;
  return loaded("private key", files.key, ctx.use_private_key_file(files.key));
}

} // namespace

caf::expected<tls_context_ptr> make_server_context(const tls_files& files) {
  auto made = new_context(context::tls_server);
  if (!made)
    return made;
  auto& ctx = *made;
  if (auto err = load_identity(*ctx, files))
    return err;
  if (!ctx->check_private_key())
    return make_error(ec::bad_config, "private key '" + files.key
                                        + "' does not match certificate '"
                                        + files.cert + "'");
  if (!files.ca.empty()) {
    if (auto err = loaded("client CA file", files.ca,
                          ctx->load_verify_file(files.ca)))
      return err;
    // As with OpenSSL: whether a certificate is required is the caller's.
    ctx->set_verify_mode(mbed::verify_peer);
  }
  return made;
}

caf::expected<tls_context_ptr> make_client_context(const tls_files& files) {
  auto made = new_context(context::tls_client);
  if (!made)
    return made;
  auto& ctx = *made;
  auto err = files.ca.empty()
               ? loaded("system CA store", "default",
                        ctx->set_default_verify_paths())
               : loaded("CA file", files.ca, ctx->load_verify_file(files.ca));
  if (err)
    return err;
  if (!files.cert.empty() || !files.key.empty())
    if (auto err2 = load_identity(*ctx, files))
      return err2;
  ctx->set_verify_mode(mbed::verify_peer);
  return made;
}

} // namespace fleetd
