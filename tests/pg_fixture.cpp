#include "pg_fixture.hpp"

#include <iostream>
#include <memory>

#include <doctest/doctest.h>

#include "messages/error.hpp"
#include "shared_server.hpp"

namespace fleetd::test {

pg_server* shared_pg_server(std::string& why) {
  return shared_server<pg_server>("pg_fixture: PostgreSQL (initdb, start, "
                                  "roles)",
                                  why);
}

std::optional<pg_database> fresh_pg_database(const std::string& prefix,
                                             std::string& why, bool pooled) {
  auto* server = shared_pg_server(why);
  if (!server)
    return std::nullopt;
  if (pooled) {
    pg_server::failure failed;
    bool had = server->bouncer_pid() > 0;
    if (!server->with_bouncer(failed)) {
      if (failed.skip) {
        why = failed.why;
        return std::nullopt;
      }
      FAIL(failed.why);
    }
    if (!had)
      std::cout << "pg_fixture: PgBouncer up in "
                << server->bouncer_start_seconds() << " s" << std::endl;
  }
  auto db = server->create_database(prefix);
  if (!db)
    FAIL(render(db.error()));
  return std::move(*db);
}

pg::connection pg_connect(const std::string& url, pg::connect_options opts) {
  auto c = pg::connection::open(url, opts);
  if (!c)
    FAIL(render(c.error()));
  return std::move(*c);
}

pg::result pg_must(pg::connection& c, const std::string& sql,
                   const pg::params& ps) {
  auto r = c.exec(sql, ps);
  if (!r)
    FAIL(sql << ": " << render(r.error()));
  return std::move(*r);
}

} // namespace fleetd::test
