#include "cloud/ingest_endpoint.hpp"

#include "cloud/ingest.hpp"

#include <memory>

#include <caf/event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/stream_codec.hpp"
#include "messages/wire.hpp"
#include "runtime/config_check.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

constexpr auto ingest_timeout = std::chrono::seconds(60);
// Ingest answers health after asking the store (2 s): a little more here.
constexpr auto health_timeout = std::chrono::seconds(3);


// 200 "ok" only when ingest and the store behind it answer in time; 503
// naming what does not (a dead actor must not look healthy).
void check_health(caf::actor_system& sys, const health_actor& health,
                  http_server::respond_fn respond) {
  sys.spawn([health, respond](caf::event_based_actor* self) {
    self->request(health, health_timeout, health_atom::value)
      .then(
        [self, respond](std::string& text) {
          respond(text_reply(200, "ok", std::move(text)));
          self->quit();
        },
        [self, respond](caf::error& err) {
          auto why = err == caf::sec::request_receiver_down
                       ? std::string("ingest is down")
                       : render(err);
          respond(text_reply(503, "unhealthy", why));
          self->quit();
        });
  });
}

// Hands a request to the ingest actor from a short-lived actor, so the Asio
// thread never waits; a missing answer is 503 with a retry hint.
template <class Atom>
void ask_ingest(caf::actor_system& sys, const ingest_actor& ingest,
                http_server::respond_fn respond, Atom atom,
                sync_envelope env) {
  sys.spawn([ingest, respond, atom, env = std::move(env)](
              caf::event_based_actor* self) mutable {
    self->request(ingest, ingest_timeout, atom, std::move(env))
      .then(
        [self, respond](http_reply& rep) {
          respond(std::move(rep));
          self->quit();
        },
        [self, respond](caf::error& err) {
          sync_ack nack;
          nack.error_code = "unavailable";
          nack.error_message = render(err);
          nack.retry_after_ms = 1000;
          respond(sync_answer(503, nack));
          self->quit();
        });
  });
}

// A bundle's answer: per item what ingest answered it alone.
http_reply bundle_answer(const std::vector<http_reply>& replies) {
  std::vector<sync_ack> acks;
  for (auto& rep : replies) {
    // No SyncResponse (a text answer): a link failure, as it is in v1.
    auto ack = decode_response(rep.body);
    sync_ack out = ack ? std::move(*ack) : sync_ack{};
    out.status = rep.status;
    acks.push_back(std::move(out));
  }
  http_reply rep;
  rep.body = encode_bundle_response(acks);
  return rep;
}

// A POST /v2/sync on its way through ingest, item by item.
struct bundle_job {
  ingest_actor ingest;
  http_server::respond_fn respond;
  std::vector<bundle_item> items;
  std::string authorization;
  std::vector<http_reply> replies;
};

// Hands the next item to ingest as its own POST /v1/sync would be, in
// order (one decoded at a time); answers once every item has its reply.
void ask_next_item(caf::event_based_actor* self,
                   std::shared_ptr<bundle_job> job) {
  if (job->replies.size() == job->items.size()) {
    job->respond(bundle_answer(job->replies));
    self->quit();
    return;
  }
  auto& item = job->items[job->replies.size()];
  sync_envelope env{std::move(item.request), item.zstd ? "zstd" : "",
                    protobuf_type, job->authorization};
  self->request(job->ingest, ingest_timeout, sync_atom::value, std::move(env))
    .then(
      [self, job](http_reply& rep) {
        job->replies.push_back(std::move(rep));
        ask_next_item(self, job);
      },
      [self, job](caf::error& err) {
        sync_ack nack;
        nack.error_code = "unavailable";
        nack.error_message = render(err);
        nack.retry_after_ms = 1000;
        job->replies.push_back(sync_answer(503, nack));
        ask_next_item(self, job);
      });
}

// A refusal of a whole POST /v2/sync: one SyncResponse with its status.
void refuse_bundle(const http_server::respond_fn& respond,
                   const caf::error& err) {
  sync_ack nack;
  nack.error_code = to_string(static_cast<ec>(err.code()));
  nack.error_message = error_text(err);
  respond(sync_answer(http_status(ingest_step::decode, err), nack));
}

