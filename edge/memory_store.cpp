#include "edge/memory_store.hpp"

#include "runtime/random.hpp"

#include <cstdio>
#include <random>

#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/wire.hpp"
#include "runtime/json.hpp"

#include <sstream>

namespace fleetd {

namespace {

constexpr size_t max_events = 100;
// Log lines held while the cloud is away; the oldest go first, counted.
constexpr size_t max_logs = 1000;

// Up to `max` rows after id `after`, in id order; `last_id` becomes the
// last one taken.
template <class Row>
void take_after(const std::map<int64_t, Row>& rows, int64_t after, int64_t max,
                int64_t max_bytes, unbatched_points& up, std::vector<Row>& out) {
  int64_t bytes = 0;
  for (auto i = rows.upper_bound(after);
       i != rows.end() && static_cast<int64_t>(out.size()) < max; ++i) {
    bytes += record_bytes(i->second);
    if (!out.empty() && bytes > max_bytes) {
      up.full = true;
      return;
    }
    out.push_back(i->second);
    up.last_id = i->first;
  }
}

std::string series_key(const metric_sample& x) {
  return x.name + '\0' + encode_labels(x.labels);
}

} // namespace

memory_store::memory_store(memory_limits limits, clock_ptr clock)
  : limits_(limits), clock_(std::move(clock)) {
  // Every start numbers afresh: what the last run queued died with it.
  epoch_ = random_hex(8);
}

void memory_store::drop_point(int64_t id) {
  auto i = points_.find(id);
  if (i == points_.end())
    return;
  auto& cur = cursors_[metrics_stream];
  const char* kind = id <= cur.acked_upto     ? drop_kind::metrics_synced
                     : id <= cur.batched_upto ? drop_kind::metrics_queued_copy
                                              : drop_kind::metrics_unsynced;
  ++drops_[kind];
  if (limits_.per_series > 0) {
    auto& ids = by_series_[series_key(i->second)];
    if (!ids.empty() && ids.front() == id)
      ids.pop_front();
  }
  points_.erase(i);
}

caf::expected<int64_t> memory_store::store(const metric_samples& xs) {
  for (auto& x : xs) {
    auto id = next_id_++;
    points_.emplace(id, x);
    if (limits_.per_series > 0) {
      auto& ids = by_series_[series_key(x)];
      ids.push_back(id);
      while (static_cast<int64_t>(ids.size()) > limits_.per_series)
        drop_point(ids.front());
    }
  }
  while (limits_.max_points > 0
         && static_cast<int64_t>(points_.size()) > limits_.max_points)
    drop_point(points_.begin()->first);
  points_stored_ += static_cast<int64_t>(xs.size());
  return static_cast<int64_t>(xs.size());
}

caf::expected<int64_t> memory_store::store_logs(const log_lines& xs,
                                                const source_cursors& cursors) {
  for (auto& c : cursors)
    keep_newest(source_cursors_, c);
  for (auto& x : xs)
    logs_.emplace(next_id_++, x);
  auto& cur = cursors_[logs_stream];
  while (logs_.size() > max_logs) {
    auto id = logs_.begin()->first;
    ++drops_[id <= cur.acked_upto     ? drop_kind::logs_synced
             : id <= cur.batched_upto ? drop_kind::logs_queued_copy
                                      : drop_kind::logs_unsynced];
    logs_.erase(logs_.begin());
  }
  return static_cast<int64_t>(xs.size());
}

caf::expected<source_cursors> memory_store::cursors() {
  return source_cursors_;
}

caf::expected<unbatched_points>
memory_store::fetch(const std::string& stream, int64_t max, int64_t max_bytes) {
  if (auto err = check_stream(stream))
    return err;
  unbatched_points out;
  auto& cur = cursors_[stream];
  out.next_sequence = cur.next_sequence;
  out.epoch = epoch_;
  out.last_id = cur.batched_upto;
  if (stream == logs_stream)
    take_after(logs_, cur.batched_upto, max, max_bytes, out, out.logs);
  else if (stream == events_stream)
    take_after(events_, cur.batched_upto, max, max_bytes, out, out.events);
  else
    take_after(points_, cur.batched_upto, max, max_bytes, out, out.samples);
  return out;
}

caf::expected<int64_t> memory_store::enqueue(const queued_batch& batch) {
  auto& cur = cursors_[batch.stream];
  if (auto i = queue_.find({batch.stream, batch.sequence});
      i != queue_.end() && i->second.points == batch.points
      && i->second.last_id == batch.last_id) {
    // The same records re-encoded (a new series session): replace them.
    i->second.body = batch.body;
    return batch.sequence;
  }
  if (batch.sequence != cur.next_sequence)
    return make_error(ec::bad_sequence,
                      "batch " + std::to_string(batch.sequence) + " of "
                        + batch.stream + " but the next is "
                        + std::to_string(cur.next_sequence));
  queue_.emplace(std::make_pair(batch.stream, batch.sequence), batch);
  cur.next_sequence = batch.sequence + 1;
  cur.batched_upto = batch.last_id;
  // A bounded queue: the oldest unacked batch goes first, and is counted.
  while (limits_.max_batches > 0
         && static_cast<int64_t>(queue_.size()) > limits_.max_batches) {
    auto oldest = queue_.begin();
    ++drops_[drop_kind::batches_unsynced];
    ++drops_[drop_kind::lost_batches(oldest->second.stream)];
    drops_[drop_kind::unsynced_kind(oldest->second.stream)]
      += oldest->second.points;
    queue_.erase(oldest);
  }
  return batch.sequence;
}

caf::expected<queued_batches> memory_store::pending(const std::string& stream,
                                                    int64_t max) {
  queued_batches out;
  for (auto i = queue_.lower_bound({stream, 0});
       i != queue_.end() && i->first.first == stream
       && static_cast<int64_t>(out.size()) < max;
       ++i)
    out.push_back(i->second);
  return out;
}

caf::expected<int64_t> memory_store::ack(const std::string& stream,
                                         int64_t sequence, int64_t base,
                                         const metric_samples& defs,
                                         const std::string& history) {
  int64_t deleted = 0;
  auto& cur = cursors_[stream];
  auto i = queue_.lower_bound({stream, 0});
  while (i != queue_.end() && i->first.first == stream
         && i->first.second <= sequence) {
    cur.acked_upto = std::max(cur.acked_upto, i->second.last_id);
    i = queue_.erase(i);
    ++deleted;
  }
  if (deleted > 0 && stream == metrics_stream) {
    auto& session = sessions_[stream];
    auto& table = session.series;
    table.resize(std::min(table.size(), static_cast<size_t>(base)));
    table.insert(table.end(), defs.begin(), defs.end());
    session.history = history;
  }
  return deleted;
}

caf::expected<int64_t> memory_store::discard(const std::string& stream,
                                             int64_t sequence) {
  auto i = queue_.find({stream, sequence});
  if (i == queue_.end())
    return int64_t{0};
  auto points = i->second.points;
  queue_.erase(i);
  ++drops_[drop_kind::batches_rejected];
  ++drops_[drop_kind::lost_batches(stream)];
  drops_[drop_kind::unsynced_kind(stream)] += points;
  record_event("batch_rejected",
               "the cloud refused batch " + std::to_string(sequence) + " of "
                 + stream + " for good; " + std::to_string(points)
                 + " records dropped");
  return points;
}

caf::expected<wire_session> memory_store::session(const std::string& stream) {
  return sessions_[stream];
}

caf::expected<cloud_settings> memory_store::load_settings() {
  return settings_;
}

caf::error memory_store::save_settings(const cloud_settings& x) {
  settings_ = x;
  return caf::none;
}

caf::error memory_store::note_retry(const std::string& stream,
                                    int64_t sequence, int64_t next_retry_ms) {
  // Forget batches that left the queue: the map stays as small as it.
  for (auto i = next_retry_.begin(); i != next_retry_.end();)
    i = queue_.count(i->first) ? std::next(i) : next_retry_.erase(i);
  if (auto i = queue_.find({stream, sequence}); i != queue_.end()) {
    ++i->second.retry_count;
    next_retry_[i->first] = next_retry_ms;
  }
  return caf::none;
}

caf::error memory_store::checkpoint() {
  return caf::none;
}

caf::error memory_store::record_event(const std::string& kind,
                                      const std::string& message) {
  event_record e;
  e.timestamp_ms = clock_->now_ms();
  e.kind = kind;
  e.message = message;
  events_.emplace(next_id_++, std::move(e));
  if (events_.size() > max_events) {
    // Past the batched cursor no batch holds it: lost, and declared so.
    if (events_.begin()->first > cursors_[events_stream].batched_upto)
      ++drops_[drop_kind::events_unsynced];
    events_.erase(events_.begin());
    ++drops_[drop_kind::events];
  }
  return caf::none;
}

std::map<std::string, int64_t> memory_store::drops() {
  return drops_;
}

caf::error memory_store::count_refused(const std::string& kind, int64_t n) {
  if (n > 0)
    drops_[kind] += n;
  return caf::none;
}

actor_stats memory_store::stats() {
  actor_stats out;
  out.name = "storage";
  out.state = limits_.per_series > 0 ? "memory (per-series history)"
                                     : "memory (ring)";
  out.counters["points_stored"] = points_stored_;
  out.counters["metrics_rows"] = points_held();
  out.counters["queued_batches"] = static_cast<int64_t>(queue_.size());
  auto& cur = cursors_[metrics_stream];
  out.counters["unbatched_points"] = static_cast<int64_t>(
    std::distance(points_.upper_bound(cur.batched_upto), points_.end()));
  out.counters["series"] = static_cast<int64_t>(by_series_.size());
  out.counters["logs_rows"] = static_cast<int64_t>(logs_.size());
  out.counters["unbatched_logs"] = static_cast<int64_t>(std::distance(
    logs_.upper_bound(cursors_[logs_stream].batched_upto), logs_.end()));
  out.counters["unbatched_events"] = static_cast<int64_t>(std::distance(
    events_.upper_bound(cursors_[events_stream].batched_upto), events_.end()));
  for (auto& kv : drops_)
    out.counters["dropped_" + kv.first] = kv.second;
  return out;
}

void memory_store::apply(const tier_settings& settings) {
  if (limits_.per_series > 0)
    limits_.per_series = settings.memory_points;
  else
    limits_.max_points = settings.memory_points;
  // Shrinking bounds take effect with the next store; apply them now.
  store(metric_samples{});
}

caf::expected<debug_report> memory_store::debug(const std::string& what) {
  debug_report out;
  json_object json;
  std::ostringstream text;
  if (what == "storage") {
    auto st = stats();
    text << "memory store (" << st.state << "), nothing survives a restart\n";
    for (auto& kv : st.counters) {
      text << "  " << kv.first << "=" << kv.second << "\n";
      json.add(kv.first, kv.second);
    }
  } else if (what == "queue") {
    std::string items;
    for (auto& kv : queue_) {
      auto next = next_retry_.count(kv.first) ? next_retry_[kv.first] : 0;
      text << kv.first.first << " " << kv.first.second << " "
           << kv.second.points << " points, " << kv.second.retry_count
           << " retries\n";
      json_object item;
      item.add("stream", kv.first.first)
        .add("sequence", kv.first.second)
        .add("points", kv.second.points)
        .add("retry_count", kv.second.retry_count)
        .add("next_retry_ms", next)
        .add("bytes", static_cast<int64_t>(kv.second.body.size()));
      items += (items.empty() ? "" : ",") + item.str();
    }
    text << queue_.size() << " batches waiting\n";
    json.add("batches", static_cast<int64_t>(queue_.size()))
      .raw("items", "[" + items + "]");
  } else if (what == "clean") {
    text << "memory store: nothing to clean\n";
    json.add("dropped", int64_t{0});
  } else {
    return make_error(ec::bad_config, "unknown debug subject '" + what + "'");
  }
  out.text = text.str();
  out.json = json.str();
  return out;
}

} // namespace fleetd
