#include "helpers.hpp"
#include "fuzz.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include <doctest/doctest.h>

#include "tools/pg_server/waiting.hpp"
#include "messages/stream_codec.hpp"

namespace fleetd::test {

bool eventually(const std::function<bool()>& condition,
                std::chrono::milliseconds deadline) {
  return poll_until(condition, deadline);
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0
            && ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  REQUIRE(ok);
  return ntohs(addr.sin_port);
}

std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds deadline) {
  return wait_for_child(pid, deadline);
}

int raw_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
          == 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

int raw_stream(uint16_t port) {
  int fd = raw_connect(port);
  std::string up = "GET /v5/stream HTTP/1.1\r\nHost: x\r\nConnection: "
                   "Upgrade\r\nUpgrade: fleetd-stream/1\r\n\r\n";
  REQUIRE(::send(fd, up.data(), up.size(), MSG_NOSIGNAL)
          == static_cast<ssize_t>(up.size()));
  std::string head;
  char ch;
  while (head.find("\r\n\r\n") == std::string::npos
         && ::recv(fd, &ch, 1, 0) == 1)
    head += ch;
  REQUIRE(head.rfind("HTTP/1.1 101 ", 0) == 0);
  return fd;
}

answer_frame raw_frame_exchange(int fd, const std::string& frame) {
  REQUIRE(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL)
          == static_cast<ssize_t>(frame.size()));
  auto got = read_to_close(fd);
  size_t at = 0;
  auto end = frame_end(got, 1 << 20, at);
  REQUIRE(end);
  REQUIRE(*end == got.size());
  auto ans = decode_answer_frame(std::string_view(got).substr(at));
  REQUIRE(ans);
  return std::move(*ans);
}

std::string read_to_close(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

long fuzz_iterations(long fallback) {
  if (auto* env = std::getenv("FLEETD_FUZZ_ITERATIONS"))
    return std::atol(env);
  return fallback;
}

std::string mutate(std::string text, std::string_view alphabet,
                   std::mt19937_64& rng) {
  auto edits = 1 + rng() % 8;
  for (size_t e = 0; e < edits; ++e) {
    auto at = text.empty() ? 0 : rng() % text.size();
    switch (rng() % 4) {
      case 0:
        if (!text.empty())
          text[at] = static_cast<char>(rng());
        break;
      case 1:
        text.insert(at, 1, alphabet[rng() % alphabet.size()]);
        break;
      case 2:
        text.erase(at, 1 + rng() % 6);
        break;
      default:
        if (!text.empty())
          text.insert(at, text.substr(rng() % text.size(), 1 + rng() % 40));
    }
  }
  return text;
}

} // namespace fleetd::test
