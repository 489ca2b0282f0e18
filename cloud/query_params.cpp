#include "cloud/query_params.hpp"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "cloud/tenancy_keys.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "runtime/json.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

constexpr size_t max_metric_bytes = 256;
constexpr size_t max_params = 8;
constexpr int64_t min_step_ms = 1000;

caf::error bad(const std::string& what) {
  return make_error(ec::conflict, what);
}

using param_map = std::map<std::string, std::string>;

// The query string's parameters, each once and among `known`.
caf::expected<param_map> params_of(const std::string& target,
                                   const std::vector<std::string>& known) {
  param_map out;
  auto q = target.find('?');
  if (q == std::string::npos)
    return out;
  auto text = target.substr(q + 1);
  size_t pos = 0;
  while (pos <= text.size()) {
    auto amp = text.find('&', pos);
    auto part = text.substr(pos, amp == std::string::npos ? std::string::npos
                                                          : amp - pos);
    pos = amp == std::string::npos ? text.size() + 1 : amp + 1;
    if (part.empty())
      continue;
    auto eq = part.find('=');
    std::string key;
    std::string value;
    if (!url_unescape(part.substr(0, eq), key)
        || !url_unescape(eq == std::string::npos ? "" : part.substr(eq + 1),
                       value))
      return bad("malformed %-escape in the query string");
    bool ok = false;
    for (auto& k : known)
      ok = ok || k == key;
    if (!ok)
      return bad("unknown parameter '" + printable(key, 32) + "'");
    if (out.count(key) > 0 || out.size() >= max_params)
      return bad("parameter '" + key + "' given twice");
    out.emplace(key, std::move(value));
  }
  return out;
}

caf::expected<std::string> required(const param_map& ps,
                                    const std::string& key) {
  auto i = ps.find(key);
  if (i == ps.end() || i->second.empty())
    return bad("missing parameter '" + key + "'");
  return i->second;
}

// A whole number of `key` in [lo, hi], with an optional unit suffix among
// ms (1), s, m, h, d when `units`.
caf::expected<int64_t> number(const param_map& ps, const std::string& key,
                              int64_t lo, int64_t hi, bool units) {
  auto text = required(ps, key);
  if (!text)
    return text.error();
  auto& t = *text;
  errno = 0;
  char* end = nullptr;
  auto x = std::strtoll(t.c_str(), &end, 10);
  std::string unit = end ? std::string(end) : "";
  int64_t scale = 1;
  if (units && unit == "s")
    scale = 1000;
  else if (units && unit == "m")
    scale = 60'000;
  else if (units && unit == "h")
    scale = 3'600'000;
  else if (units && unit == "d")
    scale = 86'400'000;
  else if (!(unit.empty() || (units && unit == "ms")))
    return bad(key + ": expected " + (units ? "a duration (e.g. 60s, 5m, 1h)"
                                            : "milliseconds since the epoch")
               + ", not '" + printable(t, 32) + "'");
  // Every bound here is >= 0: a negative number is out of range too.
  if (errno == ERANGE || end == t.c_str() || x < 0 || x > hi / scale
      || x * scale < lo)
    return bad(key + ": must be " + std::to_string(lo) + ".."
               + std::to_string(hi) + (units ? " ms" : "") + ", not '"
               + printable(t, 32) + "'");
  return x * scale;
}

// from and to (ms since the epoch), to after from, within max_range_ms.
caf::error time_range(const param_map& ps, const query_limits& lim,
                      int64_t& from, int64_t& to) {
  // Year 2096: log lines' nanoseconds of it still fit 63 bits.
  constexpr int64_t max_ms = 4'000'000'000'000;
  auto f = number(ps, "from", 0, max_ms, false);
  if (!f)
    return f.error();
  auto t = number(ps, "to", 0, max_ms, false);
  if (!t)
    return t.error();
  if (*t <= *f)
    return bad("to must be after from");
  if (*t - *f > lim.max_range_ms)
    return bad("the range is longer than query.max-range ("
               + std::to_string(lim.max_range_ms) + " ms)");
  from = *f;
  to = *t;
  return caf::none;
}

caf::expected<std::string> device_of(const param_map& ps) {
  auto d = required(ps, "device");
  if (!d)
    return d.error();
  if (!valid_name(*d))
    return bad("device: 1-64 of A-Z a-z 0-9 . _ -");
  return d;
}

caf::expected<step_agg> agg_of(const param_map& ps) {
  auto i = ps.find("agg");
  if (i == ps.end() || i->second == "avg")
    return step_agg::avg;
  static const std::map<std::string, step_agg> names{
    {"sum", step_agg::sum},
    {"count", step_agg::count},
    {"min", step_agg::min},
    {"max", step_agg::max}};
  auto j = names.find(i->second);
  if (j == names.end())
    return bad("agg: one of avg, sum, count, min, max");
  return j->second;
}

const char* agg_name(step_agg a) {
  switch (a) {
    case step_agg::sum:
      return "sum";
    case step_agg::count:
      return "count";
    case step_agg::min:
      return "min";
    case step_agg::max:
      return "max";
    default:
      return "avg";
  }
}

std::string labels_json(const label_map& labels) {
  json_object obj;
  for (auto& [k, v] : labels)
    obj.add(k, v);
  return obj.str();
}

