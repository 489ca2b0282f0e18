#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "cloud/cloud_store_backend.hpp"
#include "cloud/delivery_ledger.hpp"
#include "cloud/journal.hpp"
#include "messages/metrics_codec.hpp"
#include "runtime/clock.hpp"
#include "runtime/options.hpp"
#include "runtime/pg.hpp"

namespace fleetd {

// A table whose rows are copied in through a staging table (pg_store.cpp).
struct staged_table;

/// Where the cloud keeps its state: the embedded SQLite files of the data
/// directory, or PostgreSQL (shared by any number of nodes).
struct store_config {
  std::string backend = "embedded";
  /// The node's role (a member of fleetd_app; never the schema's owner).
  std::string postgresql_url;
  /// The schema owner's URL: migrations run at start ("": a DBA runs
  /// them; the node refuses a schema older than it needs).
  std::string postgresql_owner_url;
  /// Connections writing batches at once (devices split among them).
  int64_t postgresql_writers = 2;
  /// Milliseconds a statement of the node may run (per transaction).
  int64_t postgresql_statement_timeout_ms = 30000;
};

/// Declares store.backend, store.postgresql-url, store.postgresql-owner-url,
/// store.postgresql-writers, store.postgresql-statement-timeout.
void declare(option_set& opts, store_config& x);

/// bad_config naming the option when `x` cannot work.
caf::error validate(const store_config& x);

/// The cloud's store in PostgreSQL (schema: cloud/migrations, contract:
/// docs/postgresql.md), the same contract as embedded_store. Device ids are
/// "org/device"; each transaction is scoped to the org (Row Level
/// Security). A batch and its stream's ack are one transaction; the
/// batches key makes a batch another node accepted first a duplicate here.
/// BLOCKING: only a detached actor calls it.
class pg_store : public cloud_store_backend {
public:
  /// Connects as the node's role (refused when it could bypass RLS); the
  /// schema must be migrated already (pg_migrate). `writers`: this store
  /// and writers - 1 more (more_writers), each on its own connection.
  static caf::expected<pg_store> open(const std::string& url,
                                      clock_ptr clock,
                                      pg::connect_options opts = {},
                                      int64_t writers = 1,
                                      journal_config journal = {});

  caf::expected<ingest_outcome> write(const ingest_batch& batch) override;
  caf::expected<device_infos> devices() override;
  caf::expected<metric_samples> points(const std::string& device_id) override;
  caf::expected<log_lines> logs(const std::string& device_id) override;
  caf::expected<event_records> events(const std::string& device_id) override;
  caf::expected<cloud_settings>
  set_config(const std::string& device_id,
             const settings_change& change) override;
  caf::expected<cloud_settings>
  get_config(const std::string& device_id) override;
  caf::expected<delivery_rows> delivery(const std::string& device_id,
                                        int64_t since_ms) override;
  actor_stats stats() override;
  caf::expected<std::vector<std::shared_ptr<cloud_store_backend>>>
  more_writers() override;

private:
  // "org/device" split; refused unless both parts are there.
  struct device_ref {
    std::string org;
    std::string device;
  };
  static caf::expected<device_ref> split(const std::string& device_id);
  // A device's columnar session of one epoch (keyed by the full id).
  struct wire_session {
    codec_context codec;
    std::vector<int64_t> ids;
  };
  using session_key = std::pair<std::string, std::string>;

  caf::expected<ingest_outcome> write_once(const ingest_batch& b,
                                           const device_ref& d);
  std::vector<pg::call> opening(const ingest_batch& b, const device_ref& d,
                                int64_t now);
  static int64_t acked_sequence(const ingest_batch& b,
                                const pg::result& stream);
  caf::error write_batch(const ingest_batch& b, const device_ref& d,
                         int64_t now, ingest_outcome& out);
  caf::error accept(const ingest_batch& b, const device_ref& d, int64_t now,
                    ingest_outcome& out, std::vector<pg::call>& tail);
  caf::error finish(const ingest_batch& b, const device_ref& d,
                    std::vector<pg::call> tail, ingest_outcome& out);
  // The drops the batch's report adds (`prev`: the stream's last report,
  // nullptr when the batch carries none); its update goes to `tail`.
  declared_sums declare_drops(const ingest_batch& b, const device_ref& d,
                              const pg::result* prev,
                              std::vector<pg::call>& tail,
                              ingest_outcome& out);
  // What one batch adds to the delivery table, sent with the commit.
  void count_delivery(const ingest_batch& b, const device_ref& d, int64_t now,
                      const delivery_counts& x, std::vector<pg::call>& tail);
  // The rows go to `tail`: statements sent with the commit.
  caf::error insert_records(const ingest_batch& b, const device_ref& d,
                            int64_t& n, std::vector<pg::call>& tail);
  caf::error insert_points(const ingest_batch& b, const device_ref& d,
                           int64_t& n, std::vector<pg::call>& tail);
  caf::expected<std::vector<int64_t>>
  decode_in_session(const ingest_batch& b, const device_ref& d,
                    indexed_points& xs, std::vector<pg::call>& tail);
  caf::expected<wire_session*> session(const ingest_batch& b,
                                       const device_ref& d);
  caf::error save_session(const ingest_batch& b, const device_ref& d,
                          wire_session& ws, size_t known,
                          std::vector<pg::call>& tail);
  caf::expected<int64_t> series_id(const std::string& org,
                                   const std::string& name,
                                   const label_map& labels);
  caf::error config_for(const device_ref& d, int64_t have,
                        cloud_settings& out);
  static pg::call config_call(const device_ref& d, int64_t have);
  static void read_config(const pg::result& r, cloud_settings& out);
  // The journal's partitions of this hour and the next, once an hour, and
  // its bound, at most once a second (a writer may pass it by a second).
  caf::error check_journal(int64_t now);
  void journal_call(const ingest_batch& b, const device_ref& d, int64_t now,
                    std::vector<pg::call>& tail);
  // Partitions of today and tomorrow (by the store's clock), once a day.
  caf::error ensure_days(int64_t now);
  // A lost connection made again before the next call (not mid-transaction).
  caf::error reconnect();
  caf::error ensure_org(const std::string& org, int64_t now);
  caf::error copy(const staged_table& t, const pg::copy_rows& rows,
                  std::vector<pg::call>& tail);
  caf::expected<device_infos> devices_of(const std::string& org);

  clock_ptr clock_;
  std::string url_;
  pg::connect_options opts_;
  int64_t writers_ = 1;
  pg::connection conn_;
  std::string day_;
  int64_t ensured_day_ = -1;
  std::set<std::string> orgs_;
  std::map<std::string, int64_t> series_;
  std::map<session_key, wire_session> sessions_;
  store_counters counters_;
  journal_config journal_;
  int64_t ensured_hour_ = -1;
  int64_t bound_checked_ms_ = -1;
  caf::error bound_;
  // The samples of the columnar batch being accepted, for its journal row.
  metric_samples decoded_;
  int64_t lost_races_ = 0;
  int64_t reconnects_ = 0;
};

} // namespace fleetd
