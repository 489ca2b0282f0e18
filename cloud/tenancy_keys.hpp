#pragma once

// What both tenancy backends share: names, the node's hashing secret, the
// shape of keys and tokens, their keyed hashes, and the errors a request
// or command gets, so that embedded and PostgreSQL answer alike.

#include <cstdint>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "messages/types.hpp"

namespace fleetd {

/// Names of orgs and devices: 1..64 of [A-Za-z0-9._-], not starting with a
/// dot; the store keys a device as "<org>/<device>", so no '/'.
bool valid_name(const std::string& name);

/// Reads the node's hashing secret (64 hex digits) from `path`; bad_config
/// when it is missing or malformed.
caf::expected<std::string> load_secret(const std::string& path);
/// load_secret, creating the file (32 random bytes as hex, mode 0600) when
/// missing.
caf::expected<std::string> load_or_create_secret(const std::string& path);

/// A new device key ("fdk_" and 256 random bits as hex), shown once.
std::string new_device_key();
/// A new enrollment token ("fdt_" and 256 random bits as hex), shown once.
std::string new_enroll_token();

/// A new org API token ("fqt_" and 256 random bits as hex), shown once.
std::string new_api_token();
/// A token's public id: the first 12 hex digits of its keyed hash (lists
/// and revocations name it; it proves nothing).
std::string api_token_id(const std::string& hash);

/// The key of "Bearer fdk_<hex>"; missing_key or unknown_key otherwise
/// (nothing of a malformed header is hashed, stored or echoed).
caf::expected<std::string> key_of(const std::string& authorization);
/// The token of "Bearer fdt_<hex>"; bad_enroll_token otherwise.
caf::expected<std::string> token_of(const std::string& authorization);

/// The API token of "Bearer fqt_<hex>"; missing_key or unknown_key
/// otherwise (nothing of a malformed header is hashed or echoed).
caf::expected<std::string> api_token_of(const std::string& authorization);

/// The org a found API token proves at `now_ms`: revoked_key or
/// expired_key when it no longer does.
caf::expected<std::string> api_token_holder(std::string org,
                                            int64_t expires_ms,
                                            int64_t revoked_ms,
                                            int64_t now_ms);

/// HMAC-SHA256 of a key or token under the node's secret (32 raw bytes).
std::string keyed_hash(const std::string& secret, const std::string& text);

/// The identity a found key proves at `now_ms`: revoked_key when its device
/// is revoked, expired_key when rotated out.
caf::expected<device_identity> key_holder(device_identity who,
                                          int64_t expires_ms,
                                          int64_t revoked_ms, int64_t now_ms);
/// none when a found token may enroll one more device at `now_ms`.
caf::error token_usable(bool revoked, int64_t expires_ms, int64_t uses_left,
                        int64_t now_ms);

/// conflict unless `device` is a valid name.
caf::error check_device_name(const std::string& device);

// The errors both backends answer with.
caf::error unknown_key_error();
caf::error no_token_error();
caf::error used_up_error();
caf::error unknown_org_error(const std::string& org);
caf::error device_exists_error(const std::string& org,
                               const std::string& device);
caf::error no_device_error(const std::string& org, const std::string& device);
caf::error no_active_device_error(const std::string& org,
                                  const std::string& device);
caf::error revoked_device_error(const std::string& device);
caf::error unknown_api_token_error();
caf::error no_api_token_error(const std::string& org, const std::string& id);

/// A time for the console: "-" for 0 (never).
std::string time_text(int64_t ms);

} // namespace fleetd