std::string point_json(step_agg a, const step_point& p) {
  double x = p.avg;
  if (a == step_agg::sum)
    x = p.sum;
  else if (a == step_agg::min)
    x = p.min;
  else if (a == step_agg::max)
    x = p.max;
  auto value = a == step_agg::count ? std::to_string(p.count) : json_value(x);
  return "[" + std::to_string(p.ts_ms) + "," + value + "]";
}

} // namespace

std::string json_value(double x) {
  if (std::isnan(x))
    return "\"NaN\"";
  if (std::isinf(x))
    return x > 0 ? "\"+Inf\"" : "\"-Inf\"";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", x);
  return buf;
}

void align_hour_steps(series_query& q) {
  constexpr int64_t hour_ms = 3'600'000;
  if (q.step_ms % hour_ms != 0)
    return;
  auto floor_hour = [](int64_t t) {
    return t / hour_ms * hour_ms - (t % hour_ms < 0 ? hour_ms : 0);
  };
  q.from_ms = floor_hour(q.from_ms);
  if (q.to_ms % hour_ms != 0 && q.to_ms <= INT64_MAX - hour_ms)
    q.to_ms = floor_hour(q.to_ms) + hour_ms;
}

caf::expected<parsed_series_query>
parse_series_query(const std::string& org, const std::string& target,
                   const query_limits& lim) {
  auto ps = params_of(target,
                      {"metric", "device", "from", "to", "step", "agg"});
  if (!ps)
    return ps.error();
  parsed_series_query out;
  out.q.org = org;
  auto metric = required(*ps, "metric");
  if (!metric)
    return metric.error();
  if (metric->size() > max_metric_bytes || bad_text_at(*metric) != std::string::npos)
    return bad("metric: 1-" + std::to_string(max_metric_bytes)
               + " bytes of UTF-8 text without NUL");
  out.q.metric = std::move(*metric);
  auto device = device_of(*ps);
  if (!device)
    return device.error();
  out.q.device = std::move(*device);
  if (auto err = time_range(*ps, lim, out.q.from_ms, out.q.to_ms))
    return err;
  auto step = number(*ps, "step", min_step_ms, lim.max_range_ms, true);
  if (!step)
    return step.error();
  out.q.step_ms = *step;
  align_hour_steps(out.q);
  auto steps = (out.q.to_ms - out.q.from_ms + *step - 1) / *step;
  if (steps > lim.max_points)
    return bad("range/step gives " + std::to_string(steps)
               + " points, more than query.max-points ("
               + std::to_string(lim.max_points) + "): raise the step");
  auto agg = agg_of(*ps);
  if (!agg)
    return agg.error();
  out.agg = *agg;
  return out;
}

caf::expected<logs_query> parse_logs_query(const std::string& org,
                                           const std::string& target,
                                           const query_limits& lim) {
  auto ps = params_of(target, {"device", "from", "to", "limit"});
  if (!ps)
    return ps.error();
  logs_query out;
  out.org = org;
  auto device = device_of(*ps);
  if (!device)
    return device.error();
  out.device = std::move(*device);
  if (auto err = time_range(*ps, lim, out.from_ms, out.to_ms))
    return err;
  out.limit = std::min<int64_t>(1000, lim.max_log_lines);
  if (ps->count("limit") > 0) {
    auto limit = number(*ps, "limit", 1, lim.max_log_lines, false);
    if (!limit)
      return limit.error();
    out.limit = *limit;
  }
  return out;
}

std::string series_json(const parsed_series_query& p,
                        const std::vector<query_series>& series) {
  std::string list = "[";
  for (size_t i = 0; i < series.size(); ++i) {
    std::string points = "[";
    for (size_t j = 0; j < series[i].points.size(); ++j)
      points += (j ? "," : "") + point_json(p.agg, series[i].points[j]);
    list += (i ? "," : "") + json_object{}
                               .raw("labels", labels_json(series[i].labels))
                               .raw("points", points + "]")
                               .str();
  }
  return json_object{}
    .add("org", p.q.org)
    .add("device", p.q.device)
    .add("metric", p.q.metric)
    .add("from", p.q.from_ms)
    .add("to", p.q.to_ms)
    .add("step_ms", p.q.step_ms)
    .add("agg", agg_name(p.agg))
    .raw("series", list + "]")
    .str();
}

std::string logs_json(const logs_query& q,
                      const std::vector<query_log_line>& lines) {
  // Streams by label set, in order of their first line.
  std::vector<std::pair<const label_map*, std::string>> streams;
  std::map<label_map, size_t> index;
  for (auto& l : lines) {
    auto [it, fresh] = index.emplace(l.labels, streams.size());
    if (fresh)
      streams.emplace_back(&l.labels, "");
    auto& body = streams[it->second].second;
    body += (body.empty() ? "[" : ",") + std::string("[")
            + std::to_string(l.ts_ns) + "," + json_quote(l.line) + "]";
  }
  std::string list = "[";
  for (size_t i = 0; i < streams.size(); ++i)
    list += (i ? "," : "") + json_object{}
                               .raw("labels", labels_json(*streams[i].first))
                               .raw("lines", streams[i].second + "]")
                               .str();
  return json_object{}
    .add("org", q.org)
    .add("device", q.device)
    .add("from", q.from_ms)
    .add("to", q.to_ms)
    .add("limit", q.limit)
    .add("truncated", static_cast<int64_t>(lines.size()) >= q.limit)
    .raw("streams", list + "]")
    .str();
}

} // namespace fleetd
