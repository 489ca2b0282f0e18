#include "messages/register.hpp"

#include <caf/actor_system_config.hpp>

#include "messages/error.hpp"
#include "messages/types.hpp"

namespace fleetd {

void register_messages(caf::actor_system_config& cfg) {
  cfg.add_message_type<metric_sample>("metric_sample");
  cfg.add_message_type<metric_samples>("metric_samples");
  cfg.add_message_type<log_line>("log_line");
  cfg.add_message_type<log_lines>("log_lines");
  cfg.add_message_type<source_cursor>("source_cursor");
  cfg.add_message_type<source_cursors>("source_cursors");
  cfg.add_message_type<event_record>("event_record");
  cfg.add_message_type<event_records>("event_records");
  cfg.add_message_type<link_report>("link_report");
  cfg.add_message_type<link_status>("link_status");
  cfg.add_message_type<unbatched_points>("unbatched_points");
  cfg.add_message_type<wire_session>("wire_session");
  cfg.add_message_type<acked_batch>("acked_batch");
  cfg.add_message_type<queued_batch>("queued_batch");
  cfg.add_message_type<queued_batches>("queued_batches");
  cfg.add_message_type<cloud_settings>("cloud_settings");
  cfg.add_message_type<settings_change>("settings_change");
  cfg.add_message_type<sync_ack>("sync_ack");
  cfg.add_message_type<http_reply>("http_reply");
  cfg.add_message_type<tenancy_command>("tenancy_command");
  cfg.add_message_type<tenancy_answer>("tenancy_answer");
  cfg.add_message_type<actor_stats>("actor_stats");
  cfg.add_message_type<node_status>("node_status");
  // Before device_infos: add_message_type<T> names std::vector<T> too and
  // the first name stays, so the console's interface says
  // std::vector<device_info> on every node and in fleetctl.
  cfg.add_message_type<device_info>("device_info");
  cfg.add_message_type<device_infos>("device_infos");
  cfg.add_message_type<hardware>("hardware");
  cfg.add_message_type<tier_settings>("tier_settings");
  cfg.add_message_type<capability_report>("capability_report");
  cfg.add_message_type<debug_report>("debug_report");
  // Before delivery_rows, for the same reason as device_info.
  cfg.add_message_type<delivery_row>("delivery_row");
  cfg.add_message_type<delivery_rows>("delivery_rows");
  // Only the cloud's actors exchange these: the device build (fleetd alone)
  // leaves out their CAF serialization code (of T, std::vector<T> and
  // stream<T>), ~9 KB a type.
#ifndef FLEETD_DEVICE_BUILD
  cfg.add_message_type<ingest_batch>("ingest_batch");
  cfg.add_message_type<ingest_outcome>("ingest_outcome");
  cfg.add_message_type<sync_envelope>("sync_envelope");
  cfg.add_message_type<device_identity>("device_identity");
  cfg.add_message_type<std::vector<std::vector<std::string>>>(
    "std::vector<std::vector<std::string>>");
#endif
  add_error_category(cfg);
}

} // namespace fleetd
