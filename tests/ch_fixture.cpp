#include "ch_fixture.hpp"

#include <iostream>
#include <memory>

#include <doctest/doctest.h>

#include "messages/error.hpp"
#include "runtime/http_client.hpp"

namespace fleetd::test {

ch_server* shared_ch_server(std::string& why) {
  static ch_server::failure failed;
  static std::unique_ptr<ch_server> server = [] {
    auto s = ch_server::start(failed);
    if (s)
      std::cout << "ch_fixture: ClickHouse up in " << s->start_seconds()
                << " s at " << s->dir() << std::endl;
    return s;
  }();
  if (server)
    return server.get();
  if (failed.skip) {
    why = failed.why;
    return nullptr;
  }
  FAIL("ClickHouse did not start: " << failed.why);
  return nullptr;
}

std::string ch_must(ch_server& server, const std::string& sql) {
  http_client client{"127.0.0.1", static_cast<uint16_t>(server.http_port()),
                     std::chrono::seconds{30}, size_t{64} << 20};
  auto res = client.post("/", sql, {});
  if (!res)
    FAIL(sql << ": " << render(res.error()));
  if (res->status != 200)
    FAIL(sql << ": HTTP " << res->status << ": " << res->body);
  return res->body;
}

} // namespace fleetd::test