// From a short-lived actor, so the Asio thread never waits (nor
// decompresses): the bundle's items, or its refusal as a whole.
void ask_ingest_items(caf::actor_system& sys, const ingest_actor& ingest,
                      http_server::respond_fn respond, http_request req,
                      size_t max_plain_bytes) {
  sys.spawn([ingest, respond, req = std::move(req),
             max_plain_bytes](caf::event_based_actor* self) mutable {
    // A stream frame is the next part of its connection's zstd frame: a
    // plain v4 body. One too big is refused like a v4 body (413); one that
    // does not decompress gets 500; either answer ends the stream.
    bool zstd = req.target != "/v2/sync";
    if (req.stream) {
      auto plain = req.stream->decode(req.body, max_plain_bytes);
      if (!plain) {
        if (is_error(plain.error(), ec::too_large))
          refuse_bundle(respond, plain.error());
        else
          respond(text_reply(500, "stream_corrupt", render(plain.error())));
        self->quit();
        return;
      }
      req.body = std::move(*plain);
      zstd = false;
    }
    // v3, v4 and v5 are zstd as a whole (v5 with the sync dictionary); v4
    // and v5 items may carry log timestamps as deltas, v5 items log lines
    // front-coded, restored here before ingest reads (and checksums) them.
    auto items = decode_bundle_body(req.body, zstd, max_plain_bytes,
                                    req.stream ? bundle_coding::log_times
                                               : coding_of_path(req.target));
    if (!items) {
      refuse_bundle(respond, items.error());
      self->quit();
      return;
    }
    auto job = std::make_shared<bundle_job>(
      bundle_job{ingest, std::move(respond), std::move(*items),
                 std::move(req.authorization), {}});
    ask_next_item(self, job);
  });
}

// The envelope of POST /v2/sync to /v5/sync: Content-Type may be left out
// (the endpoint has one type); the path says how the bundle is encoded (v3
// to v5: zstd as a whole; v2: each item says its own).
caf::error check_bundle_envelope(const http_request& req) {
  if (!req.content_type.empty() && !is_protobuf_type(req.content_type))
    return make_error(ec::unsupported_media_type,
                      std::string("Content-Type must be ") + protobuf_type
                        + " or absent, not '"
                        + printable(req.content_type, 64) + "'");
  if (!req.content_encoding.empty() && req.content_encoding != "identity")
    return make_error(ec::unsupported_encoding,
                      "a SyncBundle has no Content-Encoding (POST /v3/sync "
                      "is zstd as a whole, the items of /v2/sync say how "
                      "each is)");
  return caf::none;
}

// POST /v2/sync to /v5/sync: refused as a whole (one SyncResponse) when its
// envelope or bundle is bad, else each item answered. A v3 to v5 bundle
// may decompress to no more than a v2 one may be long
// (ingest.max-body-bytes), and its recoded items restore to no more either.
void route_bundle(caf::actor_system& sys, const ingest_actor& ingest,
                  http_request& req, http_server::respond_fn respond,
                  size_t max_body_bytes) {
  if (auto err = check_bundle_envelope(req))
    return refuse_bundle(respond, err);
  ask_ingest_items(sys, ingest, std::move(respond), std::move(req),
                   max_body_bytes);
}

// A query: its token proved by tenancy (401 otherwise), then answered by
// the query actor for that org only; from a short-lived actor, as sync.
void ask_query(caf::actor_system& sys, const query_api& api,
               http_server::respond_fn respond, http_request req) {
  sys.spawn([api, respond, auth = std::move(req.authorization),
             target = std::move(req.target)](caf::event_based_actor* self) {
    auto unavailable = [self, respond](caf::error& err) {
      respond(text_reply(503, "unavailable", render(err)));
      self->quit();
    };
    self->request(api.tenancy, ingest_timeout, api_auth_atom::value, auth)
      .then(
        [self, api, respond, target, unavailable](std::string& org) {
          self->request(api.query, ingest_timeout, query_atom::value, org,
                        target)
            .then(
              [self, respond](http_reply& rep) {
                respond(std::move(rep));
                self->quit();
              },
              unavailable);
        },
        [self, respond, unavailable](caf::error& err) mutable {
          if (err.category() != caf::atom("fleetd")
              || is_error(err, ec::database_error)) {
            unavailable(err);
            return;
          }
          respond(text_reply(401, to_string(static_cast<ec>(err.code())),
                             error_text(err)));
          self->quit();
        });
  });
}

