#include "tools/fleetctl_rollout.hpp"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "messages/error.hpp"
#include "messages/rollout_rules.hpp"
#include "runtime/json.hpp"
#include "runtime/options.hpp"

namespace fleetd {

// After query_usage, which ends without a newline.
const char* const rollout_usage =
  "\n  rollout start --org ORG --set.OPTION=VALUE ... [--canary 5%]\n"
  "            [--steps 25,50,100] [--by-tier] [--bake 10m] [--margin.*]\n"
  "            on a cloud node: change the org's devices' sync settings in\n"
  "            stages: the canary share first (picked by a hash of the\n"
  "            device id: the same devices every time), then each step,\n"
  "            each watched for --bake; halts by itself when the changed\n"
  "            devices' sync success, storage use or bytes per record are\n"
  "            worse than the unchanged ones' by a --margin.*; --by-tier:\n"
  "            the stages tier by tier (tier 1 first). One rollout per org\n"
  "            at a time\n"
  "  rollout status|halt|resume|rollback --org ORG\n"
  "            the rollout's state and last judgement; halt keeps the\n"
  "            state; resume pushes the current stage again and bakes it\n"
  "            afresh; rollback restores every changed device's previous\n"
  "            settings";

void declare(option_set& opts, rollout_options& x) {
  using namespace std::chrono_literals;
  opts.add("canary", x.canary, "5%",
           "rollout start: share of the devices (of each tier with "
           "--by-tier) changed first, e.g. 5% or 0.5%");
  opts.add("steps", x.steps, "25,50,100",
           "rollout start: the shares after the canary, ascending, the last "
           "100");
  opts.add("by-tier", x.by_tier, false,
           "rollout start: stages tier by tier (tier 1 first, devices of "
           "unknown tier last)");
  opts.add("bake", x.bake, 10min,
           "rollout start: how long each stage is watched before the next",
           0ms);
  opts.add("margin.sync-success", x.margin_sync_success, 5, "points",
           "rollout start: halt when the changed devices' sync success "
           "(accepted / (accepted + failed + missing batches)) is this many "
           "percentage points below the unchanged ones'",
           0, 100);
  opts.add("margin.storage", x.margin_storage, 10, "points",
           "rollout start: halt when the changed devices' disk use is this "
           "many percentage points above the unchanged ones'",
           0, 100);
  opts.add("margin.bandwidth", x.margin_bandwidth, 20, "percent",
           "rollout start: halt when the changed devices send this much "
           "more bytes per record than the unchanged ones",
           0, 100000);
}

bool is_rollout_command(const std::string& word) {
  return word == "rollout";
}

caf::expected<double> parse_percent(const std::string& text) {
  auto t = text;
  if (!t.empty() && t.back() == '%')
    t.pop_back();
  char* end = nullptr;
  auto x = t.empty() || t.size() > 16 ? 0.0 : std::strtod(t.c_str(), &end);
  if (t.empty() || t.size() > 16 || end != t.c_str() + t.size()
      || !(x > 0 && x <= 100))
    return make_error(ec::bad_config, "'" + text.substr(0, 32)
                                        + "' is not a share in (0, 100]%");
  return x;
}

caf::expected<rollout_command>
rollout_command_of(const std::vector<std::string>& args,
                   const rollout_options& opt, const std::string& org,
                   const caf::expected<settings_change>& change) {
  auto bad = [](std::string what) {
    return make_error(ec::bad_config, "rollout: " + std::move(what));
  };
  if (args.size() != 2)
    return bad("use rollout start|status|halt|resume|rollback --org ORG");
  rollout_command out;
  out.op = args[1];
  out.org = org;
  if (out.op == "status" || out.op == "halt" || out.op == "resume"
      || out.op == "rollback")
    return out;
  if (out.op != "start")
    return bad("unknown command '" + out.op
               + "' (start, status, halt, resume, rollback)");
  if (!change)
    return bad("nothing to set; give --set.OPTION=VALUE");
  out.change = *change;
  auto canary = parse_percent(opt.canary);
  if (!canary)
    return bad("--canary: " + error_text(canary.error()));
  out.canary_percent = *canary;
  std::stringstream in(opt.steps);
  std::string word;
  // One past the most: check_rollout_plan names the limit.
  while (out.steps.size() <= max_rollout_steps
         && std::getline(in, word, ',')) {
    auto x = parse_percent(word);
    if (!x)
      return bad("--steps: " + error_text(x.error()));
    out.steps.push_back(*x);
  }
  out.by_tier = opt.by_tier;
  out.bake_ms = opt.bake.count();
  out.margins.sync_success_points
    = static_cast<double>(opt.margin_sync_success);
  out.margins.storage_points = static_cast<double>(opt.margin_storage);
  out.margins.bandwidth_percent = static_cast<double>(opt.margin_bandwidth);
  // The node's own rules, before it is asked.
  if (auto err = check_rollout_plan(out))
    return err;
  return out;
}

namespace {

std::string num(double x) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.4g", x);
  return buf;
}

std::string to_json(const rollout_health& x) {
  json_object out;
  out.add("devices", x.devices)
    .add("reporting", x.reporting)
    .add("accepted", x.accepted)
    .add("failed", x.failed)
    .add("missing", x.missing)
    .raw("sync_success", num(x.sync_success))
    .raw("storage_used", num(x.storage_used))
    .raw("bytes_per_record", num(x.bytes_per_record));
  return out.str();
}

std::string share(double x) {
  return x < 0 ? std::string("-") : num(x * 100) + "%";
}

std::string to_text(const rollout_health& x) {
  std::ostringstream out;
  out << x.devices << " devices (" << x.reporting << " reporting): sync "
      << share(x.sync_success) << " (" << x.accepted << " accepted, "
      << x.failed << " failed, " << x.missing << " missing), disk "
      << share(x.storage_used) << ", "
      << (x.bytes_per_record < 0 ? std::string("-")
                                 : num(x.bytes_per_record))
      << " bytes/record";
  return out.str();
}

std::string stage_text(const rollout_stage& s) {
  return (s.tier > 0    ? "tier " + std::to_string(s.tier) + " "
          : s.tier < 0 ? std::string("unknown tier ")
                       : std::string()) + num(s.percent) + "%";
}

} // namespace

