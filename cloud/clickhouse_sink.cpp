#include "cloud/clickhouse_sink.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>
#include <tuple>

#include "cloud/clickhouse_text.hpp"
#include "messages/error.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

constexpr int64_t ms_per_hour = 3600 * 1000;
// Date and DateTime of 18.16 end in 2105/2106: refuse from 2100 on.
constexpr int64_t max_ts_ms = 4102444800000;
constexpr size_t max_answer_bytes = size_t{64} << 20;
constexpr size_t max_points = 100000;
// A recompute statement's length: ClickHouse refuses a query text over
// max_query_size (256 KiB by default) as a syntax error.
constexpr size_t max_statement_bytes = 128 * 1024;

// ClickHouse error codes of input it cannot take as sent (parse, type,
// range): retrying the same rows cannot help.
bool refuses_input(int code) {
  static const std::set<int> codes{6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 131};
  return codes.count(code) > 0;
}

// "Code: 27, e.displayText() = ..." -> 27 (0 when absent).
int exception_code(const std::string& body) {
  if (body.rfind("Code: ", 0) != 0)
    return 0;
  return std::atoi(body.c_str() + 6);
}

// 400 and input errors refuse the records; anything else (5xx, auth, a
// missing table) is the server's state, which a retry may find fixed.
caf::error map_answer(const http_response& res) {
  if (res.status == 200)
    return caf::none;
  auto text = "ClickHouse HTTP " + std::to_string(res.status) + ": "
              + res.body.substr(0, 500);
  if (res.status == 400 || refuses_input(exception_code(res.body)))
    return make_error(ec::invalid_record, std::move(text));
  return make_error(ec::remote_error, std::move(text));
}

struct endpoint {
  bool tls = false;
  std::string host;
  uint16_t port = 0;
};

caf::expected<endpoint> parse_url(const std::string& url) {
  endpoint out;
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    out.tls = true;
    rest = url.substr(8);
  } else {
    return make_error(ec::bad_config, "sinks.clickhouse.url: want "
                                      "http://host:port or https://host:port");
  }
  if (!rest.empty() && rest.back() == '/')
    rest.pop_back();
  auto colon = rest.rfind(':');
  auto port = colon == std::string::npos ? 0 : std::atoi(rest.c_str() + colon + 1);
  if (colon == 0 || port <= 0 || port > 65535
      || rest.find('/') != std::string::npos)
    return make_error(ec::bad_config,
                      "sinks.clickhouse.url: want a host and a port");
  out.host = rest.substr(0, colon);
  if (out.host.size() > 2 && out.host.front() == '[')
    out.host = out.host.substr(1, out.host.size() - 2);
  out.port = static_cast<uint16_t>(port);
  return out;
}

bool plain_name(const std::string& s) {
  if (s.empty() || s.size() > 64)
    return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      return false;
  return true;
}

// Table names: the local tables, or the Distributed ones over them.
std::string table(const clickhouse_config& x, const std::string& name) {
  return "`" + x.database + "`.`" + name + (x.cluster.empty() ? "" : "_dist")
         + "`";
}

std::string sample_row(const journal_entry& e, const metric_sample& s,
                       const std::string& labels) {
  std::string row;
  row += std::to_string(s.timestamp_ms);
  for (auto* text : {&e.org, &e.device, &s.name, &labels}) {
    row += '\t';
    row += ch_escape(*text);
  }
  row += '\t';
  row += ch_double(s.value);
  row += '\n';
  return row;
}

// The key a recompute filters on: (org, device, hour) as SQL tuple text.
std::string touched_key(const journal_entry& e, int64_t ts_ms) {
  return "(" + ch_literal(e.org) + "," + ch_literal(e.device) + ","
         + std::to_string(ts_ms / ms_per_hour) + ")";
}

} // namespace

