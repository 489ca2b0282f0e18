#include "support/loki_standin.hpp"

#include <limits>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "messages/error.hpp"
#include "runtime/json.hpp"
#include "support/loki_json.hpp"
#include "support/loki_query.hpp"

namespace fleetd::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// Loki's tenant when auth is disabled.
constexpr const char* single_tenant = "fake";

struct answer {
  unsigned status = 204;
  std::string text;
  const char* content_type = "text/plain; charset=utf-8";
};

struct request_view {
  std::string method;
  std::string target;
  std::string content_type;
  std::string content_encoding;
  std::optional<std::string> org_id;
  const std::string* body = nullptr;
};

struct pushed_stream {
  loki_labels labels;
  std::vector<loki_entry> entries;
};

struct stream_state {
  // Loki deduplicates an entry whose timestamp and line equal one it holds.
  std::set<std::pair<int64_t, std::string>> held;
  int64_t newest = std::numeric_limits<int64_t>::min();
};

// Loki's tenant IDs: at most 150 of A-Z a-z 0-9 ! - _ . * ' ( ), and
// neither "." nor "..".
bool valid_tenant(const std::string& t) {
  if (t.empty() || t.size() > 150 || t == "." || t == "..")
    return false;
  for (char c : t) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                 || (c >= '0' && c <= '9');
    if (!alnum && std::string{"!-_.*'()"}.find(c) == std::string::npos)
      return false;
  }
  return true;
}

// Prometheus label names, which Loki's stream labels are.
bool valid_label_name(const std::string& n) {
  if (n.empty())
    return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
              || (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return false;
  }
  return true;
}

std::string render(const loki_labels& labels) {
  std::string out = "{";
  for (auto& [k, v] : labels)
    out += (out.size() > 1 ? ", " : "") + k + "=\"" + v + "\"";
  return out + "}";
}

// Loki reads a push timestamp as a string holding a base-10 integer of
// nanoseconds (strconv.ParseInt); numbers and fractions are refused.
std::optional<int64_t> parse_timestamp(const json_value& v) {
  if (v.kind != json_value::string_v || v.text.empty())
    return std::nullopt;
  size_t i = v.text[0] == '-' ? 1 : 0;
  if (i == v.text.size())
    return std::nullopt;
  __int128 x = 0;
  for (; i < v.text.size(); ++i) {
    char c = v.text[i];
    if (c < '0' || c > '9')
      return std::nullopt;
    x = x * 10 + (c - '0');
    if (x > std::numeric_limits<int64_t>::max())
      return std::nullopt;
  }
  return static_cast<int64_t>(v.text[0] == '-' ? -x : x);
}

// One "values" item: [timestamp, line]; Loki 3's optional third element
// (structured metadata) is refused, as Loki does while it is disabled.
std::optional<std::string> decode_value(const json_value& v, loki_entry& out) {
  if (v.kind != json_value::array_v || v.items.size() < 2)
    return "values item must be [\"<ns timestamp>\", \"<line>\"]";
  if (v.items.size() > 2)
    return "structured metadata is disabled";
  auto ts = parse_timestamp(v.items[0]);
  if (!ts)
    return "timestamp must be a string of an integer of nanoseconds";
  if (v.items[1].kind != json_value::string_v)
    return "log line must be a string";
  out = loki_entry{*ts, v.items[1].text};
  return std::nullopt;
}

// A stream's "stream" object: string values only; a duplicate name or an
// invalid one is reported by validate_labels, so keep them apart here.
std::optional<std::string> decode_labels(const json_value& v,
                                         loki_labels& out, bool& duplicate) {
  if (v.kind != json_value::object_v)
    return "stream labels must be an object";
  for (auto& [k, x] : v.members) {
    if (x.kind != json_value::string_v)
      return "label value of " + k + " must be a string";
    // An empty value means the label is absent, as in Prometheus.
    if (x.text.empty())
      continue;
    duplicate |= !out.emplace(k, x.text).second;
  }
  return std::nullopt;
}

struct decoded_stream {
  pushed_stream s;
  bool duplicate_label = false;
};

