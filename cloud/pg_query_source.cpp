#include "cloud/pg_query_source.hpp"

#include <cstdlib>
#include <limits>

#include "cloud/pg_migrate.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace {

// Log lines are stamped in nanoseconds; queries name milliseconds.
constexpr int64_t ns_per_ms = 1'000'000;

// A float8 as text ("Infinity", "NaN" included); NULL (no sample) is NaN.
double value_or_nan(const pg::result& r, int row, int col) {
  if (r.is_null(row, col))
    return std::numeric_limits<double>::quiet_NaN();
  return std::strtod(std::string{r.text(row, col)}.c_str(), nullptr);
}

class pg_query_source : public query_source {
public:
  explicit pg_query_source(pg::connection conn) : conn_(std::move(conn)) {
  }

  std::string name() const override {
    return "postgresql";
  }

  caf::expected<std::vector<query_series>>
  series(const series_query& q, int64_t max_points) override {
    auto r = in_org(
      q.org,
      "SELECT s.id, s.labels, (p.ts - $3) / $5, avg(p.value), sum(p.value), "
      "count(p.value), min(p.value), max(p.value) FROM points p JOIN series "
      "s ON s.org = p.org AND s.id = p.series_id WHERE p.org = $1 AND "
      "p.device = $2 AND s.name = $6 AND p.ts >= $3 AND p.ts < $4 GROUP BY "
      "s.id, s.labels, 3 ORDER BY s.id, 3 LIMIT $7",
      {q.org, q.device, q.from_ms, q.to_ms, q.step_ms, q.metric,
       max_points + 1});
    if (!r)
      return r.error();
    if (r->rows() > max_points)
      return make_error(ec::too_large,
                        "more than query.max-points ("
                          + std::to_string(max_points)
                          + ") points: narrow the range or raise the step");
    std::vector<query_series> out;
    int64_t last_id = -1;
    for (int i = 0; i < r->rows(); ++i) {
      if (r->int64(i, 0) != last_id) {
        last_id = r->int64(i, 0);
        out.push_back({decode_labels(r->bytea(i, 1)), {}});
      }
      out.back().points.push_back(
        {q.from_ms + r->int64(i, 2) * q.step_ms, value_or_nan(*r, i, 3),
         value_or_nan(*r, i, 4), r->int64(i, 5), value_or_nan(*r, i, 6),
         value_or_nan(*r, i, 7)});
    }
    return out;
  }

  caf::expected<std::vector<query_log_line>>
  logs(const logs_query& q) override {
    auto r = in_org(q.org,
                    "SELECT ts, labels, line FROM logs WHERE org = $1 AND "
                    "device = $2 AND ts >= $3 AND ts < $4 ORDER BY ts, id "
                    "LIMIT $5",
                    {q.org, q.device, q.from_ms * ns_per_ms,
                     q.to_ms * ns_per_ms, q.limit});
    if (!r)
      return r.error();
    std::vector<query_log_line> out;
    for (int i = 0; i < r->rows(); ++i)
      out.push_back({r->int64(i, 0), decode_labels(r->bytea(i, 1)),
                     std::string{r->text(i, 2)}});
    return out;
  }

private:
  // `sql` in a read-only transaction scoped to `org` (Row Level Security),
  // once more on a fresh connection when the server went away.
  caf::expected<pg::result> in_org(const std::string& org, const char* sql,
                                   const pg::params& ps) {
    auto out = once(org, sql, ps);
    if (!out && !conn_.ok()) {
      log_warning("query", "PostgreSQL connection lost; connecting again");
      if (auto err = conn_.reset())
        return err;
      out = once(org, sql, ps);
    }
    return out;
  }

  caf::expected<pg::result> once(const std::string& org, const char* sql,
                                 const pg::params& ps) {
    if (auto err = conn_.begin(org))
      return err;
    auto r = conn_.exec(sql, ps);
    if (!r) {
      conn_.rollback();
      return r.error();
    }
    if (auto err = conn_.commit())
      return err;
    return r;
  }

  pg::connection conn_;
};

} // namespace

caf::expected<query_source_ptr>
open_pg_query_source(const std::string& url, pg::connect_options opts) {
  auto conn = open_node_connection(url, opts);
  if (!conn)
    return conn.error();
  return query_source_ptr{std::make_shared<pg_query_source>(std::move(*conn))};
}

} // namespace fleetd
