#include "recording_proxy.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace fleetd::test {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

struct recording_proxy::impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  uint16_t upstream = 0;
  mutable std::mutex mtx;
  std::condition_variable cv;
  std::string armed;
  std::optional<std::string> held;
  bool released = false;
  bool stopping = false;
  std::atomic<int64_t> forwarded{0};
  // Open sockets, shut down by stop() so that blocked reads return.
  std::set<int> open;
  std::vector<std::thread> threads;
  std::thread accepting;

  void track(tcp::socket& s) {
    std::lock_guard<std::mutex> guard{mtx};
    open.insert(s.native_handle());
  }

  void close(tcp::socket& s) {
    if (!s.is_open())
      return;
    {
      std::lock_guard<std::mutex> guard{mtx};
      open.erase(s.native_handle());
    }
    boost::system::error_code ec;
    s.close(ec);
  }

  // True when `req` is the one to hold: kept, and the caller waits here
  // until release() or stop().
  bool hold(const http::request<http::string_body>& req) {
    std::unique_lock<std::mutex> lock{mtx};
    if (armed.empty() || req.target() != armed || held)
      return false;
    std::ostringstream os;
    os << req;
    held = os.str();
    armed.clear();
    cv.wait(lock, [&] { return released || stopping; });
    return true;
  }

  // One client connection: its requests one after the other.
  void serve(tcp::socket client) {
    boost::beast::flat_buffer from_client;
    boost::beast::flat_buffer from_upstream;
    tcp::socket up{io};
    for (;;) {
      boost::beast::error_code ec;
      http::request<http::string_body> req;
      http::read(client, from_client, req, ec);
      if (ec || hold(req))
        break;
      if (!up.is_open()) {
        up.connect({asio::ip::address_v4::loopback(), upstream}, ec);
        if (ec)
          break;
        track(up);
      }
      http::response<http::string_body> res;
      http::write(up, req, ec);
      if (!ec)
        http::read(up, from_upstream, res, ec);
      if (!ec)
        http::write(client, res, ec);
      if (ec)
        break;
      ++forwarded;
    }
    close(up);
    close(client);
  }

  void accept_loop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s{io};
      acceptor.accept(s, ec);
      std::lock_guard<std::mutex> guard{mtx};
      if (ec || stopping)
        return;
      open.insert(s.native_handle());
      threads.emplace_back(
        [this, s = std::move(s)]() mutable { serve(std::move(s)); });
    }
  }
};

recording_proxy::recording_proxy(uint16_t upstream_port)
  : impl_(std::make_shared<impl>()) {
  impl_->upstream = upstream_port;
  tcp::endpoint at{asio::ip::address_v4::loopback(), 0};
  impl_->acceptor.open(at.protocol());
  impl_->acceptor.bind(at);
  impl_->acceptor.listen();
  impl_->accepting = std::thread([p = impl_.get()] { p->accept_loop(); });
}

recording_proxy::~recording_proxy() {
  stop();
}

uint16_t recording_proxy::port() const {
  return impl_->acceptor.local_endpoint().port();
}

void recording_proxy::arm(const std::string& path) {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->armed = path;
}

std::optional<std::string> recording_proxy::held() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->held;
}

void recording_proxy::release() {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  impl_->released = true;
  impl_->cv.notify_all();
}

int64_t recording_proxy::forwarded() const {
  return impl_->forwarded;
}

void recording_proxy::stop() {
  auto& p = *impl_;
  {
    std::lock_guard<std::mutex> guard{p.mtx};
    if (p.stopping)
      return;
    p.stopping = true;
    p.cv.notify_all();
    ::shutdown(p.acceptor.native_handle(), SHUT_RDWR);
    for (auto fd : p.open)
      ::shutdown(fd, SHUT_RDWR);
  }
  p.accepting.join();
  // No thread is added once accept_loop has returned.
  for (auto& t : p.threads)
    t.join();
  boost::system::error_code ec;
  p.acceptor.close(ec);
}

std::pair<int, std::string> http_exchange(uint16_t port,
                                          const std::string& raw,
                                          const std::function<void()>& ready) {
  asio::io_context io;
  tcp::socket s{io};
  boost::beast::error_code ec;
  s.connect({asio::ip::address_v4::loopback(), port}, ec);
  if (ec)
    return {-1, ec.message()};
  if (ready)
    ready();
  asio::write(s, asio::buffer(raw), ec);
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  if (!ec)
    http::read(s, buf, res, ec);
  if (ec)
    return {-1, ec.message()};
  return {static_cast<int>(res.result_int()), res.body()};
}

} // namespace fleetd::test
