#include "cloud/embedded_query_source.hpp"

#include <cmath>
#include <limits>

#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "runtime/sqlite.hpp"

namespace fleetd {

namespace {

// Log lines are stamped in nanoseconds; queries name milliseconds.
constexpr int64_t ns_per_ms = 1'000'000;

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

// A nullable aggregate: NULL (no sample left, or +Inf + -Inf) is NaN.
double value_or_nan(const sqlite::statement& st, int col) {
  return st.column_is_null(col) ? nan_value : st.column_double(col);
}

class embedded_query_source : public query_source {
public:
  explicit embedded_query_source(sqlite::database db) : db_(std::move(db)) {
  }

  std::string name() const override {
    return "embedded";
  }

  caf::expected<std::vector<query_series>>
  series(const series_query& q, int64_t max_points) override {
    // The store keys a device as "<org>/<device>"; neither holds a '/'.
    auto st = db_.prepare(
      "SELECT p.series_id, s.labels, (p.ts - ?3) / ?5, avg(p.value), "
      "sum(p.value), count(p.value), min(p.value), max(p.value) FROM points "
      "p JOIN series s ON s.id = p.series_id WHERE p.device_id = ?1 AND "
      "s.name = ?2 AND p.ts >= ?3 AND p.ts < ?4 GROUP BY p.series_id, 3 "
      "ORDER BY p.series_id, 3 LIMIT ?6");
    if (!st)
      return st.error();
    st->bind(1, q.org + "/" + q.device).bind(2, q.metric).bind(3, q.from_ms);
    st->bind(4, q.to_ms).bind(5, q.step_ms).bind(6, max_points + 1);
    std::vector<query_series> out;
    int64_t last_id = -1;
    int64_t n = 0;
    if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
          ++n;
          if (r.column_int(0) != last_id) {
            last_id = r.column_int(0);
            out.push_back({decode_labels(r.column_blob(1)), {}});
          }
          out.back().points.push_back(
            {q.from_ms + r.column_int(2) * q.step_ms, value_or_nan(r, 3),
             value_or_nan(r, 4), r.column_int(5), value_or_nan(r, 6),
             value_or_nan(r, 7)});
        }))
      return err;
    if (n > max_points)
      return make_error(ec::too_large,
                        "more than query.max-points ("
                          + std::to_string(max_points)
                          + ") points: narrow the range or raise the step");
    return out;
  }

  caf::expected<std::vector<query_log_line>>
  logs(const logs_query& q) override {
    auto st = db_.prepare("SELECT ts, labels, line FROM logs WHERE device_id "
                          "= ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts, rowid "
                          "LIMIT ?4");
    if (!st)
      return st.error();
    st->bind(1, q.org + "/" + q.device).bind(2, q.from_ms * ns_per_ms);
    st->bind(3, q.to_ms * ns_per_ms);
    st->bind(4, q.limit);
    std::vector<query_log_line> out;
    if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
          out.push_back({r.column_int(0), decode_labels(r.column_blob(1)),
                         r.column_text(2)});
        }))
      return err;
    return out;
  }

private:
  sqlite::database db_;
};

} // namespace

caf::expected<query_source_ptr>
open_embedded_query_source(const std::string& path) {
  auto db = sqlite::database::open(path, "NORMAL");
  if (!db)
    return db.error();
  return query_source_ptr{
    std::make_shared<embedded_query_source>(std::move(*db))};
}

} // namespace fleetd
