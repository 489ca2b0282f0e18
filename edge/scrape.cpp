#include "edge/scrape.hpp"

#include <memory>
#include <set>

#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/prom_text.hpp"
#include "runtime/config_check.hpp"
#include "runtime/http_client.hpp"
#include "runtime/http_url.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

constexpr const char* targets_key = "scrape.targets";

// What one target keeps between rounds: its connection (kept alive).
struct scrape_state {
  scrape_target target;
  scrape_config cfg;
  http_client client;
  bool tls_failed = false;

  scrape_state(scrape_target t, scrape_config c)
    : target(std::move(t)), cfg(c),
      client(target.host, target.port, cfg.timeout,
             static_cast<size_t>(cfg.max_bytes)) {
    if (target.tls)
      tls_failed = static_cast<bool>(client.use_tls({}));
  }
};

metric_sample scrape_series(const scrape_target& t, const char* name,
                            int64_t now_ms, double value) {
  return {name, {{"instance", t.instance}, {"job", t.job}}, now_ms, value};
}

// The page's samples, empty with the reason in `why` when the scrape fails.
metric_samples scrape_once(scrape_state& s, int64_t now_ms, std::string& why) {
  if (s.tls_failed) {
    why = "TLS could not be set up";
    return {};
  }
  auto res = s.client.get(
    s.target.path, {{"Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1"}});
  if (!res) {
    s.client.close();
    why = render(res.error());
    return {};
  }
  if (res->status != 200) {
    why = "HTTP " + std::to_string(res->status);
    return {};
  }
  prom_limits limits;
  limits.max_samples = static_cast<size_t>(s.cfg.max_samples);
  limits.max_errors = 1;
  // Decoded samples take a few times the text's bytes, never more than this.
  limits.max_decoded_bytes = 8 * static_cast<uint64_t>(s.cfg.max_bytes);
  auto page = parse_prom_text(res->body, now_ms, limits);
  if (page.stopped) {
    why = render(page.stopped);
    return {};
  }
  if (page.bad_lines > 0) {
    why = std::to_string(page.bad_lines) + " malformed line(s); line "
          + std::to_string(page.errors.front().line) + ": "
          + page.errors.front().reason;
    return {};
  }
  for (auto& x : page.samples)
    for (auto [own, value] : {std::pair{"job", &s.target.job},
                              std::pair{"instance", &s.target.instance}}) {
      auto i = x.labels.find(own);
      if (i != x.labels.end())
        x.labels["exported_" + std::string(own)] = std::move(i->second);
      x.labels[own] = *value;
    }
  return std::move(page.samples);
}

} // namespace

void declare(option_set& opts, scrape_config& x) {
  using namespace std::chrono_literals;
  opts.add(targets_key, x.targets, "",
           "Prometheus exporters to scrape: comma-separated "
           "[job=]http://host:port/path (job defaults to \"scrape\", the path "
           "to /metrics); each target runs on its own thread");
  opts.add("scrape.interval", x.interval, 10s,
           "Time between scrapes of each target", 100ms);
  opts.add("scrape.timeout", x.timeout, 5s,
           "A scrape that takes longer fails (up 0); at most scrape.interval",
           10ms);
  opts.add_size("scrape.max-bytes", x.max_bytes, 1 << 20,
                "A page larger than this fails its scrape (up 0)", 1024,
                int64_t{1} << 30);
  opts.add("scrape.max-samples", x.max_samples, 20000, "samples",
           "A page with more samples fails its scrape (up 0), as "
           "Prometheus's sample_limit",
           1, 10'000'000);
  opts.add("scrape.rounds", x.max_rounds, 0, "rounds",
           "Stop scraping after this many rounds (0: never); as "
           "collector.rounds, for tests and benchmarks",
           0);
}

caf::expected<std::vector<scrape_target>>
scrape_targets(const scrape_config& x) {
  std::vector<scrape_target> out;
  std::set<std::pair<std::string, std::string>> seen;
  for (auto item : split_list(x.targets, ',')) {
    if (item.empty())
      continue;
    std::string raw(item);
    auto entry = raw;
    scrape_target t;
    t.job = "scrape";
    auto scheme = entry.find("://");
    auto eq = entry.find('=');
    if (eq != std::string::npos && eq < scheme) {
      t.job = std::string(trim(std::string_view(entry).substr(0, eq)));
      entry = std::string(trim(std::string_view(entry).substr(eq + 1)));
      if (t.job.empty() || bad_text_at(t.job) != std::string::npos)
        return bad_config(std::string(targets_key) + ": bad job name in '"
                          + raw + "'");
    }
    auto url = parse_http_url(entry, targets_key);
    if (!url)
      return url.error();
    t.host = url->host;
    t.port = url->port;
    t.path = url->path.empty() ? "/metrics" : url->path;
    t.instance = url->host + ":" + std::to_string(url->port);
    t.tls = url->tls;
    if (!seen.emplace(t.job, t.instance + t.path).second)
      return bad_config(std::string(targets_key) + ": '" + raw
                        + "' is given twice");
    out.push_back(std::move(t));
  }
  return out;
}

caf::error validate(const scrape_config& x) {
  if (x.timeout > x.interval)
    return bad_config("scrape.timeout: must not exceed scrape.interval");
  if (auto ts = scrape_targets(x); !ts)
    return ts.error();
  return caf::none;
}

sample_source scrape_source(const scrape_target& t, const scrape_config& x) {
  auto s = std::make_shared<scrape_state>(t, x);
  return [s](int64_t now_ms, std::vector<std::string>* problems) {
    auto t0 = std::chrono::steady_clock::now();
    std::string why;
    auto out = scrape_once(*s, now_ms, why);
    auto took = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                              - t0)
                  .count();
    auto scraped = static_cast<double>(out.size());
    if (!why.empty() && problems != nullptr)
      problems->push_back("scrape of " + s->target.instance + s->target.path
                          + " (job " + s->target.job + ") failed: " + why);
    out.push_back(scrape_series(s->target, "up", now_ms, why.empty() ? 1 : 0));
    out.push_back(
      scrape_series(s->target, "scrape_duration_seconds", now_ms, took));
    out.push_back(
      scrape_series(s->target, "scrape_samples_scraped", now_ms, scraped));
    return out;
  };
}

system_collector_config scrape_collector(const scrape_target& t,
                                         const scrape_config& x) {
  system_collector_config out;
  out.name = "scrape:" + t.job + ":" + t.instance;
  out.source = scrape_source(t, x);
  out.interval = x.interval;
  out.max_rounds = x.max_rounds;
  return out;
}

} // namespace fleetd
