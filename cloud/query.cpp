#include "cloud/query.hpp"

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/http_server.hpp"
#include "runtime/json.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

using self_ptr = query_actor::stateful_pointer<query_state>;

http_reply json_reply(std::string body) {
  return http_reply{200, "application/json", std::move(body) + "\n", {}};
}

// An error answer: JSON {"error", "message"} and the X-Fleetd-Error header.
http_reply error_reply(uint16_t status, const std::string& code,
                       const std::string& message) {
  return http_reply{status, "application/json",
                    json_object{}
                        .add("error", code)
                        .add("message", message)
                        .str()
                      + "\n",
                    code + ": " + message};
}

http_reply refused(self_ptr self, const caf::error& err) {
  auto& c = self->state.counters;
  if (is_error(err, ec::conflict)) {
    ++c["bad_request"];
    return error_reply(400, "bad_request", error_text(err));
  }
  if (is_error(err, ec::too_large)) {
    ++c["too_many_points"];
    return error_reply(413, "too_many_points", error_text(err));
  }
  ++c["source_errors"];
  log_warning("query", "source ", self->state.cfg.source->name(), ": ",
              render(err));
  return error_reply(503, "unavailable", "the query source failed; retry");
}

http_reply series(self_ptr self, const std::string& org,
                  const std::string& target) {
  auto& st = self->state;
  auto p = parse_series_query(org, target, st.cfg.limits());
  if (!p)
    return refused(self, p.error());
  auto got = st.cfg.source->series(p->q, st.cfg.max_points);
  if (!got)
    return refused(self, got.error());
  ++st.counters["queries"];
  return json_reply(series_json(*p, *got));
}

http_reply logs(self_ptr self, const std::string& org,
                const std::string& target) {
  auto& st = self->state;
  auto q = parse_logs_query(org, target, st.cfg.limits());
  if (!q)
    return refused(self, q.error());
  auto got = st.cfg.source->logs(*q);
  if (!got)
    return refused(self, got.error());
  ++st.counters["log_queries"];
  return json_reply(logs_json(*q, *got));
}

} // namespace

void declare(option_set& opts, query_config& x) {
  using namespace std::chrono_literals;
  opts.add("query.max-range", x.max_range,
           std::chrono::milliseconds{int64_t{400} * 24 * 3600 * 1000},
           "Longest from..to of one query API request (else 400)", 1s);
  opts.add("query.max-points", x.max_points, 11000, "points",
           "Points one GET /v1/query answer may hold over all its series: "
           "range/step above it is 400, more stored series 413",
           1, 10'000'000);
  opts.add("query.max-log-lines", x.max_log_lines, 5000, "lines",
           "Log lines one GET /v1/logs answer may hold (limit above it is "
           "400)",
           1, 1'000'000);
}

caf::error validate(const query_config& x) {
  if (x.max_range.count() < 1000)
    return bad_config("query.max-range: must be at least 1s");
  if (x.max_points < 1 || x.max_log_lines < 1)
    return bad_config(std::string{x.max_points < 1 ? "query.max-points"
                                                   : "query.max-log-lines"}
                      + ": must be positive");
  return caf::none;
}

query_actor::behavior_type
query(query_actor::stateful_pointer<query_state> self, query_config cfg) {
  if (!cfg.source
      && stop_on_bad_config(self, "query", bad_config("query: no source")))
    return query_actor::behavior_type::make_empty_behavior();
  if (stop_on_bad_config(self, "query", validate(cfg)))
    return query_actor::behavior_type::make_empty_behavior();
  self->state.cfg = std::move(cfg);
  return {
    [self](query_atom, const std::string& org,
           const std::string& target) -> http_reply {
      auto path = target.substr(0, target.find('?'));
      if (path == "/v1/logs")
        return logs(self, org, target);
      return series(self, org, target);
    },
    [self](stats_atom) {
      actor_stats out;
      out.name = "query";
      out.state = "serving";
      out.counters = self->state.counters;
      return out;
    },
  };
}

} // namespace fleetd
