// http_server and http_client against each other on 127.0.0.1, port 0.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "messages/error.hpp"
#include "messages/stream_codec.hpp"
#include "messages/varint.hpp"
#include "runtime/http_client.hpp"
#include "runtime/http_server.hpp"
#include "helpers.hpp"
#include "scratch_dir.hpp"
#include "test_pki.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

bool has_code(const caf::error& err, ec code) {
  return err.category() == caf::atom("fleetd")
         && err.code() == static_cast<uint8_t>(code);
}

// Echoes the body back, prefixed with `tag`, and records what it saw.
struct echo {
  explicit echo(std::string prefix = "") : tag(std::move(prefix)) {
    // nop
  }

  std::string tag;
  std::mutex mtx;
  std::vector<http_request> seen;

  http_server::handler_fn handler() {
    return [this](http_request req, http_server::respond_fn respond) {
      http_reply rep;
      rep.status = 200;
      rep.content_type = req.content_type.empty() ? "application/octet-stream"
                                                  : req.content_type;
      rep.body = tag + req.body;
      {
        std::lock_guard<std::mutex> guard{mtx};
        seen.push_back(std::move(req));
      }
      respond(std::move(rep));
    };
  }

  std::vector<http_request> requests() {
    std::lock_guard<std::mutex> guard{mtx};
    return seen;
  }
};

http_limits small_limits() {
  http_limits x;
  x.max_body_bytes = 1024;
  return x;
}

uint16_t start_or_fail(http_server& server, uint16_t port = 0) {
  auto res = server.start("127.0.0.1", port);
  REQUIRE_MESSAGE(res, render(res.error()));
  REQUIRE(*res != 0);
  return *res;
}

void write_text(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  std::fputs(text.c_str(), f);
  std::fclose(f);
}

using headers = std::vector<std::pair<std::string, std::string>>;

// Sends raw bytes on a fresh connection and reads until the server closes.
std::string raw_exchange(uint16_t port, const std::string& bytes) {
  int fd = test::raw_connect(port);
  size_t sent = 0;
  while (sent < bytes.size()) {
    auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent,
                    MSG_NOSIGNAL);
    if (n <= 0)
      break;
    sent += static_cast<size_t>(n);
  }
  auto out = test::read_to_close(fd);
  ::close(fd);
  return out;
}

} // namespace

TEST_CASE("the client posts a body and gets the server's answer") {
  echo app;
  http_server server{http_limits{}, app.handler()};
  auto port = start_or_fail(server);
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  auto res = client.post("/v1/sync", "hello, cloud",
                         {{"Content-Type", "application/x-protobuf"},
                          {"Content-Encoding", "zstd"}});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 200);
  CHECK(res->body == "hello, cloud");
  CHECK(res->content_type == "application/x-protobuf");
  auto seen = app.requests();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].target == "/v1/sync");
  CHECK(seen[0].content_type == "application/x-protobuf");
  CHECK(seen[0].content_encoding == "zstd");
  CHECK(seen[0].body == "hello, cloud");
  CHECK(seen[0].peer.rfind("127.0.0.1:", 0) == 0);
}

TEST_CASE("binary and empty bodies arrive unchanged") {
  echo app;
  http_server server{http_limits{}, app.handler()};
  auto port = start_or_fail(server);
  http_client client{"127.0.0.1", port, 10s, 8 * 1024 * 1024};
  std::string binary;
  for (int i = 0; i < 3 * 1024 * 1024; ++i)
    binary.push_back(static_cast<char>(i * 7 % 256));
  for (auto& body : {std::string(), std::string("\0\r\n\r\n\0", 6), binary}) {
    auto res = client.post("/echo", body, {});
    REQUIRE_MESSAGE(res, render(res.error()));
    CHECK(res->status == 200);
    CHECK(res->body.size() == body.size());
    CHECK(res->body == body);
  }
  CHECK(client.connects() == 1);
}

TEST_CASE("the client keeps the connection alive across requests") {
  echo app;
  http_server server{http_limits{}, app.handler()};
  auto port = start_or_fail(server);
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  for (int i = 0; i < 3; ++i) {
    auto body = "request " + std::to_string(i);
    auto res = client.post("/v1/sync", body, {});
    REQUIRE_MESSAGE(res, render(res.error()));
    CHECK(res->status == 200);
    CHECK(res->body == body);
  }
  CHECK(client.connects() == 1);
  auto counts = server.counters();
  CHECK(counts.connections_accepted == 1);
  CHECK(counts.requests == 3);
  CHECK(counts.requests_rejected == 0);
  // close() drops the connection; the next request opens a new one.
  client.close();
  REQUIRE(client.post("/v1/sync", "again", {}));
  CHECK(client.connects() == 2);
  CHECK(server.counters().connections_accepted == 2);
}

