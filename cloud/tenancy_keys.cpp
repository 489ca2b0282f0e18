#include "cloud/tenancy_keys.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include "messages/error.hpp"
#include "runtime/random.hpp"

namespace fleetd {

namespace {

constexpr const char* key_prefix = "fdk_";
constexpr const char* token_prefix = "fdt_";
constexpr const char* api_prefix = "fqt_";
// 256 random bits as hex after the prefix.
constexpr size_t secret_bytes = 32;
constexpr size_t secret_length = 4 + 2 * secret_bytes;

// The secret of "Bearer <prefix><hex>", or empty when it has another shape.
std::string bearer(const std::string& authorization, const char* prefix) {
  const std::string scheme = "Bearer ";
  if (authorization.size() != scheme.size() + secret_length
      || authorization.compare(0, scheme.size(), scheme) != 0)
    return {};
  auto secret = authorization.substr(scheme.size());
  if (secret.compare(0, 4, prefix) != 0)
    return {};
  for (size_t i = 4; i < secret.size(); ++i)
    if (!std::isxdigit(static_cast<unsigned char>(secret[i])))
      return {};
  return secret;
}

} // namespace

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.')
    return false;
  for (auto c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_'
        && c != '-')
      return false;
  return true;
}

caf::expected<std::string> load_secret(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return make_error(ec::bad_config,
                      "tenancy.secret-file '" + path + "': cannot read it ("
                        + strerror(errno) + "); make one with: openssl rand "
                        "-hex 32 > FILE; chmod 600 FILE");
  std::string hex;
  std::getline(in, hex);
  if (hex.size() != 2 * secret_bytes)
    return make_error(ec::bad_config, "tenancy.secret-file '" + path
                                        + "': expected 64 hex digits");
  return hex;
}

caf::expected<std::string> load_or_create_secret(const std::string& path) {
  if (::access(path.c_str(), F_OK) == 0)
    return load_secret(path);
  auto hex = random_hex(secret_bytes);
  auto fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return make_error(ec::io_error, "cannot create '" + path
                                      + "': " + strerror(errno));
  auto line = hex + "\n";
  bool ok = ::write(fd, line.data(), line.size())
              == static_cast<ssize_t>(line.size())
            && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok)
    return make_error(ec::io_error, "cannot write '" + path + "'");
  return hex;
}

std::string new_device_key() {
  return key_prefix + random_hex(secret_bytes);
}

std::string new_enroll_token() {
  return token_prefix + random_hex(secret_bytes);
}

std::string new_api_token() {
  return api_prefix + random_hex(secret_bytes);
}

std::string api_token_id(const std::string& hash) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < 6 && i < hash.size(); ++i) {
    auto b = static_cast<unsigned char>(hash[i]);
    out += digits[b >> 4];
    out += digits[b & 0xF];
  }
  return out;
}

caf::expected<std::string> api_token_of(const std::string& authorization) {
  if (authorization.empty())
    return make_error(ec::missing_key, "the request carries no API token "
                                       "(Authorization: Bearer fqt_...)");
  auto token = bearer(authorization, api_prefix);
  if (token.empty())
    return unknown_api_token_error();
  return token;
}

caf::expected<std::string> api_token_holder(std::string org,
                                            int64_t expires_ms,
                                            int64_t revoked_ms,
                                            int64_t now_ms) {
  if (revoked_ms > 0)
    return make_error(ec::revoked_key, "the API token is revoked");
  if (expires_ms > 0 && expires_ms <= now_ms)
    return make_error(ec::expired_key, "the API token expired");
  return org;
}

caf::expected<std::string> key_of(const std::string& authorization) {
  if (authorization.empty())
    return make_error(ec::missing_key, "the request carries no device key "
                                       "(Authorization: Bearer ...)");
  auto key = bearer(authorization, key_prefix);
  if (key.empty())
    return unknown_key_error();
  return key;
}

caf::expected<std::string> token_of(const std::string& authorization) {
  auto token = bearer(authorization, token_prefix);
  if (token.empty())
    return no_token_error();
  return token;
}

std::string keyed_hash(const std::string& secret, const std::string& text) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(text.data()), text.size(), out,
       &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

caf::expected<device_identity> key_holder(device_identity who,
                                          int64_t expires_ms,
                                          int64_t revoked_ms, int64_t now_ms) {
  if (revoked_ms > 0)
    return make_error(ec::revoked_key, "device " + who.org + "/" + who.device
                                         + " is revoked");
  if (expires_ms > 0 && expires_ms <= now_ms)
    return make_error(ec::expired_key, "this key of " + who.org + "/"
                                         + who.device + " was rotated out");
  return who;
}

caf::error token_usable(bool revoked, int64_t expires_ms, int64_t uses_left,
                        int64_t now_ms) {
  if (revoked)
    return make_error(ec::bad_enroll_token, "the enrollment token is revoked");
  if (expires_ms <= now_ms)
    return make_error(ec::bad_enroll_token, "the enrollment token expired");
  if (uses_left <= 0)
    return used_up_error();
  return caf::none;
}

caf::error check_device_name(const std::string& device) {
  if (valid_name(device))
    return caf::none;
  return make_error(ec::conflict, "device names are 1-64 of A-Z a-z 0-9 . _ "
                                  "-, not '" + device.substr(0, 64) + "'");
}

caf::error unknown_key_error() {
  return make_error(ec::unknown_key, "no device holds this key");
}

caf::error unknown_api_token_error() {
  return make_error(ec::unknown_key, "no org holds this API token");
}

caf::error no_api_token_error(const std::string& org, const std::string& id) {
  return make_error(ec::unknown_key, "no active API token '" + id.substr(0, 64)
                                       + "' in org '" + org + "'");
}

caf::error no_token_error() {
  return make_error(ec::bad_enroll_token, "no such enrollment token");
}

caf::error used_up_error() {
  return make_error(ec::bad_enroll_token, "the enrollment token is used up");
}

caf::error unknown_org_error(const std::string& org) {
  return make_error(ec::unknown_org, "no org named '" + org + "'");
}

caf::error device_exists_error(const std::string& org,
                               const std::string& device) {
  return make_error(ec::conflict, "device '" + device + "' exists in org '"
                                    + org + "' (rotate-key gives it a new key)");
}

caf::error no_device_error(const std::string& org, const std::string& device) {
  return make_error(ec::unknown_device,
                    "no device '" + device + "' in org '" + org + "'");
}

caf::error no_active_device_error(const std::string& org,
                                  const std::string& device) {
  return make_error(ec::unknown_device, "no active device '" + device
                                          + "' in org '" + org + "'");
}

caf::error revoked_device_error(const std::string& device) {
  return make_error(ec::revoked_key, "device '" + device + "' is revoked");
}

std::string time_text(int64_t ms) {
  return ms == 0 ? "-" : std::to_string(ms);
}

} // namespace fleetd
