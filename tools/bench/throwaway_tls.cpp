#include "tools/bench/throwaway_tls.hpp"

#include <cstdio>
#include <memory>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tools/bench/bench_util.hpp"

namespace fleetd::bench {

namespace {

template <class T, void (*Free)(T*)>
struct freer {
  void operator()(T* p) const {
    Free(p);
  }
};
using key_ptr = std::unique_ptr<EVP_PKEY, freer<EVP_PKEY, EVP_PKEY_free>>;
using cert_ptr = std::unique_ptr<X509, freer<X509, X509_free>>;

[[noreturn]] void fail_ssl(const std::string& what) {
  char buf[256] = "unknown error";
  if (auto code = ERR_get_error())
    ERR_error_string_n(code, buf, sizeof(buf));
  fail("throwaway certificate: " + what + ": " + buf);
}

void add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  auto* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext || !X509_add_ext(cert, ext, -1))
    fail_ssl(std::string("extension ") + value);
  X509_EXTENSION_free(ext);
}

cert_ptr self_signed(EVP_PKEY* key) {
  cert_ptr cert{X509_new()};
  if (!cert)
    fail_ssl("X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key);
  auto* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(
                               "fleetd-bench"),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  add_extension(cert.get(), NID_subject_alt_name,
                "IP:127.0.0.1,DNS:localhost");
  // Its own trust anchor: a CA that signs nothing but itself.
  add_extension(cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  if (!X509_sign(cert.get(), key, EVP_sha256()))
    fail_ssl("X509_sign");
  return cert;
}

template <class Write>
void write_pem(const std::string& path, Write&& write) {
  auto* f = std::fopen(path.c_str(), "w");
  if (!f)
    fail("throwaway certificate: cannot write " + path);
  auto ok = write(f);
  if (std::fclose(f) != 0 || !ok)
    fail_ssl("writing " + path);
}

} // namespace

tls_files make_throwaway_tls(const std::string& dir) {
  key_ptr key{EVP_EC_gen("P-256")};
  if (!key)
    fail_ssl("EC key");
  auto cert = self_signed(key.get());
  tls_files out{dir + "/server.pem", dir + "/server.key", ""};
  write_pem(out.key, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr,
                                nullptr) == 1;
  });
  write_pem(out.cert, [&](FILE* f) {
    return PEM_write_X509(f, cert.get()) == 1;
  });
  return out;
}

} // namespace fleetd::bench