std::string to_json(const rollout_status& x) {
  std::string stages = "[";
  for (size_t i = 0; i < x.stages.size(); ++i)
    stages += (i ? "," : "") + json_object{}
                                 .add("tier", x.stages[i].tier)
                                 .raw("percent", num(x.stages[i].percent))
                                 .str();
  stages += "]";
  json_object out;
  out.add("org", x.org)
    .add("phase", x.phase)
    .add("reason", x.reason)
    .add("stage", x.stage)
    .raw("stages", stages)
    .add("devices", x.devices)
    .add("changed", x.changed)
    .add("started_ms", x.started_ms)
    .add("bake_started_ms", x.bake_started_ms)
    .add("bake_ends_ms", x.bake_ends_ms)
    .add("bake_ms", x.plan.bake_ms)
    .add("by_tier", x.plan.by_tier)
    .raw("changed_health", to_json(x.changed_health))
    .raw("unchanged_health", to_json(x.unchanged_health));
  return out.str();
}

std::string to_text(const rollout_status& x) {
  std::ostringstream out;
  out << "rollout of org '" << x.org << "': " << x.phase;
  if (!x.reason.empty())
    out << " (" << x.reason << ")";
  out << "\n";
  if (x.phase == "none")
    return out.str();
  out << "  changed " << x.changed << " of " << x.devices << " devices\n"
      << "  stages:";
  for (size_t i = 0; i < x.stages.size(); ++i)
    out << (static_cast<int64_t>(i) == x.stage ? " [" : " ")
        << stage_text(x.stages[i])
        << (static_cast<int64_t>(i) == x.stage ? "]" : "");
  out << "\n";
  if (x.phase == "baking")
    out << "  baking for " << (x.bake_ends_ms - x.bake_started_ms) / 1000
        << " s, judged at " << x.bake_ends_ms << " (Unix ms)\n";
  out << "  changed:   " << to_text(x.changed_health) << "\n"
      << "  unchanged: " << to_text(x.unchanged_health) << "\n";
  return out.str();
}

int run_rollout(caf::scoped_actor& self, const inspector_actor& node,
                const rollout_command& cmd, bool json, caf::timespan timeout) {
  int rc = 0;
  self->request(node, timeout, rollout_atom::value, cmd)
    .receive(
      [&](rollout_status& x) {
        std::cout << (json ? to_json(x) + "\n" : to_text(x));
      },
      [&](const caf::error& err) {
        bool refused = err.category() == caf::atom("fleetd");
        std::cerr << "fleetctl: rollout " << cmd.op
                  << (refused ? " refused: " : " failed: ") << render(err)
                  << std::endl;
        rc = refused ? 2 : 1;
      });
  return rc;
}

} // namespace fleetd
