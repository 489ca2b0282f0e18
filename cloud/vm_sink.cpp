#include "cloud/vm_sink.hpp"

#include <charconv>
#include <cmath>
#include <future>
#include <optional>
#include <set>
#include <vector>

#include "messages/error.hpp"
#include "messages/prom_text.hpp"
#include "runtime/http_client.hpp"
#include "runtime/http_url.hpp"
#include "runtime/options.hpp"

namespace fleetd {

void declare(option_set& opts, vm_sink_config& x) {
  opts.add("sinks.victoria.url", x.url, "",
           "VictoriaMetrics to write samples to: a single node "
           "(http://host:8428) or a cluster's vminsert with {tenant} in "
           "place of the accountID (http://host:8480/insert/{tenant}/"
           "prometheus); empty: no VictoriaMetrics sink");
  opts.add("sinks.victoria.tenants", x.tenants, "",
           "Cluster only: org=accountID[:projectID],... ; an org not listed "
           "is refused (counted), never written to another tenant");
  opts.add("sinks.victoria.select-url", x.select_url, "",
           "Cluster only: the vmselect URL the query API reads, with "
           "{tenant} (http://host:8481/select/{tenant}/prometheus); empty "
           "with a cluster: fine steps are read from the node's store");
  opts.add_size("sinks.victoria.max-request-bytes", x.max_request_bytes,
                4 << 20,
                "Largest import request body; a batch of journal entries is "
                "split into requests of at most this size",
                1 << 20, int64_t{256} << 20);
  opts.add("sinks.victoria.timeout", x.timeout, std::chrono::seconds(10),
           "Deadline of one connect, request write or response read",
           std::chrono::milliseconds(100));
  opts.add("sinks.victoria.max-labels", x.max_labels, 30, "labels",
           "Most labels of a series, __name__, org_id and device_id "
           "included: the server's -maxLabelsPerTimeseries (it drops the "
           "rest silently, so the sink refuses such samples)",
           3, 1000);
  opts.add_size("sinks.victoria.max-label-value-bytes",
                x.max_label_value_bytes, 16 * 1024,
                "Longest label value: the server's -maxLabelValueLen (it "
                "truncates silently, so the sink refuses such samples)",
                1, 1 << 20);
  opts.add("sinks.victoria.durable-after", x.durable_after,
           std::chrono::seconds(15),
           "VictoriaMetrics answers 204 for rows it holds in memory only "
           "(1.79.5 measured: on disk 10-11 s later) and a crash loses them: "
           "a write counts as durable this long after, if the server did not "
           "restart meanwhile (single node: vm_app_start_timestamp on "
           "/metrics); an outage or a restart rewrites what is younger "
           "(deduplicated); 0: durable once answered",
           std::chrono::milliseconds(0));
}

namespace {

// Prometheus' data model, which the text format needs unquoted.
bool valid_name(const std::string& s, bool metric) {
  if (s.empty())
    return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
              || (metric && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return false;
  }
  return true;
}

// Structure only (lead byte, continuation bytes): what JSON export needs.
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80              ? 0
               : (c & 0xE0) == 0xC0 ? 1
               : (c & 0xF0) == 0xE0 ? 2
               : (c & 0xF8) == 0xF0 ? 3
                                    : 9;
    if (n == 9 || s.size() - i <= n)
      return false;
    for (size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
        return false;
    i += n + 1;
  }
  return true;
}

void append_label(std::string& out, const std::string& k,
                  const std::string& v, bool exported = false) {
  out += ',';
  if (exported)
    out += "exported_";
  out += k;
  out += '=';
  append_prom_label_value(out, v);
}

// A device's own org_id/device_id cannot pass for ours: any
// (exported_)*org_id or ...device_id gets one more exported_ (injective).
bool ours(const std::string& k) {
  // Most names start otherwise: no compare.
  if (k.empty() || (k[0] != 'o' && k[0] != 'd' && k[0] != 'e'))
    return false;
  size_t at = 0;
  while (k.compare(at, 9, "exported_") == 0)
    at += 9;
  return k.compare(at, std::string::npos, "org_id") == 0
         || k.compare(at, std::string::npos, "device_id") == 0;
}

// `reason`, with `text` in `detail`.
const char* refusal(std::string& detail, std::string text, const char* reason) {
  detail = std::move(text);
  return reason;
}

// Why VictoriaMetrics could not store `s` exactly (a reason key, with
// `detail`), or nullptr.
const char* problem(const metric_sample& s, const vm_sink_config& max,
                    std::string& detail) {
  // VictoriaMetrics 1.79 drops NaN (all but its staleness marker) silently.
  if (std::isnan(s.value))
    return refusal(detail, "VictoriaMetrics does not store NaN", "nan");
  if (!valid_name(s.name, true))
    return refusal(detail, "not [a-zA-Z_:][a-zA-Z0-9_:]*", "metric_name");
  if (static_cast<int64_t>(s.labels.size()) + 3 > max.max_labels)
    return refusal(detail,
                   std::to_string(s.labels.size())
                     + " labels, more than the server keeps",
                   "labels");
  for (auto& [k, v] : s.labels) {
    bool reserved = k.size() > 1 && k[0] == '_' && k[1] == '_';
    if (!valid_name(k, false) || reserved)
      return refusal(detail,
                     "'" + k.substr(0, 64)
                       + "' is not [a-zA-Z_][a-zA-Z0-9_]* without a leading __",
                     "label_name");
    if (static_cast<int64_t>(v.size()) > max.max_label_value_bytes)
      return refusal(detail, k + " longer than the server keeps",
                     "label_value");
    if (!valid_utf8(v))
      return refusal(detail, k + " is not UTF-8", "label_value");
  }
  return nullptr;
}

// `{org_id="...",device_id="..."`: the same for every sample of an entry.
std::string series_prefix(const std::string& org, const std::string& device) {
  std::string out = "{org_id=";
  append_prom_label_value(out, org);
  out += ",device_id=";
  append_prom_label_value(out, device);
  return out;
}

// Appends the Prometheus text line of a sample problem() passed.
void append_line(std::string& out, const std::string& prefix,
                 const metric_sample& s) {
  out += s.name;
  out += prefix;
  // Empty means absent in Prometheus' model: the server drops it too.
  for (auto& [k, v] : s.labels)
    if (!v.empty())
      append_label(out, k, v, ours(k));
  out += "} ";
  if (std::isinf(s.value)) {
    out += s.value > 0 ? "+Inf" : "-Inf";
  } else {
    // Shortest text that reads back as the same double.
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof(buf), s.value);
    out.append(buf, r.ptr);
  }
  char ts[24];
  auto end = std::to_chars(ts, ts + sizeof(ts), s.timestamp_ms).ptr;
  out += ' ';
  out.append(ts, end);
  out += '\n';
}

} // namespace

