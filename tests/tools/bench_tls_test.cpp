// The benchmarks' throwaway PKI: made in-process, usable by the HTTPS server
// and client, and naming exactly the loopback hosts.
#include "tools/bench/bench_tls.hpp"

#include <cstdio>
#include <memory>

#include <doctest/doctest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include "scratch_dir.hpp"

using namespace fleetd;

namespace {

using cert_ptr = std::unique_ptr<X509, decltype(&X509_free)>;

cert_ptr read_cert(const std::string& path) {
  auto* f = std::fopen(path.c_str(), "r");
  REQUIRE(f != nullptr);
  cert_ptr out(PEM_read_X509(f, nullptr, nullptr, nullptr), X509_free);
  std::fclose(f);
  REQUIRE(out != nullptr);
  return out;
}

// Whether `cert` chains to `ca` alone.
bool verifies(X509* cert, X509* ca) {
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(
    X509_STORE_new(), X509_STORE_free);
  X509_STORE_add_cert(store.get(), ca);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(
    X509_STORE_CTX_new(), X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), cert, nullptr);
  return X509_verify_cert(ctx.get()) == 1;
}

} // namespace

TEST_CASE("the bench PKI's server certificate chains to its CA and names "
          "only the loopback hosts") {
  test::scratch_dir dir("fleetd-bench-tls");
  REQUIRE(dir.ok());
  auto pki = bench::make_bench_pki(dir.path());
  CHECK(check_tls_server(pki.server) == caf::none);
  CHECK(check_tls_client(pki.client) == caf::none);
  struct stat st {};
  REQUIRE(::stat(pki.server.key.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto ca = read_cert(pki.client.ca);
  auto server = read_cert(pki.server.cert);
  CHECK(verifies(server.get(), ca.get()));
  CHECK(X509_check_ip_asc(server.get(), "127.0.0.1", 0) == 1);
  CHECK(X509_check_ip_asc(server.get(), "::1", 0) == 1);
  CHECK(X509_check_host(server.get(), "localhost", 0, 0, nullptr) == 1);
  CHECK(X509_check_ip_asc(server.get(), "10.0.0.1", 0) == 0);
  CHECK(X509_check_host(server.get(), "example.com", 0, 0, nullptr) == 0);
  // A second PKI is another CA: its server does not chain to the first.
  test::scratch_dir other("fleetd-bench-tls");
  REQUIRE(other.ok());
  auto pki2 = bench::make_bench_pki(other.path());
  CHECK_FALSE(verifies(read_cert(pki2.server.cert).get(), ca.get()));
}
