#include "ch_fixture.hpp"

#include <doctest/doctest.h>

#include "messages/error.hpp"
#include "runtime/http_client.hpp"
#include "shared_server.hpp"

namespace fleetd::test {

ch_server* shared_ch_server(std::string& why) {
  return shared_server<ch_server>("ch_fixture: ClickHouse", why);
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
