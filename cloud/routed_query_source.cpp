#include "cloud/routed_query_source.hpp"

#include "cloud/clickhouse_query_source.hpp"

namespace fleetd {

const query_source_ptr& route(const query_backends& b, const series_query& q) {
  if (b.hourly_series && rollups_answer(q))
    return b.hourly_series;
  return b.series ? b.series : b.store;
}

namespace {

class routed_query_source : public query_source {
public:
  explicit routed_query_source(query_backends b) : b_(std::move(b)) {
  }

  std::string name() const override {
    auto n = [](const query_source_ptr& x) {
      return x ? x->name() : std::string{"-"};
    };
    return "routed(store " + n(b_.store) + ", series " + n(b_.series)
           + ", hourly " + n(b_.hourly_series) + ", logs " + n(b_.logs) + ")";
  }

  caf::expected<std::vector<query_series>>
  series(const series_query& q, int64_t max_points) override {
    return route(b_, q)->series(q, max_points);
  }

  caf::expected<std::vector<query_log_line>>
  logs(const logs_query& q) override {
    return (b_.logs ? b_.logs : b_.store)->logs(q);
  }

private:
  query_backends b_;
};

} // namespace

query_source_ptr make_routed_query_source(query_backends b) {
  if (!b.series && !b.hourly_series && !b.logs)
    return std::move(b.store);
  return std::make_shared<routed_query_source>(std::move(b));
}

} // namespace fleetd