void declare(option_set& opts, clickhouse_config& x) {
  opts.add("sinks.clickhouse.url", x.url, "",
           "ClickHouse's HTTP interface, http://host:port (empty: no "
           "ClickHouse sink)");
  opts.add("sinks.clickhouse.database", x.database, "fleetd",
           "ClickHouse database of the samples and rollups (letters, digits, _)");
  opts.add("sinks.clickhouse.user", x.user, "",
           "ClickHouse user (empty: the server's default user)");
  opts.add("sinks.clickhouse.password", x.password, "",
           "ClickHouse password of sinks.clickhouse.user", false, true);
  opts.add("sinks.clickhouse.timeout", x.timeout, std::chrono::seconds{10},
           "deadline of one ClickHouse request", std::chrono::milliseconds{1});
  opts.add("sinks.clickhouse.batch-rows", x.batch_rows, 50000, "rows",
           "samples per INSERT into ClickHouse", 1, 10000000);
  opts.add("sinks.clickhouse.cluster", x.cluster, "",
           "cluster (remote_servers) to write through Distributed tables; "
           "empty: one server");
}

caf::error validate(const clickhouse_config& x) {
  if (auto ep = parse_url(x.url); !ep)
    return ep.error();
  if (!plain_name(x.database))
    return make_error(ec::bad_config, "sinks.clickhouse.database: letters, "
                                      "digits and _ only, 1-64 of them");
  if (!x.cluster.empty() && !plain_name(x.cluster))
    return make_error(ec::bad_config, "sinks.clickhouse.cluster: letters, "
                                      "digits and _ only, 1-64 of them");
  if (x.batch_rows < 1)
    return make_error(ec::bad_config, "sinks.clickhouse.batch-rows: at least 1");
  return caf::none;
}

std::vector<std::string> clickhouse_schema(const clickhouse_config& x) {
  auto db = "`" + x.database + "`";
  std::vector<std::string> out{
    "CREATE DATABASE IF NOT EXISTS " + db,
    // The sort key is the sample's identity: a replayed sample collapses.
    "CREATE TABLE IF NOT EXISTS " + db
      + ".`samples` (date Date MATERIALIZED toDate(toDateTime(intDiv(ts_ms, "
        "1000))), ts_ms Int64, org_id String, device_id String, metric "
        "String, labels String, value Float64) ENGINE = ReplacingMergeTree "
        "PARTITION BY toYYYYMM(date) ORDER BY (org_id, device_id, metric, "
        "labels, ts_ms)",
    // One row per series and hour survives: the one computed from most points.
    "CREATE TABLE IF NOT EXISTS " + db
      + ".`rollup_hourly` (hour DateTime, org_id String, device_id String, "
        "metric String, labels String, sum Float64, count UInt64, min "
        "Float64, max Float64, points UInt64) ENGINE = "
        "ReplacingMergeTree(points) PARTITION BY toYYYYMM(hour) ORDER BY "
        "(org_id, device_id, metric, labels, hour)"};
  if (x.cluster.empty())
    return out;
  for (auto name : {"samples", "rollup_hourly"})
    // A series lives on one shard, so FINAL and argMax work per shard.
    out.push_back("CREATE TABLE IF NOT EXISTS " + db + ".`" + name
                  + "_dist` AS " + db + ".`" + name + "` ENGINE = Distributed("
                  + x.cluster + ", " + x.database + ", " + name
                  + ", cityHash64(org_id, device_id))");
  return out;
}

clickhouse_sink::clickhouse_sink(clickhouse_config cfg) : cfg_(std::move(cfg)) {
  auto ep = parse_url(cfg_.url);
  client_ = std::make_unique<http_client>(ep ? ep->host : "", ep ? ep->port : 0,
                                          cfg_.timeout, max_answer_bytes);
  if (ep && ep->tls)
    setup_error_ = client_->use_tls({});
  if (!cfg_.user.empty())
    headers_ = {{"X-ClickHouse-User", cfg_.user},
                {"X-ClickHouse-Key", cfg_.password}};
}

clickhouse_sink::~clickhouse_sink() = default;

std::string clickhouse_sink::name() const {
  return "clickhouse";
}

caf::expected<std::string> clickhouse_sink::post(const std::string& body,
                                                 bool insert) {
  if (setup_error_)
    return setup_error_;
  // Through Distributed tables an INSERT returns only once every shard has
  // it, so that the recompute after it reads it.
  std::string target = insert && !cfg_.cluster.empty()
                         ? "/?insert_distributed_sync=1"
                         : "/";
  auto res = client_->post(target, body, headers_);
  if (!res)
    return res.error();
  if (auto err = map_answer(*res)) {
    // A dropped table or database comes back with the schema next time.
    if (res->status == 404)
      schema_ready_ = false;
    return err;
  }
  return std::move(res->body);
}

