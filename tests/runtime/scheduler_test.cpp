// scheduler.*: parsed and validated with clear errors, and what reaches CAF
// is what CAF starts (policy and worker count read back from a running
// actor system, not from our own config object).
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/policy/work_sharing.hpp>
#include <caf/policy/work_stealing.hpp>
#include <caf/scheduler/coordinator.hpp>

#include "messages/error.hpp"
#include "runtime/scheduler.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

// The options of a program with `d`'s defaults, parsed from `args`.
struct parsed {
  scheduler_options x;
  option_set opts{"prog", "test"};
  caf::error err;

  explicit parsed(const std::vector<std::string>& args,
                  const scheduler_defaults& d = device_scheduler()) {
    declare(opts, x, d);
    err = opts.parse(args);
    if (!err)
      err = validate(x);
  }

  std::string error() const {
    return err ? render(err) : std::string();
  }
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// What CAF runs with `x` applied on `threads` threads.
struct started {
  std::string policy;
  size_t workers = 0;
};

started start(const scheduler_options& x, int64_t threads) {
  caf::actor_system_config cfg;
  apply(cfg, x, threads);
  caf::actor_system sys{cfg};
  started out;
  auto& sched = sys.scheduler();
  out.workers = sched.num_workers();
  using caf::scheduler::coordinator;
  if (dynamic_cast<coordinator<caf::policy::work_sharing>*>(&sched))
    out.policy = "sharing";
  else if (dynamic_cast<coordinator<caf::policy::work_stealing>*>(&sched))
    out.policy = "stealing";
  return out;
}

} // namespace

TEST_CASE("defaults: a device shares work, a cloud node steals it") {
  parsed dev({});
  REQUIRE(dev.error() == "");
  CHECK(dev.x.policy == "sharing");
  CHECK(dev.x.threads == 0);
  parsed cloud({}, cloud_scheduler());
  REQUIRE(cloud.error() == "");
  CHECK(cloud.x.policy == "stealing");
  // The tier table is in --help, as the other tier defaults are.
  CHECK(has(dev.opts.help(), "(0: the tier's: 2, 1, 1, at most the CPU cores)"));
  CHECK(has(cloud.opts.help(), "(0: 2)"));
}

TEST_CASE("worker threads: the option, else the tier's, capped by cores") {
  auto d = device_scheduler();
  scheduler_options x;
  x.policy = "sharing";
  CHECK(worker_threads(x, d, 1, 8) == 2);
  CHECK(worker_threads(x, d, 2, 8) == 1);
  CHECK(worker_threads(x, d, 3, 8) == 1);
  CHECK(worker_threads(x, d, 1, 1) == 1);
  CHECK(worker_threads(x, d, 1, 0) == 2);
  x.threads = 4;
  CHECK(worker_threads(x, d, 3, 1) == 4);
  x.threads = 0;
  CHECK(worker_threads(x, cloud_scheduler(), 3, 1) == 2);
}

TEST_CASE("bad values are bad_config errors naming the option") {
  struct {
    std::vector<std::string> args;
    const char* says;
  } cases[] = {
    {{"--scheduler.policy=round-robin"},
     "scheduler.policy: 'round-robin' is neither sharing nor stealing"},
    {{"--scheduler.policy=Sharing"}, "scheduler.policy: 'Sharing'"},
    {{"--scheduler.threads=-1"}, "scheduler.threads: -1 is out of range"},
    {{"--scheduler.threads=1000"}, "scheduler.threads: 1000 is out of range"},
    {{"--scheduler.threads=two"}, "scheduler.threads"},
    {{"--scheduler.relaxed-sleep=0s"}, "scheduler.relaxed-sleep: must be at least 1ms"},
    {{"--scheduler.relaxed-sleep=10"}, "scheduler.relaxed-sleep: '10' is not a duration"},
    {{"--scheduler.poll-attempts=-5"}, "scheduler.poll-attempts: -5 is out of range"},
    // Stealing knobs do nothing under sharing: refused, not ignored.
    {{"--scheduler.relaxed-sleep=1s"},
     "scheduler.relaxed-sleep: applies to scheduler.policy \"stealing\" only"},
    {{"--scheduler.poll-attempts=10"},
     "scheduler.poll-attempts: applies to scheduler.policy \"stealing\" only"},
    {{"--scheduler.moderate-attempts=0"},
     "scheduler.moderate-attempts: applies to scheduler.policy \"stealing\""},
  };
  for (auto& c : cases) {
    CAPTURE(c.args[0]);
    parsed p(c.args);
    CHECK(p.err.category() == caf::atom("fleetd"));
    CHECK(p.err.code() == static_cast<uint8_t>(ec::bad_config));
    CHECK_MESSAGE(has(p.error(), c.says), p.error());
  }
}

TEST_CASE("stealing takes its knobs from flags and INI") {
  parsed p({"--scheduler.policy=stealing", "--scheduler.threads=3",
            "--scheduler.poll-attempts=0", "--scheduler.moderate-attempts=7",
            "--scheduler.relaxed-sleep=250ms"});
  REQUIRE(p.error() == "");
  CHECK(p.x.threads == 3);
  CHECK(p.x.poll_attempts == 0);
  CHECK(p.x.moderate_attempts == 7);
  CHECK(p.x.relaxed_sleep == 250ms);
  CHECK(describe(p.x, 3) == "stealing, 3 threads, relaxed sleep 250ms");
  scheduler_options ini;
  option_set opts{"prog", "test"};
  declare(opts, ini, device_scheduler());
  REQUIRE(!opts.load_ini("[scheduler]\npolicy = \"stealing\"\n"
                         "relaxed-sleep = 1s\nthreads = 1\n",
                         "t.ini"));
  CHECK(!validate(ini));
  CHECK(ini.relaxed_sleep == 1s);
  CHECK(describe(ini, 1) == "stealing, 1 thread, relaxed sleep 1s");
}

TEST_CASE("the config that reaches CAF: its keys, in the types CAF reads") {
  parsed p({"--scheduler.policy=stealing", "--scheduler.poll-attempts=3",
            "--scheduler.moderate-attempts=4",
            "--scheduler.relaxed-sleep=2s"});
  REQUIRE(p.error() == "");
  caf::actor_system_config cfg;
  apply(cfg, p.x, 3);
  CHECK(caf::get_or(cfg, "scheduler.policy", caf::atom("none"))
        == caf::atom("stealing"));
  CHECK(caf::get_or(cfg, "scheduler.max-threads", size_t{0}) == 3u);
  CHECK(caf::get_or(cfg, "work-stealing.aggressive-poll-attempts", size_t{0})
        == 3u);
  CHECK(caf::get_or(cfg, "work-stealing.moderate-poll-attempts", size_t{0})
        == 4u);
  CHECK(caf::get_or(cfg, "work-stealing.relaxed-sleep-duration",
                    caf::timespan{0})
        == caf::timespan{2s});
}

TEST_CASE("CAF starts the policy and worker count applied") {
  parsed sharing({});
  REQUIRE(sharing.error() == "");
  auto a = start(sharing.x, 1);
  CHECK(a.policy == "sharing");
  CHECK(a.workers == 1u);
  parsed stealing({"--scheduler.policy=stealing",
                   "--scheduler.relaxed-sleep=1s"});
  REQUIRE(stealing.error() == "");
  auto b = start(stealing.x, 3);
  CHECK(b.policy == "stealing");
  CHECK(b.workers == 3u);
}
