// runtime/pg against a real PostgreSQL 15 (and PgBouncer): parameters,
// prepared statements, transactions, COPY, errors.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "messages/error.hpp"
#include "pg_fixture.hpp"
#include "skip.hpp"

using namespace fleetd;
using test::pg_connect;
using test::pg_must;

namespace {

ec code_of(const caf::error& err) {
  return static_cast<ec>(err.code());
}

int64_t count(pg::connection& c, const std::string& table) {
  return pg_must(c, "SELECT count(*) FROM " + table).int64(0, 0);
}

std::string all_bytes() {
  std::string out;
  for (int i = 0; i < 256; ++i)
    out += static_cast<char>(i);
  return out;
}

uint64_t bits_of(double x) {
  uint64_t out;
  std::memcpy(&out, &x, sizeof(out));
  return out;
}

} // namespace

TEST_CASE("parameters travel as text and come back exact") {
  std::string why;
  auto db = test::fresh_pg_database("pg_params", why);
  if (!db)
    return test::skip(why);
  auto c = pg_connect(db->owner_url);
  pg_must(c, "CREATE TABLE t (s text, i bigint, f float8, b bytea)");
  const std::string text =
    "it's \"quoted\" \\ back\tslash\nnew line, ünïcødé";
  const auto bytes = all_bytes();
  const double values[] = {0.1, -0.0, std::nan(""),
                           std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity(),
                           std::numeric_limits<double>::denorm_min(),
                           std::numeric_limits<double>::max()};
  int64_t i = std::numeric_limits<int64_t>::min();
  for (double f : values) {
    auto r = c.exec("INSERT INTO t VALUES ($1, $2, $3, $4)",
                    {text, i, f, pg::param::bytea(bytes)});
    if (!r)
      FAIL(render(r.error()));
    CHECK(r->affected() == 1);
    i = std::numeric_limits<int64_t>::max();
  }
  pg_must(c, "INSERT INTO t VALUES ($1, $2, $3, $4)",
          {nullptr, nullptr, nullptr, nullptr});
  auto rows = pg_must(c, "SELECT s, i, f, b FROM t");
  REQUIRE(rows.rows() == 8);
  for (int r = 0; r < 7; ++r) {
    CHECK(rows.text(r, 0) == text);
    CHECK(rows.bytea(r, 3) == bytes);
    auto f = rows.float8(r, 2);
    // NaN is NaN (PostgreSQL keeps no payload); every other value bit-exact.
    if (std::isnan(values[r]))
      CHECK(std::isnan(f));
    else
      CHECK(bits_of(f) == bits_of(values[r]));
  }
  CHECK(rows.int64(0, 1) == std::numeric_limits<int64_t>::min());
  CHECK(rows.int64(1, 1) == std::numeric_limits<int64_t>::max());
  for (int col = 0; col < 4; ++col)
    CHECK(rows.is_null(7, col));
  CHECK(rows.column("f") == 2);
  CHECK(rows.column("nope") == -1);
  CHECK(rows.text(99, 0).empty());
}

TEST_CASE("a transaction whose function fails leaves nothing behind") {
  std::string why;
  auto db = test::fresh_pg_database("pg_tx", why);
  if (!db)
    return test::skip(why);
  auto c = pg_connect(db->owner_url);
  pg_must(c, "CREATE TABLE t (k bigint PRIMARY KEY)");
  auto err = pg::transaction(c, "", [&]() -> caf::error {
    pg_must(c, "INSERT INTO t VALUES (1)");
    return make_error(ec::conflict, "changed my mind");
  });
  CHECK(code_of(err) == ec::conflict);
  CHECK_FALSE(c.in_transaction());
  CHECK(count(c, "t") == 0);
  SUBCASE("a statement that failed inside makes the commit fail") {
    // The function ignores the failed insert; COMMIT then rolls back.
    err = pg::transaction(c, "", [&]() -> caf::error {
      pg_must(c, "INSERT INTO t VALUES (2)");
      CHECK_FALSE(c.exec("INSERT INTO t VALUES (2)"));
      return caf::none;
    });
    CHECK(code_of(err) == ec::database_error);
    CHECK(error_text(err).find("rolled back") != std::string::npos);
    CHECK(count(c, "t") == 0);
  }
  SUBCASE("a function that succeeds commits") {
    err = pg::transaction(c, "", [&]() -> caf::error {
      pg_must(c, "INSERT INTO t VALUES (3)");
      return caf::none;
    });
    CHECK_FALSE(err);
    CHECK(count(c, "t") == 1);
  }
}

