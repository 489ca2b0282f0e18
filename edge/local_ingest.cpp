#include "edge/local_ingest.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <mutex>

#include <caf/event_based_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/influx_line.hpp"
#include "messages/json_lines.hpp"
#include "messages/prom_text.hpp"
#include "messages/wire.hpp"
#include "runtime/config_check.hpp"
#include "runtime/http_server.hpp"
#include "runtime/http_url.hpp"
#include "runtime/json.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"
#include "runtime/tls.hpp"

namespace fleetd {

namespace {

constexpr ingest_format all_formats[] = {ingest_format::influx,
                                         ingest_format::prom,
                                         ingest_format::logs,
                                         ingest_format::events};

// Decoded records take a few times their text (a short Influx line with
// several fields the most), never more than this.
constexpr uint64_t decoded_per_body_byte = 32;
// A small body's budget is that of this many bytes.
constexpr uint64_t min_budget_base = 4096;

// A parser's limits under `x` for a body of `bytes`: a record per line, a
// decode budget proportional to the body (what waits for storage is then
// bounded by ingest.max-pending-bytes too).
template <class Limits>
Limits bounded(const local_ingest_config& x, size_t bytes) {
  Limits out;
  out.max_samples = static_cast<size_t>(x.max_lines);
  out.max_decoded_bytes = decoded_per_body_byte
                          * std::max<uint64_t>(bytes, min_budget_base);
  return out;
}

// What the listeners' handler and the workers share with the actor.
struct ingest_core {
  local_ingest_config cfg;
  caf::actor_system* sys = nullptr;
  std::mutex mtx;
  int64_t pending_requests = 0; // guarded by mtx
  int64_t pending_bytes = 0;    // guarded by mtx
  std::map<std::string, int64_t> counters; // guarded by mtx

  void count(const std::string& name, int64_t n = 1) {
    std::lock_guard<std::mutex> guard{mtx};
    counters[name] += n;
  }

  // Takes a request of `bytes` into the pending bound; false when full.
  bool admit(int64_t bytes) {
    std::lock_guard<std::mutex> guard{mtx};
    if (pending_requests >= cfg.max_pending_requests
        || pending_bytes + bytes > cfg.max_pending_bytes)
      return false;
    ++pending_requests;
    pending_bytes += bytes;
    return true;
  }

