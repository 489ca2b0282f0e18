#include "edge/cloud_link.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fcntl.h>
#include <unistd.h>

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

namespace fleetd {

void declare(option_set& opts, cloud_link_config& x) {
  using namespace std::chrono_literals;
  opts.add("cloud.endpoints", x.endpoints, "",
           "Cloud nodes to fail over between, \"host:port,host:port\" "
           "([v6]:port), tried in order: when one stops answering the device "
           "moves to the next and stays there; \"\": cloud.host:cloud.port "
           "alone. Set it or cloud.host/cloud.port, not both");
  opts.add("cloud.host", x.host, "127.0.0.1",
           "Host name or address of the cloud ingest endpoint (one node; "
           "see cloud.endpoints)");
  opts.add("cloud.port", x.port, 7480, "port",
           "TCP port of the cloud ingest endpoint", 1, 65535);
  opts.replaces("cloud.endpoints", {"cloud.host", "cloud.port"});
  opts.add("cloud.timeout", x.timeout, 10s,
           "Deadline for connecting and for each sync request", 100ms);
  opts.add("cloud.ca-file", x.tls.ca, "",
           "PEM CA file the cloud's certificate must chain to (empty: the "
           "system's trusted CAs); its name must match the endpoint's host");
  opts.add("cloud.tls-cert", x.tls.cert, "",
           "PEM client certificate for clouds that require one");
  opts.add("cloud.tls-key", x.tls.key, "", "PEM private key of cloud.tls-cert");
  opts.add("cloud.key-file", x.key_file, "",
           "File holding this device's key (written once by enrollment, "
           "mode 0600); \"\": <data-dir>/device.key");
  opts.add("cloud.enroll-token", x.enroll_token, "",
           "Enrollment token (fleetctl enroll create) used once when the "
           "device has no key yet", false, true);
  opts.add("cloud.enroll-token-file", x.enroll_token_file, "",
           "File holding the enrollment token instead of cloud.enroll-token");
  opts.add("cloud.coalesce-window", x.coalesce_window, 50ms,
           "How long a batch that comes after a quiet spell waits for the "
           "other streams' batches, to share one request with them (0s: "
           "never waits)", 0ms);
  opts.add("cloud.sync-version", x.sync_version, 5, "version",
           "5: as 4, and log lines front-coded, zstd with the sync "
           "dictionary (POST /v5/sync, a lone batch too); "
           "4: as 3, and log timestamps as deltas (POST /v4/sync, zstd as "
           "a whole, a lone logs batch too); 3: several streams' batches "
           "per request, POST /v3/sync (zstd as a whole) when they are "
           "compressed, else POST /v2/sync; 2: POST /v2/sync, each "
           "batch's queued bytes as they are; a node answering 404 gets "
           "the older form; 1: one batch per POST /v1/sync",
           1, 5);
  opts.add_auto_bool("cloud.stream", x.stream,
                     "Sync over one long-lived connection (GET /v5/stream, "
                     "then frames without HTTP headers, each batch "
                     "compressed against the ones before): auto = on when "
                     "sync.interval is 30 s or less and batches are "
                     "compressed; a node without streams gets HTTP");
  opts.add("cloud.insecure", x.insecure, false,
           "Sync over plain HTTP without TLS; allowed only to loopback "
           "endpoints, for local testing");
}

bool stream_wanted(const std::string& setting, int64_t sync_interval_ms,
                   int64_t zstd_level) {
  if (setting != "auto")
    return setting == "true";
  return sync_interval_ms <= 30000 && zstd_level > 0;
}

namespace {

constexpr size_t max_endpoints = 16;


} // namespace

caf::expected<std::vector<cloud_endpoint>>
endpoints_of(const cloud_link_config& x) {
  if (x.endpoints.empty())
    return std::vector<cloud_endpoint>{
      {x.host, static_cast<uint16_t>(x.port)}};
  std::vector<cloud_endpoint> out;
  for (auto item : split_list(x.endpoints, ',')) {
    if (out.size() == max_endpoints)
      return bad_config("cloud.endpoints: more than "
                        + std::to_string(max_endpoints) + " endpoints");
    auto ep = parse_host_port(item, "cloud.endpoints");
    if (!ep)
      return ep.error();
    for (auto& seen : out)
      if (seen.host == ep->host && seen.port == ep->port)
        return bad_config("cloud.endpoints: " + ep->host + ":"
                          + std::to_string(ep->port) + " is listed twice");
    out.push_back(std::move(*ep));
  }
  return out;
}

caf::error validate(const cloud_link_config& x) {
  if (x.endpoints.empty() && x.host.empty())
    return bad_config("cloud.host: must not be empty");
  if (x.endpoints.empty() && (x.port < 1 || x.port > 65535))
    return bad_config("cloud.port: must be 1..65535, got "
                      + std::to_string(x.port));
  auto eps = endpoints_of(x);
  if (!eps)
    return eps.error();
  if (x.timeout.count() <= 0)
    return bad_config("cloud.timeout: must be positive");
  if (x.insecure)
    for (auto& ep : *eps)
      if (!is_loopback_host(ep.host))
        return bad_config("cloud.insecure: plain HTTP is allowed only to a "
                          "loopback address, not " + ep.host);
  if (x.tls.cert.empty() != x.tls.key.empty())
    return bad_config(std::string(x.tls.cert.empty() ? "cloud.tls-cert"
                                                     : "cloud.tls-key")
                      + ": cloud.tls-cert and cloud.tls-key go together");
  if (!x.insecure)
    if (auto err = check_tls_client(x.tls))
      return bad_config("cloud.ca-file/tls-cert/tls-key: " + error_text(err));
  if (x.coalesce_window.count() < 0)
    return bad_config("cloud.coalesce-window: must not be negative");
  if (x.sync_version < 1 || x.sync_version > 5)
    return bad_config("cloud.sync-version: must be 1 to 5, got "
                      + std::to_string(x.sync_version));
  if (x.max_response_bytes == 0)
    return bad_config("cloud_link_config.max_response_bytes: must be positive");
  return caf::none;
}

namespace {

using link_ptr = cloud_link_actor::stateful_pointer<cloud_link_state>;

// Keeps the key where only this user reads it, before it is used.
caf::error save_key(const std::string& path, const std::string& key) {
  auto tmp = path + ".tmp";
  auto fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return make_error(ec::io_error, "cannot create " + tmp + ": "
                                      + strerror(errno));
  auto line = key + "\n";
  bool ok = ::write(fd, line.data(), line.size())
              == static_cast<ssize_t>(line.size())
            && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(ec::io_error, "cannot write " + path);
  return caf::none;
}

// Retry-After in whole seconds (RFC 9110) as milliseconds, at most a day;
// 0 for a date or garbage (the backoff actor clamps what it honours).
int64_t retry_after_header_ms(const std::string& text) {
  auto t = trim(text);
  if (t.empty() || t.size() > 32)
    return 0;
  int64_t s = 0;
  for (unsigned char c : t) {
    if (!std::isdigit(c))
      return 0;
    s = std::min<int64_t>(s * 10 + (c - '0'), 86400);
  }
  return s * 1000;
}

using header_list = std::vector<std::pair<std::string, std::string>>;

// The link stops using the current endpoint: the next one gets the requests
// from now on (round-robin), one warning line per failover, rate-limited.
void fail_over(link_ptr self, const std::string& why) {
  auto& st = self->state;
  if (st.endpoints.size() < 2)
    return;
  auto& from = st.endpoints[st.current];
  from.client->close();
  st.current = (st.current + 1) % st.endpoints.size();
  ++st.failovers;
  log_warning_limited("cloud_link", "failover", "failing over from ",
                      from.url, " to ", st.endpoints[st.current].url, ": ",
                      why);
}

// No answer, or a 5xx, fails over for the requests after this one. A 4xx
// is the cloud's answer: it moves nothing.
void fail_over_unless_answered(link_ptr self,
                               const caf::expected<http_response>& res) {
  if (!res)
    fail_over(self, render(res.error()));
  else if (res->status >= 500)
    fail_over(self, "HTTP " + std::to_string(res->status));
}

// POSTs to the current endpoint (fail_over_unless_answered).
caf::expected<http_response> post(link_ptr self, const std::string& path,
                                  const std::string& body,
                                  const header_list& headers) {
  auto& st = self->state;
  auto res = st.endpoints[st.current].client->post(path, body, headers);
  fail_over_unless_answered(self, res);
  return res;
}

// A key from key_file, or from enrolling with the token; none when the
// device has neither (it then syncs without a key).
caf::error ensure_key(link_ptr self) {
  auto& st = self->state;
  if (!st.authorization.empty())
    return caf::none;
  // An unreadable key is an error, not "no key": enrolling would replace it.
  auto read = read_key_file(st.cfg.key_file);
  if (!read)
    return read.error();
  auto key = std::move(*read);
  auto token = st.cfg.enroll_token;
  if (token.empty()) {
    auto from_file = read_key_file(st.cfg.enroll_token_file);
    if (!from_file)
      return from_file.error();
    token = std::move(*from_file);
  }
  if (key.empty() && !token.empty()) {
    ++st.enrollments;
    auto res = post(self, "/v1/enroll", st.cfg.device_id + "\n",
                    {{"Content-Type", "text/plain"},
                     {"Authorization", "Bearer " + token}});
    if (!res)
      return res.error();
    if (res->status != 200)
      return make_error(ec::remote_error,
                        "enrollment refused (HTTP "
                          + std::to_string(res->status) + "): "
                          + printable(res->error, 200));
    key = std::string(trim(res->body));
    if (auto err = save_key(st.cfg.key_file, key))
      return err;
    log_info("cloud_link", "enrolled as ", st.cfg.device_id, "; key kept in ",
             st.cfg.key_file);
  }
  if (!key.empty())
    st.authorization = "Bearer " + key;
  return caf::none;
}

// A client per endpoint, each verifying its own host name.
caf::error open_endpoints(link_ptr self, const cloud_link_config& cfg) {
  auto eps = endpoints_of(cfg);
  if (!eps)
    return eps.error();
  for (auto& ep : *eps) {
    auto client = std::make_unique<http_client>(ep.host, ep.port, cfg.timeout,
                                                cfg.max_response_bytes);
    if (!cfg.insecure)
      if (auto err = client->use_tls(cfg.tls))
        return err;
    auto host = ep.host.find(':') == std::string::npos ? ep.host
                                                       : "[" + ep.host + "]";
    auto url = (cfg.insecure ? "http://" : "https://") + host + ":"
               + std::to_string(ep.port);
    self->state.endpoints.push_back({std::move(url), std::move(client)});
  }
  return caf::none;
}

// A failed exchange, counted and logged once per new reason.
caf::error link_failed(link_ptr self, const std::string& target,
                       int64_t failovers, caf::error err) {
  auto& st = self->state;
  ++st.failures;
  auto text = render(err);
  // A failover's own line already says what failed.
  if (text != st.last_error && failovers == st.failovers)
    log_warning("cloud_link", target, ": ", text);
  st.last_error = std::move(text);
  return err;
}

void reachable(link_ptr self, const std::string& target) {
  auto& st = self->state;
  if (!st.last_error.empty()) {
    log_info("cloud_link", "cloud reachable again at ", target);
    st.last_error.clear();
  }
}

// One batch's answer (a whole HTTP answer, or a bundle's result with its
// own status): a SyncResponse is the answer; a bare 413 (the server's body
// limit) refuses the batch; anything else without one is a link failure.
caf::expected<sync_ack> answer_of(unsigned status,
                                  caf::expected<sync_ack> ack,
                                  const std::string& body,
                                  const std::string& retry_after,
                                  const std::string& target) {
  if (status == 413 && (!ack || ack->error_code.empty())) {
    sync_ack nack;
    nack.status = status;
    nack.error_code = "http_" + std::to_string(status);
    nack.error_message = body.substr(0, 200);
    return nack;
  }
  if (!ack || (status != 200 && ack->error_code.empty()))
    return make_error(ec::remote_error, "HTTP " + std::to_string(status)
                                          + " from " + target);
  ack->status = status;
  if (ack->retry_after_ms == 0)
    ack->retry_after_ms = retry_after_header_ms(retry_after);
  return std::move(*ack);
}

// The SyncResponse of one POST /v1/sync, or the link failure.
caf::expected<sync_ack> send_v1(link_ptr self, const std::string& body) {
  auto& st = self->state;
  ++st.requests;
  ++st.batches;
  auto target = st.endpoints[st.current].url;
  auto failovers = st.failovers;
  // Content-Type: a node older than v2 refuses a request without it.
  header_list headers{{"Content-Type", "application/x-protobuf"}};
  if (is_zstd(body))
    headers.emplace_back("Content-Encoding", "zstd");
  if (!st.authorization.empty())
    headers.emplace_back("Authorization", st.authorization);
  auto res = post(self, "/v1/sync", body, headers);
  if (!res)
    return link_failed(self, target, failovers, res.error());
  st.bytes_sent += static_cast<int64_t>(body.size());
  st.bytes_received += static_cast<int64_t>(res->body.size());
  auto ack = answer_of(res->status, decode_response(res->body), res->body,
                       res->retry_after, target);
  if (!ack)
    return link_failed(self, target, failovers, ack.error());
  reachable(self, target);
  return ack;
}

using answers = std::vector<caf::expected<sync_ack>>;

// One batch per POST /v1/sync: the configuration says so, or the current
// node answered POST /v2/sync with 404.
bool uses_v1(const cloud_link_state& st) {
  return st.cfg.sync_version == 1 || st.endpoints[st.current].v1_only;
}

// A whole-request answer to POST /v2/sync (no per-batch results): each
// batch gets it; none when a refusal of several batches at once must be
// retried one by one, so each is refused (and counted) for itself.
std::optional<answers> whole_answer(link_ptr self, size_t batches,
                                    const http_response& res,
                                    const std::string& target,
                                    int64_t failovers) {
  auto ack = answer_of(res.status, decode_response(res.body), res.body,
                       res.retry_after, target);
  bool refusal = ack && (ack->status == 400 || ack->status == 409
                         || ack->status == 413 || ack->status == 415
                         || ack->status == 422);
  if (refusal && batches > 1)
    return std::nullopt;
  if (!ack)
    return answers(batches, link_failed(self, target, failovers, ack.error()));
  reachable(self, target);
  return answers(batches, ack);
}

// Per batch its own answer from a 200 SyncBundleResponse.
answers bundle_answers(link_ptr self, size_t batches, const std::string& body,
                       const std::string& target, int64_t failovers) {
  auto results = decode_bundle_response(body, batches);
  if (!results)
    return answers(batches, link_failed(self, target, failovers,
                                        results.error()));
  answers out;
  int64_t unavailable = 0; // a 5xx status of a batch
  bool failed = false;
  for (auto& r : *results) {
    if (r.status >= 500)
      unavailable = r.status;
    auto a = answer_of(static_cast<unsigned>(r.status), r, "", "", target);
    if (!a) {
      failed = true;
      a = link_failed(self, target, failovers, a.error());
    }
    out.push_back(std::move(a));
  }
  // As a v1 request answered 5xx would have.
  if (unavailable)
    fail_over(self, "HTTP " + std::to_string(unavailable) + " for a batch");
  if (!failed)
    reachable(self, target);
  return out;
}

// How a request's batches go to the current node: at sync version 5 zstd
// as a whole with the sync dictionary, each logs batch's timestamps as
// deltas and lines front-coded (POST /v5/sync), a lone batch too; at
// version 4 zstd as a whole with log timestamps as deltas (POST /v4/sync),
// a lone logs batch too; at version 3 (or 4 when nothing is recoded) zstd
// as a whole when several came compressed (POST /v3/sync); otherwise, or
// to a node that answered 404 to those, POST /v2/sync with each batch's
// queued bytes (a lone batch's resends stay byte for byte the queue's).
struct bundle_request {
  bundle_body body;
  /// The form: POST /v<version>/sync.
  int64_t version = 2;
};

bundle_request bundle_for(const cloud_link_state& st,
                          const endpoint_client& ep,
                          const std::vector<std::string>& bodies) {
  auto version = std::min(st.cfg.sync_version, ep.node_version);
  size_t queued = 0;
  for (auto& b : bodies)
    queued += b.size();
  auto level = bundle_zstd_level(queued);
  if (version >= 5) {
    auto body = encode_bundle_body(bodies, level, bundle_coding::log_lines);
    if (body.coded)
      return {std::move(body), 5};
  } else if (version == 4) {
    auto body = encode_bundle_body(bodies, level, bundle_coding::log_times);
    if (body.coded)
      return {std::move(body), 4};
    if (body.zstd && bodies.size() > 1)
      return {std::move(body), 3};
  } else if (version == 3 && bodies.size() > 1) {
    auto body = encode_bundle_body(bodies, level);
    auto form = body.zstd ? 3 : 2;
    return {std::move(body), form};
  }
  return {{encode_bundle(bodies), false}, 2};
}

// The batches as the next frame of the current node's sync stream; none
// when the node did not take the upgrade (404: HTTP from now on) and the
// batches go over HTTP instead.
std::optional<caf::expected<http_response>>
stream_bundle(link_ptr self, const std::vector<std::string>& bodies,
              const header_list& headers) {
  auto& st = self->state;
  auto& ep = st.endpoints[st.current];
  if (!st.cfg.use_stream || ep.no_stream
      || std::min(st.cfg.sync_version, ep.node_version) < 4
      || st.cfg.clock->steady_ms() < ep.stream_retry_ms)
    return std::nullopt;
  // Level 3: a drain's MiB at 19 would take seconds of a device's CPU.
  auto res = ep.client->stream_post(plain_bundle_body(bodies), 3, headers);
  auto framed = ep.client->last_frame_bytes();
  // The upgrade's own answer: no stream here, or not now; HTTP instead.
  if (res && framed == 0) {
    if (res->status == 404) {
      ep.no_stream = true;
      log_info("cloud_link", ep.url, " has no sync stream; syncing over "
               "HTTP requests from now on");
    } else {
      ep.stream_retry_ms = st.cfg.clock->steady_ms()
                           + stream_refused_pause.count();
      log_limited(log_level::info, "cloud_link", "stream_refused", ep.url,
                  " refused a sync stream (HTTP ", res->status,
                  "); HTTP requests for 10 minutes");
    }
    return std::nullopt;
  }
  fail_over_unless_answered(self, res);
  if (!res)
    return res;
  ++st.stream_frames;
  st.bytes_sent += framed;
  st.bytes_received += static_cast<int64_t>(res->body.size());
  return res;
}

// The batches as one bundle (bundle_for); a node that answers 404 to
// POST /v5/sync, /v4/sync or /v3/sync gets the next older form from then
// on. `reversed`: the body carries the batches in the reverse order.
caf::expected<http_response> post_bundle(link_ptr self,
                                         const std::vector<std::string>& bodies,
                                         bool& reversed) {
  auto& st = self->state;
  auto& ep = st.endpoints[st.current];
  reversed = false;
  header_list headers;
  if (!st.authorization.empty())
    headers.emplace_back("Authorization", st.authorization);
  if (auto res = stream_bundle(self, bodies, headers))
    return std::move(*res);
  auto [body, form] = bundle_for(st, ep, bodies);
  auto path = "/v" + std::to_string(form) + "/sync";
  auto res = post(self, path, body.bytes, headers);
  if (!res)
    return res;
  st.bytes_sent += static_cast<int64_t>(body.bytes.size());
  st.bytes_received += static_cast<int64_t>(res->body.size());
  if (form == 2 || res->status != 404) {
    reversed = body.reversed;
    return res;
  }
  ep.node_version = form - 1;
  log_info("cloud_link", ep.url, " has no POST ", path,
           "; sending the older form from now on");
  ++st.requests;
  return post_bundle(self, bodies, reversed); // each 404 turns one form off
}

// The batches as one POST /v2/sync, per batch its own answer; none when
// they must go one by one instead (the node answered 404 and is v1-only
// from now on, or it refused several batches at once). Never calls back.
std::optional<answers> send_v2(link_ptr self,
                               const std::vector<std::string>& bodies) {
  auto& st = self->state;
  auto& ep = st.endpoints[st.current];
  ++st.requests;
  st.batches += static_cast<int64_t>(bodies.size());
  if (bodies.size() > 1)
    ++st.bundles;
  auto target = ep.url;
  auto failovers = st.failovers;
  bool reversed = false;
  auto res = post_bundle(self, bodies, reversed);
  if (!res)
    return answers(bodies.size(), link_failed(self, target, failovers,
                                              res.error()));
  if (res->status == 404) {
    // A node older than v2: it takes the batches one by one.
    ep.v1_only = true;
    log_info("cloud_link", target, " has no POST /v2/sync; sending each "
             "batch as POST /v1/sync");
    return std::nullopt;
  }
  if (res->status != 200)
    return whole_answer(self, bodies.size(), *res, target, failovers);
  auto out = bundle_answers(self, bodies.size(), res->body, target, failovers);
  if (reversed)
    std::reverse(out.begin(), out.end());
  return out;
}

// Each batch in a request of its own: POST /v1/sync, or a bundle of one
// while the node takes bundles.
answers send_each(link_ptr self, const std::vector<std::string>& bodies) {
  answers out;
  for (auto& body : bodies) {
    std::optional<answers> one;
    if (!uses_v1(self->state))
      one = send_v2(self, {body});
    // No answer from v2 for one batch: the node just turned out v1-only.
    out.push_back(one ? std::move(one->front()) : send_v1(self, body));
  }
  return out;
}

// The batches in one request when the node takes them, else one by one.
answers send(link_ptr self, const std::vector<std::string>& bodies) {
  if (bodies.size() > 1 && !uses_v1(self->state))
    if (auto out = send_v2(self, bodies))
      return std::move(*out);
  return send_each(self, bodies);
}

// Sends every waiting batch now, in one request when the node takes them.
void flush(link_ptr self) {
  auto& st = self->state;
  ++st.flush_generation;
  auto waiting = std::move(st.pending);
  st.pending.clear();
  if (waiting.empty())
    return;
  std::vector<std::string> bodies;
  for (auto& w : waiting)
    bodies.push_back(std::move(w.body));
  answers out;
  if (auto err = ensure_key(self))
    out = answers(bodies.size(),
                  link_failed(self, st.endpoints[st.current].url,
                              st.failovers, err));
  else
    out = send(self, bodies);
  // Before the answers: a sync actor (or a test) acting on one at once must
  // find the exchange ended, not the one before. One that reached no node
  // starts no drain: the streams that retry together still share a request.
  if (std::any_of(out.begin(), out.end(),
                  [](const caf::expected<sync_ack>& x) { return static_cast<bool>(x); }))
    st.last_exchange_ms = st.cfg.clock->steady_ms();
  for (size_t i = 0; i < waiting.size(); ++i) {
    if (out[i])
      waiting[i].promise.deliver(std::move(*out[i]));
    else
      waiting[i].promise.deliver(out[i].error());
  }
}

// A batch joins the waiting ones; they go when every stream has one, at
// once during a drain (an exchange ended less than a quiet spell ago),
// else when the window ends.
caf::result<sync_ack> enqueue(link_ptr self, std::string body) {
  auto& st = self->state;
  auto rp = self->make_response_promise<sync_ack>();
  st.pending.push_back({rp, std::move(body)});
  auto window = st.cfg.coalesce_window;
  bool draining = st.last_exchange_ms
                  && st.cfg.clock->steady_ms() - *st.last_exchange_ms
                       < coalesce_quiet_spell.count();
  if (st.pending.size() >= max_bundle_items || window.count() == 0
      || draining || uses_v1(st))
    flush(self);
  else if (st.pending.size() == 1)
    self->delayed_send(self, st.cfg.clock->real(window), tick_atom::value,
                       st.flush_generation);
  return rp;
}

// GET /healthz on the current endpoint: a few hundred bytes, never a batch.
// No answer fails over like a sync would, so probes visit every endpoint.
caf::result<sync_ack> probe_health(link_ptr self) {
  auto& st = self->state;
  ++st.probes;
  auto res = st.endpoints[st.current].client->get("/healthz");
  if (!res) {
    ++st.probes_failed;
    fail_over(self, render(res.error()));
    return res.error();
  }
  st.bytes_received += static_cast<int64_t>(res->body.size());
  sync_ack out;
  out.status = res->status;
  out.success = res->status == 200;
  out.retry_after_ms = retry_after_header_ms(res->retry_after);
  if (!out.success) {
    ++st.probes_failed;
    out.error_code = "http_" + std::to_string(res->status);
    out.error_message = printable(res->error, 200);
    if (res->status >= 500)
      fail_over(self, "HTTP " + std::to_string(res->status));
  }
  return out;
}

actor_stats link_stats(const cloud_link_state& st) {
  actor_stats out;
  out.name = "cloud_link";
  auto& url = st.endpoints[st.current].url;
  out.state = st.last_error.empty()
                ? "connected to " + url
                    + (st.endpoints[st.current].client->streaming()
                         ? " (sync stream)"
                         : "")
                : "failing: " + st.last_error;
  int64_t connects = 0, resumed = 0, stale = 0;
  for (auto& ep : st.endpoints) {
    connects += ep.client->connects();
    resumed += ep.client->resumed();
    stale += ep.client->stale_closes();
  }
  out.counters["requests"] = st.requests;
  out.counters["batches"] = st.batches;
  out.counters["bundles"] = st.bundles;
  out.counters["failures"] = st.failures;
  out.counters["failovers"] = st.failovers;
  out.counters["bytes_sent"] = st.bytes_sent;
  out.counters["stream_frames"] = st.stream_frames;
  out.counters["bytes_received"] = st.bytes_received;
  out.counters["connects"] = connects;
  out.counters["tls_resumed"] = resumed;
  out.counters["stale_connections"] = stale;
  out.counters["enrollments"] = st.enrollments;
  out.counters["health_probes"] = st.probes;
  out.counters["health_probes_failed"] = st.probes_failed;
  return out;
}

} // namespace

cloud_link_actor::behavior_type
cloud_link(cloud_link_actor::stateful_pointer<cloud_link_state> self,
           cloud_link_config cfg) {
  if (stop_on_bad_config(self, "cloud_link", validate(cfg)))
    return cloud_link_actor::behavior_type::make_empty_behavior();
  if (auto err = open_endpoints(self, cfg)) {
    stop_on_bad_config(self, "cloud_link", err);
    return cloud_link_actor::behavior_type::make_empty_behavior();
  }
  if (!cfg.clock)
    cfg.clock = make_system_clock();
  self->state.cfg = std::move(cfg);
  return {
    [self](sync_atom, std::string& body) {
      return enqueue(self, std::move(body));
    },
    [self](tick_atom, int64_t generation) {
      if (generation == self->state.flush_generation)
        flush(self);
    },
    [self](health_atom) { return probe_health(self); },
    [self](stats_atom) { return link_stats(self->state); },
  };
}

caf::expected<std::string> read_key_file(const std::string& path) {
  if (path.empty())
    return std::string{};
  auto fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return std::string{};
    return make_error(ec::io_error, "cannot open " + path + ": "
                                      + std::strerror(errno));
  }
  // A key is one short line: what lies past 4 KiB is not read.
  char buf[4096];
  auto n = ::read(fd, buf, sizeof(buf));
  auto err = errno;
  ::close(fd);
  if (n < 0)
    return make_error(ec::io_error, "cannot read " + path + ": "
                                      + std::strerror(err));
  std::string_view text(buf, static_cast<size_t>(n));
  return std::string(trim(text.substr(0, text.find('\n'))));
}

} // namespace fleetd
