#include "cloud/tenancy.hpp"

#include <algorithm>
#include <cmath>

#include <caf/typed_event_based_actor.hpp>
#include <openssl/sha.h>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

using self_ptr = tenancy_actor::stateful_pointer<tenancy_state>;

constexpr int64_t day_ms = 24 * 3600 * 1000;
// A device over quota asks again at least this often: a raised quota lets
// it catch up without waiting out its debt or the next day.
constexpr int64_t max_quota_wait_ms = 10000;
// Seconds of points a quiet org may send at once.
constexpr double burst_seconds = 10;

std::string code_of(const caf::error& err) {
  return err.category() == caf::atom("fleetd")
           ? to_string(static_cast<ec>(err.code()))
           : "error";
}

// The cache's key: a digest, so the node's memory holds no device key.
std::string cache_key(const std::string& authorization) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(authorization.data()),
         authorization.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof(md));
}

// A device key's holder, or (api) an API token's org as {org, ""}, from the
// cache while fresh.
caf::expected<device_identity> authenticate(self_ptr self,
                                            const std::string& authorization,
                                            bool api = false) {
  auto& st = self->state;
  auto now = st.cfg.clock->steady_ms();
  auto key = cache_key((api ? "api " : "") + authorization);
  auto i = st.keys.find(key);
  if (i != st.keys.end()
      && now - i->second.at_ms < st.cfg.cache_ttl.count()) {
    ++st.counters["cache_hits"];
    return i->second.who;
  }
  caf::expected<device_identity> who{caf::error{}};
  if (api) {
    auto org = st.cfg.store->authenticate_api(authorization);
    who = org ? caf::expected<device_identity>{device_identity{*org, ""}}
              : caf::expected<device_identity>{org.error()};
  } else {
    who = st.cfg.store->authenticate(authorization);
  }
  if (static_cast<int64_t>(st.keys.size()) >= st.cfg.max_cache_entries)
    st.keys.clear();
  st.keys[key] = tenancy_state::cached{who, now};
  return who;
}

tenancy_state::org_usage& usage_of(self_ptr self, const std::string& org) {
  auto& st = self->state;
  auto& u = st.orgs[org];
  auto now = st.cfg.clock->steady_ms();
  if (u.quota_at_ms < 0 || now - u.quota_at_ms >= st.cfg.cache_ttl.count()) {
    if (auto q = st.cfg.store->quota(org))
      u.quota = *q;
    u.quota_at_ms = now;
  }
  return u;
}

// Charges what a stored batch used (0, 0: nothing, only asks); replies how
// long the org's next request must wait: 0 within its quota.
int64_t charge(self_ptr self, const std::string& org, int64_t points,
               int64_t bytes) {
  auto& st = self->state;
  auto& u = usage_of(self, org);
  auto now = st.cfg.clock->steady_ms();
  auto day = st.cfg.clock->now_ms() / day_ms;
  if (u.day != day) {
    u.day = day;
    u.bytes_today = 0;
  }
  u.bytes_today += bytes;
  auto pps = static_cast<double>(u.quota.points_per_second);
  if (pps > 0) {
    auto cap = pps * burst_seconds;
    auto refill = u.tokens_at_ms < 0 ? cap
                                     : pps * (now - u.tokens_at_ms) / 1000.0;
    u.tokens = std::min(cap, u.tokens + refill) - static_cast<double>(points);
    u.tokens_at_ms = now;
    // One batch may take the bucket into debt; the next waits it off.
    if (u.tokens < 0)
      return std::clamp<int64_t>(
        static_cast<int64_t>(std::ceil(-u.tokens * 1000.0 / pps)), 1,
        max_quota_wait_ms);
  }
  if (u.quota.bytes_per_day > 0 && u.bytes_today >= u.quota.bytes_per_day)
    return std::min(max_quota_wait_ms,
                    (day + 1) * day_ms - st.cfg.clock->now_ms());
  return 0;
}

} // namespace

