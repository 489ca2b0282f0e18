#include "runtime/pg.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <libpq-fe.h>

#include "messages/error.hpp"

namespace fleetd::pg {

namespace {

// A URL longer than this is refused before libpq parses it.
constexpr size_t max_url_length = 4096;
// COPY data goes to libpq in pieces of this size.
constexpr size_t copy_chunk = size_t{1} << 20;

// libpq's messages end in newlines and indent with tabs: one line.
std::string one_line(const char* text) {
  std::string out = text ? text : "";
  for (auto& c : out)
    if (c == '\n' || c == '\t')
      c = ' ';
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

// The value after `key` up to one of `ends`, or "".
std::string value_after(const std::string& s, const std::string& key,
                        const char* ends) {
  auto at = s.find(key);
  if (at == std::string::npos)
    return {};
  at += key.size();
  return s.substr(at, s.find_first_of(ends, at) - at);
}

// Every spelling of a password `url` may carry, as libpq may quote it.
std::vector<std::string> secrets_of(const std::string& url) {
  std::vector<std::string> out;
  if (auto scheme = url.find("://"); scheme != std::string::npos) {
    auto at = url.rfind('@');
    if (at != std::string::npos && at > scheme) {
      auto userinfo = url.substr(scheme + 3, at - scheme - 3);
      if (auto colon = userinfo.find(':'); colon != std::string::npos)
        out.push_back(userinfo.substr(colon + 1));
    }
  }
  out.push_back(value_after(url, "password=", "& \t\n"));
  out.push_back(url);
  return out;
}

// `text` with every spelling of the URL's password replaced.
std::string scrub(std::string text, const std::string& url) {
  for (auto& secret : secrets_of(url)) {
    if (secret.empty())
      continue;
    for (auto at = text.find(secret); at != std::string::npos;
         at = text.find(secret, at + 3))
      text.replace(at, secret.size(), "***");
  }
  return text;
}

// The project error for a server error of class `state`.
ec code_of(const std::string& state) {
  auto cls = state.substr(0, 2);
  if (cls == "08" || state == "57P01" || state == "57P02" || state == "57P03")
    return ec::unreachable;
  if (state == "40001" || state == "40P01" || state == "55P03")
    return ec::storage_locked;
  if (state == "53100")
    return ec::disk_full;
  if (state == query_canceled)
    return ec::timeout;
  if (cls == "22" || cls == "23")
    return ec::invalid_record;
  return ec::database_error;
}

void ignore_notice(void*, const char*) {
  // NOTICEs (e.g. "already exists, skipping") are not errors: dropped.
}

const char* isolation_sql(isolation level) {
  switch (level) {
    case isolation::repeatable_read:
      return "BEGIN ISOLATION LEVEL REPEATABLE READ; ";
    case isolation::serializable:
      return "BEGIN ISOLATION LEVEL SERIALIZABLE; ";
    default:
      return "BEGIN; ";
  }
}

// A double as PostgreSQL's float8 input reads it back bit for bit.
std::string float_text(double x) {
  if (std::isnan(x))
    return "NaN";
  if (std::isinf(x))
    return x > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", x);
  return buf;
}

std::string hex_bytes(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + 2 * bytes.size());
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 0xF];
  }
  return out;
}

} // namespace

// -- param --------------------------------------------------------------------

param::param(double x) : text_(float_text(x)) {
}

param param::bytea(std::string_view bytes) {
  return param{hex_bytes(bytes)};
}

number_array& number_array::add(int64_t x) {
  separate();
  text_ += std::to_string(x);
  return *this;
}

number_array& number_array::add(double x) {
  separate();
  text_ += float_text(x);
  return *this;
}

number_array& number_array::null() {
  separate();
  text_ += "NULL";
  return *this;
}

void number_array::separate() {
  if (size_++ > 0)
    text_ += ',';
}

param number_array::done() const {
  return param{text_ + "}"};
}

// -- result -------------------------------------------------------------------

void result::deleter::operator()(pg_result* res) const {
  PQclear(res);
}

