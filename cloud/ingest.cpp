#include "cloud/ingest.hpp"

#include <cctype>
#include <cstring>

#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "cloud/embedded_tenancy.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/wire.hpp"
#include "runtime/config_check.hpp"
#include "runtime/http_server.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

constexpr auto store_timeout = std::chrono::seconds(30);
constexpr auto tenancy_timeout = std::chrono::seconds(10);
constexpr auto health_timeout = std::chrono::seconds(2);

} // namespace

bool is_protobuf_type(const std::string& content_type) {
  auto type = trim(std::string_view(content_type).substr(
    0, content_type.find(';')));
  if (type.size() != std::strlen(protobuf_type))
    return false;
  for (size_t i = 0; i < type.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(type[i])) != protobuf_type[i])
      return false;
  return true;
}

uint16_t http_status(ingest_step step, const caf::error& err) {
  if (!err)
    return 200;
  if (err.category() != caf::atom("fleetd"))
    return 503;
  switch (static_cast<ec>(err.code())) {
    case ec::missing_key:
    case ec::unknown_key:
    case ec::expired_key:
    case ec::revoked_key:
      return 401;
    case ec::device_mismatch:
      return 403;
    case ec::over_quota:
      return 429;
    case ec::unsupported_media_type:
    case ec::unsupported_encoding:
      return 415;
    case ec::too_large:
      return 413;
    case ec::bad_sequence:
    case ec::session_out_of_sync:
      // In the body a malformed field; against the store a contradiction.
      return step == ingest_step::decode ? 400 : 409;
    case ec::decode_failed:
    case ec::checksum_mismatch:
      return 400;
    case ec::invalid_record:
      // The store cannot hold a record of it as sent.
      return 422;
    default:
      // Whatever the body did wrong is a refusal; a store may recover.
      return step == ingest_step::decode ? 400 : 503;
  }
}

uint16_t store_error_status(const caf::error& err) {
  return http_status(ingest_step::store, err);
}

http_reply sync_answer(uint16_t status, const sync_ack& ack) {
  http_reply out;
  out.status = status;
  out.content_type = protobuf_type;
  out.body = encode_response(ack);
  if (status >= 400)
    out.error = ack.error_code + ": " + ack.error_message;
  return out;
}

void declare(option_set& opts, ingest_config& x) {
  opts.add_size("ingest.max-decoded-bytes", x.max_decoded_bytes,
                64 * 1024 * 1024,
                "Decode budget of one request: the most bytes decoding may "
                "materialise (decompressed body, parsed message, records with "
                "their names and labels); more is refused 413",
                1024, int64_t{4} << 30);
  opts.add("ingest.anonymous", x.anonymous, false,
           "Also accept requests without a device key, as the device they "
           "name (no org); only with ingest.insecure on loopback, for tests");
}

caf::error validate(const ingest_config& x) {
  if (x.max_decoded_bytes < 1)
    return make_error(ec::bad_config,
                      "ingest.max-decoded-bytes: must be positive, got "
                        + std::to_string(x.max_decoded_bytes));
  return caf::none;
}