TEST_CASE("a transaction is scoped to its org and the scope ends with it") {
  std::string why;
  auto db = test::fresh_pg_database("pg_scope", why);
  if (!db)
    return test::skip(why);
  auto c = pg_connect(db->app_url);
  auto current = [&] {
    auto r = pg_must(c, "SELECT coalesce(current_setting('app.org_id', "
                        "true), '')");
    return std::string{r.text(0, 0)};
  };
  CHECK(c.set_org("acme"));  // outside a transaction: refused
  REQUIRE_FALSE(c.begin("it's-acme"));
  CHECK(current() == "it's-acme");
  CHECK(c.begin("other"));  // no nesting
  REQUIRE_FALSE(c.set_org("zenith"));
  CHECK(current() == "zenith");
  CHECK(c.set_org(""));
  REQUIRE_FALSE(c.set_local("app.key_hash", "ab"));
  REQUIRE_FALSE(c.commit());
  CHECK(current().empty());
  REQUIRE_FALSE(c.begin());
  CHECK(current().empty());
  c.rollback();
  CHECK_FALSE(c.in_transaction());
}

TEST_CASE("COPY stores awkward rows exactly, and a bad row stores none") {
  std::string why;
  auto db = test::fresh_pg_database("pg_copy", why);
  if (!db)
    return test::skip(why);
  auto c = pg_connect(db->owner_url);
  pg_must(c, "CREATE TABLE t (k bigint, s text, f float8, b bytea)");
  const std::string awkward = "tab\there\nline\\back\rslash \\N not null";
  const auto bytes = all_bytes();
  const int64_t n = 20000;
  pg::copy_rows rows;
  for (int64_t k = 0; k < n; ++k) {
    rows.field(k);
    if (k % 2)
      rows.field(std::string_view{awkward});
    else
      rows.null();
    rows.field(k % 3 ? 0.5 * static_cast<double>(k) : std::nan(""));
    rows.bytea(bytes).end_row();
  }
  CHECK(rows.rows() == static_cast<size_t>(n));
  auto t0 = std::chrono::steady_clock::now();
  auto stored = c.copy_in("COPY t (k, s, f, b) FROM STDIN", rows);
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - t0)
                .count();
  if (!stored)
    FAIL(render(stored.error()));
  CHECK(*stored == n);
  MESSAGE("COPY of " << n << " rows (" << rows.bytes() / 1024
                     << " KiB) in " << secs << " s: "
                     << static_cast<double>(n) / secs << " rows/s");
  auto back = pg_must(c, "SELECT s, f, b FROM t WHERE k IN (1, 2, 3) "
                         "ORDER BY k");
  CHECK(back.text(0, 0) == awkward);
  CHECK(back.is_null(1, 0));
  CHECK(std::isnan(back.float8(2, 1)));
  CHECK(back.float8(1, 1) == 1.0);
  CHECK(back.bytea(2, 2) == bytes);
  pg::copy_rows bad;
  bad.field(int64_t{1}).field(std::string_view{"ok"}).null().null().end_row();
  bad.field(std::string_view{"not a number"}).null().null().null().end_row();
  auto refused = c.copy_in("COPY t (k, s, f, b) FROM STDIN", bad);
  REQUIRE_FALSE(refused);
  CHECK(code_of(refused.error()) == ec::invalid_record);
  CHECK(count(c, "t") == n);
  // A COPY through exec is refused and the connection stays usable.
  CHECK_FALSE(c.exec("COPY t (k) FROM STDIN"));
  CHECK(count(c, "t") == n);
}

TEST_CASE("errors carry the server's text and never the password") {
  std::string why;
  auto db = test::fresh_pg_database("pg_errors", why);
  if (!db)
    return test::skip(why);
  auto c = pg_connect(db->owner_url);
  auto syntax = c.exec("SELEC 1");
  REQUIRE_FALSE(syntax);
  CHECK(code_of(syntax.error()) == ec::database_error);
  CHECK(render(syntax.error()).find("syntax error") != std::string::npos);
  CHECK(c.last_sqlstate() == "42601");
  const std::string secret = "S3cretPassw0rd";
  auto bad_password = db->owner_url;
  bad_password.replace(bad_password.find(':', 14) + 1,
                       bad_password.find('@') - bad_password.find(':', 14) - 1,
                       secret);
  std::vector<std::string> urls = {
    bad_password,
    "postgresql://fleetd_owner:" + secret + "%zz@127.0.0.1/x",
    "postgresql://fleetd_owner:" + secret + "@[::1/x",
    "host=127.0.0.1 password=" + secret + " bogus",
    "postgresql://u:" + secret + "@127.0.0.1:1/x?connect_timeout=2",
  };
  for (auto& url : urls) {
    auto refused = pg::connection::open(url);
    REQUIRE_FALSE(refused);
    auto text = render(refused.error());
    INFO(text);
    CHECK(text.find(secret) == std::string::npos);
    CHECK(pg::redact(url).find(secret) == std::string::npos);
  }
  auto auth = render(pg::connection::open(bad_password).error());
  CHECK(auth.find("password authentication failed") != std::string::npos);
  CHECK(code_of(pg::connection::open(urls[1]).error()) == ec::bad_config);
  CHECK(code_of(pg::connection::open(urls[4]).error()) == ec::unreachable);
  auto huge = pg::connection::open("postgresql://" + std::string(5000, 'a'));
  CHECK(code_of(huge.error()) == ec::bad_config);
  CHECK(pg::redact(db->owner_url).find("fleetd_owner@127.0.0.1:")
        != std::string::npos);
}

