#include "runtime/scheduler.hpp"

#include <algorithm>
#include <chrono>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/defaults.hpp>
#include <caf/timespan.hpp>

#include "runtime/config_check.hpp"

namespace fleetd {

namespace {

namespace ws = caf::defaults::work_stealing;

int64_t caf_poll_attempts() {
  return static_cast<int64_t>(ws::aggressive_poll_attempts);
}

int64_t caf_moderate_attempts() {
  return static_cast<int64_t>(ws::moderate_poll_attempts);
}

option_set::duration caf_relaxed_sleep() {
  return std::chrono::duration_cast<option_set::duration>(
    ws::relaxed_sleep_duration);
}

// "2, 1, 1" (by tier) or "2".
std::string threads_text(const std::vector<int64_t>& xs) {
  std::string out;
  for (size_t i = 0; i < xs.size(); ++i)
    out += (i > 0 ? ", " : "") + std::to_string(xs[i]);
  return out;
}

} // namespace

scheduler_defaults device_scheduler() {
  return {"sharing", {2, 1, 1}};
}

scheduler_defaults cloud_scheduler() {
  return {"stealing", {2}};
}

void declare(option_set& opts, scheduler_options& x,
             const scheduler_defaults& d) {
  using namespace std::chrono_literals;
  opts.add("scheduler.policy", x.policy, d.policy,
           "CAF's scheduler: \"sharing\" (idle worker threads block until "
           "there is work) or \"stealing\" (idle workers poll, then wake "
           "every scheduler.relaxed-sleep)");
  auto tiered = d.threads.size() > 1;
  opts.add("scheduler.threads", x.threads, 0, "threads",
           "Worker threads of the scheduler (0: "
             + std::string(tiered ? "the tier's: " : "")
             + threads_text(d.threads)
             + (tiered ? ", at most the CPU cores" : "") + ")",
           0, 256);
  opts.add("scheduler.poll-attempts", x.poll_attempts, caf_poll_attempts(),
           "attempts",
           "Stealing only: an idle worker polls its queue this many times "
           "back to back before slowing down",
           0, 1000000);
  opts.add("scheduler.moderate-attempts", x.moderate_attempts,
           caf_moderate_attempts(), "attempts",
           "Stealing only: then polls this many times 50us apart before "
           "relaxing",
           0, 1000000);
  opts.add("scheduler.relaxed-sleep", x.relaxed_sleep, caf_relaxed_sleep(),
           "Stealing only: then wakes this often to look for work to steal "
           "(new work for it wakes it at once)",
           1ms);
}

caf::error validate(const scheduler_options& x) {
  if (x.policy != "sharing" && x.policy != "stealing")
    return bad_config("scheduler.policy: '" + x.policy
                      + "' is neither sharing nor stealing");
  if (x.threads < 0)
    return bad_config("scheduler.threads: must be 0 or more, got "
                      + std::to_string(x.threads));
  if (x.relaxed_sleep.count() <= 0)
    return bad_config("scheduler.relaxed-sleep: must be positive");
  if (x.policy == "stealing")
    return caf::none;
  // Knobs the sharing policy has not: a setting that would do nothing.
  auto only = [](const char* key) {
    return bad_config(std::string(key) + ": applies to scheduler.policy "
                                         "\"stealing\" only, policy is "
                                         "\"sharing\"");
  };
  if (x.poll_attempts != caf_poll_attempts())
    return only("scheduler.poll-attempts");
  if (x.moderate_attempts != caf_moderate_attempts())
    return only("scheduler.moderate-attempts");
  if (x.relaxed_sleep != caf_relaxed_sleep())
    return only("scheduler.relaxed-sleep");
  return caf::none;
}

int64_t worker_threads(const scheduler_options& x,
                       const scheduler_defaults& d, int64_t tier,
                       int64_t cores) {
  if (x.threads > 0)
    return x.threads;
  if (d.threads.empty())
    return 1;
  auto at = std::clamp<int64_t>(tier, 1, static_cast<int64_t>(d.threads.size()));
  auto n = d.threads[static_cast<size_t>(at - 1)];
  if (d.threads.size() > 1 && cores > 0)
    n = std::min(n, cores);
  return std::max<int64_t>(n, 1);
}

void apply(caf::actor_system_config& cfg, const scheduler_options& x,
           int64_t threads) {
  // CAF 0.17 reads the policy as an atom and the counts as size_t.
  cfg.set("scheduler.max-threads",
          static_cast<size_t>(std::max<int64_t>(threads, 1)));
  if (x.policy != "stealing") {
    cfg.set("scheduler.policy", caf::atom("sharing"));
    return;
  }
  cfg.set("scheduler.policy", caf::atom("stealing"));
  cfg.set("work-stealing.aggressive-poll-attempts",
          static_cast<size_t>(x.poll_attempts));
  cfg.set("work-stealing.moderate-poll-attempts",
          static_cast<size_t>(x.moderate_attempts));
  cfg.set("work-stealing.relaxed-sleep-duration",
          std::chrono::duration_cast<caf::timespan>(x.relaxed_sleep));
}

std::string describe(const scheduler_options& x, int64_t threads) {
  auto out = x.policy + ", " + std::to_string(threads)
             + (threads == 1 ? " thread" : " threads");
  if (x.policy == "stealing")
    out += ", relaxed sleep " + to_duration_text(x.relaxed_sleep);
  return out;
}

} // namespace fleetd