caf::expected<std::string> clickhouse_sink::execute(const std::string& sql) {
  return post(sql, false);
}

caf::error clickhouse_sink::create_schema() {
  for (auto& sql : clickhouse_schema(cfg_))
    if (auto res = post(sql, false); !res)
      return res.error();
  schema_ready_ = true;
  return caf::none;
}

caf::error clickhouse_sink::write(const journal_entries& entries) {
  if (!schema_ready_)
    if (auto err = create_schema())
      return err;
  touched_hours touched;
  if (auto err = insert_samples(entries, touched))
    return err;
  return recompute(touched);
}

caf::error clickhouse_sink::insert_samples(const journal_entries& entries,
                                           touched_hours& touched) {
  auto head = "INSERT INTO " + table(cfg_, "samples")
              + " (ts_ms, org_id, device_id, metric, labels, value) FORMAT "
                "TabSeparated\n";
  std::set<std::string> keys;
  std::string body = head;
  int64_t rows = 0;
  auto flush = [&]() -> caf::error {
    if (rows == 0)
      return caf::none;
    if (auto res = post(body, true); !res)
      return res.error();
    rows_written_ += rows;
    rows = 0;
    body = head;
    return caf::none;
  };
  for (auto& e : entries) {
    for (auto& s : e.samples) {
      if (s.timestamp_ms < 0 || s.timestamp_ms >= max_ts_ms) {
        ++rejected_;
        continue;
      }
      body += sample_row(e, s, canonical_labels(s.labels));
      keys.insert(touched_key(e, s.timestamp_ms));
      touched.min_ms = std::min(touched.min_ms, s.timestamp_ms);
      touched.max_ms = std::max(touched.max_ms, s.timestamp_ms);
      if (++rows == cfg_.batch_rows)
        if (auto err = flush())
          return err;
    }
  }
  touched.keys.assign(keys.begin(), keys.end());
  return flush();
}

// Each touched (org, device, hour) is computed again from the deduplicated
// raw rows; finite values only go into sum, count, min and max.
caf::error clickhouse_sink::recompute(const touched_hours& touched) {
  if (touched.keys.empty())
    return caf::none;
  // The date bounds prune partitions; the key tuples pick the rows.
  auto dates = "date >= toDate(toDateTime(" + std::to_string(touched.min_ms / 1000)
               + ")) AND date <= toDate(toDateTime("
               + std::to_string(touched.max_ms / 1000) + ")) AND ";
  auto head
    = "INSERT INTO " + table(cfg_, "rollup_hourly")
      + " (hour, org_id, device_id, metric, labels, sum, count, min, max, "
        "points) SELECT toDateTime(h * 3600) AS hour, org_id, device_id, "
        "metric, labels, sumIf(value, isFinite(value)), "
        "countIf(isFinite(value)), minIf(value, isFinite(value)), "
        "maxIf(value, isFinite(value)), count() FROM "
      + table(cfg_, "samples")
      + " FINAL WHERE " + dates
      + "(org_id, device_id, intDiv(ts_ms, 3600000) AS h) IN (";
  auto tail = ") GROUP BY org_id, device_id, metric, labels, h";
  auto& keys = touched.keys;
  for (size_t i = 0; i < keys.size();) {
    auto sql = head + keys[i++];
    while (i < keys.size()
           && sql.size() + keys[i].size() < max_statement_bytes)
      sql += "," + keys[i++];
    if (auto res = post(sql + tail, true); !res)
      return res.error();
  }
  return caf::none;
}

// One row per series and hour (labels, h, s, c, mn, mx): the row computed
// from most points, as the sink's replays leave it.
std::string clickhouse_sink::hours_sql(const std::string& org,
                                       const std::string& device,
                                       const std::string& metric,
                                       int64_t from_s, int64_t to_s) const {
  return "SELECT labels, toUInt32(hour) AS h, argMax(sum, points) AS s, "
         "argMax(count, points) AS c, argMax(min, points) AS mn, "
         "argMax(max, points) AS mx FROM "
         + table(cfg_, "rollup_hourly") + " WHERE org_id = " + ch_literal(org)
         + " AND device_id = " + ch_literal(device)
         + " AND metric = " + ch_literal(metric) + " AND hour >= toDateTime("
         + std::to_string(std::max<int64_t>(from_s, 0))
         + ") AND hour < toDateTime("
         + std::to_string(std::clamp<int64_t>(to_s, 0, max_ts_ms / 1000))
         + ") GROUP BY labels, hour";
}

