#pragma once

#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* journal_summary;

/// Usage of `fleetd-bench journal`.
std::string journal_usage();

/// `fleetd-bench journal [--store embedded|postgresql] [--batches N]
/// [--points P] [--rounds R]`: writes the same batches into a store that
/// journals them and one that does not, alternating rounds, and prints one
/// `BENCH journal ...` line of medians. Returns the exit code.
int run_journal_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
