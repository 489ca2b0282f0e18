#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "edge/system_collector.hpp"

namespace fleetd {

/// Prometheus scrape of local exporters (scrape.* options): one collector
/// per target, each on its own thread, so one that hangs or floods never
/// holds up another or the system collector.
struct scrape_config {
  /// Comma-separated `[job=]http://host:port/path`; empty: no scraping.
  std::string targets;
  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds timeout{5000};
  int64_t max_bytes = 1 << 20;
  int64_t max_samples = 20000;
  /// Stop scraping after this many rounds; 0 = never (tests, benchmarks).
  int64_t max_rounds = 0;
};

/// One target of scrape.targets.
struct scrape_target {
  std::string job;
  /// host:port, as Prometheus's `instance` label.
  std::string instance;
  std::string host;
  uint16_t port = 0;
  /// e.g. /metrics.
  std::string path;
  /// https: verified against the system's CA store.
  bool tls = false;
};

class option_set;

/// Declares the scrape.* options.
void declare(option_set& opts, scrape_config& x);

/// The targets of `x` (ec::bad_config naming scrape.targets and the entry
/// when one is not an http URL, a job name is bad, or a job-instance pair
/// repeats).
caf::expected<std::vector<scrape_target>>
scrape_targets(const scrape_config& x);

/// bad_config naming the option when `x` cannot work.
caf::error validate(const scrape_config& x);

/// One scrape of `t` per round, as Prometheus makes it: the page's samples
/// with `job` and `instance` labels (a page's own job or instance label
/// becomes exported_job or exported_instance), timestamps as the page gives
/// them or the round's, and `up`, `scrape_duration_seconds` and
/// `scrape_samples_scraped`. A failed scrape (connection, timeout, HTTP
/// status, more than max_bytes or max_samples, any malformed line) keeps
/// none of the page: `up` is 0 and the reason goes to `problems`.
sample_source scrape_source(const scrape_target& t, const scrape_config& x);

/// The collector of `t` (named "scrape:JOB:INSTANCE"); the caller fills
/// clock, storage and on_stored, and spawns it detached.
system_collector_config scrape_collector(const scrape_target& t,
                                         const scrape_config& x);

} // namespace fleetd