caf::expected<std::vector<rollup_point>>
clickhouse_sink::rollup_query(const std::string& org, const std::string& device,
                              const std::string& metric, int64_t from_s,
                              int64_t to_s) {
  auto rows = rollup_rows(hours_sql(org, device, metric, from_s, to_s)
                            + " ORDER BY labels, h LIMIT "
                            + std::to_string(max_points)
                            + " FORMAT TabSeparated",
                          max_points);
  if (!rows)
    return rows.error();
  return std::move(rows->points);
}

caf::expected<clickhouse_sink::rollup_answer>
clickhouse_sink::rollup_rows(const std::string& sql, size_t max_rows) {
  auto body = post(sql, false);
  if (!body)
    return body.error();
  rollup_answer out;
  for (auto& row : ch_rows(*body, max_rows, out.truncated)) {
    if (row.size() != 6)
      return make_error(ec::decode_failed, "ClickHouse answered a row of "
                                             + std::to_string(row.size())
                                             + " fields, want 6");
    rollup_point p;
    p.labels = row[0];
    p.hour_s = std::strtoll(row[1].c_str(), nullptr, 10);
    p.sum = std::strtod(row[2].c_str(), nullptr);
    p.count = std::strtoull(row[3].c_str(), nullptr, 10);
    p.min = p.count > 0 ? std::strtod(row[4].c_str(), nullptr) : std::nan("");
    p.max = p.count > 0 ? std::strtod(row[5].c_str(), nullptr) : std::nan("");
    p.avg = p.count > 0 ? p.sum / static_cast<double>(p.count) : std::nan("");
    out.points.push_back(std::move(p));
  }
  return out;
}

caf::expected<std::vector<rollup_point>>
clickhouse_sink::rollup_steps(const std::string& org, const std::string& device,
                              const std::string& metric, int64_t from_s,
                              int64_t to_s, int64_t step_s,
                              int64_t max_points) {
  auto hours = hours_sql(org, device, metric, from_s, to_s);
  auto from = std::to_string(std::max<int64_t>(from_s, 0));
  auto step = std::to_string(std::max<int64_t>(step_s, 3600));
  // Hour steps are the hourly rows themselves; longer steps sum them (min
  // and max over the hours that held a finite sample).
  auto sql = step_s <= 3600
               ? hours
               : "SELECT labels, " + from + " + intDiv(h - " + from + ", "
                   + step + ") * " + step + " AS k, sum(s), sum(c), "
                   "minIf(mn, c > 0), maxIf(mx, c > 0) FROM (" + hours
                   + ") GROUP BY labels, k";
  sql += std::string{" ORDER BY labels, "} + (step_s <= 3600 ? "h" : "k")
         + " LIMIT " + std::to_string(max_points + 1) + " FORMAT TabSeparated";
  auto rows = rollup_rows(sql, static_cast<size_t>(max_points) + 1);
  if (!rows)
    return rows.error();
  if (rows->truncated || static_cast<int64_t>(rows->points.size()) > max_points)
    return make_error(ec::too_large,
                      "more than query.max-points (" + std::to_string(max_points)
                        + ") points: narrow the range or raise the step");
  return std::move(rows->points);
}

caf::expected<std::unique_ptr<clickhouse_sink>>
make_clickhouse_sink(const clickhouse_config& cfg) {
  if (auto err = validate(cfg))
    return err;
  return std::make_unique<clickhouse_sink>(cfg);
}

caf::expected<std::vector<rollup_point>>
clickhouse_rollup_query(clickhouse_sink& sink, const std::string& org,
                        const std::string& device, const std::string& metric,
                        int64_t from_s, int64_t to_s) {
  return sink.rollup_query(org, device, metric, from_s, to_s);
}

} // namespace fleetd
