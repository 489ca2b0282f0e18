#include "runtime/restart_policy.hpp"

#include <algorithm>

#include "runtime/config_check.hpp"
#include "runtime/options.hpp"

namespace fleetd {

void declare(option_set& opts, restart_limits& l) {
  using namespace std::chrono_literals;
  opts.add("supervisor.backoff-initial", l.backoff_initial, 100ms,
           "Delay before restarting an actor that died; doubles with each "
           "death in a row",
           1ms);
  opts.add("supervisor.backoff-max", l.backoff_max, 10s,
           "Longest delay between restarts of an actor", 1ms);
  opts.add("supervisor.stable-after", l.stable_after, 60s,
           "An actor that ran this long before dying restarts after "
           "supervisor.backoff-initial again",
           1ms);
  opts.add("supervisor.max-restarts", l.max_restarts, 5, "deaths",
           "An essential actor that dies more often than this within "
           "supervisor.window makes the node unhealthy (GET /healthz 503) "
           "until it stays up; it is still restarted",
           1, 1000000);
  opts.add("supervisor.window", l.window, 60s,
           "The span supervisor.max-restarts counts deaths in", 1ms);
}

caf::error validate(const restart_limits& l) {
  if (l.backoff_initial.count() <= 0)
    return bad_config("supervisor.backoff-initial: must be positive");
  if (l.backoff_max < l.backoff_initial)
    return bad_config("supervisor.backoff-max: must be at least "
                      "supervisor.backoff-initial");
  if (l.max_restarts < 1)
    return bad_config("supervisor.max-restarts: must be at least 1");
  if (l.window.count() <= 0 || l.stable_after.count() <= 0)
    return bad_config(std::string{l.window.count() <= 0
                                    ? "supervisor.window"
                                    : "supervisor.stable-after"}
                      + ": must be positive");
  return caf::none;
}

restart_policy::restart_policy(restart_limits limits) : limits_(limits) {
  // nop
}

void restart_policy::started(int64_t now_ms) {
  ++starts_;
  started_ms_ = now_ms;
}

std::chrono::milliseconds restart_policy::died(int64_t now_ms) {
  ++deaths_;
  // A child that ran long enough was healthy: its death starts a new series.
  if (started_ms_ >= 0 && now_ms - started_ms_ >= limits_.stable_after.count())
    consecutive_ = 0;
  ++consecutive_;
  started_ms_ = -1;
  recent_.push_back(now_ms);
  auto window = limits_.window.count();
  while (!recent_.empty() && recent_.front() <= now_ms - window)
    recent_.pop_front();
  // Doubling, capped; the shift stops before it could overflow.
  auto delay = limits_.backoff_initial.count();
  for (int64_t i = 1; i < consecutive_ && delay < limits_.backoff_max.count();
       ++i)
    delay *= 2;
  return std::chrono::milliseconds{
    std::min<int64_t>(delay, limits_.backoff_max.count())};
}

int64_t restart_policy::recent_deaths(int64_t now_ms) const {
  auto window = limits_.window.count();
  return std::count_if(recent_.begin(), recent_.end(),
                       [&](int64_t t) { return t > now_ms - window; });
}

bool restart_policy::too_often(int64_t now_ms) const {
  return recent_deaths(now_ms) > limits_.max_restarts;
}

} // namespace fleetd
