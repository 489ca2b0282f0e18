#pragma once

// A small libpq wrapper: connections, text parameters, transactions scoped
// to one org (Row Level Security) with a statement timeout, COPY for bulk
// rows. No statement is prepared on the server: PgBouncer in transaction
// pooling (1.18) keeps none across server connections.
//
// BLOCKING: every call waits for the server. Use it only from detached
// actors (spawn<detached>) or threads of their own, never from a
// cooperatively scheduled actor. One connection serves one thread at a time.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

// libpq's handles, declared here so that users need not include libpq-fe.h.
struct pg_conn;
struct pg_result;

namespace fleetd::pg {

/// The setting the Row Level Security policies read the current org from.
constexpr const char* org_setting = "app.org_id";

/// SQLSTATEs callers branch on (last_sqlstate()).
constexpr const char* unique_violation = "23505";
constexpr const char* insufficient_privilege = "42501";
constexpr const char* query_canceled = "57014";

/// One statement parameter, sent as text ($1, $2, ...): a string, a number,
/// raw bytes for a bytea column, or NULL.
class param {
public:
  param(std::string_view text) : text_(std::string{text}) {
  }
  param(const char* text) : text_(std::string{text}) {
  }
  param(const std::string& text) : text_(text) {
  }
  param(int64_t x) : text_(std::to_string(x)) {
  }
  param(int x) : text_(std::to_string(x)) {
  }
  /// Exact: NaN, infinities and -0.0 survive as PostgreSQL spells them.
  param(double x);
  /// NULL.
  param(std::nullptr_t) {
  }

  /// Bytes for a bytea parameter (sent as \x hex).
  static param bytea(std::string_view bytes);

  const std::optional<std::string>& text() const {
    return text_;
  }

private:
  std::optional<std::string> text_;
};

using params = std::vector<param>;

/// One statement of a pipeline: SQL with $1..$n and its parameters.
struct call {
  std::string sql;
  params ps;
};

/// A one-dimensional array of numbers as a text parameter ({1,2.5,NULL}),
/// e.g. for INSERT ... SELECT FROM unnest($1::bigint[]): a batch's column
/// in one parameter.
class number_array {
public:
  number_array& add(int64_t x);
  /// Exact, as param(double) (NaN and infinities included).
  number_array& add(double x);
  number_array& null();
  size_t size() const {
    return size_;
  }
  /// The parameter ("{...}").
  param done() const;

private:
  void separate();

  std::string text_ = "{";
  size_t size_ = 0;
};

/// A finished statement's rows (text format); owns libpq's result.
class result {
public:
  result() = default;
  explicit result(pg_result* res);
  result(result&&) noexcept = default;
  result& operator=(result&&) noexcept = default;
  ~result();

  int rows() const;
  int columns() const;
  /// Index of the column named `name`, -1 when there is none.
  int column(const char* name) const;
  bool is_null(int row, int col) const;
  /// The value as the server wrote it ("" for NULL or out of range); valid
  /// while the result lives.
  std::string_view text(int row, int col) const;
  /// Column `col` of every row, as text.
  std::vector<std::string> texts(int col) const;
  /// An integer column (0 for NULL).
  int64_t int64(int row, int col) const;
  /// A float8 column, NaN and infinities included (0.0 for NULL).
  double float8(int row, int col) const;
  /// A boolean column.
  bool boolean(int row, int col) const;
  /// A bytea column's bytes.
  std::string bytea(int row, int col) const;
  /// The command tag, e.g. "INSERT 0 1" or "ROLLBACK".
  std::string_view command() const;
  /// Rows an INSERT, UPDATE, DELETE or COPY touched.
  int64_t affected() const;

private:
  struct deleter {
    void operator()(pg_result* res) const;
  };
  std::unique_ptr<pg_result, deleter> res_;
};

/// Rows for COPY ... FROM STDIN in PostgreSQL's text format, escaped as
/// they are added: field by field, then end_row().
class copy_rows {
public:
  copy_rows& field(std::string_view text);
  copy_rows& field(int64_t x);
  copy_rows& field(double x);
  copy_rows& null();
  copy_rows& bytea(std::string_view bytes);
  copy_rows& end_row();

  size_t rows() const {
    return rows_;
  }
  /// Bytes buffered: the caller bounds a batch by them.
  size_t bytes() const {
    return data_.size();
  }
  const std::string& data() const {
    return data_;
  }
  void clear();

private:
  void separate();

