#pragma once

// A throwaway ClickHouse 18.16 server per test binary (tools/ch_server):
// a real server from Debian's package (tools/install-deps), never a mock.

#include <string>

#include "tools/ch_server/ch_server.hpp"

namespace fleetd::test {

using fleetd::ch_server;

/// This binary's server, started on first call; nullptr when it cannot run
/// here, `why` then says why: the case skips. A server that should start
/// and does not fails the calling case.
ch_server* shared_ch_server(std::string& why);

/// The body of ClickHouse's answer to `sql` (sent as the default user); a
/// failed check naming the SQL when the server refuses it.
std::string ch_must(ch_server& server, const std::string& sql);

} // namespace fleetd::test
