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

uint16_t store_error_status(const caf::error& err) {
  if (err.category() != caf::atom("fleetd"))
    return 503;
  switch (static_cast<ec>(err.code())) {
    case ec::bad_sequence:
    case ec::session_out_of_sync:
      // The batch contradicts what the cloud holds.
      return 409;
    case ec::decode_failed:
    case ec::checksum_mismatch:
      return 400;
    case ec::too_large:
      return 413;
    case ec::invalid_record:
      // The store cannot hold a record of it as sent.
      return 422;
    default:
      return 503;
  }
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
                "Largest request body after decompression (else 413)", 1024,
                int64_t{4} << 30);
}

caf::error validate(const ingest_config& x) {
  if (x.max_decoded_bytes < 1)
    return make_error(ec::bad_config,
                      "ingest.max-decoded-bytes: must be positive, got "
                        + std::to_string(x.max_decoded_bytes));
  return caf::none;
}

ingest_actor::behavior_type
ingest(ingest_actor::stateful_pointer<ingest_state> self, ingest_config cfg) {
  if (stop_on_bad_config(self, "ingest", validate(cfg)))
    return ingest_actor::behavior_type::make_empty_behavior();
  self->state.cfg = std::move(cfg);
  return {
    [self](sync_atom, const std::string& body, const std::string& encoding,
           const std::string& content_type) -> caf::result<http_reply> {
      auto& st = self->state;
      ++st.requests;
      if (!is_protobuf_type(content_type)) {
        ++st.rejected["unsupported_media_type"];
        sync_ack nack;
        nack.error_code = "unsupported_media_type";
        nack.error_message = std::string("Content-Type must be ")
                             + protobuf_type + ", not '"
                             + printable(content_type, 64) + "'";
        return sync_answer(415, nack);
      }
      if (!encoding.empty() && encoding != "zstd" && encoding != "identity") {
        ++st.rejected["unsupported_encoding"];
        sync_ack nack;
        nack.error_code = "unsupported_encoding";
        nack.error_message = "Content-Encoding must be zstd or identity";
        return sync_answer(415, nack);
      }
      auto req = decode_request(body, encoding == "zstd",
                                static_cast<size_t>(st.cfg.max_decoded_bytes));
      if (!req) {
        auto code = to_string(static_cast<ec>(req.error().code()));
        ++st.rejected[code];
        sync_ack nack;
        nack.error_code = code;
        nack.error_message = render(req.error());
        log_limited(log_level::info, "ingest", "rejected_request",
                  "rejected request: ", nack.error_message);
        auto too_large = static_cast<ec>(req.error().code()) == ec::too_large;
        return sync_answer(too_large ? 413 : 400, nack);
      }
      ingest_batch b;
      b.device_id = std::move(req->device_id);
      b.stream = std::move(req->stream);
      b.epoch = std::move(req->epoch);
      b.checksum = std::move(req->checksum);
      b.sequence = req->sequence;
      b.config_version = req->config_version;
      b.samples = std::move(req->samples);
      b.columnar = std::move(req->columnar);
      b.logs = std::move(req->logs);
      b.events = std::move(req->events);
      b.retry_count = req->retry_count;
      b.capability = req->capability;
      auto rp = self->make_response_promise<http_reply>();
      self->request(st.cfg.store, store_timeout, write_atom::value,
                    std::move(b))
        .then(
          [self, rp](ingest_outcome& out) mutable {
            auto& st = self->state;
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
            rp.deliver(sync_answer(200, ack));
          },
          [self, rp](caf::error& err) mutable {
            auto status = store_error_status(err);
            if (status != 503) {
              // Retrying the same bytes cannot help: a refusal the device
              // counts against its max_rejections, not a link failure.
              auto code = to_string(static_cast<ec>(err.code()));
              ++self->state.rejected[code];
              sync_ack nack;
              nack.error_code = code;
              nack.error_message = render(err);
              log_limited(log_level::info, "ingest", "rejected_request",
                  "rejected request: ", nack.error_message);
              rp.deliver(sync_answer(status, nack));
              return;
            }
            ++self->state.store_failures;
            sync_ack nack;
            nack.error_code = "store_unavailable";
            nack.error_message = render(err);
            nack.retry_after_ms = 1000;
            rp.deliver(sync_answer(503, nack));
          });
      return rp;
    },
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