result::result(pg_result* res) : res_(res) {
}

result::~result() = default;

int result::rows() const {
  return res_ ? PQntuples(res_.get()) : 0;
}

int result::columns() const {
  return res_ ? PQnfields(res_.get()) : 0;
}

int result::column(const char* name) const {
  return res_ ? PQfnumber(res_.get(), name) : -1;
}

bool result::is_null(int row, int col) const {
  return !res_ || row >= rows() || col >= columns()
         || PQgetisnull(res_.get(), row, col);
}

std::string_view result::text(int row, int col) const {
  if (is_null(row, col))
    return {};
  return {PQgetvalue(res_.get(), row, col),
          static_cast<size_t>(PQgetlength(res_.get(), row, col))};
}

std::vector<std::string> result::texts(int col) const {
  std::vector<std::string> out;
  for (int i = 0; i < rows(); ++i)
    out.emplace_back(text(i, col));
  return out;
}

int64_t result::int64(int row, int col) const {
  if (is_null(row, col))
    return 0;
  return std::strtoll(PQgetvalue(res_.get(), row, col), nullptr, 10);
}

double result::float8(int row, int col) const {
  if (is_null(row, col))
    return 0.0;
  // strtod reads NaN, Infinity and -Infinity as PostgreSQL writes them.
  return std::strtod(PQgetvalue(res_.get(), row, col), nullptr);
}

bool result::boolean(int row, int col) const {
  return text(row, col) == "t";
}

std::string result::bytea(int row, int col) const {
  if (is_null(row, col))
    return {};
  size_t len = 0;
  auto* raw = PQunescapeBytea(
    reinterpret_cast<const unsigned char*>(PQgetvalue(res_.get(), row, col)),
    &len);
  if (!raw)
    return {};
  std::string out(reinterpret_cast<char*>(raw), len);
  PQfreemem(raw);
  return out;
}

std::string_view result::command() const {
  return res_ ? PQcmdStatus(res_.get()) : "";
}

int64_t result::affected() const {
  if (!res_)
    return 0;
  return std::strtoll(PQcmdTuples(res_.get()), nullptr, 10);
}

// -- copy_rows ----------------------------------------------------------------

void copy_rows::separate() {
  if (row_open_)
    data_ += '\t';
  row_open_ = true;
}

copy_rows& copy_rows::field(std::string_view text) {
  separate();
  for (char c : text) {
    switch (c) {
      case '\\': data_ += "\\\\"; break;
      case '\t': data_ += "\\t"; break;
      case '\n': data_ += "\\n"; break;
      case '\r': data_ += "\\r"; break;
      default: data_ += c;
    }
  }
  return *this;
}

copy_rows& copy_rows::field(int64_t x) {
  return field(std::string_view{std::to_string(x)});
}

copy_rows& copy_rows::field(double x) {
  return field(std::string_view{float_text(x)});
}

copy_rows& copy_rows::null() {
  separate();
  data_ += "\\N";
  return *this;
}

copy_rows& copy_rows::bytea(std::string_view bytes) {
  return field(std::string_view{hex_bytes(bytes)});
}

copy_rows& copy_rows::end_row() {
  data_ += '\n';
  row_open_ = false;
  ++rows_;
  return *this;
}

void copy_rows::clear() {
  data_.clear();
  rows_ = 0;
  row_open_ = false;
}

// -- connection ---------------------------------------------------------------

connection::connection(pg_conn* conn, connect_options opts)
  : conn_(conn), opts_(opts) {
  PQsetNoticeProcessor(conn_, ignore_notice, nullptr);
}

connection::connection(connection&& other) noexcept
  : conn_(std::exchange(other.conn_, nullptr)),
    opts_(other.opts_),
    last_sqlstate_(std::move(other.last_sqlstate_)) {
}

connection& connection::operator=(connection&& other) noexcept {
  if (this != &other) {
    if (conn_)
      PQfinish(conn_);
    conn_ = std::exchange(other.conn_, nullptr);
    opts_ = other.opts_;
    last_sqlstate_ = std::move(other.last_sqlstate_);
  }
  return *this;
}

