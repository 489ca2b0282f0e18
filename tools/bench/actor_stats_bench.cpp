// fleetd-bench actor-stats: what per-actor statistics cost a message-heavy
// node.
//
// P pairs of actors bounce messages: each pair starts with W messages in
// flight, each carrying how many hops it has left, so a round handles N
// messages in all with mailboxes a few deep, on every scheduler thread.
// Three ways to spawn the same actors, one round each in turn so that
// drift of the machine hits all three alike: "plain" (sys.spawn, CAF as
// is), "on" (spawn_counted with a registry: what a node runs by default)
// and "off" (spawn_counted without one: node.actor-stats = false, which is
// sys.spawn itself, so off vs plain shows the run's noise). Throughput is
// messages per second of wall time and per second of the process's CPU
// time; each round's ratios to its own plain run, medians over the rounds
// (a shared machine drifts between rounds more than within one).
#include "tools/bench/actor_stats_bench.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <sys/resource.h>

#include "runtime/counted.hpp"
#include "tools/bench/bench_util.hpp"

namespace fleetd::bench {

const char* actor_stats_summary =
  "ping-pong pairs of actors, spawned plainly vs measured by the runtime\n"
  "      (node.actor-stats on) vs counted but switched off; messages per "
  "second and ratio";

std::string actor_stats_usage() {
  return "usage: fleetd-bench actor-stats [--rounds R] [--messages N] "
         "[--pairs P] [--in-flight W] [--threads T]\n"
         "       [--policy stealing|sharing]\n"
         "  --rounds     rounds of each kind (default 7)\n"
         "  --messages   messages a round (default 2000000)\n"
         "  --pairs      pairs of actors bouncing messages (default 4)\n"
         "  --in-flight  messages in flight per pair (default 8)\n"
         "  --threads    scheduler threads (default 0: one per core); 1 makes\n"
         "               the CPU-time figures steady on a shared machine\n"
         "  --policy     CAF's scheduler: stealing (default; CAF's and the cloud\n"
         "               node's) or sharing (the device's)\n";
}

namespace {

// Counts messages that reached their last hop; wakes the round's waiter.
struct finish_line {
  std::mutex mtx;
  std::condition_variable cv;
  int64_t left = 0;

  void arrived() {
    std::lock_guard<std::mutex> guard{mtx};
    if (--left == 0)
      cv.notify_all();
  }

  void wait() {
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait(guard, [this] { return left == 0; });
  }
};

caf::behavior bouncer(caf::event_based_actor* self,
                      std::shared_ptr<finish_line> fin) {
  return {
    [self, fin](int64_t hops) {
      if (hops > 0)
        self->send(caf::actor_cast<caf::actor>(self->current_sender()),
                   hops - 1);
      else
        fin->arrived();
    },
  };
}

enum class mode { plain, on, off };

// User and system CPU seconds of the whole process so far.
double cpu_seconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

struct round_rate {
  double wall = 0;
  double cpu = 0;
};

// One round: messages per second of wall and of CPU time; adds what the
// counters saw to `r`.
round_rate run_round(caf::actor_system& sys, const actor_stats_options& opt,
                     mode m, actor_stats_result& r) {
  auto fin = std::make_shared<finish_line>();
  fin->left = opt.pairs * opt.in_flight;
  auto hops = opt.messages / (opt.pairs * opt.in_flight);
  auto sent = (hops + 1) * opt.pairs * opt.in_flight;
  stats_registry reg;
  std::vector<caf::actor> actors;
  for (int64_t i = 0; i < opt.pairs * 2; ++i) {
    auto name = "bouncer" + std::to_string(i);
    if (m == mode::plain)
      actors.push_back(sys.spawn(bouncer, fin));
    else
      actors.push_back(spawn_counted(sys, m == mode::on ? &reg : nullptr,
                                     name, bouncer, fin));
  }
  auto start = std::chrono::steady_clock::now();
  auto cpu_start = cpu_seconds();
  for (int64_t p = 0; p < opt.pairs; ++p)
    for (int64_t w = 0; w < opt.in_flight; ++w)
      caf::send_as(actors[2 * p], actors[2 * p + 1], hops);
  fin->wait();
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - start)
                .count();
  auto cpu = cpu_seconds() - cpu_start;
  caf::scoped_actor self{sys};
  for (auto& a : actors) {
    self->send_exit(a, caf::exit_reason::user_shutdown);
    self->wait_for(a);
  }
  if (m == mode::on) {
    // Each actor counted its messages before it took its exit message.
    for (int64_t i = 0; i < opt.pairs * 2; ++i)
      r.counted += reg.read("bouncer" + std::to_string(i)).handled;
    r.sent += sent;
    r.actors += opt.pairs * 2;
  }
  auto n = static_cast<double>(sent);
  return {n / secs, cpu > 0 ? n / cpu : 0};
}

std::string parse(const std::vector<std::string>& args, actor_stats_options& opt) {
  arg_cursor cur(args);
  while (cur.next()) {
    std::string v;
    if (cur.name() == "--policy") {
      if (!cur.value(v) || (v != "stealing" && v != "sharing"))
        return "--policy needs stealing or sharing";
      opt.policy = v;
      continue;
    }
    int64_t* target = cur.name() == "--rounds"      ? &opt.rounds
                      : cur.name() == "--messages"  ? &opt.messages
                      : cur.name() == "--pairs"     ? &opt.pairs
                      : cur.name() == "--in-flight" ? &opt.in_flight
                      : cur.name() == "--threads"   ? &opt.threads
                                                    : nullptr;
    if (target == nullptr)
      return "unknown argument " + cur.name();
    if (!cur.value(v) || !parse_int(v, *target) || *target < 1
        || *target > 1000000000)
      return cur.name() + " needs a whole number 1..1000000000";
  }
  if (opt.pairs * opt.in_flight > opt.messages)
    return "--messages must be at least --pairs x --in-flight";
  return {};
}

} // namespace