void declare(option_set& opts, tenancy_config& x) {
  using namespace std::chrono_literals;
  opts.add("tenancy.cache-ttl", x.cache_ttl, 2s,
           "How long the node reuses what it read about a device key or an "
           "org's quota; a revocation on another node takes effect within it",
           0ms);
  opts.add("tenancy.secret-file", x.secret_file, "",
           "File holding the secret (64 hex digits) device keys and "
           "enrollment tokens are hashed with. Embedded store: created, mode "
           "0600, when missing (\"\": <data-dir>/tenancy.secret). PostgreSQL "
           "(store.backend): required and must exist; every node of one "
           "database must read the same secret, or keys made on one node are "
           "unknown on the others");
}

caf::error validate(const tenancy_config& x) {
  if (x.cache_ttl.count() < 0 || x.cache_ttl > std::chrono::seconds(5))
    return bad_config("tenancy.cache-ttl: must be 0..5s, so a revocation "
                      "takes effect within 5 s");
  if (x.max_cache_entries < 1)
    return bad_config("tenancy_config.max_cache_entries: must be positive");
  return caf::none;
}

tenancy_actor::behavior_type
tenancy(tenancy_actor::stateful_pointer<tenancy_state> self,
        tenancy_config cfg) {
  if (!cfg.store && stop_on_bad_config(self, "tenancy",
                                       bad_config("tenancy: no store")))
    return tenancy_actor::behavior_type::make_empty_behavior();
  if (stop_on_bad_config(self, "tenancy", validate(cfg)))
    return tenancy_actor::behavior_type::make_empty_behavior();
  self->state.cfg = std::move(cfg);
  return {
    [self](auth_atom, const std::string& authorization)
      -> caf::result<device_identity> {
      auto who = authenticate(self, authorization);
      ++self->state.counters[who ? "auth_ok" : "auth_" + code_of(who.error())];
      if (!who)
        return who.error();
      return *who;
    },
    [self](api_auth_atom, const std::string& authorization)
      -> caf::result<std::string> {
      auto who = authenticate(self, authorization, true);
      ++self->state.counters[who ? "api_auth_ok"
                                 : "api_auth_" + code_of(who.error())];
      if (!who)
        return who.error();
      return who->org;
    },
    [self](enroll_atom, const std::string& authorization,
           const std::string& device) -> caf::result<std::string> {
      auto& st = self->state;
      auto got = st.cfg.store->enroll(authorization, device);
      if (!got) {
        ++st.counters["enroll_" + code_of(got.error())];
        return got.error();
      }
      ++st.counters["enrolled"];
      log_info("tenancy", "enrolled device ", got->first.org, "/",
               got->first.device);
      return std::move(got->second);
    },
    [self](quota_atom, const std::string& org, int64_t points,
           int64_t bytes) -> int64_t {
      auto wait = charge(self, org, points, bytes);
      // Counted where a request is refused for it (points 0: the check).
      if (wait > 0 && points == 0)
        ++self->state.counters["over_quota_" + org];
      return wait;
    },
    [self](tenancy_atom, const tenancy_command& cmd)
      -> caf::result<tenancy_answer> {
      auto& st = self->state;
      auto out = st.cfg.store->run(cmd);
      if (!out)
        return out.error();
      // A revoked or rotated key must not live on in the cache.
      if (cmd.op == "revoke" || cmd.op == "rotate-key"
          || cmd.op == "api-token-revoke")
        st.keys.clear();
      if (cmd.op == "quota-set")
        st.orgs[cmd.org].quota_at_ms = -1;
      log_info("tenancy", "console: ", cmd.op, " ", cmd.org, " ", cmd.device);
      return std::move(*out);
    },
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = "tenancy";
      out.state = "serving";
      out.counters = st.counters;
      out.counters["cached_keys"] = static_cast<int64_t>(st.keys.size());
      return out;
    },
  };
}

} // namespace fleetd
