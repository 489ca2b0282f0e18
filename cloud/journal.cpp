#include "cloud/journal.hpp"

#include "messages/error.hpp"
#include "messages/journal_codec.hpp"
#include "runtime/options.hpp"

namespace fleetd {

void declare(option_set& opts, journal_config& x) {
  opts.add_size("journal.max-bytes", x.max_bytes, int64_t{1} << 30,
                "Bytes of ingest journal (compressed rows not yet written by "
                "every sink) past which devices are answered 503 with "
                "retry_after_ms: back-pressure, devices keep their data",
                1024);
  opts.add("journal.retention", x.retention, std::chrono::hours(24),
           "Age of the oldest journal row not yet written by every sink "
           "past which devices are answered 503 (back-pressure)",
           std::chrono::milliseconds(1000));
  opts.add("journal.retry-after", x.retry_after, std::chrono::seconds(5),
           "retry_after_ms told to devices refused while the journal is "
           "full", std::chrono::milliseconds(1));
  opts.add_size("journal.max-entry-bytes", x.max_entry_bytes,
                int64_t{256} << 20,
                "Largest decoded journal row a sink reads; a larger one is "
                "counted undecodable and skipped",
                1024, int64_t{4} << 30);
}

caf::error validate(const journal_config& x) {
  if (x.max_bytes < 1024)
    return make_error(ec::bad_config, "journal.max-bytes: must be at least "
                                      "1024, got "
                                        + std::to_string(x.max_bytes));
  if (x.retention.count() < 1000)
    return make_error(ec::bad_config,
                      "journal.retention: must be at least 1s");
  return caf::none;
}

caf::error check_journal_bound(const journal_config& cfg, int64_t bytes,
                               int64_t oldest_ms, int64_t now_ms) {
  if (bytes >= cfg.max_bytes)
    return make_error(ec::journal_full,
                      "ingest journal holds " + std::to_string(bytes)
                        + " bytes (journal.max-bytes "
                        + std::to_string(cfg.max_bytes)
                        + "): a sink is behind");
  if (oldest_ms > 0 && now_ms - oldest_ms > cfg.retention.count())
    return make_error(ec::journal_full,
                      "oldest ingest journal row is "
                        + std::to_string(now_ms - oldest_ms)
                        + " ms old (journal.retention "
                        + std::to_string(cfg.retention.count())
                        + " ms): a sink is behind");
  return caf::none;
}

std::pair<std::string, std::string> split_device_id(const std::string& id) {
  auto slash = id.find('/');
  if (slash == std::string::npos)
    return {std::string{}, id};
  return {id.substr(0, slash), id.substr(slash + 1)};
}

bool add_row(journal_chunk& c, journal_cursor at, std::string_view row,
             uint64_t max_bytes, int64_t max_points) {
  ++c.rows;
  c.end = at;
  auto x = decode_journal_entry(row, max_bytes);
  if (!x) {
    ++c.undecodable;
    return true;
  }
  x->id = at.id;
  c.points += static_cast<int64_t>(x->samples.size() + x->logs.size()
                                   + x->events.size());
  c.entries.push_back(std::move(*x));
  c.positions.push_back(at);
  return c.points < max_points;
}

journal_entry journal_entry_of(const ingest_batch& b, std::string org,
                               std::string device, int64_t now_ms,
                               metric_samples decoded) {
  journal_entry x;
  x.org = std::move(org);
  x.device = std::move(device);
  x.stream = b.stream;
  x.epoch = b.epoch;
  x.sequence = b.sequence;
  x.received_ms = now_ms;
  x.samples = b.columnar.empty() ? b.samples : std::move(decoded);
  x.logs = b.logs;
  x.events = b.events;
  return x;
}

} // namespace fleetd