connection::~connection() {
  if (conn_)
    PQfinish(conn_);
}

caf::expected<connection> connection::open(const std::string& url,
                                           connect_options opts) {
  if (url.size() > max_url_length)
    return make_error(ec::bad_config, "the PostgreSQL URL is longer than "
                                        + std::to_string(max_url_length)
                                        + " bytes");
  char* parse_error = nullptr;
  auto* parsed = PQconninfoParse(url.c_str(), &parse_error);
  if (!parsed) {
    // libpq quotes the offending part, which may be the password.
    auto text = scrub(one_line(parse_error), url);
    PQfreemem(parse_error);
    return make_error(ec::bad_config, "bad PostgreSQL URL: " + text);
  }
  PQconninfoFree(parsed);
  auto timeout = std::to_string(opts.connect_timeout_s);
  // Later keywords win: the URL's own connect_timeout overrides ours.
  const char* keys[] = {"connect_timeout", "fallback_application_name",
                        "dbname", nullptr};
  const char* values[] = {timeout.c_str(), "fleetd", url.c_str(), nullptr};
  auto* conn = PQconnectdbParams(keys, values, 1);
  if (!conn)
    return make_error(ec::unreachable, "out of memory for a connection");
  if (PQstatus(conn) != CONNECTION_OK) {
    auto text = scrub(one_line(PQerrorMessage(conn)), url);
    PQfinish(conn);
    return make_error(ec::unreachable, text);
  }
  return connection{conn, opts};
}

caf::error connection::connection_error(const char* what) {
  last_sqlstate_.clear();
  if (!conn_)
    return make_error(ec::unreachable, std::string{what} + ": not connected");
  auto code = PQstatus(conn_) == CONNECTION_OK ? ec::database_error
                                               : ec::unreachable;
  return make_error(code, std::string{what} + ": "
                            + one_line(PQerrorMessage(conn_)));
}

caf::expected<result> connection::check(pg_result* res, int expected_status) {
  result out{res};
  if (!res)
    return connection_error("no result");
  auto status = PQresultStatus(res);
  // A statement that returns rows may stand where none are expected.
  if (status == expected_status
      || (expected_status == PGRES_COMMAND_OK && status == PGRES_TUPLES_OK)) {
    last_sqlstate_.clear();
    return out;
  }
  if (status != PGRES_FATAL_ERROR && status != PGRES_NONFATAL_ERROR
      && status != PGRES_BAD_RESPONSE) {
    end_copy(status);
    last_sqlstate_.clear();
    return make_error(ec::database_error, std::string{"unexpected result "}
                                            + PQresStatus(status));
  }
  auto* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  last_sqlstate_ = state ? state : "";
  auto text = one_line(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
  if (text.empty())
    text = one_line(PQresultErrorMessage(res));
  if (auto* detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL))
    text += " (" + one_line(detail) + ")";
  if (last_sqlstate_.empty()) {
    // No SQLSTATE: libpq's own failure, e.g. the connection was lost.
    auto code = PQstatus(conn_) == CONNECTION_OK ? ec::database_error
                                                 : ec::unreachable;
    return make_error(code, text);
  }
  return make_error(code_of(last_sqlstate_),
                    text + " [SQLSTATE " + last_sqlstate_ + "]");
}

void connection::end_copy(int status) {
  // A COPY that exec started: end it, so the connection takes queries again.
  if (status == PGRES_COPY_IN || status == PGRES_COPY_BOTH)
    PQputCopyEnd(conn_, "COPY runs through copy_in only");
  if (status == PGRES_COPY_OUT) {
    char* row = nullptr;
    while (PQgetCopyData(conn_, &row, 0) > 0)
      PQfreemem(row);
  }
  if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT
      || status == PGRES_COPY_BOTH)
    while (auto* rest = PQgetResult(conn_))
      PQclear(rest);
}

