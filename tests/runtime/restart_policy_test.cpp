// The restart bookkeeping of one supervised actor, on times the test gives:
// doubling backoff with a cap, reset after a stable run, deaths counted in a
// sliding window, "too often" past max_restarts.
#include "runtime/restart_policy.hpp"

#include <doctest/doctest.h>

#include "messages/error.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

restart_limits limits() {
  restart_limits l;
  l.backoff_initial = 100ms;
  l.backoff_max = 10s;
  l.stable_after = 60s;
  l.max_restarts = 3;
  l.window = 60s;
  return l;
}

} // namespace

TEST_CASE("the delay doubles with each death in a row, up to the cap") {
  restart_policy p{limits()};
  int64_t now = 1000;
  p.started(now);
  std::vector<int64_t> delays;
  for (int i = 0; i < 10; ++i) {
    now += 10;
    auto d = p.died(now);
    delays.push_back(d.count());
    now += d.count();
    p.started(now);
  }
  CHECK(delays == std::vector<int64_t>{100, 200, 400, 800, 1600, 3200, 6400,
                                       10000, 10000, 10000});
  CHECK(p.deaths() == 10);
  CHECK(p.restarts() == 10);
  CHECK(p.consecutive() == 10);
}

TEST_CASE("a run of stable_after starts the delays over") {
  restart_policy p{limits()};
  p.started(0);
  CHECK(p.died(10).count() == 100);
  p.started(110);
  CHECK(p.died(120).count() == 200);
  p.started(320);
  // Ran a full minute: healthy again, so its next death is a first one.
  CHECK(p.died(320 + 60000).count() == 100);
  CHECK(p.consecutive() == 1);
  CHECK(p.deaths() == 3);
}

TEST_CASE("thousands of deaths in a row neither overflow nor pass the cap") {
  restart_policy p{limits()};
  p.started(0);
  std::chrono::milliseconds d{0};
  for (int i = 0; i < 5000; ++i)
    d = p.died(i);
  CHECK(d == 10s);
}

TEST_CASE("more than max_restarts deaths within the window is too often") {
  restart_policy p{limits()};
  p.started(0);
  for (int64_t t : {1000, 2000, 3000}) {
    p.died(t);
    CHECK_FALSE(p.too_often(t));
    p.started(t + 1);
  }
  p.died(4000);
  CHECK(p.recent_deaths(4000) == 4);
  CHECK(p.too_often(4000));
  // The window slides: the first death leaves it after 60 s.
  CHECK(p.too_often(60999));
  CHECK_FALSE(p.too_often(61000));
  CHECK(p.recent_deaths(61000) == 3);
  CHECK(p.recent_deaths(64000) == 0);
}

TEST_CASE("a failed start counts as a death, not as a restart") {
  restart_policy p{limits()};
  p.started(0);
  p.died(10);
  p.died(110); // the factory failed
  CHECK(p.deaths() == 2);
  CHECK(p.restarts() == 0);
  p.started(400);
  CHECK(p.restarts() == 1);
}

TEST_CASE("the supervisor.* options are checked") {
  auto l = limits();
  CHECK_FALSE(validate(l));
  l.backoff_max = 50ms;
  CHECK(render(validate(l)).find("supervisor.backoff-max") != std::string::npos);
  l = limits();
  l.max_restarts = 0;
  CHECK(render(validate(l)).find("supervisor.max-restarts")
        != std::string::npos);
  l = limits();
  l.window = 0ms;
  CHECK(render(validate(l)).find("supervisor.window") != std::string::npos);
}
