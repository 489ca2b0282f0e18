#include "cloud/ingest.hpp"

#include <cctype>
#include <cstring>

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

constexpr auto store_timeout = std::chrono::seconds(30);
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
                        const caf::error& err) {
  auto status = http_status(step, err);
  sync_ack nack;
  nack.error_message = error_text(err);
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

// decode -> store -> answer.
caf::result<http_reply> handle(ingest_ptr self, const std::string& body,
                               const std::string& encoding,
                               const std::string& content_type) {
  auto& st = self->state;
  ++st.requests;
  if (auto err = check_envelope(encoding, content_type))
    return answer_error(st, ingest_step::decode, err);
  auto req = decode_request(body, encoding == "zstd",
                            static_cast<size_t>(st.cfg.max_decoded_bytes));
  if (!req)
    return answer_error(st, ingest_step::decode, req.error());
  auto rp = self->make_response_promise<http_reply>();
  self->request(st.cfg.store, store_timeout, write_atom::value,
                std::move(*req))
    .then(
      [self, rp](ingest_outcome& out) mutable {
        rp.deliver(answer_stored(self->state, out));
      },
      [self, rp](caf::error& err) mutable {
        rp.deliver(answer_error(self->state, ingest_step::store, err));
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
    [self](sync_atom, const std::string& body, const std::string& encoding,
           const std::string& content_type) {
      return handle(self, body, encoding, content_type);
    },
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
      for (auto& kv : st.rejected)
        out.counters["rejected_" + kv.first] = kv.second;
      return out;
    },
  };
}

} // namespace fleetd
