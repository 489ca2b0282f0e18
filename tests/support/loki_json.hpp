#pragma once

// The stand-in reads push bodies with the runtime's strict JSON reader.

#include "messages/json_reader.hpp"

namespace fleetd::test {

using json_value = fleetd::json_node;
using fleetd::json_member;
using fleetd::parse_json;

} // namespace fleetd::test
