#include "runtime/tls_context.hpp"

#include <openssl/ssl.h>

#include "messages/error.hpp"

namespace fleetd {

namespace ssl = boost::asio::ssl;

namespace {

tls_context_ptr tls12_context(ssl::context::method method) {
  auto ctx = std::make_shared<ssl::context>(method);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2
                   | ssl::context::no_sslv3 | ssl::context::no_tlsv1
                   | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  return ctx;
}

// Runs one context call; a failure names what was being loaded.
template <class F>
caf::error load(const char* what, const std::string& path, F&& f) {
  boost::system::error_code ec;
  f(ec);
  if (ec)
    return make_error(ec::bad_config, std::string(what) + " '" + path
                                        + "': " + ec.message());
  return caf::none;
}

caf::error load_identity(ssl::context& ctx, const tls_files& files) {
  if (auto err = load("certificate", files.cert, [&](auto& ec) {
        ctx.use_certificate_chain_file(files.cert, ec);
      }))
    return err;
  return load("private key", files.key, [&](auto& ec) {
    ctx.use_private_key_file(files.key, ssl::context::pem, ec);
  });
}

} // namespace

caf::expected<tls_context_ptr> make_server_context(const tls_files& files) {
  auto ctx = tls12_context(ssl::context::tls_server);
  // Clients resume sessions (tickets); OpenSSL refuses that handshake when
  // it verifies client certificates and no session id context is set.
  static constexpr unsigned char sid[] = "fleetd";
  SSL_CTX_set_session_id_context(ctx->native_handle(), sid, sizeof(sid) - 1);
  if (auto err = load_identity(*ctx, files))
    return err;
  if (!SSL_CTX_check_private_key(ctx->native_handle()))
    return make_error(ec::bad_config, "private key '" + files.key
                                        + "' does not match certificate '"
                                        + files.cert + "'");
  if (!files.ca.empty()) {
    if (auto err = load("client CA file", files.ca, [&](auto& ec) {
          ctx->load_verify_file(files.ca, ec);
        }))
      return err;
    // Verify a certificate a client sends; whether one is required is the
    // application's answer (a clear 403), not a failed handshake.
    ctx->set_verify_mode(ssl::verify_peer);
  }
  return ctx;
}

caf::expected<tls_context_ptr> make_client_context(const tls_files& files) {
  auto ctx = tls12_context(ssl::context::tls_client);
  caf::error err;
  if (files.ca.empty())
    err = load("system CA store", "default", [&](auto& ec) {
      ctx->set_default_verify_paths(ec);
    });
  else
    err = load("CA file", files.ca, [&](auto& ec) {
      ctx->load_verify_file(files.ca, ec);
    });
  if (err)
    return err;
  if (!files.cert.empty() || !files.key.empty())
    if (auto err2 = load_identity(*ctx, files))
      return err2;
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

} // namespace fleetd