// The push body's shape; any error here fails the whole request with 400,
// as Loki's decoder does before it validates a single stream.
std::optional<std::string> decode_push(const json_value& doc,
                                       std::vector<decoded_stream>& out) {
  if (doc.kind != json_value::object_v)
    return "push body must be a JSON object";
  auto streams = json_member(doc, "streams");
  if (!streams || streams->kind == json_value::null_v)
    return std::nullopt;
  if (streams->kind != json_value::array_v)
    return "streams must be an array";
  for (auto& s : streams->items) {
    if (s.kind != json_value::object_v)
      return "each stream must be an object";
    decoded_stream d;
    if (auto labels = json_member(s, "stream"))
      if (auto why = decode_labels(*labels, d.s.labels, d.duplicate_label))
        return why;
    auto values = json_member(s, "values");
    if (values && values->kind != json_value::array_v)
      return "values must be an array";
    for (size_t i = 0; values && i < values->items.size(); ++i) {
      loki_entry e;
      if (auto why = decode_value(values->items[i], e))
        return why;
      d.s.entries.push_back(std::move(e));
    }
    out.push_back(std::move(d));
  }
  return std::nullopt;
}

} // namespace

struct loki_standin::impl {
  loki_standin_config cfg;
  // New on every start: stop() drops it with every open connection.
  std::unique_ptr<asio::io_context> ioc;
  std::optional<tcp::acceptor> acceptor;
  std::thread thread;

  mutable std::mutex mtx;
  std::map<std::string, std::map<loki_labels, stream_state>> store;
  unsigned fail_status = 0;
  int fail_times = 0;
  int fail_after = 0;
  int64_t pushes = 0;
  std::map<unsigned, int64_t> answered;

  explicit impl(loki_standin_config c) : cfg(std::move(c)) {
    if (!cfg.now_ns)
      cfg.now_ns = [] {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
      };
  }

  answer handle(const request_view& req);
  answer push(const request_view& req);
  answer query_range(const request_view& req);
  std::optional<answer> check_tenant(const request_view& req,
                                     std::string& tenant);
  std::optional<answer> check_headers(const request_view& req,
                                      std::string& tenant);
  std::optional<std::string> validate_labels(const decoded_stream& d) const;
  std::optional<std::string> validate_entry(const pushed_stream& s,
                                            const loki_entry& e,
                                            int64_t now) const;
  std::optional<std::string> append(stream_state& st, const pushed_stream& s,
                                    const loki_entry& e);
  answer store_push(const std::string& tenant,
                    const std::vector<decoded_stream>& streams);
  void accept();
};

answer loki_standin::impl::handle(const request_view& req) {
  auto path = req.target.substr(0, req.target.find('?'));
  if (path == "/loki/api/v1/query_range") {
    auto a = query_range(req);
    std::lock_guard<std::mutex> guard{mtx};
    ++answered[a.status];
    return a;
  }
  if (path != "/loki/api/v1/push")
    return {404, "404 page not found"};
  if (req.method != "POST")
    return {405, "method not allowed"};
  // Loki reads the whole body, then refuses one over its receive limit.
  auto size = req.body->size();
  auto a = size > cfg.max_body_bytes
             ? answer{413, "request body too large: " + std::to_string(size)
                             + " bytes, limit "
                             + std::to_string(cfg.max_body_bytes)}
             : push(req);
  std::lock_guard<std::mutex> guard{mtx};
  ++answered[a.status];
  return a;
}

// Loki's auth middleware, before any handler: the tenant a request acts
// for.
std::optional<answer>
loki_standin::impl::check_tenant(const request_view& req, std::string& tenant) {
  tenant = single_tenant;
  if (cfg.multi_tenant) {
    if (!req.org_id)
      return answer{401, "no org id"};
    if (!valid_tenant(*req.org_id))
      return answer{401, "tenant ID '" + *req.org_id + "' is not valid"};
    if (!cfg.tenants.empty() && cfg.tenants.count(*req.org_id) == 0)
      return answer{401, "unknown tenant " + *req.org_id};
    tenant = *req.org_id;
  }
  return std::nullopt;
}

// The tenant first (Loki's auth middleware runs before the push handler),
// then the media type and encoding.
std::optional<answer>
loki_standin::impl::check_headers(const request_view& req,
                                  std::string& tenant) {
  if (auto refused = check_tenant(req, tenant))
    return refused;
  // Loki parses application/json as JSON and reads anything else (no type
  // too) as snappy-compressed protobuf; the stand-in decodes no protobuf
  // and answers 415 for every type it does not parse.
  auto type = req.content_type.substr(0, req.content_type.find(';'));
  if (type != "application/json")
    return answer{415, "unsupported content type '" + req.content_type
                         + "': the stand-in reads application/json only"};
  // Loki decodes gzip bodies too; the stand-in does not (the sink sends none).
  if (!req.content_encoding.empty() && req.content_encoding != "identity")
    return answer{415, "unsupported content encoding '"
                         + req.content_encoding + "'"};
  return std::nullopt;
}

