#pragma once

// Internal to the TLS users: includes OpenSSL through Asio (mbedTLS in the
// device build, FLEETD_MBEDTLS), so only their .cpp files include it.

#include <memory>

#include <caf/expected.hpp>

#include "runtime/tls.hpp"

#ifdef FLEETD_MBEDTLS
#  include "runtime/tls_mbed.hpp"
namespace fleetd {
namespace tls_api = mbed;
} // namespace fleetd
#else
#  include <boost/asio/ssl/context.hpp>
namespace fleetd {
namespace tls_api = boost::asio::ssl;
} // namespace fleetd
#endif

namespace fleetd {

using tls_context_ptr = std::shared_ptr<tls_api::context>;

/// A TLS 1.2+ server context from `files`; with `files.ca` it verifies a
/// client certificate when one is sent (the server decides what a missing one
/// means). Errors name the file that failed.
caf::expected<tls_context_ptr> make_server_context(const tls_files& files);

/// A TLS 1.2+ client context that verifies the server against `files.ca`
/// (or the system store) and presents cert + key when set.
caf::expected<tls_context_ptr> make_client_context(const tls_files& files);

} // namespace fleetd