  void release(int64_t bytes) {
    std::lock_guard<std::mutex> guard{mtx};
    --pending_requests;
    pending_bytes -= bytes;
  }
};

using core_ptr = std::shared_ptr<ingest_core>;

// Stores the records, then answers `answer`; an error or no answer in time
// is 503 (nothing of it is acknowledged).
template <class Records>
void store_then_answer(caf::event_based_actor* self, const core_ptr& core,
                       ingest_format f, http_reply answer, Records records,
                       http_server::respond_fn respond, int64_t bytes) {
  auto& cfg = core->cfg;
  self->request(cfg.storage, cfg.store_timeout, store_atom::value,
                std::move(records))
    .then(
      [self, core, f, answer = std::move(answer), respond,
       bytes](int64_t n) mutable {
        core->count(std::string("records_") + to_string(f), n);
        for (auto& y : core->cfg.on_stored)
          self->send(y, store_atom::value);
        core->release(bytes);
        respond(std::move(answer));
        self->quit();
      },
      [self, core, respond, bytes](caf::error& err) {
        core->count("store_failures");
        log_warning_limited("local_ingest", "store", "store failed: ",
                            render(err));
        core->release(bytes);
        auto rep = text_reply(503, "store_failed",
                              "the store did not take the records: "
                                + render(err) + "; retry");
        rep.retry_after_s = 1;
        respond(std::move(rep));
        self->quit();
      });
}

// The stream a format's records go to.
const char* stream_of(ingest_format f) {
  return f == ingest_format::logs     ? logs_stream
         : f == ingest_format::events ? events_stream
                                      : metrics_stream;
}

// Lines of a body refused whole: the records it would have made, about.
int64_t lines_of(std::string_view body) {
  auto n = static_cast<int64_t>(std::count(body.begin(), body.end(), '\n'));
  return n + (!body.empty() && body.back() != '\n' ? 1 : 0);
}

// Records refused for good (not a 429 or 503, which the client retries)
// are the stream's drops: storage counts them, the device declares them.
void refuse(caf::event_based_actor* self, const core_ptr& core,
            ingest_format f, const char* why, int64_t n) {
  if (n > 0 && core->cfg.storage)
    self->send(core->cfg.storage, refused_atom::value,
               std::string{stream_of(f)}, std::string{why}, n);
}

// One admitted request, on a scheduler thread: parse, store, answer.
void work(caf::event_based_actor* self, const core_ptr& core,
          ingest_format f, http_request req,
          http_server::respond_fn respond) {
  auto bytes = static_cast<int64_t>(req.body.size());
  auto& target = req.target;
  auto q = target.find('?');
  auto query = q == std::string::npos ? std::string_view{}
                                      : std::string_view(target).substr(q + 1);
  auto& cfg = core->cfg;
  auto body = parse_ingest_body(f, req.body, query, cfg.clock->now_ms(), cfg);
  auto lines = body ? 0 : lines_of(req.body);
  req.body = {};
  auto name = to_string(f);
  if (!body) {
    auto too_large = body.error() == ec::too_large;
    core->count(too_large ? "refused_too_large" : "refused_bad_request");
    refuse(self, core, f, too_large ? "too_large" : "bad_request", lines);
    core->release(bytes);
    respond(text_reply(too_large ? 413 : 400,
                       too_large ? "too_large" : "bad_request",
                       render(body.error())));
    self->quit();
    return;
  }
  core->count(std::string("bad_lines_") + name,
              static_cast<int64_t>(body->bad_lines));
  refuse(self, core, f, "bad_format", static_cast<int64_t>(body->bad_lines));
  if (body->records() == 0) {
    core->release(bytes);
    respond(ingest_answer(*body));
    self->quit();
    return;
  }
  auto answer = ingest_answer(*body);
  if (f == ingest_format::logs)
    store_then_answer(self, core, f, std::move(answer), std::move(body->logs),
                      std::move(respond), bytes);
  else if (f == ingest_format::events)
    store_then_answer(self, core, f, std::move(answer),
                      std::move(body->events), std::move(respond), bytes);
  else
    store_then_answer(self, core, f, std::move(answer),
                      std::move(body->samples), std::move(respond), bytes);
}

// On the listener's Asio thread: route, bound, and hand over (never blocks).
void handle(const core_ptr& core, http_request req,
            http_server::respond_fn respond) {
  auto path = std::string_view(req.target).substr(0, req.target.find('?'));
  if (path == "/metrics" && req.method == "GET" && core->cfg.metrics) {
    core->count("requests_self_metrics");
    core->cfg.metrics->serve(std::move(respond));
    return;
  }
  ingest_format f;
  if (!ingest_format_of(path, f)) {
    core->count("refused_not_found");
    respond(text_reply(404, "not_found",
                       "no endpoint " + printable(path, 64)
                         + "; POST /write, /metrics/import, /logs or "
                           "/events, GET /metrics"));
    return;
  }
  if (req.method != "POST") {
    core->count("refused_bad_request");
    respond(text_reply(405, "method_not_allowed", "POST only"));
    return;
  }
  core->count(std::string("requests_") + to_string(f));
  if (!req.content_encoding.empty() && req.content_encoding != "identity") {
    core->count("refused_bad_request");
    respond(text_reply(415, "unsupported_encoding",
                       "Content-Encoding " + printable(req.content_encoding, 32)
                         + " is not accepted; send the body as it is"));
    return;
  }
  auto bytes = static_cast<int64_t>(req.body.size());
  if (!core->admit(bytes)) {
    core->count("refused_busy");
    log_warning_limited("local_ingest", "busy", "429 to ", req.peer,
                        ": requests waiting for storage at the limit");
    auto rep = text_reply(429, "busy",
                          "too many requests waiting for storage; retry");
    rep.retry_after_s = 1;
    respond(std::move(rep));
    return;
  }
  core->sys->spawn([core, f, req = std::move(req),
                    respond](caf::event_based_actor* self) mutable {
    work(self, core, f, std::move(req), std::move(respond));
  });
}

struct local_ingest_state {
  core_ptr core;
  std::vector<std::unique_ptr<http_server>> servers;
  std::vector<std::string> server_names;
  int64_t port = 0;
  static inline const char* name = "local_ingest";

  ~local_ingest_state() {
    for (auto& s : servers)
      s->stop();
  }
};

// The bound listeners, for the actor to own.
struct listeners {
  std::vector<std::unique_ptr<http_server>> servers;
  std::vector<std::string> names;
  int64_t port = 0;
};

local_ingest_actor::behavior_type
local_ingest(local_ingest_actor::stateful_pointer<local_ingest_state> self,
             core_ptr core, std::shared_ptr<listeners> ls) {
  auto& st = self->state;
  st.core = std::move(core);
  st.servers = std::move(ls->servers);
  st.server_names = std::move(ls->names);
  st.port = ls->port;
  return {
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = "local_ingest";
      out.state = "running";
      {
        std::lock_guard<std::mutex> guard{st.core->mtx};
        out.counters = st.core->counters;
        out.counters["pending_requests"] = st.core->pending_requests;
        out.counters["pending_bytes"] = st.core->pending_bytes;
      }
      for (auto f : all_formats)
        for (auto what : {"requests_", "records_", "bad_lines_"})
          out.counters.emplace(what + std::string(to_string(f)), 0);
      out.counters["port"] = st.port;
      for (size_t i = 0; i < st.servers.size(); ++i)
        for (auto& [k, v] : named_counters(st.servers[i]->counters()))
          out.counters[st.server_names[i] + "_" + k] = v;
      return out;
    },
  };
}

} // namespace

