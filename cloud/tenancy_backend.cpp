#include "cloud/tenancy_backend.hpp"

#include "cloud/tenancy_keys.hpp"
#include "messages/error.hpp"

namespace fleetd {

namespace {

caf::expected<tenancy_answer> table(std::vector<std::string> columns,
                                    caf::expected<tenancy_backend::rows> rows) {
  if (!rows)
    return rows.error();
  return tenancy_answer{std::move(columns), std::move(*rows), {}};
}

caf::expected<tenancy_answer> done(caf::error err,
                                   std::vector<std::string> columns,
                                   std::vector<std::string> row) {
  if (err)
    return err;
  return tenancy_answer{std::move(columns), {std::move(row)}, {}};
}

// The commands that make a key or token answer it once, as the secret.
caf::expected<tenancy_answer> with_secret(caf::expected<std::string> secret,
                                          std::vector<std::string> row) {
  if (!secret)
    return secret.error();
  return tenancy_answer{{"org", "device"}, {std::move(row)}, *secret};
}

} // namespace

caf::expected<tenancy_answer> tenancy_backend::run(const tenancy_command& cmd) {
  auto& org = cmd.org;
  if (cmd.op == "org-create") {
    if (!valid_name(org))
      return make_error(ec::conflict, "org names are 1-64 of A-Z a-z 0-9 . _ "
                                      "-, not '" + org.substr(0, 64) + "'");
    return done(create_org(org), {"org"}, {org});
  }
  if (cmd.op == "org-list")
    return table({"org", "devices", "points_per_second", "bytes_per_day"},
                 list_orgs());
  if (cmd.op == "device-add") {
    if (auto err = check_device_name(cmd.device))
      return err;
    return with_secret(add_device(org, cmd.device), {org, cmd.device});
  }
  if (cmd.op == "device-list")
    return table({"org", "device", "created_ms", "revoked_ms", "keys"},
                 list_devices(org));
  if (cmd.op == "rotate-key")
    return with_secret(rotate_key(org, cmd.device, cmd.duration_ms),
                       {org, cmd.device});
  if (cmd.op == "revoke")
    return done(revoke(org, cmd.device), {"org", "device", "state"},
                {org, cmd.device, "revoked"});
  if (cmd.op == "enroll-create") {
    if (cmd.uses < 1 || cmd.duration_ms < 1)
      return make_error(ec::conflict, "a token needs --uses >= 1 and a "
                                      "positive --expires");
    return with_secret(create_token(org, cmd.uses, cmd.duration_ms),
                       {org, "*"});
  }
  if (cmd.op == "enroll-revoke") {
    auto n = revoke_tokens(org);
    if (!n)
      return n.error();
    return tenancy_answer{{"org", "tokens_revoked"},
                          {{org, std::to_string(*n)}},
                          {}};
  }
  if (cmd.op.compare(0, 10, "api-token-") == 0)
    return run_api_token(cmd);
  if (cmd.op == "quota-set") {
    if (cmd.points_per_second < 0 || cmd.bytes_per_day < 0)
      return make_error(ec::conflict, "quotas are >= 0 (0: unlimited)");
    return done(set_quota(org, {cmd.points_per_second, cmd.bytes_per_day}),
                {"org", "points_per_second", "bytes_per_day"},
                {org, std::to_string(cmd.points_per_second),
                 std::to_string(cmd.bytes_per_day)});
  }
  return make_error(ec::conflict, "unknown tenancy command '"
                                    + cmd.op.substr(0, 32) + "'");
}

caf::expected<tenancy_answer>
tenancy_backend::run_api_token(const tenancy_command& cmd) {
  auto& org = cmd.org;
  if (cmd.op == "api-token-create") {
    if (cmd.duration_ms < 0)
      return make_error(ec::conflict, "an API token's --ttl is >= 0 (0: "
                                      "never expires)");
    auto token = create_api_token(org, cmd.duration_ms);
    if (!token)
      return token.error();
    auto expires = cmd.duration_ms == 0 ? std::string("-")
                                        : "+" + std::to_string(cmd.duration_ms)
                                            + "ms";
    return tenancy_answer{{"org", "token_id", "expires"},
                          {{org, api_token_id(hash_of(*token)), expires}},
                          *token};
  }
  if (cmd.op == "api-token-list")
    return table({"org", "token_id", "created_ms", "expires_ms", "revoked_ms"},
                 list_api_tokens(org));
  if (cmd.op == "api-token-revoke")
    return done(revoke_api_token(org, cmd.device),
                {"org", "token_id", "state"}, {org, cmd.device, "revoked"});
  return make_error(ec::conflict, "unknown tenancy command '"
                                    + cmd.op.substr(0, 32) + "'");
}

} // namespace fleetd
