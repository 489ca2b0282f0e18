#include "cloud/loki_query_source.hpp"

#include <algorithm>
#include <charconv>

#include "messages/error.hpp"
#include "runtime/http_client.hpp"
#include "runtime/http_url.hpp"
#include "messages/json_reader.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

// Log lines are stamped in nanoseconds; queries name milliseconds.
constexpr int64_t ns_per_ms = 1'000'000;

caf::error bad_answer(const std::string& what) {
  return make_error(ec::decode_failed, "Loki answer: " + what);
}

class loki_query_source : public query_source {
public:
  loki_query_source(const loki_sink_config& cfg, http_url u)
    : path_(u.path + "/loki/api/v1/query_range"),
      client_(u.host, u.port, cfg.timeout, size_t{64} << 20) {
  }

  caf::error start(bool tls, const std::string& ca) {
    return tls ? client_.use_tls(tls_files{"", "", ca}) : caf::none;
  }

  std::string name() const override {
    return "loki";
  }

  caf::expected<std::vector<query_series>>
  series(const series_query&, int64_t) override {
    return make_error(ec::bad_config, "Loki holds no series");
  }

  caf::expected<std::vector<query_log_line>>
  logs(const logs_query& q) override;

private:
  caf::error read(const json_node& doc, std::vector<query_log_line>& out);

  std::string path_;
  http_client client_;
};

caf::expected<std::vector<query_log_line>>
loki_query_source::logs(const logs_query& q) {
  auto selector = "{device_id=" + query_string(q.device) + "}";
  // Loki's start is inclusive and its end exclusive, as the query API's.
  auto target = path_ + "?query=" + url_escape(selector)
                + "&start=" + std::to_string(q.from_ms * ns_per_ms)
                + "&end=" + std::to_string(q.to_ms * ns_per_ms)
                + "&limit=" + std::to_string(q.limit) + "&direction=forward";
  // The tenant is the org the caller's token proved: Loki answers from
  // that tenant's streams only.
  auto res = client_.get(target, {{"X-Scope-OrgID", q.org}});
  if (!res)
    return res.error();
  if (res->status != 200)
    return make_error(ec::remote_error,
                      "Loki HTTP " + std::to_string(res->status) + ": "
                        + printable(res->body, 300));
  std::string why;
  auto doc = parse_json(res->body, why);
  if (!doc)
    return bad_answer(why);
  std::vector<query_log_line> out;
  if (auto err = read(*doc, out))
    return err;
  // Streams come one after another: oldest first across them, the limit
  // applied over all of them as Loki's forward direction does.
  std::stable_sort(out.begin(), out.end(), [](auto& x, auto& y) {
    return x.ts_ns < y.ts_ns;
  });
  if (static_cast<int64_t>(out.size()) > q.limit)
    out.resize(static_cast<size_t>(q.limit));
  return out;
}

caf::error loki_query_source::read(const json_node& doc,
                                   std::vector<query_log_line>& out) {
  auto* result = json_member(doc, "data");
  result = result ? json_member(*result, "result") : nullptr;
  if (!result || result->kind != json_node::array_v)
    return bad_answer("no data.result array");
  for (auto& s : result->items) {
    auto* stream = json_member(s, "stream");
    auto* values = json_member(s, "values");
    if (!stream || !values || values->kind != json_node::array_v)
      return bad_answer("a stream without labels or values");
    label_map labels;
    for (auto& [k, v] : stream->members)
      if (k != "device_id")
        labels[k] = v.text;
    for (auto& v : values->items) {
      if (v.items.size() != 2 || v.items[0].kind != json_node::string_v
          || v.items[1].kind != json_node::string_v)
        return bad_answer("a value is not [\"<ns>\", \"<line>\"]");
      auto& ts = v.items[0].text;
      int64_t ns = 0;
      auto r = std::from_chars(ts.data(), ts.data() + ts.size(), ns);
      if (r.ec != std::errc{} || r.ptr != ts.data() + ts.size())
        return bad_answer("timestamp '" + printable(ts, 40) + "'");
      out.push_back({ns, labels, v.items[1].text});
    }
  }
  return caf::none;
}

} // namespace

caf::expected<query_source_ptr>
open_loki_query_source(const loki_sink_config& cfg) {
  auto u = parse_http_url(cfg.url, "sinks.loki.url");
  if (!u)
    return u.error();
  auto out = std::make_shared<loki_query_source>(cfg, *u);
  if (auto err = out->start(u->tls, cfg.ca))
    return err;
  return query_source_ptr{std::move(out)};
}

} // namespace fleetd