TEST_CASE("the server may answer from another thread") {
  std::mutex mtx;
  std::vector<std::thread> responders;
  auto handler = [&](http_request req, http_server::respond_fn respond) {
    std::lock_guard<std::mutex> guard{mtx};
    responders.emplace_back([req = std::move(req), respond] {
      http_reply rep;
      rep.status = 202;
      rep.content_type = "text/plain";
      rep.body = "later: " + req.body;
      respond(std::move(rep));
    });
  };
  {
    http_server server{http_limits{}, handler};
    auto port = start_or_fail(server);
    http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
    for (int i = 0; i < 3; ++i) {
      auto res = client.post("/x", std::to_string(i), {});
      REQUIRE_MESSAGE(res, render(res.error()));
      CHECK(res->status == 202);
      CHECK(res->body == "later: " + std::to_string(i));
    }
    CHECK(client.connects() == 1);
  }
  for (auto& t : responders)
    t.join();
}

TEST_CASE("a body over max_body_bytes is answered with 413") {
  echo app;
  http_server server{small_limits(), app.handler()};
  auto port = start_or_fail(server);
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  auto res = client.post("/v1/sync", std::string(4096, 'x'), {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 413);
  CHECK(res->error == "too_large: body limit exceeded");
  CHECK(app.requests().empty());
  CHECK(server.counters().requests_rejected == 1);
  // The limit itself is fine; the client reconnects after the 413 closed.
  res = client.post("/v1/sync", std::string(1024, 'y'), {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 200);
  CHECK(res->body == std::string(1024, 'y'));
  CHECK(client.connects() == 2);
  CHECK(app.requests().size() == 1);
}

TEST_CASE("an error answer carries X-Fleetd-Error: the handler's text, "
          "printable and bounded, or the status when it names none") {
  std::mutex mtx; // the handler runs on the server's thread
  std::string error;
  uint16_t status = 0;
  http_server server{small_limits(),
                     [&](http_request, http_server::respond_fn respond) {
                       http_reply rep;
                       {
                         std::lock_guard<std::mutex> guard{mtx};
                         rep.status = status;
                         rep.error = error;
                       }
                       respond(std::move(rep));
                     }};
  auto port = start_or_fail(server);
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  auto ask = [&](uint16_t st, std::string err) {
    {
      std::lock_guard<std::mutex> guard{mtx};
      status = st;
      error = std::move(err);
    }
    auto res = client.post("/v1/sync", "x", {});
    REQUIRE_MESSAGE(res, render(res.error()));
    CHECK(res->status == st);
    return res->error;
  };
  CHECK(ask(500, "") == "http_500: Internal Server Error");
  CHECK(ask(409, "bad_sequence: seen") == "bad_sequence: seen");
  CHECK(ask(400, "x: a\r\nInjected: 1\xff") == "x: a??Injected: 1?");
  CHECK(ask(503, std::string(1000, 'm')) == std::string(256, 'm'));
  // A success carries none, whatever the handler says.
  CHECK(ask(200, "ignored").empty());
}

TEST_CASE("a body over the limit declared by a raw request gets 413 and a "
          "close") {
  echo app;
  http_server server{small_limits(), app.handler()};
  auto port = start_or_fail(server);
  auto answer = raw_exchange(port, "POST /v1/sync HTTP/1.1\r\n"
                                   "Host: x\r\n"
                                   "Content-Length: 100000\r\n"
                                   "\r\n"
                                     + std::string(2000, 'x'));
  CHECK_MESSAGE(answer.rfind("HTTP/1.1 413", 0) == 0, answer);
  CHECK(answer.find("Connection: close") != std::string::npos);
}

TEST_CASE("a malformed request is answered with 400") {
  echo app;
  http_server server{http_limits{}, app.handler()};
  auto port = start_or_fail(server);
  auto answer = raw_exchange(port, "THIS IS NOT HTTP\r\n\r\n");
  CHECK_MESSAGE(answer.rfind("HTTP/1.1 400", 0) == 0, answer);
  CHECK(app.requests().empty());
  CHECK(server.counters().requests_rejected == 1);
}

TEST_CASE("headers over max_header_bytes are answered with 431") {
  echo app;
  http_limits limits;
  limits.max_header_bytes = 512;
  http_server server{limits, app.handler()};
  auto port = start_or_fail(server);
  auto answer = raw_exchange(port, "POST / HTTP/1.1\r\nHost: x\r\nX-Big: "
                                     + std::string(1000, 'h')
                                     + "\r\nContent-Length: 0\r\n\r\n");
  CHECK_MESSAGE(answer.rfind("HTTP/1.1 431", 0) == 0, answer);
}

TEST_CASE("a client without a server gets unreachable") {
  uint16_t port = 0;
  {
    echo app;
    http_server server{http_limits{}, app.handler()};
    port = start_or_fail(server);
  } // The port is free again.
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  auto res = client.post("/v1/sync", "x", {});
  REQUIRE_FALSE(res);
  CHECK_MESSAGE(has_code(res.error(), ec::unreachable), render(res.error()));
  CHECK(client.connects() == 0);
}

TEST_CASE("a post after the server stopped fails with unreachable") {
  echo app;
  http_server server{http_limits{}, app.handler()};
  auto port = start_or_fail(server);
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(client.post("/v1/sync", "before", {}));
  server.stop();
  auto res = client.post("/v1/sync", "after", {});
  REQUIRE_FALSE(res);
  CHECK_MESSAGE(has_code(res.error(), ec::unreachable), render(res.error()));
  // Stopping twice is harmless.
  server.stop();
}

TEST_CASE("the client reconnects after the server restarts on the same "
          "port") {
  echo first{"first:"};
  echo second{"second:"};
  http_server one{http_limits{}, first.handler()};
  auto port = start_or_fail(one);
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  auto res = client.post("/v1/sync", "a", {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->body == "first:a");
  one.stop();
  http_server two{http_limits{}, second.handler()};
  CHECK(start_or_fail(two, port) == port);
  // The kept-alive connection to the first server is stale now.
  res = client.post("/v1/sync", "b", {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 200);
  CHECK(res->body == "second:b");
  CHECK(client.connects() == 2);
  res = client.post("/v1/sync", "c", {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->body == "second:c");
  CHECK(client.connects() == 2);
  CHECK(first.requests().size() == 1);
  CHECK(second.requests().size() == 2);
}

// Reads one request (head and Content-Length body) from `fd`: its bytes, or
// what came before EOF.
std::string read_request(int fd) {
  std::string in;
  char buf[4096];
  for (;;) {
    auto head_end = in.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      size_t body = 0;
      if (auto cl = in.find("Content-Length: "); cl != std::string::npos)
        body = std::stoul(in.substr(cl + 16));
      if (in.size() >= head_end + 4 + body)
        return in;
    }
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      return in;
    in.append(buf, static_cast<size_t>(n));
  }
}

namespace {

// A listening socket on 127.0.0.1, any port (in `port`): a stand-in node.
int loopback_listener(uint16_t& port) {
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(lfd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(lfd, 4) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  port = ntohs(addr.sin_port);
  return lfd;
}

} // namespace

TEST_CASE("a request goes on a new connection, not into an idle one the "
          "server closed") {
  uint16_t port = 0;
  int lfd = loopback_listener(port);
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  std::mutex mtx;
  std::condition_variable cv;
  bool closed_first = false;
  std::string after_close; // what the first connection got after its FIN
  std::string second_request;
  // The server answers once, then closes its side as an idle timeout does
  // (still reading, so a request written there would be seen here).
  std::thread server{[&] {
    int a = ::accept(lfd, nullptr, nullptr);
    read_request(a);
    ::send(a, ok.data(), ok.size(), MSG_NOSIGNAL);
    ::shutdown(a, SHUT_WR);
    {
      std::lock_guard<std::mutex> guard{mtx};
      closed_first = true;
    }
    cv.notify_all();
    // Whatever comes first: the second request on the closed connection
    // (recorded, and the client left to fail) or a new connection.
    std::string late, req;
    pollfd ps[2] = {{a, POLLIN, 0}, {lfd, POLLIN, 0}};
    while (::poll(ps, 2, 10000) > 0) {
      if (ps[0].revents != 0) {
        late = read_request(a);
        if (!late.empty())
          break;
        ps[0].fd = -1; // the client's own close
      }
      if (ps[1].revents != 0) {
        int b = ::accept(lfd, nullptr, nullptr);
        req = read_request(b);
        ::send(b, ok.data(), ok.size(), MSG_NOSIGNAL);
        ::close(b);
        break;
      }
    }
    ::close(a);
    std::lock_guard<std::mutex> guard{mtx};
    after_close = late;
    second_request = req;
  }};
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  auto res = client.post("/v1/sync", "first", {});
  REQUIRE_MESSAGE(res, render(res.error()));
  {
    std::unique_lock<std::mutex> guard{mtx};
    cv.wait(guard, [&] { return closed_first; });
  }
  // Over loopback the FIN reached the client's socket before shutdown()
  // returned: the client's poll for it is what is tested.
  res = client.post("/v1/sync", "second", {});
  server.join();
  ::close(lfd);
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->body == "ok");
  CHECK(client.connects() == 2);
  CHECK(client.stale_closes() == 1);
  CHECK(after_close.empty());
  CHECK(second_request.find("second") != std::string::npos);
}

TEST_CASE("a server that never answers makes the client time out") {
  std::mutex mtx;
  std::vector<http_server::respond_fn> parked;
  auto token = std::make_shared<int>(0);
  auto handler = [&, token](http_request, http_server::respond_fn respond) {
    std::lock_guard<std::mutex> guard{mtx};
    parked.push_back(std::move(respond));
  };
  {
    http_server server{http_limits{}, handler};
    auto port = start_or_fail(server);
    http_client client{"127.0.0.1", port, 200ms, 1024 * 1024};
    auto res = client.post("/v1/sync", "anyone?", {});
    REQUIRE_FALSE(res);
    CHECK_MESSAGE(has_code(res.error(), ec::timeout), render(res.error()));
    server.stop();
  }
  // Answering after the stop (and the server's end) must not crash, and
  // once the answers are gone nothing of the server stays behind.
  std::lock_guard<std::mutex> guard{mtx};
  REQUIRE(parked.size() == 1);
  for (auto& respond : parked)
    respond(http_reply{});
  parked.clear();
  CHECK(token.use_count() == 2); // `token` and the copy in `handler`
}

TEST_CASE("a response over the client's limit is an error") {
  auto handler = [](http_request, http_server::respond_fn respond) {
    http_reply rep;
    rep.body = std::string(10000, 'r');
    respond(std::move(rep));
  };
  http_server server{http_limits{}, handler};
  auto port = start_or_fail(server);
  http_client client{"127.0.0.1", port, 10s, 1000};
  auto res = client.post("/", "x", {});
  REQUIRE_FALSE(res);
  CHECK_MESSAGE(has_code(res.error(), ec::unreachable), render(res.error()));
}

TEST_CASE("when full, the oldest idle connection makes room for a new one") {
  echo app;
  http_limits limits;
  limits.max_connections = 1;
  http_server server{limits, app.handler()};
  auto port = start_or_fail(server);
  http_client first{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(first.post("/", "1", {}));
  http_client second{"127.0.0.1", port, 10s, 1024 * 1024};
  auto res = second.post("/", "2", {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->body == "2");
  CHECK(server.counters().connections_evicted == 1);
  CHECK(server.counters().connections_rejected == 0);
}

// Opens a TCP connection from `source` (a 127.x address) and sends `bytes`.
int open_raw(uint16_t port, const std::string& bytes,
             const char* source = "127.0.0.1") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in src{};
  src.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &src.sin_addr);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) == 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
          == 0);
  if (!bytes.empty())
    ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  return fd;
}

TEST_CASE("a header that does not arrive within header_timeout closes the "
          "connection") {
  echo app;
  http_limits limits;
  limits.header_timeout = 200ms;
  http_server server{limits, app.handler()};
  auto port = start_or_fail(server);
  int stalled = open_raw(port, "POST / HTTP/1.1\r\nHost: x\r\n");
  int silent = open_raw(port, "");
  CHECK(test::eventually([&] { return server.counters().header_timeouts == 2; },
                         10s));
  char c;
  CHECK(::recv(stalled, &c, 1, 0) == 0);
  ::close(stalled);
  ::close(silent);
}

TEST_CASE("a body slower than min_body_rate is closed and counted: one that "
          "stalls after the grace, whatever length it claims") {
  echo app;
  http_limits limits;
  limits.header_timeout = 200ms;
  limits.min_body_rate = 1000;
  http_server server{limits, app.handler()};
  auto port = start_or_fail(server);
  // 1 MB claimed: at 1000 bytes/s it could take 1000 s, but none comes.
  int stalled = open_raw(port, "POST / HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: 1000000\r\n\r\nx");
  CHECK(test::eventually([&] { return server.counters().inflight_bytes > 0; },
                         10s));
  auto start = std::chrono::steady_clock::now();
  CHECK(test::eventually([&] { return server.counters().body_timeouts == 1; },
                         10s));
  auto took = std::chrono::steady_clock::now() - start;
  MESSAGE("closed after ", std::chrono::duration_cast<std::chrono::milliseconds>(
                             took).count(), " ms");
  CHECK(took < 5s);
  CHECK(server.counters().inflight_bytes == 0);
  ::close(stalled);
}

TEST_CASE("a body that keeps pace with min_body_rate is read past the grace") {
  echo app;
  http_limits limits;
  limits.header_timeout = 300ms;
  limits.min_body_rate = 500;
  http_server server{limits, app.handler()};
  auto port = start_or_fail(server);
  int fd = open_raw(port, "POST / HTTP/1.1\r\nHost: x\r\nConnection: close"
                          "\r\nContent-Length: 1000\r\n\r\n");
  // 100 bytes every 50 ms (2000 bytes/s) for 500 ms: past the grace, on
  // the pace it asks for.
  for (int i = 0; i < 10; ++i) {
    std::string part(100, 'a' + i);
    REQUIRE(::send(fd, part.data(), part.size(), MSG_NOSIGNAL) == 100);
    // Pacing the input, not waiting for the server.
    std::this_thread::sleep_for(50ms);
  }
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;)
    answer.append(buf, static_cast<size_t>(n));
  CHECK(answer.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(server.counters().body_timeouts == 0);
  ::close(fd);
}

TEST_CASE("connections beyond max_connections_per_address are closed at "
          "accept; other addresses still get in") {
  echo app;
  http_limits limits;
  limits.max_connections_per_address = 2;
  http_server server{limits, app.handler()};
  auto port = start_or_fail(server);
  int a = open_raw(port, "", "127.0.0.2");
  int b = open_raw(port, "", "127.0.0.2");
  int c = open_raw(port, "", "127.0.0.2");
  CHECK(test::eventually(
    [&] { return server.counters().connections_over_address_limit == 1; }, 10s));
  http_client device{"127.0.0.1", port, 10s, 1024 * 1024};
  auto res = device.post("/", "ok", {});
  REQUIRE_MESSAGE(res, render(res.error()));
  for (int fd : {a, b, c})
    ::close(fd);
}

TEST_CASE("past max_inflight_bytes a request gets 503 with Retry-After, not "
          "an allocation") {
  echo app;
  http_limits limits;
  limits.max_inflight_bytes = 1000;
  http_server server{limits, app.handler()};
  auto port = start_or_fail(server);
  // Holds 800 claimed bytes while it trickles.
  int holder = open_raw(port, "POST / HTTP/1.1\r\nHost: x\r\n"
                              "Content-Length: 800\r\n\r\nx");
  CHECK(test::eventually([&] { return server.counters().inflight_bytes == 800; },
                         10s));
  auto answer = raw_exchange(port, "POST / HTTP/1.1\r\nHost: x\r\n"
                                   "Content-Length: 300\r\n\r\n"
                                   + std::string(300, 'y'));
  CHECK(answer.rfind("HTTP/1.1 503", 0) == 0);
  CHECK(answer.find("Retry-After: 1") != std::string::npos);
  CHECK(server.counters().inflight_refused == 1);
  ::close(holder);
  CHECK(test::eventually([&] { return server.counters().inflight_bytes == 0; },
                         10s));
}

TEST_CASE("starting on a bad address or a taken port fails") {
  echo app;
  http_server a{http_limits{}, app.handler()};
  auto bad = a.start("not-an-ip", 0);
  REQUIRE_FALSE(bad);
  CHECK(has_code(bad.error(), ec::bad_config));
  http_server b{http_limits{}, app.handler()};
  auto port = start_or_fail(b);
  http_server c{http_limits{}, app.handler()};
  auto taken = c.start("127.0.0.1", port);
  REQUIRE_FALSE(taken);
  CHECK(has_code(taken.error(), ec::io_error));
  CHECK(render(taken.error()).find(std::to_string(port)) != std::string::npos);
}

TEST_CASE("a stopped server releases its handler") {
  auto token = std::make_shared<int>(0);
  {
    http_server server{http_limits{},
                       [token](http_request req,
                               http_server::respond_fn respond) {
                         http_reply rep;
                         rep.body = req.body;
                         respond(std::move(rep));
                       }};
    auto port = start_or_fail(server);
    http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
    REQUIRE(client.post("/", "x", {}));
    // The client keeps its connection open while the server stops.
    server.stop();
  }
  CHECK(token.use_count() == 1);
}

TEST_CASE("a server that never started stops and releases its handler") {
  auto token = std::make_shared<int>(0);
  {
    http_server server{http_limits{},
                       [token](http_request, http_server::respond_fn) {}};
  }
  CHECK(token.use_count() == 1);
}

// -- HTTPS --------------------------------------------------------------------

namespace {

// A PKI in a scratch dir, or a skip when tools/make-certs cannot run.
struct pki_fixture {
  test::scratch_dir tmp;
  test::test_pki pki = test::make_test_pki(tmp.path());
};

uint16_t start_tls_or_fail(http_server& server, const tls_files& files) {
  auto err = server.use_tls(files);
  REQUIRE_MESSAGE(!err, render(err));
  return start_or_fail(server);
}

} // namespace

TEST_CASE("HTTPS: a silent connection is closed at the header timeout; one "
          "that closes without a byte is no handshake failure") {
  pki_fixture f;
  echo app;
  http_limits limits;
  limits.header_timeout = 300ms;
  http_server server{limits, app.handler()};
  auto port = start_tls_or_fail(server, f.pki.server());
  int silent = open_raw(port, "");
  int gone = open_raw(port, "");
  ::close(gone);
  CHECK(test::eventually([&] { return server.counters().header_timeouts == 1; },
                         10s));
  char c;
  CHECK(::recv(silent, &c, 1, 0) == 0);
  ::close(silent);
  CHECK(server.counters().tls_handshake_failures == 0);
  CHECK(test::eventually([&] { return server.counters().connections_open == 0; },
                         10s));
  // A client that speaks is served as ever.
  http_client late{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!late.use_tls(f.pki.client()));
  auto res = late.post("/", "hi", {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->body == "hi");
}

TEST_CASE("HTTPS: a client trusting the CA talks to the server over TLS") {
  pki_fixture f;
  echo app;
  http_server server{http_limits{}, app.handler()};
  auto port = start_tls_or_fail(server, f.pki.server());
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!client.use_tls(f.pki.client()));
  for (auto body : {"one", "two"}) {
    auto res = client.post("/", body, {{"Authorization", "Bearer k"}});
    REQUIRE_MESSAGE(res, render(res.error()));
    CHECK(res->body == body);
  }
  CHECK(client.connects() == 1);
  auto seen = app.requests();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].authorization == "Bearer k");
  CHECK_FALSE(seen[0].client_cert);
  // A client speaking plain HTTP to the TLS port gets no answer.
  CHECK(raw_exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").find("HTTP/")
        == std::string::npos);
  CHECK(test::eventually(
    [&] { return server.counters().tls_handshake_failures == 1; }, 10s));
}