namespace {

// libpq's view of `ps`: pointers into the params, NULL for NULL.
std::vector<const char*> values_of(const params& ps) {
  std::vector<const char*> out;
  out.reserve(ps.size());
  for (auto& p : ps)
    out.push_back(p.text() ? p.text()->c_str() : nullptr);
  return out;
}

} // namespace

caf::expected<result> connection::exec(std::string_view sql,
                                       const params& ps) {
  if (!conn_)
    return connection_error("exec");
  if (opts_.statement_timeout_ms > 0 && !in_transaction())
    return exec_alone(sql, ps);
  auto values = values_of(ps);
  std::string text{sql};
  return check(PQexecParams(conn_, text.c_str(), static_cast<int>(ps.size()),
                            nullptr, values.data(), nullptr, nullptr, 0),
               PGRES_COMMAND_OK);
}

caf::expected<result> connection::exec_alone(std::string_view sql,
                                             const params& ps) {
  if (auto err = begin())
    return err;
  auto r = exec(sql, ps);
  if (!r) {
    auto state = last_sqlstate_;
    rollback();
    last_sqlstate_ = state; // the statement's, not the rollback's
    return r;
  }
  if (auto err = commit())
    return err;
  return r;
}

caf::expected<result> connection::exec_script(std::string_view sql) {
  if (!conn_)
    return connection_error("exec");
  std::string text{sql};
  return check(PQexec(conn_, text.c_str()), PGRES_COMMAND_OK);
}

caf::expected<std::vector<result>>
connection::pipeline(const std::vector<call>& calls) {
  if (!conn_)
    return connection_error("pipeline");
  if (PQenterPipelineMode(conn_) != 1)
    return connection_error("pipeline");
  size_t sent = 0;
  for (auto& c : calls) {
    auto values = values_of(c.ps);
    if (PQsendQueryParams(conn_, c.sql.c_str(), static_cast<int>(c.ps.size()),
                          nullptr, values.data(), nullptr, nullptr, 0)
        != 1)
      break;
    ++sent;
  }
  // The Sync even after a failed send: the server then skips nothing sent.
  if (PQpipelineSync(conn_) != 1) {
    PQexitPipelineMode(conn_);
    return connection_error("pipeline");
  }
  auto out = pipeline_results(sent);
  if (PQexitPipelineMode(conn_) != 1 && out)
    return connection_error("pipeline");
  if (out && sent < calls.size())
    return connection_error("pipeline");
  return out;
}

caf::expected<std::vector<result>> connection::pipeline_results(size_t n) {
  std::vector<result> out;
  caf::error first;
  std::string state;
  for (size_t i = 0; i < n; ++i) {
    auto* res = PQgetResult(conn_);
    if (!res)
      return connection_error("pipeline");
    // Each statement's result is followed by a null one.
    while (auto* extra = PQgetResult(conn_))
      PQclear(extra);
    if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED) {
      PQclear(res);
      continue;
    }
    auto r = check(res, PGRES_COMMAND_OK);
    if (r)
      out.push_back(std::move(*r));
    else if (!first) {
      first = std::move(r.error());
      state = last_sqlstate_;
    }
  }
  auto* sync = PQgetResult(conn_);
  bool synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  PQclear(sync);
  last_sqlstate_ = state;
  if (first)
    return first;
  if (!synced)
    return connection_error("pipeline");
  return out;
}

caf::expected<int64_t> connection::copy_in(std::string_view copy_sql,
                                           const copy_rows& rows) {
  if (!conn_)
    return connection_error("copy");
  std::string text{copy_sql};
  auto started = check(PQexec(conn_, text.c_str()), PGRES_COPY_IN);
  if (!started)
    return started.error();
  auto& data = rows.data();
  bool sent = true;
  for (size_t at = 0; sent && at < data.size(); at += copy_chunk) {
    auto n = std::min(copy_chunk, data.size() - at);
    sent = PQputCopyData(conn_, data.data() + at, static_cast<int>(n)) == 1;
  }
  if (PQputCopyEnd(conn_, sent ? nullptr : "the client failed to send rows")
      != 1)
    return connection_error("copy");
  auto done = check(PQgetResult(conn_), PGRES_COMMAND_OK);
  while (auto* rest = PQgetResult(conn_))
    PQclear(rest);
  if (!done)
    return done.error();
  return done->affected();
}

