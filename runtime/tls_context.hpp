#pragma once

// Internal to the HTTP server and client: includes OpenSSL through Asio, so
// only their .cpp files include it.

#include <memory>

#include <boost/asio/ssl/context.hpp>
#include <caf/expected.hpp>

#include "runtime/tls.hpp"

namespace fleetd {

using tls_context_ptr = std::shared_ptr<boost::asio::ssl::context>;

/// A TLS 1.2+ server context from `files`; with `files.ca` it verifies a
/// client certificate when one is sent (the server decides what a missing one
/// means). Errors name the file that failed.
caf::expected<tls_context_ptr> make_server_context(const tls_files& files);

/// A TLS 1.2+ client context that verifies the server against `files.ca`
/// (or the system store) and presents cert + key when set.
caf::expected<tls_context_ptr> make_client_context(const tls_files& files);

} // namespace fleetd
