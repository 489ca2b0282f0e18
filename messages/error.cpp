#include "messages/error.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/message.hpp>
#include <caf/deep_to_string.hpp>

namespace fleetd {

namespace {

constexpr caf::atom_value category = caf::atom("fleetd");

// "code" or "code: context" for an error of our category.
std::string render_ours(uint8_t code, const caf::message& ctx) {
  std::string out = to_string(static_cast<ec>(code));
  if (ctx.size() == 1 && ctx.match_element<std::string>(0)) {
    out += ": ";
    out += ctx.get_as<std::string>(0);
  }
  return out;
}

} // namespace

const char* to_string(ec x) {
  switch (x) {
    case ec::none: return "none";
    case ec::bad_config: return "bad_config";
    case ec::io_error: return "io_error";
    case ec::storage_failed: return "storage_failed";
    case ec::disk_full: return "disk_full";
    case ec::checksum_mismatch: return "checksum_mismatch";
    case ec::decode_failed: return "decode_failed";
    case ec::too_large: return "too_large";
    case ec::bad_sequence: return "bad_sequence";
    case ec::unknown_stream: return "unknown_stream";
    case ec::unreachable: return "unreachable";
    case ec::remote_error: return "remote_error";
    case ec::timeout: return "timeout";
    case ec::shutting_down: return "shutting_down";
    case ec::session_out_of_sync: return "session_out_of_sync";
    case ec::unknown_device: return "unknown_device";
    case ec::storage_corrupt: return "storage_corrupt";
    case ec::storage_locked: return "storage_locked";
    case ec::invalid_record: return "invalid_record";
    case ec::unsupported_media_type: return "unsupported_media_type";
    case ec::unsupported_encoding: return "unsupported_encoding";
    case ec::tls_error: return "tls_error";
    case ec::missing_key: return "missing_key";
    case ec::unknown_key: return "unknown_key";
    case ec::expired_key: return "expired_key";
    case ec::revoked_key: return "revoked_key";
    case ec::device_mismatch: return "device_mismatch";
    case ec::over_quota: return "over_quota";
    case ec::bad_enroll_token: return "bad_enroll_token";
    case ec::conflict: return "conflict";
    case ec::unknown_org: return "unknown_org";
    case ec::database_error: return "database_error";
  }
  return "unknown";
}

caf::error make_error(ec code) {
  return caf::error(static_cast<uint8_t>(code), category);
}

caf::error make_error(ec code, std::string context) {
  return caf::error(static_cast<uint8_t>(code), category,
                    caf::make_message(std::move(context)));
}

bool is_error(const caf::error& err, ec code) {
  return err && err.category() == category
         && err.code() == static_cast<uint8_t>(code);
}

std::string render(const caf::error& err) {
  if (!err)
    return "ok";
  if (err.category() == category)
    return render_ours(err.code(), err.context());
  return caf::actor_system_config::render(err);
}

std::string error_text(const caf::error& err) {
  const auto& ctx = err.context();
  if (err.category() == category && ctx.size() == 1
      && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return render(err);
}

void add_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(category, [](uint8_t code, caf::atom_value,
                                      const caf::message& ctx) {
    return render_ours(code, ctx);
  });
}

} // namespace fleetd