caf::error connection::begin(std::string_view org, isolation level) {
  if (!conn_)
    return connection_error("begin");
  if (in_transaction())
    return make_error(ec::database_error, "begin inside a transaction");
  auto* literal = PQescapeLiteral(conn_, org.data(), org.size());
  if (!literal)
    return connection_error("begin");
  std::string sql = isolation_sql(level);
  sql += "SELECT set_config('";
  sql += org_setting;
  sql += "', ";
  sql += literal;
  sql += ", true)";
  PQfreemem(literal);
  if (opts_.statement_timeout_ms > 0)
    sql += ", set_config('statement_timeout', '"
           + std::to_string(opts_.statement_timeout_ms) + "', true)";
  auto res = exec_script(sql);
  if (!res) {
    rollback();
    return res.error();
  }
  return caf::none;
}

call connection::scope(std::string_view org) const {
  call out{"SELECT set_config('" + std::string{org_setting} + "', $1, true)",
           {param{org}}};
  if (opts_.statement_timeout_ms > 0) {
    out.sql += ", set_config('statement_timeout', $2, true)";
    out.ps.emplace_back(std::to_string(opts_.statement_timeout_ms));
  }
  return out;
}

caf::error connection::commit() {
  auto res = exec_script("COMMIT");
  if (!res) {
    rollback();
    return res.error();
  }
  // COMMIT of a failed transaction rolls it back and says so, without error.
  if (res->command() != "COMMIT")
    return make_error(ec::database_error,
                      "the transaction was rolled back: a statement in it "
                      "failed");
  return caf::none;
}

void connection::rollback() {
  if (conn_ && PQtransactionStatus(conn_) != PQTRANS_IDLE)
    PQclear(PQexec(conn_, "ROLLBACK"));
}

caf::error connection::set_local(std::string_view name,
                                 std::string_view value) {
  if (!in_transaction())
    return make_error(ec::database_error,
                      "set_local outside a transaction would end with its "
                      "own statement");
  auto res = exec("SELECT set_config($1, $2, true)",
                  {param{name}, param{value}});
  return res ? caf::none : res.error();
}

caf::error connection::set_org(std::string_view org) {
  if (org.empty())
    return make_error(ec::database_error, "set_org needs an org");
  return set_local(org_setting, org);
}

bool connection::in_transaction() const {
  if (!conn_)
    return false;
  auto st = PQtransactionStatus(conn_);
  return st == PQTRANS_INTRANS || st == PQTRANS_INERROR;
}

bool connection::ok() const {
  return conn_ && PQstatus(conn_) == CONNECTION_OK;
}

caf::error connection::reset() {
  if (!conn_)
    return connection_error("reset");
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK)
    return connection_error("reset");
  return caf::none;
}

int connection::backend_pid() const {
  return conn_ ? PQbackendPID(conn_) : 0;
}

// -- free functions -----------------------------------------------------------

std::string redact(const std::string& url) {
  auto* opts = PQconninfoParse(url.c_str(), nullptr);
  if (!opts)
    return "(a PostgreSQL URL that does not parse)";
  std::string user, host, port, db;
  for (auto* o = opts; o->keyword; ++o) {
    if (!o->val)
      continue;
    std::string key = o->keyword;
    if (key == "user")
      user = o->val;
    else if (key == "host")
      host = o->val;
    else if (key == "port")
      port = o->val;
    else if (key == "dbname")
      db = o->val;
  }
  PQconninfoFree(opts);
  std::string out = "postgresql://";
  if (!user.empty())
    out += user + "@";
  out += host.find('/') == std::string::npos ? host : "";
  if (!port.empty())
    out += ":" + port;
  out += "/" + db;
  if (host.find('/') != std::string::npos)
    out += "?host=" + host;
  return out;
}

} // namespace fleetd::pg
