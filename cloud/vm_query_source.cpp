#include "cloud/vm_query_source.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>

#include "messages/error.hpp"
#include "runtime/http_client.hpp"
#include "messages/json_reader.hpp"
#include "runtime/text.hpp"

namespace fleetd {

std::string vm_selector(const std::string& metric, const std::string& device) {
  return "{__name__=" + query_string(metric)
         + ",device_id=" + query_string(device) + "}";
}

namespace {

// An answer of at most max_points points, each a few dozen bytes, over many
// series: bounded well above what max_points allows.
constexpr size_t max_answer_bytes = size_t{64} << 20;

// Milliseconds as the seconds query_range reads ("1700000000.999").
std::string seconds_text(int64_t ms) {
  auto frac = std::to_string(1000 + ms % 1000).substr(1);
  return std::to_string(ms / 1000) + "." + frac;
}

// A timestamp VictoriaMetrics wrote (seconds, up to 3 decimals) in ms.
caf::expected<int64_t> ms_of(const std::string& text) {
  auto dot = text.find('.');
  int64_t s = 0;
  auto r = std::from_chars(text.data(), text.data() + std::min(dot, text.size()), s);
  auto frac = dot == std::string::npos ? std::string{} : text.substr(dot + 1);
  if (r.ec != std::errc{} || frac.size() > 3
      || frac.find_first_not_of("0123456789") != std::string::npos)
    return make_error(ec::decode_failed,
                      "VictoriaMetrics timestamp '" + text.substr(0, 40) + "'");
  frac.resize(3, '0');
  return s * 1000 + std::atoi(frac.c_str());
}

// Per series (its device labels), per step start: the step's point.
using step_map = std::map<label_map, std::map<int64_t, step_point>>;

enum class agg { sum, count, min, max };

constexpr const char* agg_function[] = {"sum_over_time", "count_over_time",
                                        "min_over_time", "max_over_time"};

void set(step_point& p, agg a, double v) {
  switch (a) {
    case agg::sum: p.sum = v; break;
    case agg::count: p.count = static_cast<int64_t>(v); break;
    case agg::min: p.min = v; break;
    case agg::max: p.max = v; break;
  }
}

// The labels of one answered series as the device sent them.
label_map device_labels(const json_node& metric) {
  label_map out;
  for (auto& [k, v] : metric.members) {
    auto name = vm_device_label(k);
    if (!name.empty() && name != "__name__" && v.kind == json_node::string_v)
      out[name] = v.text;
  }
  return out;
}

class vm_query_source : public query_source {
public:
  vm_query_source(vm_sink_config cfg, vm_target base)
    : cfg_(std::move(cfg)),
      client_(base.host, base.port, cfg_.timeout, max_answer_bytes) {
  }

  caf::error start(bool tls) {
    return tls ? client_.use_tls(tls_files{}) : caf::none;
  }

  std::string name() const override {
    return "victoria";
  }

  caf::expected<std::vector<query_series>>
  series(const series_query& q, int64_t max_points) override;

  caf::expected<std::vector<query_log_line>>
  logs(const logs_query&) override {
    return make_error(ec::bad_config, "VictoriaMetrics holds no log lines");
  }

private:
  caf::error fetch(const vm_target& t, const series_query& q, agg a,
                   int64_t first_ms, int64_t last_ms, int64_t window_ms,
                   step_map& out);
  caf::error read(const json_node& doc, agg a, int64_t window_ms,
                  step_map& out);

