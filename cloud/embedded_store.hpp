#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "cloud/cloud_store_backend.hpp"
#include "cloud/delivery_ledger.hpp"
#include "cloud/journal.hpp"
#include "messages/interfaces.hpp"
#include "messages/metrics_codec.hpp"
#include "runtime/clock.hpp"
#include "runtime/sqlite.hpp"

namespace fleetd {

/// The cloud's embedded SQLite store (behind the cloud_store actor): points, every batch sequence seen per
/// (device, stream), and per-stream counters. A batch and its ack state are
/// written in one transaction, so a sequence is stored at most once.
class embedded_store : public cloud_store_backend {
public:
  /// With `journal.enabled`, every accepted batch is also appended to the
  /// ingest journal in its transaction (embedded_journal reads it).
  static caf::expected<embedded_store> open(const std::string& path,
                                            clock_ptr clock,
                                            journal_config journal = {});

  caf::expected<ingest_outcome> write(const ingest_batch& batch) override;
  caf::expected<device_infos> devices() override;
  caf::expected<metric_samples> points(const std::string& device_id) override;
  caf::expected<log_lines> logs(const std::string& device_id) override;
  caf::expected<event_records> events(const std::string& device_id) override;
  caf::expected<delivery_rows> delivery(const std::string& device_id,
                                        int64_t since_ms) override;
  caf::expected<cloud_settings>
  set_config(const std::string& device_id,
             const settings_change& change) override;
  caf::expected<cloud_settings>
  get_config(const std::string& device_id) override;
  actor_stats stats() override;

private:
  using session_key = std::pair<std::string, std::string>;
  // A device's columnar session (per store epoch): the codec's series table
  // and the store's series id of each of its indexes.
  struct wire_session {
    codec_context codec;
    std::vector<int64_t> ids;
  };
  caf::expected<wire_session*> session(const std::string& device,
                                       const std::string& epoch);
  // The samples of a columnar batch, decoded against the device's session,
  // which advances (tables written in the caller's transaction).
  // The steps of write(), inside its transaction.
  caf::error write_batch(const ingest_batch& b, int64_t now,
                         ingest_outcome& out);
  // The stream's acked sequence in the batch's epoch (0: none, or a new one).
  caf::expected<int64_t> acked_sequence(const ingest_batch& b);
  // True when the batch is held already; bad_sequence when its sequence is
  // held with other content or too far ahead of `last`.
  caf::expected<bool> held(const ingest_batch& b, int64_t last);
  caf::expected<indexed_points> decode_in_session(const ingest_batch& b,
                                                  wire_session*& ws);
  // `decoded`, when given, receives the samples of a columnar batch.
  caf::error insert_records(const ingest_batch& b, int64_t& n,
                            metric_samples* decoded);
  caf::error insert_points(const ingest_batch& b, int64_t& n,
                           metric_samples* decoded);
  caf::error write_journal(const ingest_batch& b, int64_t now,
                           metric_samples decoded);
  // The device's latest DeviceCapability, when the batch carries one.
  caf::error write_capability(const ingest_batch& b, int64_t now);
  // Stores the batch's drop report; replies the drops it adds.
  caf::expected<declared_sums> declare_drops(const ingest_batch& b,
                                             ingest_outcome& out);
  caf::error count_delivery(const ingest_batch& b, int64_t now,
                            const delivery_counts& x);
  caf::error config_for(const std::string& device, int64_t have,
                        cloud_settings& out);
  caf::expected<int64_t> series_id(const std::string& name,
                                   const label_map& labels);
  caf::error load_series();

  clock_ptr clock_;
  journal_config journal_;
  sqlite::database db_;
  std::map<std::string, int64_t> series_;
  std::map<session_key, wire_session> sessions_;
  store_counters counters_;
};

} // namespace fleetd
