#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

namespace fleetd {

/// The one project error enum; travels inside caf::error with category "fleetd".
enum class ec : uint8_t {
  /// Not an error.
  none = 0,
  /// A config option is unknown, of the wrong type, missing or out of range.
  bad_config,
  /// A file or socket operation failed.
  io_error,
  /// The local database failed or is corrupt.
  storage_failed,
  /// The disk is full or read-only: back-pressure, not a crash.
  disk_full,
  /// A batch's checksum does not match its content.
  checksum_mismatch,
  /// A payload could not be decompressed or decoded.
  decode_failed,
  /// A payload exceeds a size limit.
  too_large,
  /// A sequence number is outside the accepted window.
  bad_sequence,
  /// The stream named by a batch is not known.
  unknown_stream,
  /// The peer could not be reached or closed the connection.
  unreachable,
  /// The peer answered with an error status.
  remote_error,
  /// An operation did not finish in time.
  timeout,
  /// The actor is shutting down and accepts no more work.
  shutting_down,
  /// A batch refers to session state (series table) the receiver lacks.
  session_out_of_sync,
  /// A command names a device the cloud has never heard from.
  unknown_device,
  /// SQLite's own verdict: the file is corrupt or not a database at all.
  storage_corrupt,
  /// Another connection or process holds a lock on the database (busy).
  storage_locked,
  /// A store refuses a record as sent (constraint, type, size): retrying
  /// the same record cannot help, unlike busy, disk full or I/O errors.
  invalid_record,
  /// A request's Content-Type is not the protocol's media type.
  unsupported_media_type,
  /// A request's Content-Encoding is not one the receiver decodes.
  unsupported_encoding,
  /// A TLS handshake failed (certificate, name, protocol).
  tls_error,
  /// A device request carries no device key.
  missing_key,
  /// A device key no device holds.
  unknown_key,
  /// A device key rotated out (its overlap window is over).
  expired_key,
  /// A device key of a revoked device.
  revoked_key,
  /// A request names another device than the one its key belongs to.
  device_mismatch,
  /// An org is over its quota: retry later.
  over_quota,
  /// An enrollment token that is unknown, used up, expired or revoked.
  bad_enroll_token,
  /// A name (org, device) that exists already or is not allowed.
  conflict,
  /// A command names an org that does not exist.
  unknown_org,
  /// PostgreSQL refused or failed a statement (its own message and SQLSTATE).
  database_error,
};

/// Stable lower-case name of an error code, e.g. "checksum_mismatch".
const char* to_string(ec x);

caf::error make_error(ec code);
caf::error make_error(ec code, std::string context);

/// True when `err` is fleetd's error `code`.
bool is_error(const caf::error& err, ec code);

/// Human-readable rendering of any error, fleetd's or CAF's.
std::string render(const caf::error& err);

/// The error's own text without its code (the context a fleetd error was
/// made with), for answers that carry the code beside it; render() else.
std::string error_text(const caf::error& err);

/// Registers the renderer of the "fleetd" error category.
void add_error_category(caf::actor_system_config& cfg);

} // namespace fleetd