caf::expected<std::string> vm_line(const std::string& org,
                                   const std::string& device,
                                   const metric_sample& s,
                                   const vm_sink_config& max) {
  std::string detail;
  if (!valid_utf8(org) || !valid_utf8(device))
    return make_error(ec::invalid_record,
                      "label_value: org or device is not UTF-8");
  if (auto* why = problem(s, max, detail))
    return make_error(ec::invalid_record, std::string{why} + ": " + detail);
  std::string out;
  append_line(out, series_prefix(org, device), s);
  return out;
}

namespace {

caf::error bad(const std::string& what) {
  return make_error(ec::bad_config, what);
}

// "org=accountID[:projectID],..." -> org -> "accountID[:projectID]".
caf::expected<std::map<std::string, std::string>>
parse_tenants(const std::string& text) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    auto end = std::min(text.find(',', pos), text.size());
    auto item = text.substr(pos, end - pos);
    pos = end + 1;
    auto eq = item.find('=');
    auto id = eq == std::string::npos ? "" : item.substr(eq + 1);
    auto colon = id.find(':');
    auto numeric = [](const std::string& n) {
      uint32_t v = 0;
      auto r = std::from_chars(n.data(), n.data() + n.size(), v);
      return !n.empty() && r.ec == std::errc{} && r.ptr == n.data() + n.size();
    };
    if (eq == 0 || eq == std::string::npos
        || !numeric(id.substr(0, colon))
        || (colon != std::string::npos && !numeric(id.substr(colon + 1))))
      return bad("sinks.victoria.tenants: '" + item
                 + "' is not org=accountID[:projectID] (32-bit numbers)");
    if (!out.emplace(item.substr(0, eq), id).second)
      return bad("sinks.victoria.tenants: org " + item.substr(0, eq)
                 + " listed twice");
  }
  return out;
}

// `url` split, {tenant} replaced by the tenant of `org`, `suffix` added.
caf::expected<vm_target> tenant_target(const vm_sink_config& cfg,
                                       const std::string& url,
                                       const std::string& option,
                                       const std::string& org,
                                       const char* suffix) {
  auto u = parse_http_url(url, option);
  if (!u)
    return u.error();
  vm_target t{u->tls, u->host, u->port, {}};
  auto path = u->path;
  auto at = path.find("{tenant}");
  if (at != std::string::npos) {
    auto tenants = parse_tenants(cfg.tenants);
    if (!tenants)
      return tenants.error();
    auto it = tenants->find(org);
    if (it == tenants->end())
      return make_error(ec::invalid_record,
                        "unmapped_org: org " + org
                          + " has no tenant in sinks.victoria.tenants");
    path.replace(at, 8, it->second);
  }
  t.path = path + suffix;
  return t;
}

} // namespace

