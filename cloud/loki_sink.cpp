#include "cloud/loki_sink.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <tuple>
#include <vector>

#include "messages/error.hpp"
#include "runtime/http_client.hpp"
#include "runtime/http_url.hpp"
#include "runtime/json.hpp"
#include "runtime/options.hpp"

namespace fleetd {

void declare(option_set& opts, loki_sink_config& x) {
  opts.add("sinks.loki.url", x.url, "",
           "Loki (or its gateway) to push log lines to: "
           "http(s)://host[:port][/prefix], /loki/api/v1/push is added; "
           "empty: no Loki sink");
  opts.add_size("sinks.loki.batch-bytes", x.batch_bytes, 1 << 20,
                "Largest push body; a write is split into pushes of at most "
                "this. Keep it below the server's receive limit (Loki: 4 MiB)",
                4 * 1024, int64_t{64} << 20);
  opts.add("sinks.loki.timeout", x.timeout, std::chrono::seconds(10),
           "Deadline of one connect, push write or response read",
           std::chrono::milliseconds(100));
  opts.add_size("sinks.loki.max-line-bytes", x.max_line_bytes, 256 * 1024,
                "Longest line pushed, labels outside the stream included: "
                "Loki's max_line_size; longer lines are truncated (counted)",
                1024, int64_t{64} << 20);
  opts.add("sinks.loki.ca", x.ca, "",
           "CA file verifying an https sinks.loki.url; empty: the system "
           "store");
}

namespace {

// Longest stream label value sent; Loki's default limit is 2048 bytes.
constexpr size_t max_label_value = 1024;

// The line labels that name a line's source, by preference; the stream's
// label set stays bounded (device_id, source), every other label goes
// into the line.
constexpr const char* source_keys[] = {"source", "file", "job"};

// Length of the valid UTF-8 sequence at s[i]; 0 when there is none.
size_t utf8_len(const std::string& s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto lead = b(i);
  if (lead < 0x80)
    return 1;
  size_t n = lead >= 0xC2 && lead <= 0xDF   ? 2
             : lead >= 0xE0 && lead <= 0xEF ? 3
             : lead >= 0xF0 && lead <= 0xF4 ? 4
                                            : 0;
  if (n == 0 || i + n > s.size())
    return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80)
      return 0;
  // Overlong forms, surrogates and code points past U+10FFFF.
  auto second = b(i + 1);
  if ((lead == 0xE0 && second < 0xA0) || (lead == 0xED && second > 0x9F)
      || (lead == 0xF0 && second < 0x90) || (lead == 0xF4 && second > 0x8F))
    return 0;
  return n;
}

// `s` with each invalid UTF-8 byte replaced by U+FFFD: JSON is UTF-8, and a
// fixed replacement keeps a replayed line identical (deduplicated).
std::string repair_utf8(const std::string& s, bool& repaired) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    auto n = utf8_len(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      repaired = true;
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

// Cuts valid UTF-8 `s` to at most `n` bytes at a character boundary.
bool truncate_utf8(std::string& s, size_t n) {
  if (s.size() <= n)
    return false;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
    --n;
  s.resize(n);
  return true;
}

// A logfmt value, quoted when it holds a space, '=', '"' or nothing.
std::string logfmt_value(const std::string& v) {
  if (!v.empty() && v.find_first_of(" =\"\\\t\n") == std::string::npos)
    return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out + "\"";
}

std::string logfmt_key(std::string k) {
  for (auto& c : k)
    if (c == ' ' || c == '=' || c == '"' || static_cast<unsigned char>(c) < 0x20)
      c = '_';
  return k.empty() ? "_" : k;
}

// Loki's tenant IDs: at most 150 of A-Z a-z 0-9 ! - _ . * ' ( ), not "."
// or "..". fleetd's org names are a subset but for those two.
bool valid_tenant(const std::string& t) {
  if (t.empty() || t.size() > 150 || t == "." || t == "..")
    return false;
  return std::all_of(t.begin(), t.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9')
           || std::string{"!-_.*'()"}.find(c) != std::string::npos;
  });
}

struct loki_item {
  int64_t ts;
  // The rendered value: ["<ns>","<line>"].
  std::string json;
};

struct loki_stream {
  std::string labels_json;
  std::vector<loki_item> items;
};

// Entries of a stream, [from, to): a push is a list of such parts.
struct part {
  const loki_stream* s;
  size_t from;
  size_t to;
};

using push_parts = std::vector<part>;

std::string render_push(const push_parts& p) {
  std::string out = "{\"streams\":[";
  for (size_t i = 0; i < p.size(); ++i) {
    out += (i ? ",{\"stream\":" : "{\"stream\":") + p[i].s->labels_json
           + ",\"values\":[";
    for (auto k = p[i].from; k < p[i].to; ++k)
      out += (k > p[i].from ? "," : "") + p[i].s->items[k].json;
    out += "]}";
  }
  return out + "]}";
}

size_t item_count(const push_parts& p) {
  size_t n = 0;
  for (auto& x : p)
    n += x.to - x.from;
  return n;
}

// The first and second half of a push's entries, each stream's order kept.
std::pair<push_parts, push_parts> halve(const push_parts& p) {
  auto left = item_count(p) / 2;
  std::pair<push_parts, push_parts> out;
  for (auto x : p) {
    auto n = x.to - x.from;
    if (left >= n) {
      out.first.push_back(x);
      left -= n;
    } else if (left > 0) {
      out.first.push_back(part{x.s, x.from, x.from + left});
      out.second.push_back(part{x.s, x.from + left, x.to});
      left = 0;
    } else {
      out.second.push_back(x);
    }
  }
  return out;
}

// Packs streams into pushes of at most `limit` bytes (one entry alone may
// exceed it). Each stream's entries go out ascending, so no push carries an
// entry behind one the same stream already sent: Loki's out-of-order
// window can only refuse what an earlier write sent newer.
std::vector<push_parts> pack(const std::vector<loki_stream>& streams,
                             size_t limit) {
  constexpr size_t envelope = 16; // {"streams":[ ... ]}
  std::vector<push_parts> out(1);
  size_t bytes = envelope;
  for (auto& s : streams) {
    auto header = s.labels_json.size() + 24; // {"stream":..,"values":[]},
    for (size_t k = 0; k < s.items.size(); ++k) {
      auto& cur = out.back();
      bool open = !cur.empty() && cur.back().s == &s;
      auto need = s.items[k].json.size() + 1 + (open ? 0 : header);
      if (!cur.empty() && bytes + need > limit) {
        out.emplace_back();
        bytes = envelope;
        open = false;
        need = s.items[k].json.size() + 1 + header;
      }
      if (open)
        out.back().back().to = k + 1;
      else
        out.back().push_back(part{&s, k, k + 1});
      bytes += need;
    }
  }
  if (out.back().empty())
    out.pop_back();
  return out;
}

struct loki_target {
  bool tls = false;
  std::string host;
  uint16_t port = 0;
  std::string path;
};

caf::error bad(const std::string& what) {
  return make_error(ec::bad_config, what);
}

caf::expected<loki_target> parse_url(const std::string& url) {
  auto u = parse_http_url(url, "sinks.loki.url");
  if (!u)
    return u.error();
  return loki_target{u->tls, u->host, u->port, u->path + "/loki/api/v1/push"};
}

// What a push's answer asks of the sink.
enum class verdict { accepted, split, refused, retry };

// Loki's answers: 2xx stored; 408, 429 (rate limit) and 5xx retry; 413
// asks for a smaller push; 404/405 mean a wrong sinks.loki.url, which no
// record causes, so they retry until an operator fixes it (lag grows, the
// journal's bound applies back-pressure); any other 4xx refuses the records
// as sent, 401/403 included: they refuse one org's tenant, and one org must
// not hold back the others' logs.
verdict judge(unsigned status, size_t entries, const std::string& body) {
  if (status >= 200 && status < 300)
    return verdict::accepted;
  if (status == 413 && entries > 1)
    return verdict::split;
  // Loki answers 429 to a new stream past the tenant's stream limit too,
  // having kept the other streams: only an operator can help that one.
  if (status == 429 && body.find("stream limit") != std::string::npos)
    return verdict::refused;
  if (status == 404 || status == 405 || status == 408 || status == 429
      || status < 400 || status >= 500)
    return verdict::retry;
  return verdict::refused;
}

class loki_sink_impl : public loki_sink {
public:
  loki_sink_impl(loki_sink_config cfg, loki_target target)
    : cfg_(std::move(cfg)),
      target_(std::move(target)),
      client_(target_.host, target_.port, cfg_.timeout, 1024 * 1024) {
  }