TEST_CASE("a lost connection is unreachable and reset reconnects") {
  std::string why;
  auto db = test::fresh_pg_database("pg_lost", why);
  if (!db)
    return test::skip(why);
  auto c = pg_connect(db->owner_url);
  REQUIRE(c.exec("SELECT 1"));
  auto admin = pg_connect(db->admin_url);
  pg_must(admin, "SELECT pg_terminate_backend($1)", {c.backend_pid()});
  auto lost = c.exec("SELECT 1");
  REQUIRE_FALSE(lost);
  CHECK(code_of(lost.error()) == ec::unreachable);
  CHECK_FALSE(c.ok());
  REQUIRE_FALSE(c.reset());
  CHECK(c.ok());
  auto again = c.exec("SELECT 1");
  if (!again)
    FAIL(render(again.error()));
  CHECK(again->int64(0, 0) == 1);
}

TEST_CASE("behind PgBouncer in transaction pooling statements work on "
          "whichever server connection is lent") {
  std::string why;
  auto db = test::fresh_pg_database("pg_pooled", why, true);
  if (!db)
    return test::skip(why);
  auto owner = pg_connect(db->owner_url);
  REQUIRE(owner.exec_script("CREATE TABLE t (k bigint); "
                            "GRANT SELECT ON t TO fleetd_app"));
  auto a = pg_connect(db->pooled_url);
  auto b = pg_connect(db->pooled_url);
  auto first = a.exec("SELECT count(*) FROM t WHERE k > $1", {int64_t{0}});
  REQUIRE(first);
  auto pid = pg_must(a, "SELECT pg_backend_pid()").int64(0, 0);
  // b holds the server connection a just used: a gets another one.
  REQUIRE_FALSE(b.begin());
  pg_must(b, "SELECT 1");
  auto r = a.exec("SELECT count(*) FROM t WHERE k > $1", {int64_t{0}});
  auto other = pg_must(a, "SELECT pg_backend_pid()").int64(0, 0);
  b.rollback();
  CHECK_MESSAGE(r, (r ? "" : render(r.error())));
  CHECK(other != pid);
}

TEST_CASE("a statement past the timeout is cancelled with a clear error, "
          "in and out of a transaction, and the timeout ends with it") {
  std::string why;
  auto db = test::fresh_pg_database("pg_timeout", why, true);
  if (!db)
    return test::skip(why);
  pg::connect_options opts;
  opts.statement_timeout_ms = 200;
  for (auto url : {db->app_url, db->pooled_url}) {
    INFO(url);
    auto c = pg_connect(url, opts);
    auto started = std::chrono::steady_clock::now();
    auto alone = c.exec("SELECT pg_sleep(30)");
    REQUIRE_FALSE(alone);
    CHECK(code_of(alone.error()) == ec::timeout);
    CHECK(c.last_sqlstate() == pg::query_canceled);
    CHECK(render(alone.error()).find("statement timeout")
          != std::string::npos);
    CHECK_FALSE(c.in_transaction());
    REQUIRE_FALSE(c.begin("acme"));
    auto inside = c.exec("SELECT pg_sleep(30)");
    REQUIRE_FALSE(inside);
    CHECK(code_of(inside.error()) == ec::timeout);
    c.rollback();
    // A pipelined transaction scoped with scope() has the timeout too.
    auto piped = c.pipeline({{"BEGIN", {}},
                             c.scope("acme"),
                             {"SELECT pg_sleep(30)", {}},
                             {"COMMIT", {}}});
    REQUIRE_FALSE(piped);
    CHECK(code_of(piped.error()) == ec::timeout);
    CHECK(c.last_sqlstate() == pg::query_canceled);
    c.rollback();
    // Well under the 3 x 30 s asked for: all were cancelled.
    CHECK(std::chrono::steady_clock::now() - started
          < std::chrono::seconds(20));
    CHECK(pg_must(c, "SELECT pg_sleep(0.01), 1").int64(0, 1) == 1);
    // A client without the option, on the same pool, sees the server's.
    auto plain = pg_connect(url);
    CHECK(pg_must(plain, "SHOW statement_timeout").text(0, 0) == "0");
  }
}