caf::expected<vm_target> vm_import_target(const vm_sink_config& cfg,
                                          const std::string& org) {
  return tenant_target(cfg, cfg.url, "sinks.victoria.url", org,
                       "/api/v1/import/prometheus");
}

caf::expected<vm_target> vm_query_target(const vm_sink_config& cfg,
                                         const std::string& org) {
  bool cluster = cfg.url.find("{tenant}") != std::string::npos;
  if (!cluster)
    return tenant_target(cfg, cfg.url, "sinks.victoria.url", org,
                         "/api/v1/query_range");
  if (cfg.select_url.find("{tenant}") == std::string::npos)
    return bad("sinks.victoria.select-url: a cluster is read through "
               "vmselect, with {tenant} in the URL");
  return tenant_target(cfg, cfg.select_url, "sinks.victoria.select-url", org,
                       "/api/v1/query_range");
}

std::string vm_device_label(const std::string& name) {
  if (name == "org_id" || name == "device_id")
    return {};
  if (name.rfind("exported_", 0) == 0 && ours(name))
    return name.substr(9);
  return name;
}

namespace {

// Renders the next request while the server takes the previous one: one
// request in flight at a time, on the one keep-alive connection.
class vm_sink_impl : public vm_sink {
public:
  vm_sink_impl(vm_sink_config cfg, vm_target base)
    : cfg_(std::move(cfg)),
      cluster_(cfg_.url.find("{tenant}") != std::string::npos),
      // /metrics of 1.79 is ~33 KB; import answers are small.
      client_(base.host, base.port, cfg_.timeout, 1 << 20) {
  }

  ~vm_sink_impl() override {
    settle();
  }

  caf::error start(bool tls) {
    return tls ? client_.use_tls(tls_files{}) : caf::none;
  }

  const vm_sink_stats& stats() const override {
    return stats_;
  }

  caf::error write(const journal_entries& entries) override;

  std::chrono::milliseconds durable_after() const override {
    return cfg_.durable_after;
  }

  void watch() override {
    watched_ = probe();
  }

  bool unchanged() override;

private:
  // Which process serves: its start second (vm_app_start_timestamp), and
  // the client's connection count while that second is ambiguous.
  struct process_id {
    bool read = false;
    // /metrics cannot say (protected, not VictoriaMetrics): not checked.
    bool unknown = false;
    double start = 0;
    // Up less than 2 s: a restart may show the same start second.
    bool young = true;
    int64_t connects = 0;
  };
  process_id probe();

  struct body {
    std::string text;
    int64_t lines = 0;
  };
  struct request {
    std::string path;
    body data;
    std::future<caf::expected<http_response>> answer;
  };

  caf::error fill(const journal_entries& entries);
  caf::error submit(const std::string& path, body data);
  caf::error settle();
  void refused(const char* why, const std::string& detail) {
    ++stats_.refused[why];
    stats_.last_problem = std::string{why} + ": " + detail;
  }