answer loki_standin::impl::push(const request_view& req) {
  {
    std::lock_guard<std::mutex> guard{mtx};
    ++pushes;
    if (fail_after > 0)
      --fail_after;
    else if (fail_times > 0) {
      --fail_times;
      return {fail_status, fail_status == 429
                             ? "Ingestion rate limit exceeded"
                             : "stand-in: failure on demand"};
    }
  }
  std::string tenant;
  if (auto refused = check_headers(req, tenant))
    return *refused;
  std::string why;
  auto doc = parse_json(*req.body, why);
  if (!doc)
    return {400, "loghttp: malformed JSON: " + why};
  std::vector<decoded_stream> streams;
  if (auto bad = decode_push(*doc, streams))
    return {400, "loghttp: " + *bad};
  return store_push(tenant, streams);
}

namespace {

struct hit {
  const loki_labels* labels;
  int64_t ts;
  const std::string* line;
};

// Loki's query_range answer: streams, each with its entries in the
// request's direction.
std::string streams_json(const std::vector<hit>& hits) {
  std::vector<std::pair<const loki_labels*, std::string>> streams;
  std::map<const loki_labels*, size_t> at;
  for (auto& h : hits) {
    auto [i, fresh] = at.emplace(h.labels, streams.size());
    if (fresh)
      streams.emplace_back(h.labels, "");
    auto& values = streams[i->second].second;
    values += (values.empty() ? "[\"" : ",[\"") + std::to_string(h.ts)
              + "\"," + json_quote(*h.line) + "]";
  }
  std::string result;
  for (auto& [labels, values] : streams) {
    json_object obj;
    for (auto& [k, v] : *labels)
      obj.add(k, v);
    result += (result.empty() ? "" : ",")
              + json_object{}.raw("stream", obj.str())
                  .raw("values", "[" + values + "]")
                  .str();
  }
  return "{\"status\":\"success\",\"data\":{\"resultType\":\"streams\","
         "\"result\":[" + result + "],\"stats\":{}}}";
}

} // namespace

// Loki's querier: the entries of the tenant's streams the selector picks,
// start inclusive, end exclusive, at most `limit` over all streams, the
// oldest (forward) or the newest (backward).
answer loki_standin::impl::query_range(const request_view& req) {
  // Loki takes a form POST here too; the stand-in models GET only.
  if (req.method != "GET")
    return {405, "stand-in: query_range by GET only"};
  std::string tenant;
  if (auto refused = check_tenant(req, tenant))
    return *refused;
  std::string why;
  auto r = parse_range_request(req.target, cfg.max_entries_limit,
                               cfg.now_ns(), why);
  if (!r)
    return {400, why};
  std::lock_guard<std::mutex> guard{mtx};
  std::vector<hit> hits;
  auto t = store.find(tenant);
  if (t != store.end())
    for (auto& [labels, st] : t->second)
      if (selects(r->matchers, labels))
        for (auto& [ts, line] : st.held)
          if (ts >= r->start_ns && ts < r->end_ns)
            hits.push_back(hit{&labels, ts, &line});
  std::stable_sort(hits.begin(), hits.end(), [&](auto& x, auto& y) {
    return r->forward ? x.ts < y.ts : x.ts > y.ts;
  });
  if (static_cast<int64_t>(hits.size()) > r->limit)
    hits.resize(static_cast<size_t>(r->limit));
  return {200, streams_json(hits), "application/json"};
}

// Loki's distributor checks each stream's labels: at least one pair, valid
// Prometheus names, no duplicates, bounded count and lengths.
std::optional<std::string>
loki_standin::impl::validate_labels(const decoded_stream& d) const {
  auto& labels = d.s.labels;
  if (labels.empty())
    return std::string{"error at least one label pair is required per stream"};
  if (d.duplicate_label)
    return "stream '" + render(labels) + "' has duplicate label name";
  if (labels.size() > cfg.max_label_names)
    return "stream '" + render(labels) + "' has "
           + std::to_string(labels.size()) + " label names; limit "
           + std::to_string(cfg.max_label_names);
  for (auto& [k, v] : labels) {
    if (!valid_label_name(k))
      return "error parsing labels: invalid label name '" + k + "'";
    if (k.size() > cfg.max_label_name_bytes)
      return "stream '" + render(labels) + "' has label name too long";
    if (v.size() > cfg.max_label_value_bytes)
      return "stream '" + render(labels) + "' has label value too long";
  }
  return std::nullopt;
}

