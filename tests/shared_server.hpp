#pragma once

// One throwaway server per test binary (tools/pg_server, tools/ch_server),
// started on first use and dropped (stopped) when the binary exits.

#include <iostream>
#include <memory>
#include <string>

#include <doctest/doctest.h>

namespace fleetd::test {

/// This binary's `Server`, started by Server::start on first call; nullptr
/// when it cannot run here, `why` then says why: the case skips. A server
/// that should start and does not fails the calling case. `what` names it
/// in the log ("PostgreSQL").
template <class Server>
Server* shared_server(const char* what, std::string& why) {
  static typename Server::failure failed;
  static std::unique_ptr<Server> server = [what] {
    auto s = Server::start(failed);
    if (s)
      std::cout << what << " up in " << s->start_seconds() << " s at "
                << s->dir() << std::endl;
    return s;
  }();
  if (server)
    return server.get();
  if (failed.skip) {
    why = failed.why;
    return nullptr;
  }
  FAIL(what << " did not start: " << failed.why);
  return nullptr;
}

} // namespace fleetd::test
