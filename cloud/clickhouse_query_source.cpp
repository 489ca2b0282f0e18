#include "cloud/clickhouse_query_source.hpp"

#include <map>

#include "cloud/clickhouse_text.hpp"
#include "messages/error.hpp"

namespace fleetd {

bool rollups_answer(const series_query& q) {
  return q.step_ms % ms_per_rollup == 0 && q.from_ms % ms_per_rollup == 0
         && q.to_ms % ms_per_rollup == 0 && q.step_ms > 0;
}

namespace {

class clickhouse_query_source : public query_source {
public:
  explicit clickhouse_query_source(std::unique_ptr<clickhouse_sink> ch)
    : ch_(std::move(ch)) {
  }

  std::string name() const override {
    return "clickhouse";
  }

  caf::expected<std::vector<query_series>>
  series(const series_query& q, int64_t max_points) override {
    if (!rollups_answer(q))
      return make_error(ec::bad_config, "ClickHouse rollups answer whole "
                                        "hours only");
    auto rows = ch_->rollup_steps(q.org, q.device, q.metric, q.from_ms / 1000,
                                  q.to_ms / 1000, q.step_ms / 1000, max_points);
    if (!rows)
      return rows.error();
    // Rows come by labels, then step.
    std::vector<query_series> out;
    const std::string* last = nullptr;
    for (auto& r : *rows) {
      if (!last || *last != r.labels)
        out.push_back({parse_canonical_labels(r.labels), {}});
      last = &r.labels;
      out.back().points.push_back({r.hour_s * 1000, r.avg, r.sum,
                                   static_cast<int64_t>(r.count), r.min,
                                   r.max});
    }
    return out;
  }

  caf::expected<std::vector<query_log_line>>
  logs(const logs_query&) override {
    return make_error(ec::bad_config, "ClickHouse holds no log lines");
  }

private:
  std::unique_ptr<clickhouse_sink> ch_;
};

} // namespace

caf::expected<query_source_ptr>
open_clickhouse_query_source(const clickhouse_config& cfg) {
  auto ch = make_clickhouse_sink(cfg);
  if (!ch)
    return ch.error();
  return query_source_ptr{
    std::make_shared<clickhouse_query_source>(std::move(*ch))};
}

} // namespace fleetd
