#include "cloud/ingest.hpp"

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace {

constexpr auto store_timeout = std::chrono::seconds(30);
constexpr const char* protobuf_type = "application/x-protobuf";

http_reply answer(uint16_t status, const sync_ack& ack) {
  http_reply out;
  out.status = status;
  out.content_type = protobuf_type;
  out.body = encode_response(ack);
  return out;
}

} // namespace

ingest_actor::behavior_type
ingest(ingest_actor::stateful_pointer<ingest_state> self, ingest_config cfg) {
  self->state.cfg = std::move(cfg);
  return {
    [self](sync_atom, const std::string& body,
           const std::string& encoding) -> caf::result<http_reply> {
      auto& st = self->state;
      ++st.requests;
      if (!encoding.empty() && encoding != "zstd" && encoding != "identity") {
        ++st.rejected["unsupported_encoding"];
        sync_ack nack;
        nack.error_code = "unsupported_encoding";
        nack.error_message = "Content-Encoding must be zstd or identity";
        return answer(415, nack);
      }
      auto req = decode_request(body, encoding == "zstd",
                                st.cfg.max_decoded_bytes);
      if (!req) {
        auto code = to_string(static_cast<ec>(req.error().code()));
        ++st.rejected[code];
        sync_ack nack;
        nack.error_code = code;
        nack.error_message = render(req.error());
        log_info("ingest", "rejected request: ", nack.error_message);
        return answer(static_cast<ec>(req.error().code()) == ec::too_large
                        ? 413
                        : 400,
                      nack);
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
            rp.deliver(answer(200, ack));
          },
          [self, rp](caf::error& err) mutable {
            auto code = err.category() == caf::atom("fleetd")
                          ? static_cast<ec>(err.code())
                          : ec::none;
            if (code == ec::bad_sequence || code == ec::session_out_of_sync
                || code == ec::decode_failed) {
              // The batch contradicts what the cloud holds or does not
              // decode: retrying the same bytes cannot help.
              ++self->state.rejected[to_string(code)];
              sync_ack nack;
              nack.error_code = to_string(code);
              nack.error_message = render(err);
              log_info("ingest", "rejected request: ", nack.error_message);
              rp.deliver(answer(code == ec::decode_failed ? 400 : 409, nack));
              return;
            }
            ++self->state.store_failures;
            sync_ack nack;
            nack.error_code = "store_unavailable";
            nack.error_message = render(err);
            nack.retry_after_ms = 1000;
            rp.deliver(answer(503, nack));
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
