#include "tools/bench/bench_tls.hpp"

#include <functional>
#include <memory>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tools/bench/bench_util.hpp"

namespace fleetd::bench {

namespace {

using key_ptr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using cert_ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using bio_ptr = std::unique_ptr<BIO, decltype(&BIO_free)>;

constexpr long valid_seconds = 24 * 3600;

// Fails with `what` and OpenSSL's last error.
[[noreturn]] void fail_ssl(const std::string& what) {
  char buf[256] = {0};
  ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
  fail("bench PKI: " + what + ": " + buf);
}

template <class T>
T* check(T* x, const char* what) {
  if (!x)
    fail_ssl(what);
  return x;
}

void check(int ok, const char* what) {
  if (ok != 1)
    fail_ssl(what);
}

key_ptr ec_key() {
  return key_ptr(check(EVP_EC_gen("P-256"), "EC P-256 key"), EVP_PKEY_free);
}

// Adds one extension in openssl.cnf syntax ("critical,CA:TRUE").
void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  auto* ext = check(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value),
                    "certificate extension");
  auto ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  check(ok, "add certificate extension");
}

// A certificate for `key` named `cn`, unsigned, without extensions; issued
// by `issuer` (null: itself).
cert_ptr new_cert(EVP_PKEY* key, const char* cn, X509* issuer) {
  cert_ptr cert(check(X509_new(), "X509_new"), X509_free);
  check(X509_set_version(cert.get(), 2), "certificate version");
  unsigned char serial[16];
  check(RAND_bytes(serial, sizeof(serial)), "serial number");
  serial[0] &= 0x7f; // positive
  auto* bn = check(BN_bin2bn(serial, sizeof(serial), nullptr), "serial");
  auto* sn = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  check(sn, "serial number");
  // A minute back: a clock a little behind still accepts it.
  check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60) != nullptr,
        "notBefore");
  check(X509_gmtime_adj(X509_getm_notAfter(cert.get()), valid_seconds)
          != nullptr,
        "notAfter");
  auto* name = X509_get_subject_name(cert.get());
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(cn),
                                   -1, -1, 0),
        "subject name");
  check(X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer)
                                                : name),
        "issuer name");
  check(X509_set_pubkey(cert.get(), key), "public key");
  return cert;
}

std::string pem_of(const std::function<int(BIO*)>& write) {
  bio_ptr bio(check(BIO_new(BIO_s_mem()), "memory BIO"), BIO_free);
  check(write(bio.get()), "PEM encoding");
  char* data = nullptr;
  auto n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

void write_cert(const std::string& path, X509* cert) {
  write_file(path, pem_of([&](BIO* b) { return PEM_write_bio_X509(b, cert); }),
             false);
}

} // namespace

bench_pki make_bench_pki(const std::string& dir) {
  auto ca_key = ec_key();
  auto ca = new_cert(ca_key.get(), "fleetd-bench CA", nullptr);
  add_ext(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_ext(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(ca.get(), ca.get(), NID_subject_key_identifier, "hash");
  check(X509_sign(ca.get(), ca_key.get(), EVP_sha256()) > 0 ? 1 : 0,
        "sign the CA");
  auto key = ec_key();
  auto cert = new_cert(key.get(), "localhost", ca.get());
  add_ext(cert.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_ext(cert.get(), ca.get(), NID_key_usage,
          "critical,digitalSignature,keyAgreement");
  add_ext(cert.get(), ca.get(), NID_ext_key_usage, "serverAuth");
  // The client checks the name it dialled: the address or localhost.
  add_ext(cert.get(), ca.get(), NID_subject_alt_name,
          "DNS:localhost,IP:127.0.0.1,IP:::1");
  add_ext(cert.get(), ca.get(), NID_authority_key_identifier, "keyid:always");
  check(X509_sign(cert.get(), ca_key.get(), EVP_sha256()) > 0 ? 1 : 0,
        "sign the server certificate");
  bench_pki out;
  out.client.ca = dir + "/ca.pem";
  out.server.cert = dir + "/server.pem";
  out.server.key = dir + "/server.key";
  write_cert(out.client.ca, ca.get());
  write_cert(out.server.cert, cert.get());
  write_file(out.server.key, pem_of([&](BIO* b) {
               return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr,
                                               0, nullptr, nullptr);
             }),
             true);
  return out;
}

} // namespace fleetd::bench