TEST_CASE("a server that never answers the startup fails the connect in "
          "connect_timeout") {
  // A listening socket nobody accepts on: the handshake completes in the
  // kernel, the startup packet is never answered.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  pg::connect_options opts;
  opts.connect_timeout_s = 2;
  auto started = std::chrono::steady_clock::now();
  auto c = pg::connection::open("postgresql://u:p@127.0.0.1:"
                                  + std::to_string(ntohs(addr.sin_port))
                                  + "/x",
                                opts);
  auto took = std::chrono::steady_clock::now() - started;
  ::close(fd);
  REQUIRE_FALSE(c);
  CHECK(code_of(c.error()) == ec::unreachable);
  CHECK(took < std::chrono::seconds(15));
  CHECK(render(c.error()).find("timeout") != std::string::npos);
}

TEST_CASE("a pipeline answers its statements in order in one exchange; a "
          "failure stops the rest and its transaction keeps nothing") {
  std::string why;
  auto db = test::fresh_pg_database("pg_pipeline", why, true);
  if (!db)
    return test::skip(why);
  auto owner = pg_connect(db->owner_url);
  pg_must(owner, "CREATE TABLE t (k bigint PRIMARY KEY, v text)");
  pg_must(owner, "GRANT SELECT, INSERT ON t TO fleetd_app");
  // Through PgBouncer in transaction pooling, as the store runs.
  auto c = pg_connect(db->pooled_url);
  auto ok = c.pipeline({{"BEGIN", {}},
                        {"SELECT set_config('app.org_id', $1, true)", {"acme"}},
                        {"INSERT INTO t VALUES ($1, $2)", {int64_t{1}, "one"}},
                        {"SELECT current_setting('app.org_id'), $1::int",
                         {int64_t{7}}},
                        {"COMMIT", {}}});
  REQUIRE_MESSAGE(ok, render(ok.error()));
  REQUIRE(ok->size() == 5);
  CHECK(ok->at(3).text(0, 0) == "acme");
  CHECK(ok->at(3).int64(0, 1) == 7);
  CHECK(ok->back().command() == "COMMIT");
  CHECK_FALSE(c.in_transaction());
  const std::string insert = "INSERT INTO t VALUES ($1, $2)";
  auto failed = c.pipeline({{"BEGIN", {}},
                            {insert, {int64_t{2}, "two"}},
                            {insert, {int64_t{1}, "dup"}},
                            {insert, {int64_t{3}, "three"}},
                            {"COMMIT", {}}});
  REQUIRE_FALSE(failed);
  CHECK(code_of(failed.error()) == ec::invalid_record);
  CHECK(c.last_sqlstate() == pg::unique_violation);
  CHECK(c.in_transaction());
  c.rollback();
  // The connection goes on, outside pipeline mode, and row 2 is not kept.
  auto rows = pg_must(c, "SELECT k FROM t ORDER BY k");
  REQUIRE(rows.rows() == 1);
  CHECK(rows.int64(0, 0) == 1);
  // The org of the committed pipeline did not outlive its transaction.
  CHECK(pg_must(c, "SELECT coalesce(current_setting('app.org_id', true), "
                   "'')")
          .text(0, 0)
          .empty());
}

TEST_CASE("a number array parameter carries NaN, infinities, -0 and NULL "
          "exactly") {
  std::string why;
  auto db = test::fresh_pg_database("pg_array", why);
  if (!db)
    return test::skip(why);
  auto c = pg_connect(db->owner_url);
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> xs{0.1, -0.0, inf, -inf, std::nan(""), 1e308,
                               5e-324};
  pg::number_array fs;
  pg::number_array is;
  for (auto x : xs)
    fs.add(x);
  fs.null();
  is.add(std::numeric_limits<int64_t>::min()).add(int64_t{0});
  auto r = pg_must(c, "SELECT f, n FROM unnest($1::float8[]) WITH "
                      "ORDINALITY AS u(f, n) ORDER BY n",
                   {fs.done()});
  REQUIRE(r.rows() == static_cast<int>(xs.size()) + 1);
  for (size_t i = 0; i < xs.size(); ++i) {
    auto back = r.float8(static_cast<int>(i), 0);
    if (std::isnan(xs[i]))
      CHECK(std::isnan(back));
    else
      CHECK(bits_of(back) == bits_of(xs[i]));
  }
  CHECK(r.is_null(static_cast<int>(xs.size()), 0));
  auto ints = pg_must(c, "SELECT unnest($1::bigint[])", {is.done()});
  REQUIRE(ints.rows() == 2);
  CHECK(ints.int64(0, 0) == std::numeric_limits<int64_t>::min());
}