  vm_sink_config cfg_;
  // vminsert: its /metrics says nothing of the vmstorage holding the rows.
  bool cluster_;
  http_client client_;
  process_id watched_;
  vm_sink_stats stats_;
  // Per import path (one per tenant): the body being filled.
  std::map<std::string, body> bodies_;
  std::optional<request> in_flight_;
  // The last sent body's buffer, reused: no regrowing to the bound per
  // request.
  std::string spare_;
  // A 4xx of this write: reported once every request went out.
  caf::error refusal_;
};

caf::error vm_sink_impl::write(const journal_entries& entries) {
  refusal_ = caf::none;
  auto err = fill(entries);
  for (auto& [path, b] : bodies_)
    if (!err && b.lines > 0)
      err = submit(path, std::move(b));
  auto last = settle();
  bodies_.clear();
  if (!err)
    err = std::move(last);
  return err ? err : std::move(refusal_);
}

caf::error vm_sink_impl::fill(const journal_entries& entries) {
  std::string detail;
  for (auto& e : entries) {
    auto target = vm_import_target(cfg_, e.org);
    if (!target) {
      stats_.refused["unmapped_org"] += e.samples.size();
      stats_.last_problem = render(target.error());
      continue;
    }
    if (!valid_utf8(e.org) || !valid_utf8(e.device)) {
      stats_.refused["label_value"] += e.samples.size();
      stats_.last_problem = "label_value: org or device is not UTF-8";
      continue;
    }
    auto& b = bodies_[target->path];
    if (b.text.empty())
      std::swap(b.text, spare_);
    auto prefix = series_prefix(e.org, e.device);
    for (auto& s : e.samples) {
      if (auto* why = problem(s, cfg_, detail)) {
        refused(why, detail);
        continue;
      }
      auto before = b.text.size();
      append_line(b.text, prefix, s);
      if (static_cast<int64_t>(b.text.size()) <= cfg_.max_request_bytes) {
        ++b.lines;
        continue;
      }
      // Over the bound: send what was there, keep this line for the next.
      body next{std::move(spare_), 1};
      next.text.assign(b.text, before);
      b.text.resize(before);
      auto err = submit(target->path, std::move(b));
      b = std::move(next);
      if (err)
        return err;
    }
  }
  return caf::none;
}

caf::error vm_sink_impl::submit(const std::string& path, body data) {
  if (auto err = settle())
    return err;
  in_flight_.emplace(request{path, std::move(data), {}});
  auto* req = &*in_flight_;
  ++stats_.requests;
  req->answer = std::async(std::launch::async, [this, req] {
    return client_.post(req->path, req->data.text,
                        {{"Content-Type", "text/plain"}});
  });
  return caf::none;
}

// Waits for the request in flight: a retryable error, or none (a 4xx is
// kept in refusal_, the rest of the write still goes out).
caf::error vm_sink_impl::settle() {
  if (!in_flight_)
    return caf::none;
  auto res = in_flight_->answer.get();
  auto req = std::move(*in_flight_);
  in_flight_.reset();
  spare_ = std::move(req.data.text);
  spare_.clear();
  if (!res)
    return std::move(res.error());
  if (res->status / 100 == 2) {
    stats_.samples += req.data.lines;
    return caf::none;
  }
  auto what = "HTTP " + std::to_string(res->status) + " from " + req.path
              + ": " + res->body.substr(0, 200);
  stats_.last_problem = what;
  if (res->status == 429 || res->status >= 500)
    return make_error(ec::remote_error, what);
  refusal_ = make_error(ec::invalid_record, what);
  return caf::none;
}

// The value of the line `name <value>` in Prometheus text, or nullopt.
std::optional<double> metric_value(const std::string& text,
                                   const std::string& name) {
  auto at = text.find("\n" + name + " ");
  if (at == std::string::npos)
    return std::nullopt;
  return std::strtod(text.c_str() + at + name.size() + 2, nullptr);
}

vm_sink_impl::process_id vm_sink_impl::probe() {
  process_id id;
  if (cluster_ || cfg_.durable_after.count() == 0)
    return id;
  auto res = client_.get("/metrics");
  id.connects = client_.connects();
  if (!res || res->status >= 500) {
    stats_.last_problem = "restart check: "
                          + (res ? "HTTP " + std::to_string(res->status)
                                 : render(res.error()));
    return id;
  }
  auto text = "\n" + res->body;
  auto start = metric_value(text, "vm_app_start_timestamp");
  auto up = metric_value(text, "vm_app_uptime_seconds");
  id.read = true;
  id.unknown = res->status != 200 || !start || !up;
  id.start = start.value_or(0);
  id.young = !up || *up < 2;
  return id;
}

// Same process: same start second, and no new connection while that
// second could be a restarted one's (a killed server drops ours).
bool vm_sink_impl::unchanged() {
  if (cluster_ || cfg_.durable_after.count() == 0)
    return true;
  auto was = watched_;
  watched_ = probe();
  auto& now = watched_;
  if (was.read && now.read && (was.unknown || now.unknown)) {
    ++stats_.restart_unchecked;
    stats_.last_problem = "restart check: no vm_app_start_timestamp on "
                          "/metrics; only durable-after applies";
    return true;
  }
  bool same = was.read && now.read && was.start == now.start
              && !(was.young && was.connects != now.connects);
  if (!same)
    ++stats_.restarts;
  return same;
}

} // namespace

caf::expected<std::unique_ptr<vm_sink>>
make_vm_sink(const vm_sink_config& cfg) {
  if (cfg.url.find("{tenant}") != std::string::npos) {
    auto tenants = parse_tenants(cfg.tenants);
    if (!tenants)
      return tenants.error();
  } else if (!cfg.tenants.empty()) {
    return bad("sinks.victoria.tenants: only with {tenant} in "
               "sinks.victoria.url");
  }
  auto base = vm_import_target(cfg, std::string{});
  if (!base && base.error() != ec::invalid_record)
    return base.error();
  vm_target t = base ? *base : vm_target{};
  if (!base) {
    // Cluster: host and port do not depend on the org.
    auto copy = cfg;
    copy.tenants = "x=0";
    t = *vm_import_target(copy, "x");
  }
  auto out = std::make_unique<vm_sink_impl>(cfg, t);
  if (auto err = out->start(t.tls))
    return err;
  return std::unique_ptr<vm_sink>{std::move(out)};
}

} // namespace fleetd
