#include "tools/fleetctl_streams.hpp"

#include <algorithm>
#include <cstdio>

#include "runtime/json.hpp"

namespace fleetd {

namespace {

// A named counter of a named actor; -1 when absent.
int64_t counter_of(const node_status& x, const std::string& actor,
                   const std::string& name) {
  for (auto& a : x.actors)
    if (a.name == actor) {
      auto i = a.counters.find(name);
      return i == a.counters.end() ? -1 : i->second;
    }
  return -1;
}

std::string figure(int64_t v) {
  return v >= 0 ? std::to_string(v) : "-";
}

} // namespace

std::string age_text(int64_t then_ms, int64_t now_ms) {
  if (then_ms <= 0)
    return "never";
  auto s = std::max<int64_t>(now_ms - then_ms, 0) / 1000;
  if (s < 120)
    return std::to_string(s) + "s ago";
  if (s < 7200)
    return std::to_string(s / 60) + "m ago";
  if (s < 172800)
    return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

std::vector<stream_row> device_streams(const node_status& x) {
  // The storage actor's counters of each stream's records.
  struct names {
    const char* stored;
    const char* unbatched;
  };
  auto names_of = [](const std::string& stream) -> names {
    if (stream == "metrics")
      return {"points_stored", "unbatched_points"};
    if (stream == "logs")
      return {"logs_stored", "unbatched_logs"};
    return {"", stream == "events" ? "unbatched_events" : ""};
  };
  std::vector<stream_row> out;
  for (auto& a : x.actors) {
    if (a.name.rfind("sync_", 0) != 0
        || a.counters.count("last_acked_sequence") == 0)
      continue;
    stream_row r;
    r.device = x.node_id;
    r.stream = a.name.substr(5);
    auto n = names_of(r.stream);
    r.records = counter_of(x, "storage", n.stored);
    r.pending = counter_of(x, "storage", n.unbatched);
    auto get = [&a](const char* name) -> int64_t {
      auto i = a.counters.find(name);
      return i == a.counters.end() ? -1 : i->second;
    };
    r.batches = get("batches_acked");
    r.last_acked_sequence = get("last_acked_sequence");
    r.duplicates = get("duplicates_acked");
    r.failures = get("send_failures");
    r.state = a.state;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<stream_row> cloud_streams(const device_infos& xs, int64_t now_ms) {
  std::vector<stream_row> out;
  for (auto& d : xs) {
    stream_row r;
    r.device = d.device_id;
    r.stream = d.stream;
    r.records = d.points_received;
    r.batches = d.batches_received;
    r.last_acked_sequence = d.last_acked_sequence;
    r.duplicates = d.duplicates;
    r.gaps = d.gaps;
    r.state = "seen " + age_text(d.last_seen_ms, now_ms);
    out.push_back(std::move(r));
  }
  return out;
}

std::string streams_text(const std::vector<stream_row>& xs) {
  char line[512];
  snprintf(line, sizeof(line), "%-24s %-8s %12s %9s %9s %10s %6s %6s %8s  %s\n",
           "DEVICE", "STREAM", "RECORDS", "PENDING", "BATCHES", "LAST_ACK",
           "DUPS", "GAPS", "FAILURES", "STATE");
  std::string out = line;
  for (auto& r : xs) {
    snprintf(line, sizeof(line),
             "%-24s %-8s %12s %9s %9s %10s %6s %6s %8s  %.160s\n",
             r.device.c_str(), r.stream.c_str(), figure(r.records).c_str(),
             figure(r.pending).c_str(), figure(r.batches).c_str(),
             figure(r.last_acked_sequence).c_str(),
             figure(r.duplicates).c_str(), figure(r.gaps).c_str(),
             figure(r.failures).c_str(), r.state.c_str());
    out += line;
  }
  return out;
}

std::string streams_json(const std::vector<stream_row>& xs) {
  std::string rows;
  for (auto& r : xs) {
    json_object row;
    row.add("device", r.device)
      .add("stream", r.stream)
      .add("records", r.records)
      .add("pending", r.pending)
      .add("batches", r.batches)
      .add("last_acked_sequence", r.last_acked_sequence)
      .add("duplicates", r.duplicates)
      .add("gaps", r.gaps)
      .add("failures", r.failures)
      .add("state", r.state);
    rows += (rows.empty() ? "" : ",") + row.str();
  }
  return "[" + rows + "]";
}

} // namespace fleetd