// Loki's distributor refuses each entry older than reject_old_samples_max_age,
// newer than now + creation_grace_period, or longer than max_line_size.
std::optional<std::string>
loki_standin::impl::validate_entry(const pushed_stream& s, const loki_entry& e,
                                   int64_t now) const {
  auto stream = render(s.labels);
  if (e.timestamp_ns < now - cfg.reject_old_max_age.count())
    return "entry for stream '" + stream + "' has timestamp too old: "
           + std::to_string(e.timestamp_ns);
  if (e.timestamp_ns > now + cfg.creation_grace.count())
    return "entry for stream '" + stream + "' has timestamp too new: "
           + std::to_string(e.timestamp_ns);
  if (e.line.size() > cfg.max_line_bytes)
    return "Max entry size '" + std::to_string(cfg.max_line_bytes)
           + "' bytes exceeded for stream '" + stream
           + "' while adding an entry with length '"
           + std::to_string(e.line.size()) + "' bytes";
  return std::nullopt;
}

// Loki's ingester (out-of-order writes on) takes an entry unless it is more
// than the window behind the stream's newest entry; an identical
// timestamp and line is dropped silently.
std::optional<std::string> loki_standin::impl::append(stream_state& st,
                                                      const pushed_stream& s,
                                                      const loki_entry& e) {
  auto window = cfg.out_of_order_window.count();
  if (st.newest != std::numeric_limits<int64_t>::min()
      && e.timestamp_ns < st.newest - window)
    return "entry with timestamp " + std::to_string(e.timestamp_ns)
           + " ignored, reason: 'entry too far behind, oldest acceptable "
             "timestamp is: "
           + std::to_string(st.newest - window) + "' for stream: "
           + render(s.labels);
  st.held.emplace(e.timestamp_ns, e.line);
  st.newest = std::max(st.newest, e.timestamp_ns);
  return std::nullopt;
}

// Loki keeps the valid entries of a push and answers 400 naming the last
// refusal and how many entries it ignored; a new stream past the tenant's
// stream limit is refused 429 (its ingester's answer wins over the 400).
answer loki_standin::impl::store_push(
  const std::string& tenant, const std::vector<decoded_stream>& streams) {
  auto now = cfg.now_ns();
  std::string last_error;
  size_t total = 0;
  size_t ignored = 0;
  bool stream_limited = false;
  std::lock_guard<std::mutex> guard{mtx};
  auto& held = store[tenant];
  for (auto& d : streams) {
    total += d.s.entries.size();
    auto why = validate_labels(d);
    if (!why && held.count(d.s.labels) == 0
        && held.size() >= cfg.max_streams_per_tenant) {
      why = "Maximum active stream limit exceeded, reduce the number of "
            "active streams (reduce labels or reduce label values), user: '"
            + tenant + "'";
      stream_limited = true;
    }
    if (why) {
      last_error = *why;
      ignored += d.s.entries.size();
      continue;
    }
    for (auto& e : d.s.entries) {
      auto why = validate_entry(d.s, e, now);
      if (!why)
        why = append(store[tenant][d.s.labels], d.s, e);
      if (why) {
        last_error = *why;
        ++ignored;
      }
    }
  }
  if (last_error.empty())
    return {204, ""};
  return {stream_limited ? 429u : 400u, last_error + " (total ignored: " + std::to_string(ignored)
                 + " out of " + std::to_string(total) + ")"};
}

namespace {

// One keep-alive connection: read a request, answer, repeat.
class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket s, loki_standin::impl* owner)
    : stream_(std::move(s)), owner_(owner) {
  }

  void read() {
    parser_.emplace();
    // Read bodies a little over the limit whole, so that the client reads
    // the 413 instead of a reset; far beyond it the connection is closed.
    parser_->body_limit(owner_cfg().max_body_bytes * 4 + 1024);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec,
                                                 size_t) {
                       self->on_read(ec);
                     });
  }

