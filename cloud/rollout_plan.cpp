#include "cloud/rollout_plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cloud/cloud_store_backend.hpp"
#include "messages/error.hpp"
#include "runtime/config_check.hpp"

namespace fleetd {

caf::error check_rollout_start(const rollout_command& c) {
  if (auto err = check_rollout_plan(c))
    return err;
  return check_settings_change(c.change);
}

std::string org_of(const std::string& device_id) {
  auto slash = device_id.find('/');
  return slash == std::string::npos ? std::string{}
                                    : device_id.substr(0, slash);
}

std::vector<rollout_stage> plan_stages(const rollout_command& c,
                                       const std::set<int64_t>& tiers) {
  std::vector<rollout_stage> out;
  auto add = [&](int64_t tier) {
    out.push_back({tier, c.canary_percent});
    for (auto x : c.steps)
      // A step equal to the one before adds nothing to wait for.
      if (x > out.back().percent)
        out.push_back({tier, x});
  };
  if (!c.by_tier) {
    add(0);
    return out;
  }
  for (auto t : tiers)
    if (t > 0)
      add(t);
  if (tiers.count(-1) > 0 || tiers.count(0) > 0)
    add(-1);
  return out;
}

namespace {

int64_t tier_key(int64_t tier) {
  return tier > 0 ? tier : -1;
}

// Where a tier comes in the by-tier order (tier 1 first, unknown last).
int64_t tier_rank(int64_t key) {
  return key > 0 ? key : INT64_MAX;
}

} // namespace

std::set<std::string> stage_targets(const std::vector<rollout_device>& devices,
                                    const std::vector<rollout_stage>& stages,
                                    size_t k) {
  std::set<std::string> out;
  if (k >= stages.size())
    return out;
  auto& stage = stages[k];
  // Each tier's devices (or all, tier 0) in hash order.
  std::map<int64_t, std::vector<std::pair<uint64_t, const std::string*>>> by;
  for (auto& d : devices)
    by[stage.tier == 0 ? 0 : tier_key(d.tier)].emplace_back(device_hash(d.id),
                                                            &d.id);
  for (auto& [key, xs] : by) {
    std::sort(xs.begin(), xs.end(), [](auto& a, auto& b) {
      return a.first != b.first ? a.first < b.first : *a.second < *b.second;
    });
    size_t n = 0;
    if (stage.tier == 0 || key == stage.tier)
      n = static_cast<size_t>(
        std::ceil(stage.percent * static_cast<double>(xs.size()) / 100.0));
    else if (tier_rank(key) < tier_rank(stage.tier))
      n = xs.size();
    for (size_t i = 0; i < std::min(n, xs.size()); ++i)
      out.insert(*xs[i].second);
  }
  return out;
}

rollout_health group_health(const std::set<std::string>& group,
                            const std::map<std::string, device_window>& window,
                            const std::map<std::string, double>& storage) {
  rollout_health out;
  out.devices = static_cast<int64_t>(group.size());
  double success = 0;
  double used = 0;
  int64_t used_n = 0;
  int64_t bytes = 0;
  int64_t records = 0;
  for (auto& id : group) {
    if (auto i = storage.find(id); i != storage.end()) {
      used += i->second;
      ++used_n;
    }
    auto i = window.find(id);
    if (i == window.end())
      continue;
    auto& w = i->second;
    out.accepted += w.accepted;
    out.failed += w.failed;
    out.missing += w.missing;
    bytes += w.bytes;
    records += w.records;
    auto all = w.accepted + w.failed + w.missing;
    if (w.accepted + w.failed > 0)
      ++out.reporting;
    if (all > 0)
      success += static_cast<double>(w.accepted) / static_cast<double>(all);
  }
  if (out.devices > 0)
    out.sync_success = success / static_cast<double>(out.devices);
  if (used_n > 0)
    out.storage_used = used / static_cast<double>(used_n);
  if (records > 0)
    out.bytes_per_record = static_cast<double>(bytes)
                           / static_cast<double>(records);
  return out;
}

std::pair<rollout_health, rollout_health>
stage_health(const std::vector<rollout_device>& devices,
             const std::set<std::string>& pushed, const rollout_stage& stage,
             const std::map<std::string, device_window>& window,
             const std::map<std::string, double>& storage) {
  std::set<std::string> changed;
  std::set<std::string> unchanged;
  for (auto& d : devices)
    if (stage.tier == 0 || tier_key(d.tier) == stage.tier)
      (pushed.count(d.id) ? changed : unchanged).insert(d.id);
  return {group_health(changed, window, storage),
          group_health(unchanged, window, storage)};
}

namespace {

std::string pct(double x) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.1f%%", x * 100.0);
  return buf;
}

} // namespace

std::string judge(const rollout_health& changed,
                  const rollout_health& unchanged, const rollout_margins& m) {
  if (changed.devices == 0 || unchanged.devices == 0)
    return {};
  std::string out;
  auto add = [&out](std::string x) {
    out += (out.empty() ? "" : "; ") + std::move(x);
  };
  if (changed.sync_success >= 0 && unchanged.sync_success >= 0
      && changed.sync_success
           < unchanged.sync_success - m.sync_success_points / 100.0)
    add("sync success " + pct(changed.sync_success) + " on the changed devices "
        "vs " + pct(unchanged.sync_success) + " on the others (margin "
        + std::to_string(static_cast<int64_t>(m.sync_success_points))
        + " points)");
  if (changed.storage_used >= 0 && unchanged.storage_used >= 0
      && changed.storage_used
           > unchanged.storage_used + m.storage_points / 100.0)
    add("storage use " + pct(changed.storage_used) + " vs "
        + pct(unchanged.storage_used) + " (margin "
        + std::to_string(static_cast<int64_t>(m.storage_points)) + " points)");
  if (changed.bytes_per_record > 0 && unchanged.bytes_per_record > 0
      && changed.bytes_per_record
           > unchanged.bytes_per_record * (1 + m.bandwidth_percent / 100.0))
    add("bandwidth " + std::to_string(changed.bytes_per_record)
        + " bytes/record vs " + std::to_string(unchanged.bytes_per_record)
        + " (margin " + std::to_string(static_cast<int64_t>(m.bandwidth_percent))
        + "%)");
  return out;
}

} // namespace fleetd