void declare(option_set& opts, local_ingest_config& x) {
  using namespace std::chrono_literals;
  opts.add("ingest.listen", x.listen, "",
           "Local ingest over HTTP: host:port to listen on, e.g. "
           "127.0.0.1:7402 (loopback only unless ingest.allow-remote); "
           "empty: off");
  opts.add("ingest.socket", x.socket, "",
           "Local ingest over HTTP on this Unix socket path (mode 0660); "
           "empty: off");
  opts.add("ingest.allow-remote", x.allow_remote, false,
           "Let ingest.listen name a non-loopback address: anyone who "
           "reaches it can write, there is no authentication");
  opts.add_size("ingest.max-body-bytes", x.max_body_bytes, 256 << 10,
                "A larger request body is refused (413); so is one whose "
                "records would take more than 32 times its bytes decoded",
                1024, int64_t{64} << 20);
  opts.add("ingest.max-lines", x.max_lines, 10000, "lines",
           "A request with more lines is refused (413)", 1, 1'000'000);
  opts.add("ingest.max-pending-requests", x.max_pending_requests, 8,
           "requests",
           "Requests waiting for storage at once; past it (or "
           "ingest.max-pending-bytes) a request is answered 429",
           1, 10000);
  opts.add_size("ingest.max-pending-bytes", x.max_pending_bytes, 1 << 20,
                "Request bodies waiting for storage at once; past it a "
                "request is answered 429",
                1024, int64_t{1} << 30);
  opts.add("ingest.max-connections", x.max_connections, 64, "connections",
           "Connections to each ingest listener at once", 1, 10000);
  opts.add("ingest.store-timeout", x.store_timeout, 30s,
           "A request whose records the store has not committed within "
           "this is answered 503 (the client retries)",
           100ms);
}

caf::error validate(const local_ingest_config& x) {
  if (!x.listen.empty()) {
    auto hp = parse_host_port(x.listen, "ingest.listen", true);
    if (!hp)
      return hp.error();
    auto& host = hp->host;
    unsigned char buf[16];
    if (inet_pton(AF_INET, host.c_str(), buf) != 1
        && inet_pton(AF_INET6, host.c_str(), buf) != 1)
      return bad_config("ingest.listen: '" + host + "' is not an IP address");
    if (!x.allow_remote && !is_loopback_host(host))
      return bad_config("ingest.listen: " + host
                        + " is not a loopback address; the endpoint has no "
                          "authentication (set ingest.allow-remote to mean "
                          "it)");
  }
  if (x.max_pending_bytes < x.max_body_bytes)
    return bad_config("ingest.max-pending-bytes: must be at least "
                      "ingest.max-body-bytes");
  return caf::none;
}

bool ingest_format_of(std::string_view path, ingest_format& out) {
  for (auto f : all_formats)
    if (path == (f == ingest_format::influx   ? "/write"
                 : f == ingest_format::prom   ? "/metrics/import"
                 : f == ingest_format::logs   ? "/logs"
                                              : "/events")) {
      out = f;
      return true;
    }
  return false;
}

const char* to_string(ingest_format x) {
  switch (x) {
    case ingest_format::influx:
      return "write";
    case ingest_format::prom:
      return "metrics_import";
    case ingest_format::logs:
      return "logs";
    case ingest_format::events:
      return "events";
  }
  return "?";
}

