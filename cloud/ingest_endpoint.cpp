#include "cloud/ingest_endpoint.hpp"

#include "cloud/ingest.hpp"

#include <caf/event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/wire.hpp"

namespace fleetd {

namespace {

constexpr auto ingest_timeout = std::chrono::seconds(60);

http_reply plain(uint16_t status, const char* code, std::string text) {
  http_reply out;
  out.status = status;
  out.content_type = "text/plain";
  if (status >= 400)
    out.error = code + (": " + text);
  out.body = std::move(text) + "\n";
  return out;
}

} // namespace

ingest_endpoint::ingest_endpoint(caf::actor_system& sys, ingest_actor ingest,
                                 http_limits limits) {
  auto* sys_ptr = &sys;
  server_ = std::make_unique<http_server>(
    limits, [sys_ptr, ingest](http_request req, http_server::respond_fn respond) {
      if (req.target == "/healthz" && req.method == "GET") {
        respond(plain(200, "ok", "ok"));
        return;
      }
      if (req.target != "/v1/sync") {
        respond(plain(404, "not_found", "no such endpoint: " + req.target));
        return;
      }
      if (req.method != "POST") {
        respond(plain(405, "method_not_allowed", "use POST for /v1/sync"));
        return;
      }
      sys_ptr->spawn([ingest, respond, req = std::move(req)](
                       caf::event_based_actor* self) mutable {
        self->request(ingest, ingest_timeout, sync_atom::value,
                      std::move(req.body), std::move(req.content_encoding),
                      std::move(req.content_type))
          .then([self, respond](http_reply& rep) {
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
    });
}

caf::expected<uint16_t> ingest_endpoint::start(const std::string& host,
                                               uint16_t port) {
  return server_->start(host, port);
}

void ingest_endpoint::stop() {
  server_->stop();
}

} // namespace fleetd
