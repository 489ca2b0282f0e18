#pragma once

// The VictoriaMetrics backend of the journal's sinks: samples as
// Prometheus text through /api/v1/import/prometheus (single node) or a
// cluster's vminsert (/insert/<accountID>/prometheus/...), one tenant per
// org. Idempotent through the server's deduplication of identical
// timestamps (-dedup.minScrapeInterval, docs/data-stack.md).

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "cloud/sink_backend.hpp"

namespace fleetd {

class option_set;

struct vm_sink_config {
  /// Single node: http://host:8428. Cluster: a vminsert URL with the
  /// placeholder {tenant}, e.g.
  /// http://vminsert:8480/insert/{tenant}/prometheus.
  std::string url;
  /// Cluster only: "org=accountID[:projectID],..." (VictoriaMetrics tenants
  /// are numbers); an org missing here is refused, never guessed.
  std::string tenants;
  /// Cluster only: the vmselect URL the query API reads, with {tenant},
  /// e.g. http://vmselect:8481/select/{tenant}/prometheus; a single node
  /// is read at `url`.
  std::string select_url;
  int64_t max_request_bytes = 4 << 20;
  std::chrono::milliseconds timeout{10000};
  /// The server's -maxLabelsPerTimeseries (__name__ counted): it drops
  /// labels past it silently, so the sink refuses such a sample instead.
  int64_t max_labels = 30;
  /// The server's -maxLabelValueLen: it truncates longer values silently.
  int64_t max_label_value_bytes = 16 * 1024;
  /// How long the server may hold accepted rows in memory only: a write is
  /// counted durable (its journal cursor saved) this long after its 204,
  /// once /metrics shows the same server process (single node).
  std::chrono::milliseconds durable_after{15000};
};

/// Declares sinks.victoria.*.
void declare(option_set& opts, vm_sink_config& x);

/// Where a write goes: the import URL split for http_client.
struct vm_target {
  bool tls = false;
  std::string host;
  uint16_t port = 0;
  /// The request target, {tenant} replaced, /api/v1/import/prometheus added.
  std::string path;
};

/// The import target of `org`: bad_config for a malformed URL, a cluster
/// URL without a tenant for `org`, or a tenant that is not a number.
caf::expected<vm_target> vm_import_target(const vm_sink_config& cfg,
                                          const std::string& org);

/// The query target of `org`: /api/v1/query_range on the single node, or
/// on select_url with the org's tenant; invalid_record when the cluster
/// has no tenant for `org` (it holds nothing of it), bad_config when
/// nothing can be read (a cluster without select_url).
caf::expected<vm_target> vm_query_target(const vm_sink_config& cfg,
                                         const std::string& org);

/// The device's own name of a label read back from VictoriaMetrics: "" for
/// the org_id and device_id the sink adds, one exported_ less for a device
/// label the sink renamed (vm_line), the name itself otherwise.
std::string vm_device_label(const std::string& name);

/// Counters of one vm_sink, for stats.
struct vm_sink_stats {
  int64_t requests = 0;
  int64_t samples = 0;
  /// Samples not sent, by reason (nan, label_name, metric_name, ...).
  std::map<std::string, int64_t> refused;
  /// Restart checks that found another server process (or no answer).
  int64_t restarts = 0;
  /// Restart checks /metrics could not answer (protected): window only.
  int64_t restart_unchecked = 0;
  /// The last refusal or error, for logs.
  std::string last_problem;
};

/// A sink_backend writing to VictoriaMetrics; blocking, one thread.
class vm_sink : public sink_backend {
public:
  std::string name() const override {
    return "victoria";
  }
  virtual const vm_sink_stats& stats() const = 0;
};

/// A vm_sink for `cfg`; bad_config naming the option when it cannot work.
caf::expected<std::unique_ptr<vm_sink>>
make_vm_sink(const vm_sink_config& cfg);

/// One sample of `org`/`device` as a Prometheus text line (with '\n'), or
/// an error naming why VictoriaMetrics could not store it exactly
/// (invalid_record); `max` bounds the label count and value bytes.
caf::expected<std::string> vm_line(const std::string& org,
                                   const std::string& device,
                                   const metric_sample& sample,
                                   const vm_sink_config& max);

} // namespace fleetd
