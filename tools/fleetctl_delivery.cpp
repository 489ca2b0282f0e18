#include "tools/fleetctl_delivery.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "messages/error.hpp"
#include "runtime/json.hpp"

namespace fleetd {

const char* const delivery_usage =
  "  delivery [--device D] [--since 24h]\n"
  "            on a cloud node: per device, stream and hour the records\n"
  "            received, duplicates absorbed, missing sequences, drops the\n"
  "            device declared, records it declared collected and stored,\n"
  "            and ratio = received / (received + declared\n"
  "            drops + missing); a totals line; --json\n";

void declare(option_set& opts, delivery_options& x) {
  opts.add("since", x.since, std::chrono::hours(24),
           "delivery: the hours from this long ago until now");
}

namespace {

std::string ratio_text(const delivery_row& x) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.4f",
           delivery_ratio(x.received, x.declared_drops, x.missing));
  return buf;
}

// "2026-12-07 13:00" (UTC).
std::string hour_text(int64_t hour_ms) {
  std::time_t t = static_cast<std::time_t>(hour_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M", &tm);
  return buf;
}

std::string row_json(const delivery_row& x) {
  return json_object{}
    .add("device", x.device)
    .add("stream", x.stream)
    .add("hour_ms", x.hour_ms)
    .add("received", x.received)
    .add("duplicates", x.duplicates)
    .add("missing", x.missing)
    .add("declared_drops", x.declared_drops)
    .add("collected", x.collected)
    .add("stored", x.stored)
    .raw("ratio", ratio_text(x))
    .str();
}

} // namespace

std::string delivery_text(const delivery_rows& xs) {
  std::string out;
  char line[256];
  auto put = [&](const std::string& device, const std::string& stream,
                 const std::string& hour, const delivery_row& x) {
    snprintf(line, sizeof(line),
             "%-24s %-8s %-16s %10lld %10lld %8lld %10lld %10lld %10lld %8s\n",
             device.c_str(), stream.c_str(), hour.c_str(),
             static_cast<long long>(x.received),
             static_cast<long long>(x.duplicates),
             static_cast<long long>(x.missing),
             static_cast<long long>(x.declared_drops),
             static_cast<long long>(x.collected),
             static_cast<long long>(x.stored), ratio_text(x).c_str());
    out += line;
  };
  snprintf(line, sizeof(line),
           "%-24s %-8s %-16s %10s %10s %8s %10s %10s %10s %8s\n", "DEVICE",
           "STREAM", "HOUR (UTC)", "RECEIVED", "DUPLICATES", "MISSING",
           "DECLARED", "COLLECTED", "STORED", "RATIO");
  out += line;
  for (auto& x : xs)
    put(x.device, x.stream, hour_text(x.hour_ms), x);
  put("total", "", "", delivery_total(xs));
  return out;
}

std::string delivery_json(const delivery_rows& xs) {
  std::string rows = "[";
  for (size_t i = 0; i < xs.size(); ++i)
    rows += (i ? "," : "") + row_json(xs[i]);
  rows += "]";
  auto t = delivery_total(xs);
  return json_object{}
    .raw("rows", rows)
    .raw("totals", json_object{}
                     .add("received", t.received)
                     .add("duplicates", t.duplicates)
                     .add("missing", t.missing)
                     .add("declared_drops", t.declared_drops)
                     .add("collected", t.collected)
                     .add("stored", t.stored)
                     .raw("ratio", ratio_text(t))
                     .str())
    .str();
}

} // namespace fleetd