namespace {

using ingest_ptr = ingest_actor::stateful_pointer<ingest_state>;

// What the request's envelope (headers) says before the body is read.
caf::error check_envelope(const std::string& encoding,
                          const std::string& content_type) {
  if (!is_protobuf_type(content_type))
    return make_error(ec::unsupported_media_type,
                      std::string("Content-Type must be ") + protobuf_type
                        + ", not '" + printable(content_type, 64) + "'");
  if (!encoding.empty() && encoding != "zstd" && encoding != "identity")
    return make_error(ec::unsupported_encoding,
                      "Content-Encoding must be zstd or identity");
  return caf::none;
}

// The answer to a request that failed at `step`: a refusal (counted by code)
// or, when the store may recover, 503 with a retry hint.
http_reply answer_error(ingest_state& st, ingest_step step,
                        const caf::error& err, int64_t retry_after_ms = 0) {
  auto status = http_status(step, err);
  sync_ack nack;
  nack.error_message = error_text(err);
  if (status == 429) {
    ++st.rejected["over_quota"];
    nack.error_code = "over_quota";
    nack.retry_after_ms = retry_after_ms;
    return sync_answer(status, nack);
  }
  if (is_error(err, ec::journal_full)) {
    // Back-pressure: the device keeps the batch and retries after the hint.
    ++st.rejected["journal_full"];
    nack.error_code = "journal_full";
    nack.retry_after_ms = st.cfg.journal_retry_after_ms;
    return sync_answer(status, nack);
  }
  if (status == 503) {
    ++st.store_failures;
    nack.error_code = "store_unavailable";
    nack.error_message = render(err);
    nack.retry_after_ms = 1000;
    return sync_answer(status, nack);
  }
  // Retrying the same bytes cannot help: the device counts it against its
  // sync.max-rejections, not as a link failure.
  nack.error_code = err.category() == caf::atom("fleetd")
                      ? to_string(static_cast<ec>(err.code()))
                      : "refused";
  ++st.rejected[nack.error_code];
  log_limited(log_level::info, "ingest", "rejected_request",
              "rejected request: ", nack.error_code, ": ", nack.error_message);
  return sync_answer(status, nack);
}

// The answer to a stored (or already held) batch.
http_reply answer_stored(ingest_state& st, const ingest_outcome& out) {
  if (out.duplicate)
    ++st.duplicates;
  else
    ++st.accepted;
  st.points += out.stored;
  sync_ack ack;
  ack.success = true;
  ack.last_sequence_ack = out.last_acked;
  ack.config = out.config;
  if (out.config.version > 0)
    ++st.configs_sent;
  return sync_answer(http_status(ingest_step::store, caf::none), ack);
}

void stored(ingest_ptr self, caf::response_promise rp,
            const device_identity& who, decoded_request req, int64_t bytes);

// Tells the outcome listener of a request of a known device refused before
// the store; no sequence, so nothing is counted missing.
void refused(ingest_ptr self, const std::string& device,
             const std::string& stream, int64_t bytes) {
  if (self->state.cfg.outcomes && !device.empty())
    caf::anon_send(self->state.cfg.outcomes, outcome_atom::value,
                   sync_outcome{device, stream, 0, false, bytes, 0});
}

// The store's id of the key's device ("" without a key).
std::string key_device(const device_identity& who) {
  return who.org.empty() ? std::string{} : who.org + "/" + who.device;
}

// After authentication: decode -> the key's device? -> quota -> store.
void authenticated(ingest_ptr self, caf::response_promise rp,
                   const sync_envelope& env, const device_identity& who) {
  auto& st = self->state;
  auto req = decode_request(env.body, env.content_encoding == "zstd",
                            static_cast<size_t>(st.cfg.max_decoded_bytes));
  auto bytes = static_cast<int64_t>(env.body.size());
  if (!req) {
    refused(self, key_device(who), "", bytes);
    rp.deliver(answer_error(st, ingest_step::decode, req.error()));
    return;
  }
  if (who.org.empty() ? !valid_name(req->device_id)
                      : req->device_id != who.device) {
    auto err = who.org.empty()
                 ? make_error(ec::decode_failed, "device_id must be 1-64 of "
                                                 "A-Z a-z 0-9 . _ -")
                 : make_error(ec::device_mismatch,
                              "this key belongs to another device than '"
                                + printable(req->device_id, 64) + "'");
    refused(self, key_device(who), req->stream, bytes);
    rp.deliver(answer_error(st, ingest_step::decode, err));
    return;
  }
  // Before any store: both hold the same text (docs/wire-format.md).
  if (auto n = repair_texts(*req)) {
    st.texts_repaired += n;
    log_limited(log_level::info, "ingest", "texts_repaired",
                "batch ", req->sequence, " of ", printable(req->device_id, 64),
                ": ", n, " text field(s) not UTF-8 or with NUL; bytes "
                "replaced by '?'");
  }
  if (who.org.empty()) {
    stored(self, std::move(rp), who, std::move(*req), bytes);
    return;
  }
  // Everything stored is the authenticated org's device.
  req->device_id = key_device(who);
  self->request(st.cfg.tenancy, tenancy_timeout, quota_atom::value, who.org,
                int64_t{0}, int64_t{0})
    .then(
      [self, rp, who, req = std::move(*req), bytes](int64_t wait) mutable {
        if (wait > 0) {
          refused(self, req.device_id, req.stream, bytes);
          rp.deliver(answer_error(self->state, ingest_step::auth,
                                  make_error(ec::over_quota,
                                             "org '" + who.org
                                               + "' is over its quota"),
                                  wait));
          return;
        }
        stored(self, std::move(rp), who, std::move(req), bytes);
      },
      [self, rp](caf::error& err) mutable {
        rp.deliver(answer_error(self->state, ingest_step::store, err));
      });
}

// Stores the batch, charges the org what it used, answers.
void stored(ingest_ptr self, caf::response_promise rp,
            const device_identity& who, decoded_request req, int64_t bytes) {
  auto& st = self->state;
  sync_outcome seen{req.device_id, req.stream, req.sequence, false, bytes, 0};
  self->request(st.cfg.store, store_timeout, write_atom::value, std::move(req))
    .then(
      [self, rp, who, bytes, seen](ingest_outcome& out) mutable {
        if (!who.org.empty() && !out.duplicate)
          // The answer (the next wait) is the next request's to ask for.
          caf::anon_send(self->state.cfg.tenancy, quota_atom::value, who.org,
                         out.stored, bytes);
        if (out.report_decreased) {
          ++self->state.delivery_reports_ignored;
          log_warning_limited("ingest", "delivery_report",
                              "delivery report of ", seen.device, "/",
                              seen.stream,
                              ": counters that went down within their "
                              "origin add nothing (the batch is stored)");
        }
        seen.accepted = true;
        seen.records = out.stored;
        if (self->state.cfg.outcomes)
          caf::anon_send(self->state.cfg.outcomes, outcome_atom::value, seen);
        rp.deliver(answer_stored(self->state, out));
      },
      [self, rp, seen](caf::error& err) mutable {
        if (self->state.cfg.outcomes)
          caf::anon_send(self->state.cfg.outcomes, outcome_atom::value, seen);
        rp.deliver(answer_error(self->state, ingest_step::store, err));
      });
}

// envelope -> device key (unless anonymous) -> authenticated().
caf::result<http_reply> handle(ingest_ptr self, const sync_envelope& env) {
  auto& st = self->state;
  ++st.requests;
  if (auto err = check_envelope(env.content_encoding, env.content_type))
    return answer_error(st, ingest_step::decode, err);
  auto rp = self->make_response_promise<http_reply>();
  if (env.authorization.empty() && st.cfg.anonymous) {
    authenticated(self, rp, env, device_identity{});
    return rp;
  }
  if (!st.cfg.tenancy) {
    rp.deliver(answer_error(st, ingest_step::auth,
                            make_error(ec::missing_key,
                                       "this node accepts no device keys")));
    return rp;
  }
  self->request(st.cfg.tenancy, tenancy_timeout, auth_atom::value,
                env.authorization)
    .then(
      [self, rp, env](device_identity& who) mutable {
        authenticated(self, std::move(rp), env, who);
      },
      [self, rp](caf::error& err) mutable {
        auto step = err.category() == caf::atom("fleetd") ? ingest_step::auth
                                                          : ingest_step::store;
        rp.deliver(answer_error(self->state, step, err));
      });
  return rp;
}

// POST /v1/enroll: the body is the device id, the token the Authorization.
caf::result<http_reply> enroll(ingest_ptr self, const sync_envelope& env) {
  auto& st = self->state;
  ++st.enroll_requests;
  auto device = std::string(trim(env.body));
  if (!valid_name(device))
    return text_reply(400, "bad_device_id",
                       "the body must be the device id: 1-64 of A-Z a-z 0-9 . "
                       "_ -");
  if (!st.cfg.tenancy)
    return text_reply(503, "unavailable", "this node enrolls no devices");
  auto rp = self->make_response_promise<http_reply>();
  self->request(st.cfg.tenancy, tenancy_timeout, enroll_atom::value,
                env.authorization, device)
    .then(
      [rp](std::string& key) mutable {
        rp.deliver(text_reply(200, "ok", std::move(key)));
      },
      [self, rp](caf::error& err) mutable {
        auto code = err.category() == caf::atom("fleetd")
                      ? static_cast<ec>(err.code())
                      : ec::unreachable;
        ++self->state.rejected["enroll_" + std::string(to_string(code))];
        auto status = code == ec::bad_enroll_token ? 401
                      : code == ec::conflict       ? 409
                                                   : 503;
        rp.deliver(text_reply(status, to_string(code), error_text(err)));
      });
  return rp;
}

// The node is healthy when ingest and the store both answer in time.
caf::result<std::string> health(ingest_ptr self) {
  auto rp = self->make_response_promise<std::string>();
  self->request(self->state.cfg.store, health_timeout, stats_atom::value)
    .then([rp](actor_stats&) mutable { rp.deliver(std::string{"ok"}); },
          [rp](caf::error& err) mutable {
            rp.deliver(make_error(ec::unreachable,
                                  "cloud_store does not answer: "
                                    + render(err)));
          });
  return rp;
}

} // namespace

ingest_actor::behavior_type
ingest(ingest_ptr self, ingest_config cfg) {
  if (stop_on_bad_config(self, "ingest", validate(cfg)))
    return ingest_actor::behavior_type::make_empty_behavior();
  self->state.cfg = std::move(cfg);
  return {
    [self](sync_atom, const sync_envelope& env) { return handle(self, env); },
    [self](enroll_atom, const sync_envelope& env) { return enroll(self, env); },
    [self](health_atom) { return health(self); },
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = "ingest";
      out.state = "serving";
      out.counters["requests"] = st.requests;
      out.counters["accepted"] = st.accepted;
      out.counters["duplicates"] = st.duplicates;
      out.counters["points"] = st.points;
      out.counters["store_failures"] = st.store_failures;
      out.counters["configs_sent"] = st.configs_sent;
      out.counters["enroll_requests"] = st.enroll_requests;
      out.counters["texts_repaired"] = st.texts_repaired;
      out.counters["delivery_reports_ignored"] = st.delivery_reports_ignored;
      for (auto& kv : st.rejected)
        out.counters["rejected_" + kv.first] = kv.second;
      return out;
    },
  };
}

} // namespace fleetd
