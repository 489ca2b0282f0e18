#pragma once

#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* wire_summary;

/// Usage of `fleetd-bench wire`.
std::string wire_usage();

/// `fleetd-bench wire FILE [--batch-seconds S] [--zstd-level L]
/// [--no-session]`: encodes a metrics capture (lines `series value timestamp_ms`, plain or zstd) as
/// columnar batches, as Prometheus remote-write 1.0 and as one protobuf
/// message per point + zstd, checks that every columnar batch decodes back
/// bit for bit, and prints one `BENCH wire ...` line. `args` excludes the
/// subcommand. Returns the exit code (0 ok, 1 failure, 2 bad arguments).
int run_wire_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