caf::expected<ingest_body> parse_ingest_body(ingest_format f,
                                             std::string_view body,
                                             std::string_view query,
                                             int64_t now_ms,
                                             const local_ingest_config& x) {
  auto lines = static_cast<int64_t>(std::count(body.begin(), body.end(), '\n'))
               + (!body.empty() && body.back() != '\n' ? 1 : 0);
  if (lines > x.max_lines)
    return make_error(ec::too_large,
                      "more than " + std::to_string(x.max_lines)
                        + " lines in one request (ingest.max-lines)");
  ingest_body out;
  auto take = [&](line_verdicts& v) {
    static_cast<line_verdicts&>(out) = std::move(v);
  };
  switch (f) {
    case ingest_format::influx: {
      auto precision = influx_precision::ns;
      for (auto param : split_list(query, '&')) {
        if (param.substr(0, 10) != "precision=")
          continue;
        if (!parse_influx_precision(param.substr(10), precision))
          return make_error(ec::decode_failed,
                            "precision " + printable(param.substr(10), 16)
                              + " is not ns, us, ms or s");
      }
      auto limits = bounded<influx_limits>(x, body.size());
      // A line may carry many fields: the decode budget bounds them.
      limits.max_samples *= limits.max_fields;
      auto b = parse_influx_lines(body, now_ms, precision, limits);
      out.samples = std::move(b.samples);
      take(b);
      break;
    }
    case ingest_format::prom: {
      auto b = parse_prom_text(body, now_ms,
                               bounded<prom_limits>(x, body.size()));
      out.samples = std::move(b.samples);
      take(b);
      break;
    }
    case ingest_format::logs: {
      auto b = parse_log_lines(body, now_ms * 1'000'000,
                               bounded<json_lines_limits>(x, body.size()));
      out.logs = std::move(b.lines);
      take(b);
      break;
    }
    case ingest_format::events: {
      auto b = parse_event_lines(body, now_ms,
                                 bounded<json_lines_limits>(x, body.size()));
      out.events = std::move(b.events);
      take(b);
      break;
    }
  }
  // Part of a request is not kept: the client splits it and sends it again.
  if (out.stopped)
    return out.stopped;
  return out;
}

http_reply ingest_answer(const ingest_body& b) {
  http_reply out;
  if (b.bad_lines == 0) {
    out.status = 204;
    return out;
  }
  std::string errors = "[";
  for (auto& e : b.errors) {
    if (errors.size() > 1)
      errors += ",";
    errors += json_object{}
                .add("line", static_cast<int64_t>(e.line))
                // A reason may quote the client's bytes: valid JSON whatever.
                .add("reason", printable(e.reason, 256))
                .str();
  }
  errors += "]";
  auto stored = static_cast<int64_t>(b.records());
  out.status = stored > 0 ? 200 : 400;
  out.content_type = "application/json";
  out.body = json_object{}
               .add("stored", stored)
               .add("bad_lines", static_cast<int64_t>(b.bad_lines))
               .raw("errors", errors)
               .str()
             + "\n";
  if (stored == 0)
    out.error = "bad_lines: " + std::to_string(b.bad_lines)
                + " bad line(s), none stored; line "
                + std::to_string(b.errors.front().line) + ": "
                + b.errors.front().reason;
  return out;
}

caf::expected<local_ingest_actor> spawn_local_ingest(caf::actor_system& sys,
                                                     local_ingest_config cfg) {
  if (auto err = validate(cfg))
    return err;
  auto core = std::make_shared<ingest_core>();
  core->cfg = std::move(cfg);
  core->sys = &sys;
  http_limits limits;
  auto& c = core->cfg;
  limits.max_body_bytes = static_cast<size_t>(c.max_body_bytes);
  limits.max_connections = static_cast<size_t>(c.max_connections);
  // Every client is local: the per-address limit is the listener's.
  limits.max_connections_per_address = limits.max_connections;
  // Bodies being read, beside those waiting for storage (429 past those).
  limits.max_inflight_bytes = static_cast<size_t>(2 * c.max_pending_bytes);
  auto ls = std::make_shared<listeners>();
  auto handler = [core](http_request req, http_server::respond_fn respond) {
    handle(core, std::move(req), std::move(respond));
  };
  if (!c.listen.empty()) {
    // Checked by validate().
    auto hp = parse_host_port(c.listen, "ingest.listen", true);
    if (!hp)
      return hp.error();
    auto& host = hp->host;
    auto s = std::make_unique<http_server>(limits, handler);
    auto bound = s->start(host, hp->port);
    if (!bound)
      return bad_config("ingest.listen: " + render(bound.error()));
    ls->port = *bound;
    ls->servers.push_back(std::move(s));
    ls->names.emplace_back("tcp");
    log_info("local_ingest", "listening on ", host, ":", *bound);
  }
  if (!c.socket.empty()) {
    auto s = std::make_unique<http_server>(limits, handler);
    if (auto err = s->start_local(c.socket))
      return bad_config("ingest.socket: " + render(err));
    ls->servers.push_back(std::move(s));
    ls->names.emplace_back("unix");
    log_info("local_ingest", "listening on ", c.socket);
  }
  return sys.spawn(local_ingest, std::move(core), std::move(ls));
}

} // namespace fleetd
