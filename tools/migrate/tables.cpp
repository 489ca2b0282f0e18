#include "tools/migrate/tables.hpp"

namespace fleetd::migration {

namespace {

// The batch key a point, log or event belongs to: its day is the day the
// cloud received that batch.
constexpr const char* batch_key
  = "device_id || char(31) || epoch || char(31) || sequence";

std::vector<table_spec> tenancy_tables() {
  using c = col;
  return {
    {"orgs", "tenancy", "orgs", "name", false, "name, created_ms",
     "name, created_ms", {{"name", c::text}, {"created_ms", c::integer}}},
    {"quotas", "tenancy", "orgs", "name", false,
     "org, points_per_second, bytes_per_day",
     "org, points_per_second, bytes_per_day",
     {{"name", c::text}, {"points_per_second", c::integer},
      {"bytes_per_day", c::integer}}},
    {"devices", "tenancy", "devices", "org, device", false,
     "org, device, created_ms, revoked_ms",
     "org, device, created_ms, revoked_ms",
     {{"org", c::text}, {"device", c::text}, {"created_ms", c::integer},
      {"revoked_ms", c::integer}}},
    {"device_keys", "tenancy", "device_keys", "hash", false,
     "hash, org, device, created_ms, expires_ms",
     "encode(hash, 'hex'), org, device, created_ms, expires_ms",
     {{"hash", c::blob}, {"org", c::text}, {"device", c::text},
      {"created_ms", c::integer}, {"expires_ms", c::integer}}},
    {"enroll_tokens", "tenancy", "enroll_tokens", "hash", false,
     "hash, org, uses_left, expires_ms, revoked, created_ms",
     "encode(hash, 'hex'), org, uses_left, expires_ms, revoked::int, "
     "created_ms",
     {{"hash", c::blob}, {"org", c::text}, {"uses_left", c::integer},
      {"expires_ms", c::integer}, {"revoked", c::boolean},
      {"created_ms", c::integer}}},
  };
}

std::vector<table_spec> store_tables() {
  using c = col;
  return {
    {"streams", "cloud", "streams", "device_id, stream", false,
     "org, device, stream, epoch, last_sequence, epochs, points, batches, "
     "duplicates, last_seen",
     "org, device, stream, epoch, last_sequence, epochs, points, batches, "
     "duplicates, last_seen",
     {{"device_id", c::device_id}, {"stream", c::text}, {"epoch", c::text},
      {"last_sequence", c::integer}, {"epochs", c::integer},
      {"points", c::integer}, {"batches", c::integer},
      {"duplicates", c::integer}, {"last_seen", c::integer}}},
    {"batches", "cloud", "batches", "device_id, stream, epoch, sequence", false,
     "org, device, stream, epoch, sequence, checksum, points, received_at",
     "org, device, stream, epoch, sequence, encode(checksum, 'hex'), points, "
     "received_at",
     {{"device_id", c::device_id}, {"stream", c::text}, {"epoch", c::text},
      {"sequence", c::integer}, {"checksum", c::blob}, {"points", c::integer},
      {"received_at", c::integer}}},
    // Special-cased: one row per org that uses the series.
    {"series", "cloud", "series", "rowid", true, "id, org, name, labels",
     "id, org, name, encode(labels, 'hex')",
     {{"rowid", c::series}, {"name", c::text}, {"labels", c::blob}}},
    {"points", "cloud", "points", "rowid", true,
     "org, device, epoch, sequence, series_id, ts, bits, id, day, value",
     "org, device, epoch, sequence, series_id, ts, bits, id",
     {{"device_id", c::device_id}, {"epoch", c::text},
      {"sequence", c::integer}, {"series_id", c::series}, {"ts", c::integer},
      {"bits", c::integer}, {"rowid", c::integer}, {batch_key, c::day},
      {"value", c::value}}},
    {"logs", "cloud", "logs", "rowid", true,
     "org, device, epoch, sequence, labels, ts, line, id, day",
     "org, device, epoch, sequence, encode(labels, 'hex'), ts, line, id",
     {{"device_id", c::device_id}, {"epoch", c::text},
      {"sequence", c::integer}, {"labels", c::blob}, {"ts", c::integer},
      {"line", c::text}, {"rowid", c::integer}, {batch_key, c::day}}},
    {"events", "cloud", "events", "rowid", true,
     "org, device, epoch, sequence, ts, kind, message, attributes, id, day",
     "org, device, epoch, sequence, ts, kind, message, "
     "encode(attributes, 'hex'), id",
     {{"device_id", c::device_id}, {"epoch", c::text},
      {"sequence", c::integer}, {"ts", c::integer}, {"kind", c::text},
      {"message", c::text}, {"attributes", c::blob}, {"rowid", c::integer},
      {batch_key, c::day}}},
    {"wire_series", "cloud", "wire_series", "device_id, epoch, idx", false,
     "org, device, epoch, idx, series_id",
     "org, device, epoch, idx, series_id",
     {{"device_id", c::device_id}, {"epoch", c::text}, {"idx", c::integer},
      {"series_id", c::series}}},
    {"wire_history", "cloud", "wire_history", "device_id, epoch", false,
     "org, device, epoch, history",
     "org, device, epoch, encode(history, 'hex')",
     {{"device_id", c::device_id}, {"epoch", c::text},
      {"history", c::blob}}},
    {"device_capability", "cloud", "device_capability", "device_id", false,
     "org, device, tier, total_ram, available_ram, total_disk, "
     "available_disk, cpu_cores, has_sqlite, has_network, updated_ms",
     "org, device, tier, total_ram, available_ram, total_disk, "
     "available_disk, cpu_cores, has_sqlite::int, has_network::int, "
     "updated_ms",
     {{"device_id", c::device_id}, {"tier", c::integer},
      {"total_ram", c::integer}, {"available_ram", c::integer},
      {"total_disk", c::integer}, {"available_disk", c::integer},
      {"cpu_cores", c::integer}, {"has_sqlite", c::boolean},
      {"has_network", c::boolean}, {"updated_ms", c::integer}}},
    {"device_config", "cloud", "device_config", "device_id", false,
     "org, device, version, batch_size, sync_interval_ms, retention_ms, "
     "zstd_level",
     "org, device, version, batch_size, sync_interval_ms, retention_ms, "
     "zstd_level",
     {{"device_id", c::device_id}, {"version", c::integer},
      {"batch_size", c::integer}, {"sync_interval_ms", c::integer},
      {"retention_ms", c::integer}, {"zstd_level", c::integer}}},
    {"delivery", "cloud", "delivery", "device_id, stream, hour_ms", false,
     "org, device, stream, hour_ms, received, duplicates, missing, "
     "declared_drops, collected, stored",
     "org, device, stream, hour_ms, received, duplicates, missing, "
     "declared_drops, collected, stored",
     {{"device_id", c::device_id}, {"stream", c::text},
      {"hour_ms", c::integer}, {"received", c::integer},
      {"duplicates", c::integer}, {"missing", c::integer},
      {"declared_drops", c::integer}, {"collected", c::integer},
      {"stored", c::integer}}},
    {"declared_drops", "cloud", "declared_drops", "device_id, stream", false,
     "org, device, stream, origin, records, batches, collected, stored",
     "org, device, stream, origin, records, batches, collected, stored",
     {{"device_id", c::device_id}, {"stream", c::text}, {"origin", c::text},
      {"records", c::integer}, {"batches", c::integer},
      {"collected", c::integer}, {"stored", c::integer}}},
  };
}

std::vector<table_spec> make_tables() {
  auto all = tenancy_tables();
  for (auto& t : store_tables())
    all.push_back(t);
  return all;
}

} // namespace

const std::vector<table_spec>& tables() {
  static const auto all = make_tables();
  return all;
}

} // namespace fleetd::migration
