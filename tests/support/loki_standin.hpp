#pragma once

// A strict local stand-in for Grafana Loki's push API and its query_range
// of a stream selector, for tests only (Loki is not packaged here). It
// accepts what Loki's documented push API accepts and refuses, with Loki's
// status codes, what Loki refuses; each rule in loki_standin.cpp and
// loki_query.cpp says which documented behaviour it models.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <caf/expected.hpp>

namespace fleetd::test {

/// Loki's limits as the stand-in enforces them; defaults are Loki's.
struct loki_standin_config {
  /// auth_enabled: every push names its tenant in X-Scope-OrgID.
  bool multi_tenant = true;
  /// Tenants a gateway in front of Loki admits; empty: any valid tenant ID.
  std::set<std::string> tenants;
  /// The server's largest accepted request (grpc max receive size, 4 MiB).
  size_t max_body_bytes = 4 * 1024 * 1024;
  /// limits_config.max_line_size (256 KB).
  size_t max_line_bytes = 256 * 1024;
  /// How far behind a stream's newest entry a new one may be: half of
  /// ingester.max_chunk_age (2 h), so 1 h.
  std::chrono::nanoseconds out_of_order_window = std::chrono::hours{1};
  /// limits_config.reject_old_samples_max_age (one week).
  std::chrono::nanoseconds reject_old_max_age = std::chrono::hours{24 * 7};
  /// limits_config.creation_grace_period: how far in the future (10 min).
  std::chrono::nanoseconds creation_grace = std::chrono::minutes{10};
  /// limits_config.max_global_streams_per_user (5000).
  size_t max_streams_per_tenant = 5000;
  size_t max_label_names = 15;
  size_t max_label_name_bytes = 1024;
  size_t max_label_value_bytes = 2048;
  /// limits_config.max_entries_limit_per_query: the largest query limit.
  int64_t max_entries_limit = 5000;
  /// The clock the age limits read (ns since the epoch): tests inject it.
  std::function<int64_t()> now_ns;
};

struct loki_entry {
  int64_t timestamp_ns = 0;
  std::string line;
  bool operator==(const loki_entry& y) const {
    return timestamp_ns == y.timestamp_ns && line == y.line;
  }
};

using loki_labels = std::map<std::string, std::string>;

/// What one stream of one tenant holds, ordered by timestamp.
struct loki_stream_view {
  loki_labels labels;
  std::vector<loki_entry> entries;
};

/// The stand-in server on 127.0.0.1 (its own Asio thread) and its store.
class loki_standin {
public:
  explicit loki_standin(loki_standin_config cfg = {});
  ~loki_standin();

  loki_standin(const loki_standin&) = delete;
  loki_standin& operator=(const loki_standin&) = delete;

  /// Listens on 127.0.0.1:`port` (0: a free one); returns the port.
  /// After stop(), start(port) serves again what the stand-in held.
  caf::expected<uint16_t> start(uint16_t port = 0);
  /// Closes the listener and every connection; the store stays.
  void stop();

  /// After `after` more pushes, the next `times` are answered `status`
  /// (429, 500, 503, ...) before any parsing, as a rate limiter or an
  /// unavailable ingester answers.
  void fail_next(unsigned status, int times, int after = 0);

  /// Streams of `tenant` ("fake" when single-tenant), with their entries.
  std::vector<loki_stream_view> streams(const std::string& tenant) const;
  /// Entries of one stream of `tenant`; empty when it has none.
  std::vector<loki_entry> entries(const std::string& tenant,
                                  const loki_labels& labels) const;
  /// Every entry of `tenant`, all streams.
  size_t entry_count(const std::string& tenant) const;
  /// Push requests seen, and those answered `status`.
  int64_t pushes() const;
  int64_t answered(unsigned status) const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace fleetd::test
