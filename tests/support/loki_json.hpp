#pragma once

// The stand-in reads push bodies with the runtime's strict JSON reader.

#include "runtime/json_reader.hpp"

namespace fleetd::test {

using fleetd::json_value;
using fleetd::json_member;
using fleetd::parse_json;

} // namespace fleetd::test