TEST_CASE("HTTPS: a new connection resumes the last one's TLS session, "
          "client certificate and all") {
  pki_fixture f;
  echo app;
  http_server server{http_limits{}, app.handler()};
  auto port = start_tls_or_fail(server, f.pki.server(true));
  http_client device{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!device.use_tls(f.pki.client(true)));
  for (auto body : {"one", "two", "three"}) {
    auto res = device.post("/", body, {});
    REQUIRE_MESSAGE(res, render(res.error()));
    CHECK(res->status == 200);
    CHECK(res->body == body);
    // As after the server's idle timeout: the next request reconnects.
    device.close();
  }
  CHECK(device.connects() == 3);
  CHECK(device.resumed() == 2);
  CHECK(server.counters().tls_resumed == 2);
  auto seen = app.requests();
  REQUIRE(seen.size() == 3);
  for (auto& r : seen)
    CHECK(r.client_cert); // the resumed sessions still carry the identity
  // New TLS files: the old session (and its identity) is not offered.
  REQUIRE(!device.use_tls(f.pki.client()));
  auto res = device.post("/", "anonymous", {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 403); // no client certificate now, none resumed
  CHECK(device.resumed() == 2);
  // A client of its own starts afresh.
  http_client other{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!other.use_tls(f.pki.client(true)));
  REQUIRE(other.post("/", "x", {}));
  CHECK(other.resumed() == 0);
}

TEST_CASE("HTTPS: the client refuses a server of another CA or name") {
  pki_fixture f;
  struct {
    const char* cert;
    const char* why;
  } cases[] = {{"stranger", "unable to get local issuer certificate"},
               {"wrongname", ""}};
  for (auto& c : cases) {
    CAPTURE(c.cert);
    echo app;
    http_server server{http_limits{}, app.handler()};
    auto port = start_tls_or_fail(
      server, {f.pki.file(std::string(c.cert) + ".pem"),
               f.pki.file(std::string(c.cert) + ".key"), ""});
    http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
    REQUIRE(!client.use_tls(f.pki.client()));
    auto res = client.post("/", "x", {});
    REQUIRE_FALSE(res);
    CHECK_MESSAGE(has_code(res.error(), ec::tls_error), render(res.error()));
    CHECK_MESSAGE(render(res.error()).find(c.why) != std::string::npos,
                  render(res.error()));
    CHECK(app.requests().empty());
  }
}

TEST_CASE("HTTPS: with a client CA, a request without a client certificate "
          "is refused 403 and counted") {
  pki_fixture f;
  echo app;
  http_server server{http_limits{}, app.handler()};
  auto port = start_tls_or_fail(server, f.pki.server(true));
  http_client anonymous{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!anonymous.use_tls(f.pki.client()));
  auto res = anonymous.post("/", "x", {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 403);
  CHECK(res->error.rfind("client_certificate_required", 0) == 0);
  CHECK(server.counters().client_cert_missing == 1);
  // A certificate of another CA fails the handshake itself.
  http_client stranger{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!stranger.use_tls({f.pki.file("stranger.pem"),
                             f.pki.file("stranger.key"),
                             f.pki.file("ca.pem")}));
  CHECK_FALSE(stranger.post("/", "x", {}));
  CHECK(app.requests().empty());
  http_client device{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!device.use_tls(f.pki.client(true)));
  auto ok = device.post("/", "x", {});
  REQUIRE_MESSAGE(ok, render(ok.error()));
  CHECK(ok->status == 200);
  REQUIRE(app.requests().size() == 1);
  CHECK(app.requests()[0].client_cert);
}

TEST_CASE("HTTPS: reloading the certificate keeps connections in flight and "
          "serves new ones with the new certificate") {
  pki_fixture f;
  echo app;
  http_server server{http_limits{}, app.handler()};
  auto live = f.pki.file("live");
  auto copy = [&](const std::string& from) {
    REQUIRE(std::system(("cp " + f.pki.file(from + ".pem") + " " + live
                         + ".pem && cp " + f.pki.file(from + ".key") + " "
                         + live + ".key")
                          .c_str())
            == 0);
  };
  copy("server");
  auto port = start_tls_or_fail(server, {live + ".pem", live + ".key", ""});
  http_client kept{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!kept.use_tls(f.pki.client()));
  REQUIRE(kept.post("/", "before", {}));
  // A broken file changes nothing.
  write_text(live + ".pem", "not a certificate");
  CHECK(server.reload_tls());
  http_client still{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!still.use_tls(f.pki.client()));
  CHECK(still.post("/", "old", {}));
  copy("stranger");
  REQUIRE(!server.reload_tls());
  auto in_flight = kept.post("/", "after", {});
  REQUIRE_MESSAGE(in_flight, render(in_flight.error()));
  CHECK(in_flight->body == "after");
  CHECK(kept.connects() == 1);
  http_client trusting_old{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!trusting_old.use_tls(f.pki.client()));
  CHECK_FALSE(trusting_old.post("/", "x", {}));
  http_client trusting_new{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(!trusting_new.use_tls({"", "", f.pki.file("other-ca.pem")}));
  CHECK(trusting_new.post("/", "new", {}));
}

TEST_CASE("HTTPS: configs naming missing or mismatched files fail at once") {
  pki_fixture f;
  auto missing = check_tls_server({f.pki.file("nope.pem"),
                                   f.pki.file("server.key"), ""});
  CHECK(render(missing).find("nope.pem") != std::string::npos);
  auto mismatch = check_tls_server({f.pki.file("server.pem"),
                                    f.pki.file("client.key"), ""});
  CHECK_MESSAGE(render(mismatch).find("client.key") != std::string::npos,
                render(mismatch));
  CHECK(!check_tls_server(f.pki.server(true)));
  CHECK(render(check_tls_client({"", "", f.pki.file("nope.pem")}))
          .find("nope.pem")
        != std::string::npos);
  CHECK(is_loopback_host("127.0.0.1"));
  CHECK(is_loopback_host("::1"));
  CHECK_FALSE(is_loopback_host("10.0.0.1"));
  CHECK_FALSE(is_loopback_host("0.0.0.0"));
}

namespace {

// A stream handler: decodes each frame with its connection's context and
// answers "<tag><plain>" (a body of "fail" gets 500); other requests 404.
struct stream_echo {
  std::mutex mtx;
  std::vector<std::string> plains;

  http_server::handler_fn handler() {
    return [this](http_request req, http_server::respond_fn respond) {
      if (!req.stream) {
        respond(text_reply(404, "not_found", "no " + req.target));
        return;
      }
      auto plain = req.stream->decode(req.body, 1 << 20);
      if (!plain) {
        respond(text_reply(500, "stream_corrupt", render(plain.error())));
        return;
      }
      {
        std::lock_guard<std::mutex> guard{mtx};
        plains.push_back(*plain);
      }
      http_reply rep;
      rep.status = *plain == "fail" ? 500 : 200;
      rep.body = "ack:" + *plain;
      respond(std::move(rep));
    };
  }
};

} // namespace

// A server answering with stream_echo, streams accepted unless told.
struct stream_node {
  stream_echo app;
  http_server server;
  uint16_t port;

  explicit stream_node(http_limits limits = {}, bool streams = true)
    : server(limits, app.handler()) {
    if (streams)
      server.accept_streams();
    port = start_or_fail(server);
  }
};

TEST_CASE("a sync stream: one upgrade, then frames both ways, each decoded "
          "in order against the ones before") {
  stream_node node;
  auto& server = node.server;
  auto port = node.port;
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  for (int i = 0; i < 5; ++i) {
    auto body = "round " + std::to_string(i) + " of the same text";
    auto res = client.stream_post(body, 3, {{"Authorization", "Bearer k"}});
    REQUIRE_MESSAGE(res, render(res.error()));
    CHECK(res->status == 200);
    CHECK(res->body == "ack:" + body);
    CHECK(client.last_frame_bytes() > 0);
    CHECK(client.streaming());
  }
  CHECK(client.connects() == 1);
  auto c = server.counters();
  CHECK(c.streams_opened == 1);
  CHECK(c.streams_open == 1);
  CHECK(c.stream_frames == 5);
  std::lock_guard<std::mutex> guard{node.app.mtx};
  CHECK(node.app.plains.size() == 5);
}

TEST_CASE("a server without streams answers the upgrade 404; the client "
          "stays on HTTP") {
  stream_node node{http_limits{}, false};
  auto& server = node.server;
  auto port = node.port;
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  auto res = client.stream_post("x", 3, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 404);
  CHECK(client.last_frame_bytes() == 0);
  CHECK(!client.streaming());
  CHECK(server.counters().streams_opened == 0);
}

TEST_CASE("past max_streams an upgrade gets 503 and the connection stays "
          "HTTP") {
  http_limits limits;
  limits.max_streams = 1;
  stream_node node{limits};
  auto& server = node.server;
  auto port = node.port;
  http_client first{"127.0.0.1", port, 10s, 1024 * 1024};
  http_client second{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(first.stream_post("a", 3, {}));
  auto res = second.stream_post("b", 3, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 503);
  CHECK(res->retry_after == "1");
  CHECK(!second.streaming());
  CHECK(server.counters().streams_refused == 1);
  // Closing the first frees its place.
  first.close();
  CHECK(test::eventually([&] { return server.counters().streams_open == 0; }, 10s));
  res = second.stream_post("b", 3, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 200);
  CHECK(second.streaming());
}

TEST_CASE("an answer other than 200 ends the stream; the next frame opens "
          "a new one with a fresh context") {
  stream_node node;
  auto& server = node.server;
  auto port = node.port;
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(client.stream_post("one", 3, {}));
  auto res = client.stream_post("fail", 3, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 500);
  CHECK(!client.streaming());
  res = client.stream_post("one again", 3, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->body == "ack:one again");
  CHECK(client.connects() == 2);
  CHECK(server.counters().streams_opened == 2);
}

TEST_CASE("a stream the server closed when idle is opened afresh at the "
          "next frame") {
  http_limits limits;
  limits.idle_timeout = 100ms;
  stream_node node{limits};
  auto& server = node.server;
  auto port = node.port;
  http_client client{"127.0.0.1", port, 10s, 1024 * 1024};
  REQUIRE(client.stream_post("one", 3, {}));
  REQUIRE(test::eventually([&] { return server.counters().streams_open == 0; }, 10s));
  auto res = client.stream_post("two", 3, {});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->body == "ack:two");
  CHECK(client.connects() == 2);
  CHECK(client.stale_closes() == 1);
}

TEST_CASE("hostile frames: too long, a bad length, a corrupt payload each "
          "close the stream, and the first two are counted") {
  http_limits limits;
  limits.max_body_bytes = 1024;
  stream_node node{limits};
  auto& server = node.server;
  auto port = node.port;
  SUBCASE("longer than max_body_bytes, or a length longer than any varint") {
    std::string too_long;
    put_varint(too_long, 1025);
    int64_t rejected = 0;
    for (auto& frame : {too_long, std::string(12, '\xff')}) {
      int fd = test::raw_stream(port);
      ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
      CHECK(test::read_to_close(fd).empty());
      ::close(fd);
      ++rejected;
      CHECK(test::eventually(
        [&] { return server.counters().stream_frames_rejected == rejected; },
        10s));
    }
  }
  SUBCASE("a payload that is not zstd: the handler's 500, then the close") {
    int fd = test::raw_stream(port);
    std::string frame;
    put_varint(frame, 5);
    frame += "hello";
    auto ans = test::raw_frame_exchange(fd, frame);
    ::close(fd);
    CHECK(ans.status == 500);
    CHECK(ans.error.rfind("stream_corrupt", 0) == 0);
  }
  CHECK(test::eventually([&] { return server.counters().streams_open == 0; }, 10s));
}

namespace {

// Reads one stream frame from `fd` (its payload), or "" when it closed.
std::string read_frame_raw(int fd) {
  std::string buf;
  char ch;
  for (;;) {
    size_t at = 0;
    auto end = frame_end(buf, 1 << 20, at);
    REQUIRE(end);
    if (*end > 0)
      return buf.substr(at);
    if (::recv(fd, &ch, 1, 0) != 1)
      return "";
    buf += ch;
  }
}

// Reads the upgrade request's header and answers 101.
void accept_upgrade(int fd) {
  std::string head;
  char ch;
  while (head.find("\r\n\r\n") == std::string::npos
         && ::recv(fd, &ch, 1, 0) == 1)
    head += ch;
  std::string ok = "HTTP/1.1 101 Switching Protocols\r\nConnection: "
                   "Upgrade\r\nUpgrade: fleetd-stream/1\r\n\r\n";
  ::send(fd, ok.data(), ok.size(), MSG_NOSIGNAL);
}

} // namespace

TEST_CASE("a frame into a stream the node ends without answering goes once "
          "more on a new stream") {
  uint16_t port = 0;
  int lfd = loopback_listener(port);
  http_reply ok;
  ok.body = "ok";
  auto answer = encode_answer_frame(ok, "");
  int frames_second = 0;
  // The first stream answers one frame, then reads the next and closes, as
  // a node's idle close racing a device's write; the second answers.
  std::thread node{[&] {
    int a = ::accept(lfd, nullptr, nullptr);
    accept_upgrade(a);
    REQUIRE(!read_frame_raw(a).empty());
    ::send(a, answer.data(), answer.size(), MSG_NOSIGNAL);
    REQUIRE(!read_frame_raw(a).empty());
    ::close(a);
    // A client that does not come again fails the test, not hangs it.
    pollfd p{lfd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1)
      return;
    int b = ::accept(lfd, nullptr, nullptr);
    accept_upgrade(b);
    if (!read_frame_raw(b).empty()) {
      ++frames_second;
      ::send(b, answer.data(), answer.size(), MSG_NOSIGNAL);
    }
    test::read_to_close(b);
    ::close(b);
  }};
  http_client client{"127.0.0.1", port, 10s, 1 << 20};
  auto first = client.stream_post("one", 3, {});
  REQUIRE_MESSAGE(first, render(first.error()));
  auto second = client.stream_post("two", 3, {});
  client.close();
  node.join();
  ::close(lfd);
  REQUIRE_MESSAGE(second, render(second.error()));
  CHECK(second->body == "ok");
  CHECK(client.connects() == 2);
  CHECK(client.stale_closes() == 1);
  CHECK(frames_second == 1);
}
