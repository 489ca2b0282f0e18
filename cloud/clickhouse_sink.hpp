#pragma once

// The ClickHouse sink backend (18.16 as Debian ships it) over its HTTP
// interface: raw samples and an hourly rollup of sum, count, min and max per
// series, both unchanged by a replay. docs/data-stack.md explains the schema.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "cloud/sink_backend.hpp"
#include "runtime/http_client.hpp"

namespace fleetd {

class option_set;

struct clickhouse_config {
  /// http://host:port or https://host:port; empty: no ClickHouse sink.
  std::string url;
  std::string database = "fleetd";
  std::string user;
  std::string password;
  std::chrono::milliseconds timeout{10000};
  /// Rows per INSERT (a write of more is split).
  int64_t batch_rows = 50000;
  /// A cluster name of the servers' remote_servers: writes and reads go
  /// through Distributed tables over the local ones; empty: one server.
  std::string cluster;
};

/// Declares sinks.clickhouse.url, .database, .user, .password, .timeout,
/// .batch-rows and .cluster.
void declare(option_set& opts, clickhouse_config& x);

/// bad_config naming the option when `x` cannot work.
caf::error validate(const clickhouse_config& x);

/// The statements that create the schema (idempotent: IF NOT EXISTS), in
/// order; with a cluster also the Distributed tables, which every shard
/// needs beside its local tables.
std::vector<std::string> clickhouse_schema(const clickhouse_config& x);

/// One hourly point of a series: avg is sum / count, computed here.
struct rollup_point {
  std::string labels;
  int64_t hour_s = 0;
  double sum = 0;
  uint64_t count = 0;
  double min = 0;
  double max = 0;
  double avg = 0;
};

/// Writes journal entries' samples to ClickHouse. Raw samples go to
/// `samples` (ReplacingMergeTree keyed by the sample's identity: a replay
/// collapses); then the hours the write touched are recomputed from the
/// deduplicated raw table into `rollup_hourly` (ReplacingMergeTree keeping
/// the row computed from the most points), so a replay, a retry after a
/// partial write, or a late sample never counts twice. NaN and ±Inf are
/// stored raw and left out of sum, count, min and max. Blocking: a detached
/// actor's.
class clickhouse_sink : public sink_backend {
public:
  explicit clickhouse_sink(clickhouse_config cfg);
  ~clickhouse_sink() override;

  std::string name() const override;
  caf::error write(const journal_entries& entries) override;

  /// Creates the database and tables unless they exist (write() does this
  /// first when it has not succeeded yet).
  caf::error create_schema();

  /// Hourly points of one org's device and metric in [from_s, to_s), all
  /// label sets, by labels then hour; at most 100,000 points.
  caf::expected<std::vector<rollup_point>>
  rollup_query(const std::string& org, const std::string& device,
               const std::string& metric, int64_t from_s, int64_t to_s);

  /// The hourly points of one org's device and metric in [from_s, to_s)
  /// (whole hours) summed into steps of `step_s` (whole hours) from
  /// `from_s`, by labels then step (hour_s: the step's start); avg is
  /// sum / count; min, max and avg NaN for a step without a finite sample.
  /// At most `max_points` points; ec::too_large beyond.
  caf::expected<std::vector<rollup_point>>
  rollup_steps(const std::string& org, const std::string& device,
               const std::string& metric, int64_t from_s, int64_t to_s,
               int64_t step_s, int64_t max_points);

  /// Runs `sql` and returns the answer's body (errors mapped as write's).
  caf::expected<std::string> execute(const std::string& sql);

  /// Samples refused before sending (a timestamp ClickHouse's Date cannot
  /// hold: before 1970 or from 2100 on).
  int64_t rejected_samples() const {
    return rejected_;
  }
  int64_t rows_written() const {
    return rows_written_;
  }

private:
  struct rollup_answer {
    std::vector<rollup_point> points;
    bool truncated = false;
  };

  std::string hours_sql(const std::string& org, const std::string& device,
                        const std::string& metric, int64_t from_s,
                        int64_t to_s) const;

  // The rows of a rollup SELECT (labels, hour, sum, count, min, max).
  caf::expected<rollup_answer> rollup_rows(const std::string& sql,
                                           size_t max_rows);

  // The (org, device, hour) keys a write touched, as SQL tuples, and the
  // span of its timestamps.
  struct touched_hours {
    std::vector<std::string> keys;
    int64_t min_ms = INT64_MAX;
    int64_t max_ms = 0;
  };

  caf::error insert_samples(const journal_entries& entries,
                            touched_hours& touched);
  caf::error recompute(const touched_hours& touched);
  caf::expected<std::string> post(const std::string& body, bool insert);

  clickhouse_config cfg_;
  std::unique_ptr<http_client> client_;
  std::vector<std::pair<std::string, std::string>> headers_;
  // Why the client cannot work (TLS set-up), returned by every request.
  caf::error setup_error_;
  bool schema_ready_ = false;
  int64_t rejected_ = 0;
  int64_t rows_written_ = 0;
};

/// The ClickHouse sink of `cfg` (validated first).
caf::expected<std::unique_ptr<clickhouse_sink>>
make_clickhouse_sink(const clickhouse_config& cfg);

/// The query API's hourly points: org is a parameter, never query text.
caf::expected<std::vector<rollup_point>>
clickhouse_rollup_query(clickhouse_sink& sink, const std::string& org,
                        const std::string& device, const std::string& metric,
                        int64_t from_s, int64_t to_s);

} // namespace fleetd