  vm_sink_config cfg_;
  http_client client_;
};

caf::expected<std::vector<query_series>>
vm_query_source::series(const series_query& q, int64_t max_points) {
  auto t = vm_query_target(cfg_, q.org);
  if (!t && t.error() == ec::invalid_record)
    return std::vector<query_series>{}; // no tenant: nothing of the org there
  if (!t)
    return t.error();
  // Whole steps in one range; a last, shorter step (to - from not a
  // multiple of step) on its own, with a window that ends at `to`.
  auto whole = (q.to_ms - q.from_ms) / q.step_ms;
  auto tail_start = q.from_ms + whole * q.step_ms;
  step_map steps;
  for (auto a : {agg::sum, agg::count, agg::min, agg::max}) {
    if (whole > 0)
      if (auto err = fetch(*t, q, a, q.from_ms + q.step_ms - 1,
                           tail_start - 1, q.step_ms, steps))
        return err;
    if (tail_start < q.to_ms)
      if (auto err = fetch(*t, q, a, q.to_ms - 1, q.to_ms - 1,
                           q.to_ms - tail_start, steps))
        return err;
  }
  std::vector<query_series> out;
  int64_t n = 0;
  for (auto& [labels, points] : steps) {
    out.push_back({labels, {}});
    for (auto& [ts, p] : points) {
      if (++n > max_points)
        return make_error(ec::too_large,
                          "more than query.max-points ("
                            + std::to_string(max_points)
                            + ") points: narrow the range or raise the step");
      auto x = p;
      x.ts_ms = ts;
      x.avg = x.count > 0 ? x.sum / static_cast<double>(x.count) : NAN;
      out.back().points.push_back(x);
    }
  }
  return out;
}

caf::error vm_query_source::fetch(const vm_target& t, const series_query& q,
                                  agg a, int64_t first_ms, int64_t last_ms,
                                  int64_t window_ms, step_map& out) {
  auto expr = std::string{agg_function[static_cast<int>(a)]} + "("
              + vm_selector(q.metric, q.device) + "["
              + std::to_string(window_ms) + "ms])";
  // The org is the server's filter: extra_label applies to every selector
  // of the query, whatever the query holds.
  auto target = t.path + "?query=" + url_escape(expr)
                + "&start=" + seconds_text(first_ms)
                + "&end=" + seconds_text(last_ms)
                + "&step=" + std::to_string(q.step_ms) + "ms"
                + "&extra_label=" + url_escape("org_id=" + q.org)
                + "&nocache=1";
  auto res = client_.get(target);
  if (!res)
    return res.error();
  if (res->status != 200)
    return make_error(ec::remote_error,
                      "VictoriaMetrics HTTP " + std::to_string(res->status)
                        + ": " + printable(res->body, 300));
  std::string why;
  auto doc = parse_json(res->body, why);
  if (!doc)
    return make_error(ec::decode_failed, "VictoriaMetrics answer: " + why);
  return read(*doc, a, window_ms, out);
}

caf::error vm_query_source::read(const json_node& doc, agg a,
                                 int64_t window_ms, step_map& out) {
  auto* result = json_member(doc, "data");
  result = result ? json_member(*result, "result") : nullptr;
  if (!result || result->kind != json_node::array_v)
    return make_error(ec::decode_failed,
                      "VictoriaMetrics answered no data.result array");
  for (auto& s : result->items) {
    auto* metric = json_member(s, "metric");
    auto* values = json_member(s, "values");
    if (!metric || !values || metric->kind != json_node::object_v
        || values->kind != json_node::array_v)
      return make_error(ec::decode_failed, "VictoriaMetrics series without "
                                           "metric or values");
    auto& points = out[device_labels(*metric)];
    for (auto& v : values->items) {
      if (v.items.size() != 2 || v.items[1].kind != json_node::string_v)
        return make_error(ec::decode_failed, "VictoriaMetrics value is not "
                                             "[time, \"value\"]");
      auto ms = ms_of(v.items[0].text);
      if (!ms)
        return ms.error();
      set(points[*ms - window_ms + 1], a,
          std::strtod(v.items[1].text.c_str(), nullptr));
    }
  }
  return caf::none;
}

} // namespace

caf::expected<query_source_ptr>
open_vm_query_source(const vm_sink_config& cfg) {
  bool cluster = cfg.url.find("{tenant}") != std::string::npos;
  if (cluster && cfg.select_url.empty())
    return query_source_ptr{};
  auto copy = cfg;
  // Host and port do not depend on the org: any mapped one finds them.
  if (cluster)
    copy.tenants = "x=0";
  auto base = vm_query_target(copy, "x");
  if (!base)
    return base.error();
  auto out = std::make_shared<vm_query_source>(cfg, *base);
  if (auto err = out->start(base->tls))
    return err;
  return query_source_ptr{std::move(out)};
}

} // namespace fleetd
