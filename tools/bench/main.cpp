// fleetd-bench: benchmarks that measure their own baseline in the same run.
// Each subcommand prints exactly one line starting with "BENCH <name> " and
// made of key=value pairs on stdout (other tools parse it); progress and
// per-round details go to stderr.
#include <iostream>
#include <string>
#include <vector>

#include "runtime/options.hpp"
#include "tools/bench/actor_stats_bench.hpp"
#include "tools/bench/fanout_bench.hpp"
#include "tools/bench/footprint_bench.hpp"
#include "tools/bench/ingest_bench.hpp"
#include "tools/bench/install_size_bench.hpp"
#include "tools/bench/journal_bench.hpp"
#include "tools/bench/journal_lag_bench.hpp"
#include "tools/bench/outage_bench.hpp"
#include "tools/bench/query_bench.hpp"
#include "tools/bench/node_read_bench.hpp"
#include "tools/bench/round_bench.hpp"
#include "tools/bench/storage_bench.hpp"
#include "tools/bench/storage_writes_bench.hpp"
#include "tools/bench/wire_bench.hpp"

namespace {

struct subcommand {
  const char* name;
  const char* summary;
  std::string (*usage)();
  int (*run)(const std::vector<std::string>& args);
};

// A new subcommand adds one row here and a file beside storage_bench.cpp.
const subcommand subcommands[] = {
  {"actor-stats", fleetd::bench::actor_stats_summary,
   fleetd::bench::actor_stats_usage, fleetd::bench::run_actor_stats_bench},
  {"storage", fleetd::bench::storage_summary, fleetd::bench::storage_usage,
   fleetd::bench::run_storage_bench},
  {"storage-writes", fleetd::bench::storage_writes_summary,
   fleetd::bench::storage_writes_usage,
   fleetd::bench::run_storage_writes_bench},
  {"wire", fleetd::bench::wire_summary, fleetd::bench::wire_usage,
   fleetd::bench::run_wire_bench},
  {"outage", fleetd::bench::outage_summary, fleetd::bench::outage_usage,
   fleetd::bench::run_outage_bench},
  {"ingest", fleetd::bench::ingest_summary, fleetd::bench::ingest_usage,
   fleetd::bench::run_ingest_bench},
  {"journal", fleetd::bench::journal_summary, fleetd::bench::journal_usage,
   fleetd::bench::run_journal_bench},
  {"journal-lag", fleetd::bench::journal_lag_summary,
   fleetd::bench::journal_lag_usage, fleetd::bench::run_journal_lag_bench},
  {"query", fleetd::bench::query_summary, fleetd::bench::query_usage,
   fleetd::bench::run_query_bench},
  {"fanout", fleetd::bench::fanout_summary, fleetd::bench::fanout_usage,
   fleetd::bench::run_fanout_bench},
  {"round-bytes", fleetd::bench::round_summary, fleetd::bench::round_usage,
   fleetd::bench::run_round_bench},
  {"install-size", fleetd::bench::install_size_summary,
   fleetd::bench::install_size_usage, fleetd::bench::run_install_size_bench},
  {"footprint", fleetd::bench::footprint_summary,
   fleetd::bench::footprint_usage, fleetd::bench::run_footprint_bench},
  {"node-read", fleetd::bench::node_read_summary,
   fleetd::bench::node_read_usage, fleetd::bench::run_node_read_bench},
};

void print_help(std::ostream& out) {
  out << "usage: fleetd-bench COMMAND [OPTIONS]\n"
         "       fleetd-bench COMMAND --help\n\n"
         "Benchmarks of fleetd. Every benchmark measures its baseline in the "
         "same run,\nalternating rounds, and prints one line\n"
         "  BENCH <command> key=value ...\n"
         "on stdout with medians over the rounds (rounds=R says how many).\n\n"
         "commands:\n";
  for (auto& sc : subcommands)
    out << "  " << sc.name << "\n      " << sc.summary << "\n";
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    print_help(std::cerr);
    return 2;
  }
  auto& cmd = args.front();
  if (cmd == "--version") {
    std::cout << "fleetd-bench " << fleetd::fleetd_version() << "\n";
    return 0;
  }
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_help(std::cout);
    return 0;
  }
  for (auto& sc : subcommands) {
    if (cmd == sc.name) {
      std::vector<std::string> rest(args.begin() + 1, args.end());
      for (auto& a : rest) {
        if (a == "--help" || a == "-h") {
          std::cout << sc.usage();
          return 0;
        }
      }
      return sc.run(rest);
    }
  }
  std::cerr << "fleetd-bench: unknown command '" << cmd
            << "'; see fleetd-bench --help" << std::endl;
  return 2;
}