actor_stats_result run_actor_stats(const actor_stats_options& opt) {
  caf::actor_system_config cfg;
  if (opt.threads > 0)
    cfg.set("scheduler.max-threads", static_cast<size_t>(opt.threads));
  // CAF 0.17 reads the policy as an atom.
  if (opt.policy == "sharing")
    cfg.set("scheduler.policy", caf::atom("sharing"));
  else
    cfg.set("scheduler.policy", caf::atom("stealing"));
  caf::actor_system sys{cfg};
  std::vector<double> plain;
  std::vector<double> on;
  std::vector<double> off;
  std::vector<double> on_ratio;
  std::vector<double> off_ratio;
  std::vector<double> on_cpu_ratio;
  actor_stats_result out;
  // A warm-up round of each, not counted (allocator, scheduler threads).
  actor_stats_result warm;
  run_round(sys, opt, mode::plain, warm);
  run_round(sys, opt, mode::on, warm);
  for (int64_t r = 0; r < opt.rounds; ++r) {
    round_rate x[3];
    // The order rotates so no kind always runs first.
    for (int k = 0; k < 3; ++k) {
      auto m = static_cast<mode>((r + k) % 3);
      auto& y = x[static_cast<int>(m)] = run_round(sys, opt, m, out);
      if (opt.progress)
        std::cerr << "round " << r << " "
                  << (m == mode::plain ? "plain"
                      : m == mode::on  ? "on"
                                       : "off")
                  << " " << format(y.wall, 0) << " msg/s, "
                  << format(y.cpu, 0) << " msg/cpu-s\n";
    }
    auto& p = x[static_cast<int>(mode::plain)];
    auto& o = x[static_cast<int>(mode::on)];
    auto& f = x[static_cast<int>(mode::off)];
    plain.push_back(p.wall);
    on.push_back(o.wall);
    off.push_back(f.wall);
    on_ratio.push_back(o.wall / p.wall);
    off_ratio.push_back(f.wall / p.wall);
    if (p.cpu > 0 && o.cpu > 0)
      on_cpu_ratio.push_back(o.cpu / p.cpu);
  }
  out.plain = median(plain);
  out.on = median(on);
  out.off = median(off);
  out.ratio = median(on_ratio);
  out.off_ratio = median(off_ratio);
  out.cpu_ratio = on_cpu_ratio.empty() ? 0 : median(on_cpu_ratio);
  return out;
}

std::string actor_stats_line(const actor_stats_options& opt,
                             const actor_stats_result& r) {
  return "BENCH actor_stats rounds=" + std::to_string(opt.rounds)
         + " messages=" + std::to_string(opt.messages)
         + " pairs=" + std::to_string(opt.pairs)
         + " in_flight=" + std::to_string(opt.in_flight)
         + " threads=" + std::to_string(opt.threads) + " policy=" + opt.policy
         + " plain_msgs_per_s=" + format(r.plain, 0)
         + " on_msgs_per_s=" + format(r.on, 0)
         + " off_msgs_per_s=" + format(r.off, 0)
         + " overhead_pct=" + format((1.0 - r.ratio) * 100.0, 2)
         + " cpu_overhead_pct=" + format((1.0 - r.cpu_ratio) * 100.0, 2)
         + " off_ratio=" + format(r.off_ratio, 3)
         + " ratio=" + format(r.ratio, 3);
}

int run_actor_stats_bench(const std::vector<std::string>& args) {
  actor_stats_options opt;
  if (auto err = parse(args, opt); !err.empty()) {
    std::cerr << err << "\n" << actor_stats_usage();
    return 2;
  }
  auto r = run_actor_stats(opt);
  if (r.counted < r.sent || r.counted > r.sent + r.actors) {
    std::cerr << "fleetd-bench actor-stats: the measured actors counted "
              << r.counted << " messages of " << r.sent << std::endl;
    return 1;
  }
  std::cout << actor_stats_line(opt, r) << "\n";
  return 0;
}

} // namespace fleetd::bench
