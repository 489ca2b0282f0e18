#pragma once

#include <string>
#include <utility>

#include <caf/error.hpp>

#include "messages/error.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

/// The error of a config that cannot work: `what` names the option key
/// (or the field) and why, e.g. "cloud.port: must be 1..65535, got 0".
inline caf::error bad_config(std::string what) {
  return make_error(ec::bad_config, std::move(what));
}

/// When `err` is set (an actor spawned with a config that cannot work): logs
/// it under `component`, stops `self` with it and returns true, so the actor
/// answers nothing instead of running on a config its validate() refused.
template <class Self>
bool stop_on_bad_config(Self* self, const char* component, caf::error err) {
  if (!err)
    return false;
  log_error(component, render(err));
  self->quit(std::move(err));
  return true;
}

} // namespace fleetd
