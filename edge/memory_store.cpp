#include "edge/memory_store.hpp"

#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/wire.hpp"

namespace fleetd {

namespace {

constexpr size_t max_events = 100;

std::string series_key(const metric_sample& x) {
  return x.name + '\0' + encode_labels(x.labels);
}

} // namespace

memory_store::memory_store(memory_limits limits, clock_ptr clock)
  : limits_(limits), clock_(std::move(clock)) {
  // Nothing to load: a memory store starts empty by definition.
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

caf::expected<unbatched_points> memory_store::fetch(const std::string& stream,
                                                    int64_t max) {
  unbatched_points out;
  auto& cur = cursors_[stream];
  out.next_sequence = cur.next_sequence;
  out.last_id = cur.batched_upto;
  for (auto i = points_.upper_bound(cur.batched_upto);
       i != points_.end() && static_cast<int64_t>(out.samples.size()) < max;
       ++i) {
    out.samples.push_back(i->second);
    out.last_id = i->first;
  }
  return out;
}

caf::expected<int64_t> memory_store::enqueue(const queued_batch& batch) {
  auto& cur = cursors_[batch.stream];
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
    drops_[drop_kind::metrics_unsynced] += oldest->second.points;
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
                                         int64_t sequence) {
  int64_t deleted = 0;
  auto& cur = cursors_[stream];
  auto i = queue_.lower_bound({stream, 0});
  while (i != queue_.end() && i->first.first == stream
         && i->first.second <= sequence) {
    cur.acked_upto = std::max(cur.acked_upto, i->second.last_id);
    i = queue_.erase(i);
    ++deleted;
  }
  return deleted;
}

caf::error memory_store::checkpoint() {
  return caf::none;
}

caf::error memory_store::record_event(const std::string& kind,
                                      const std::string& message) {
  events_.emplace_back(clock_->now_ms(), kind + ": " + message);
  if (events_.size() > max_events) {
    events_.pop_front();
    ++drops_[drop_kind::events];
  }
  return caf::none;
}

std::map<std::string, int64_t> memory_store::drops() {
  return drops_;
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
  for (auto& kv : drops_)
    out.counters["dropped_" + kv.first] = kv.second;
  return out;
}

} // namespace fleetd