  caf::error init() {
    if (target_.tls)
      return client_.use_tls(tls_files{"", "", cfg_.ca});
    return caf::none;
  }

  const loki_sink_stats& stats() const override {
    return stats_;
  }

  caf::error write(const journal_entries& entries) override;

private:
  using tenant_map = std::map<std::string, std::vector<loki_stream>>;

  tenant_map group(const journal_entries& entries);
  std::string stream_labels(const std::string& device, const label_map& l,
                            std::string& source_key);
  std::string render_line(const log_line& x, const std::string& source_key);
  caf::error send(const std::string& tenant, const push_parts& p);

  loki_sink_config cfg_;
  loki_target target_;
  http_client client_;
  loki_sink_stats stats_;
  // Refusals of the write in progress: first message and count.
  std::string refusal_;
  int64_t refusals_ = 0;
  // Pushes of the last write Loki accepted before it failed: a retry of
  // the same write skips them, as a replay of entries its stream moved
  // past would now be refused "too far behind".
  std::tuple<int64_t, int64_t, size_t> last_write_{-1, -1, 0};
  size_t done_pushes_ = 0;
};

std::string loki_sink_impl::stream_labels(const std::string& device,
                                          const label_map& l,
                                          std::string& source_key) {
  std::string source = "unknown";
  source_key.clear();
  for (auto key : source_keys) {
    auto i = l.find(key);
    if (i != l.end() && !i->second.empty()) {
      source = i->second;
      source_key = key;
      break;
    }
  }
  bool repaired = false;
  auto dev = repair_utf8(device, repaired);
  auto src = repair_utf8(source, repaired);
  truncate_utf8(dev, max_label_value);
  truncate_utf8(src, max_label_value);
  stats_.lines_repaired += repaired ? 1 : 0;
  return json_object{}.add("device_id", dev).add("source", src).str();
}

// The line, then every label outside the stream as logfmt " key=value",
// sorted: the same record renders the same line on every replay.
std::string loki_sink_impl::render_line(const log_line& x,
                                        const std::string& source_key) {
  auto text = x.line;
  for (auto& [k, v] : x.labels)
    if (k != source_key)
      text += " " + logfmt_key(k) + "=" + logfmt_value(v);
  bool repaired = false;
  text = repair_utf8(text, repaired);
  stats_.lines_repaired += repaired ? 1 : 0;
  stats_.lines_truncated
    += truncate_utf8(text, static_cast<size_t>(cfg_.max_line_bytes)) ? 1 : 0;
  return "[\"" + std::to_string(x.timestamp_ns) + "\"," + json_quote(text)
         + "]";
}

loki_sink_impl::tenant_map
loki_sink_impl::group(const journal_entries& entries) {
  std::map<std::string, std::map<std::string, loki_stream>> by_tenant;
  for (auto& e : entries) {
    if (e.logs.empty())
      continue;
    if (!valid_tenant(e.org)) {
      stats_.refused_tenant_entries += static_cast<int64_t>(e.logs.size());
      refusal_ = refusal_.empty() ? "org '" + e.org + "' is no Loki tenant ID"
                                  : refusal_;
      ++refusals_;
      continue;
    }
    std::string source_key;
    for (auto& x : e.logs) {
      auto labels = stream_labels(e.device, x.labels, source_key);
      auto& s = by_tenant[e.org][labels];
      s.labels_json = labels;
      s.items.push_back(loki_item{x.timestamp_ns, render_line(x, source_key)});
    }
  }
  tenant_map out;
  for (auto& [tenant, streams] : by_tenant)
    for (auto& [labels, s] : streams) {
      std::stable_sort(s.items.begin(), s.items.end(),
                       [](auto& a, auto& b) { return a.ts < b.ts; });
      out[tenant].push_back(std::move(s));
    }
  return out;
}

// One push; a 413 halves it (each half sent on its own), a refusal is
// noted and the write goes on, a retryable answer ends the write.
caf::error loki_sink_impl::send(const std::string& tenant,
                                const push_parts& p) {
  auto r = client_.post(target_.path, render_push(p),
                        {{"Content-Type", "application/json"},
                         {"X-Scope-OrgID", tenant}});
  ++stats_.pushes;
  if (!r) {
    stats_.last_problem = render(r.error());
    return r.error();
  }
  auto n = item_count(p);
  auto why = "loki answered " + std::to_string(r->status) + " to tenant "
             + tenant + ": " + r->body.substr(0, 512);
  switch (judge(r->status, n, r->body)) {
    case verdict::accepted:
      stats_.entries += static_cast<int64_t>(n);
      return caf::none;
    case verdict::split: {
      ++stats_.splits;
      auto [a, b] = halve(p);
      if (auto err = send(tenant, a))
        return err;
      return send(tenant, b);
    }
    case verdict::refused:
      ++stats_.refused_pushes;
      ++refusals_;
      stats_.last_problem = why;
      if (refusal_.empty())
        refusal_ = why;
      return caf::none;
    default:
      stats_.last_problem = why;
      return make_error(r->status == 408 ? ec::timeout : ec::remote_error,
                        why);
  }
}

caf::error loki_sink_impl::write(const journal_entries& entries) {
  if (entries.empty())
    return caf::none;
  std::tuple<int64_t, int64_t, size_t> key{entries.front().id,
                                           entries.back().id, entries.size()};
  bool resume = key == last_write_;
  auto skip = resume ? done_pushes_ : 0;
  last_write_ = key;
  done_pushes_ = 0;
  auto before = stats_;
  auto refusal = refusal_;
  auto refusals = refusals_;
  if (!resume) {
    refusal_.clear();
    refusals_ = 0;
  }
  auto tenants = group(entries);
  if (resume) {
    // The failed attempt counted these lines and refusals already, and
    // its refusals are still this write's answer.
    stats_ = before;
    refusal_ = refusal;
    refusals_ = refusals;
  }
  for (auto& [tenant, streams] : tenants) {
    for (auto& p : pack(streams, static_cast<size_t>(cfg_.batch_bytes))) {
      if (done_pushes_ < skip) {
        ++done_pushes_;
        continue;
      }
      if (auto err = send(tenant, p))
        return err;
      ++done_pushes_;
    }
  }
  last_write_ = {-1, -1, 0};
  if (refusals_ == 0)
    return caf::none;
  return make_error(ec::invalid_record,
                    std::to_string(refusals_) + " refusal(s), first: "
                      + refusal_);
}

} // namespace

caf::expected<std::unique_ptr<loki_sink>>
make_loki_sink(const loki_sink_config& cfg) {
  if (cfg.url.empty())
    return bad("sinks.loki.url: empty, no Loki to push to");
  auto target = parse_url(cfg.url);
  if (!target)
    return target.error();
  auto sink = std::make_unique<loki_sink_impl>(cfg, std::move(*target));
  if (auto err = sink->init())
    return err;
  return std::unique_ptr<loki_sink>{std::move(sink)};
}

} // namespace fleetd