// GET /v1/query or /v1/logs (any query string): handled; else false.
bool route_query(caf::actor_system& sys, const query_api& api,
                 http_request& req, http_server::respond_fn& respond) {
  auto path = req.target.substr(0, req.target.find('?'));
  if (path != "/v1/query" && path != "/v1/logs")
    return false;
  if (!api.query)
    respond(text_reply(404, "not_found", "this node serves no query API"));
  else if (req.method != "GET")
    respond(text_reply(405, "method_not_allowed", "use GET for " + path));
  else
    ask_query(sys, api, std::move(respond), std::move(req));
  return true;
}

} // namespace

http_limits ingest_endpoint_config::limits() const {
  http_limits out;
  out.max_body_bytes = static_cast<size_t>(max_body_bytes);
  out.max_connections = static_cast<size_t>(max_connections);
  out.idle_timeout = idle_timeout;
  out.read_timeout = read_timeout;
  out.max_connections_per_address =
    static_cast<size_t>(max_connections_per_address);
  out.max_inflight_bytes = static_cast<size_t>(max_inflight_bytes);
  out.max_streams = static_cast<size_t>(max_streams);
  out.header_timeout = header_timeout;
  out.min_body_rate = static_cast<size_t>(min_body_rate);
  return out;
}

void declare(option_set& opts, ingest_endpoint_config& x) {
  using namespace std::chrono_literals;
  opts.add("ingest.host", x.host, "127.0.0.1",
           "Address the device-facing HTTP endpoint listens on");
  opts.add("ingest.port", x.port, 7480, "port",
           "TCP port of the ingest endpoint; 0 picks a free port (written to "
           "<data-dir>/ingest.port)",
           0, 65535);
  opts.add_size("ingest.max-body-bytes", x.max_body_bytes, 8 * 1024 * 1024,
                "Largest request body accepted on the wire (else 413)", 1024,
                int64_t{1} << 30);
  opts.add("ingest.max-connections", x.max_connections, 1024, "connections",
           "Open connections beyond this are closed at once", 1, 1000000);
  opts.add("ingest.idle-timeout", x.idle_timeout, 60s,
           "Close a keep-alive connection idle for this long", 100ms);
  opts.add("ingest.read-timeout", x.read_timeout, 30s,
           "Deadline for writing a reply to a client", 100ms);
  opts.add("ingest.max-connections-per-address",
           x.max_connections_per_address, 64, "connections",
           "Connections one client address may hold; more are closed at "
           "accept", 1, 1000000);
  opts.add("ingest.max-streams", x.max_streams, 1024, "streams",
           "Devices that may hold a sync stream (GET /v5/stream, one "
           "compression context of ~230 KiB each) at once; past it they "
           "sync over plain requests; 0 serves no streams", 0, 1000000);
  opts.add_size("ingest.max-inflight-bytes", x.max_inflight_bytes,
                64 * 1024 * 1024,
                "Request bodies held in memory across all connections "
                "(claimed lengths, header to reply); past it 503 with "
                "Retry-After", 1024, int64_t{1} << 34);
  opts.add("ingest.header-timeout", x.header_timeout, 10s,
           "The TLS handshake and a request's whole header must arrive "
           "within this (slower clients are closed)", 100ms);
  opts.add("ingest.min-body-rate", x.min_body_rate, 16 * 1024, "bytes/s",
           "After a grace of ingest.header-timeout a body must keep arriving "
           "at least this fast (its first n bytes by grace + n / rate; a "
           "client that falls behind is closed)", 1, int64_t{1} << 30);
  opts.add("ingest.tls-cert", x.tls.cert, "",
           "PEM certificate chain the endpoint serves HTTPS with (re-read on "
           "SIGHUP)");
  opts.add("ingest.tls-key", x.tls.key, "",
           "PEM private key of ingest.tls-cert (re-read on SIGHUP)");
  opts.add("ingest.tls-client-ca", x.tls.ca, "",
           "PEM CA file: when set, every request needs a client certificate "
           "it signed (else 403 client_certificate_required)");
  opts.add("ingest.insecure", x.insecure, false,
           "Serve plain HTTP without TLS; allowed only on a loopback "
           "ingest.host, for local testing");
}