  std::string data_;
  size_t rows_ = 0;
  bool row_open_ = false;
};

/// Transaction isolation levels.
enum class isolation { read_committed, repeatable_read, serializable };

struct connect_options {
  /// Seconds to wait for a connection, unless the URL says otherwise.
  int connect_timeout_s = 10;
  /// Milliseconds a statement may run before the server cancels it
  /// (ec::timeout, SQLSTATE 57014); 0: the server's setting. Set per
  /// transaction with set_config(..., true), never per session: safe
  /// behind PgBouncer in transaction pooling.
  int64_t statement_timeout_ms = 0;
};

/// One connection to PostgreSQL (or PgBouncer). Move-only.
///
/// Errors are caf::errors of the project enum, their text the server's own
/// message and SQLSTATE (never the URL's password): unreachable (connection
/// failed or lost: reset() and retry), storage_locked (serialization
/// failure, deadlock, lock not available: retry the transaction), disk_full,
/// invalid_record (data or constraint: retrying the same rows cannot help),
/// timeout (statement timeout or cancel), bad_config (malformed URL),
/// database_error (anything else).
class connection {
public:
  connection() = default;
  connection(connection&& other) noexcept;
  connection& operator=(connection&& other) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection();

  /// Connects to `url` (postgresql://user:password@host:port/db?... or a
  /// key=value string).
  static caf::expected<connection> open(const std::string& url,
                                        connect_options opts = {});

  /// One statement with parameters $1..$n (extended protocol). Outside a
  /// transaction, with a statement timeout, it runs in one of its own.
  caf::expected<result> exec(std::string_view sql, const params& ps = {});
  /// Several statements without parameters, in one round trip (simple
  /// protocol): migrations and DDL. The last statement's result. Outside
  /// a transaction no statement timeout applies.
  caf::expected<result> exec_script(std::string_view sql);

  /// `calls` in one round trip (libpq pipeline mode: unnamed statements of
  /// the extended protocol, one Sync, so PgBouncer in transaction pooling
  /// sees one exchange): their results in order, or the first failure
  /// (last_sqlstate() its SQLSTATE; the statements after it do not run).
  /// Inside a transaction, a failure leaves it failed: roll back. A
  /// pipeline may BEGIN and COMMIT a transaction of its own.
  caf::expected<std::vector<result>> pipeline(const std::vector<call>& calls);

  /// The pipeline call scoping its transaction (after its BEGIN) to `org`
  /// and the statement timeout, as begin() does.
  call scope(std::string_view org) const;

  /// COPY ... FROM STDIN (`copy_sql`) of `rows`; the rows it stored. All
  /// or nothing: a bad row fails the whole COPY.
  caf::expected<int64_t> copy_in(std::string_view copy_sql,
                                 const copy_rows& rows);

  /// BEGIN and scope the transaction to `org` (empty: no org, so Row
  /// Level Security shows no tenant row) and to the statement timeout, in
  /// one round trip. Scoping every transaction keeps a session-level SET
  /// made by another client of the same pooled server connection from
  /// reaching it.
  caf::error begin(std::string_view org = {},
                   isolation level = isolation::read_committed);
  /// COMMIT; an error when the server rolled back instead (an earlier
  /// statement of the transaction failed) or the commit failed.
  caf::error commit();
  /// ROLLBACK; errors are ignored (the connection may be gone).
  void rollback();

  /// set_config(name, value, true): a setting for the rest of the current
  /// transaction only; refused outside a transaction, where it would end
  /// with the statement.
  caf::error set_local(std::string_view name, std::string_view value);
  /// Scopes the current transaction to `org` (non-empty).
  caf::error set_org(std::string_view org);

  /// True inside BEGIN ... COMMIT/ROLLBACK (also when it failed).
  bool in_transaction() const;
  /// False once the connection is lost.
  bool ok() const;
  /// Reconnects with the same parameters.
  caf::error reset();
  /// The SQLSTATE of the last failed call ("" when it did not come from
  /// the server), e.g. unique_violation.
  const std::string& last_sqlstate() const {
    return last_sqlstate_;
  }
  /// The backend process id (through PgBouncer: of the client connection).
  int backend_pid() const;

private:
  explicit connection(pg_conn* conn, connect_options opts);
  // `res` as a result when its status is `expected_status` (COMMAND_OK
  // also takes rows), else the error it carries.
  caf::expected<result> check(pg_result* res, int expected_status);
  // Reads the results of `n` statements and the Sync of a sent pipeline.
  caf::expected<std::vector<result>> pipeline_results(size_t n);
  // Ends a COPY a plain exec started, so the connection takes queries.
  void end_copy(int status);
  caf::error connection_error(const char* what);
  // exec in a transaction of its own (for the statement timeout).
  caf::expected<result> exec_alone(std::string_view sql, const params& ps);

  pg_conn* conn_ = nullptr;
  connect_options opts_;
  std::string last_sqlstate_;
};

/// Runs `fn` (returning caf::error) in a transaction scoped to `org` (empty:
/// none); commits when it returns none, rolls back otherwise.
template <class F>
caf::error transaction(connection& c, std::string_view org, F&& fn,
                       isolation level = isolation::read_committed) {
  if (auto err = c.begin(org, level))
    return err;
  if (auto err = fn()) {
    c.rollback();
    return err;
  }
  return c.commit();
}

/// `url` without its password, for logs and messages.
std::string redact(const std::string& url);

} // namespace fleetd::pg