private:
  const loki_standin_config& owner_cfg();

  void on_read(beast::error_code ec);

  void respond(const answer& a, unsigned version, bool keep_alive) {
    res_ = {};
    res_.version(version);
    res_.result(a.status);
    res_.keep_alive(keep_alive);
    if (a.status != 204) {
      res_.set(http::field::content_type, a.content_type);
      res_.body() = a.text + "\n";
    }
    res_.prepare_payload();
    http::async_write(stream_, res_,
                      [self = shared_from_this(),
                       keep_alive](beast::error_code ec, size_t) {
                        if (ec || !keep_alive) {
                          beast::error_code ignore;
                          self->stream_.socket().shutdown(
                            tcp::socket::shutdown_both, ignore);
                          return;
                        }
                        self->read();
                      });
  }

  beast::tcp_stream stream_;
  loki_standin::impl* owner_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
};

} // namespace

void loki_standin::impl::accept() {
  acceptor->async_accept([this](beast::error_code ec, tcp::socket s) {
    if (ec)
      return;
    std::make_shared<session>(std::move(s), this)->read();
    accept();
  });
}

namespace {

const loki_standin_config& session::owner_cfg() {
  return owner_->cfg;
}

void session::on_read(beast::error_code ec) {
  if (ec)
    return;
  auto req = parser_->release();
  request_view view;
  view.method = std::string{req.method_string()};
  view.target = std::string{req.target()};
  view.content_type = std::string{req[http::field::content_type]};
  view.content_encoding = std::string{req[http::field::content_encoding]};
  if (req.find("X-Scope-OrgID") != req.end())
    view.org_id = std::string{req["X-Scope-OrgID"]};
  view.body = &req.body();
  respond(owner_->handle(view), req.version(), req.keep_alive());
}

} // namespace

loki_standin::loki_standin(loki_standin_config cfg)
  : impl_(std::make_shared<impl>(std::move(cfg))) {
}

loki_standin::~loki_standin() {
  stop();
}

caf::expected<uint16_t> loki_standin::start(uint16_t port) {
  if (impl_->thread.joinable())
    return make_error(ec::io_error, "loki stand-in: already started");
  beast::error_code ec;
  impl_->ioc = std::make_unique<asio::io_context>(1);
  auto& acc = impl_->acceptor.emplace(*impl_->ioc);
  tcp::endpoint ep{asio::ip::make_address("127.0.0.1"), port};
  acc.open(ep.protocol(), ec);
  if (!ec)
    acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    acc.bind(ep, ec);
  if (!ec)
    acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(ec::io_error, "loki stand-in: " + ec.message());
  auto bound = acc.local_endpoint().port();
  impl_->accept();
  impl_->thread = std::thread{[p = impl_.get()] { p->ioc->run(); }};
  return bound;
}

void loki_standin::stop() {
  if (!impl_->thread.joinable())
    return;
  asio::post(*impl_->ioc, [p = impl_.get()] {
    beast::error_code ignore;
    p->acceptor->close(ignore);
    p->ioc->stop();
  });
  impl_->thread.join();
  impl_->acceptor.reset();
  impl_->ioc.reset();
}

void loki_standin::fail_next(unsigned status, int times, int after) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->fail_after = after;
  impl_->fail_status = status;
  impl_->fail_times = times;
}

std::vector<loki_stream_view>
loki_standin::streams(const std::string& tenant) const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  std::vector<loki_stream_view> out;
  auto t = impl_->store.find(tenant);
  if (t == impl_->store.end())
    return out;
  for (auto& [labels, st] : t->second) {
    loki_stream_view v{labels, {}};
    for (auto& [ts, line] : st.held)
      v.entries.push_back(loki_entry{ts, line});
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<loki_entry>
loki_standin::entries(const std::string& tenant,
                      const loki_labels& labels) const {
  for (auto& s : streams(tenant))
    if (s.labels == labels)
      return s.entries;
  return {};
}

size_t loki_standin::entry_count(const std::string& tenant) const {
  size_t n = 0;
  for (auto& s : streams(tenant))
    n += s.entries.size();
  return n;
}

int64_t loki_standin::pushes() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->pushes;
}

int64_t loki_standin::answered(unsigned status) const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  auto i = impl_->answered.find(status);
  return i == impl_->answered.end() ? 0 : i->second;
}

} // namespace fleetd::test