caf::error validate(const ingest_endpoint_config& x) {
  if (x.host.empty())
    return bad_config("ingest.host: must not be empty");
  if (x.port < 0 || x.port > 65535)
    return bad_config("ingest.port: must be 0..65535, got "
                      + std::to_string(x.port));
  if (x.max_body_bytes < 1)
    return bad_config("ingest.max-body-bytes: must be positive");
  if (x.max_inflight_bytes < x.max_body_bytes)
    return bad_config("ingest.max-inflight-bytes: must be at least "
                      "ingest.max-body-bytes");
  if (x.max_connections < 1)
    return bad_config("ingest.max-connections: must be at least 1");
  if (x.idle_timeout.count() <= 0 || x.read_timeout.count() <= 0)
    return bad_config(std::string{x.idle_timeout.count() <= 0
                                    ? "ingest.idle-timeout"
                                    : "ingest.read-timeout"}
                      + ": must be positive");
  if (x.insecure) {
    if (!is_loopback_host(x.host))
      return bad_config("ingest.insecure: plain HTTP is allowed only on a "
                        "loopback address, not ingest.host = " + x.host);
    if (!x.tls.cert.empty() || !x.tls.key.empty())
      return bad_config("ingest.insecure: set together with ingest.tls-cert "
                        "or ingest.tls-key; pick one");
  } else if (x.tls.cert.empty() || x.tls.key.empty()) {
    return bad_config(std::string(x.tls.cert.empty() ? "ingest.tls-cert"
                                                     : "ingest.tls-key")
                      + ": required for HTTPS (or ingest.insecure = true on "
                        "a loopback address for plain HTTP)");
  } else if (auto err = check_tls_server(x.tls)) {
    return bad_config("ingest.tls-cert/tls-key/tls-client-ca: "
                      + error_text(err));
  }
  return caf::none;
}

ingest_endpoint::ingest_endpoint(caf::actor_system& sys, ingest_actor ingest,
                                 http_limits limits, health_actor health,
                                 query_api api, http_route web) {
  auto* sys_ptr = &sys;
  if (!health)
    health = ingest;
  server_ = std::make_shared<http_server>(
    limits, [sys_ptr, ingest, health, api, web,
             max_body = limits.max_body_bytes](http_request req,
                                               http_server::respond_fn respond) {
      if (web && !req.stream && web(req, respond))
        return;
      if (req.target == "/healthz" && req.method == "GET") {
        check_health(*sys_ptr, health, std::move(respond));
        return;
      }
      if (route_query(*sys_ptr, api, req, respond))
        return;
      if (req.target == "/v2/sync" || req.target == "/v3/sync"
          || req.target == "/v4/sync" || req.target == "/v5/sync"
          || req.stream) {
        if (req.method != "POST")
          respond(text_reply(405, "method_not_allowed", "use POST for "
                                                          + req.target));
        else
          route_bundle(*sys_ptr, ingest, req, std::move(respond), max_body);
        return;
      }
      auto is_sync = req.target == "/v1/sync";
      if (!is_sync && req.target != "/v1/enroll") {
        respond(text_reply(404, "not_found", "no such endpoint: "
                                          + printable(req.target, 64)));
        return;
      }
      if (req.method != "POST") {
        respond(text_reply(405, "method_not_allowed",
                      "use POST for " + req.target));
        return;
      }
      sync_envelope env{std::move(req.body), std::move(req.content_encoding),
                        std::move(req.content_type),
                        std::move(req.authorization)};
      if (is_sync)
        ask_ingest(*sys_ptr, ingest, std::move(respond), sync_atom::value,
                   std::move(env));
      else
        ask_ingest(*sys_ptr, ingest, std::move(respond), enroll_atom::value,
                   std::move(env));
    });
}

caf::expected<uint16_t>
ingest_endpoint::start(const ingest_endpoint_config& cfg) {
  if (!cfg.insecure)
    if (auto err = server_->use_tls(cfg.tls))
      return err;
  if (cfg.max_streams > 0)
    server_->accept_streams();
  return server_->start(cfg.host, static_cast<uint16_t>(cfg.port));
}

caf::error ingest_endpoint::reload_tls() {
  return server_->reload_tls();
}

void ingest_endpoint::stop() {
  server_->stop();
}

} // namespace fleetd
