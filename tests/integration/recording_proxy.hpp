#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace fleetd::test {

/// An HTTP/1.1 proxy for tests: each request to 127.0.0.1:<port()> goes on
/// to 127.0.0.1:<upstream> (one upstream connection per client connection,
/// closed together), its answer back. Once armed, it holds back the next
/// request for a path instead: keeps its bytes, forwards nothing and keeps
/// the client waiting until release() closes that connection. So a test can
/// send a device's real request wherever it likes while the device waits.
class recording_proxy {
public:
  explicit recording_proxy(uint16_t upstream_port);
  ~recording_proxy();
  recording_proxy(const recording_proxy&) = delete;
  recording_proxy& operator=(const recording_proxy&) = delete;

  /// The bound listening port.
  uint16_t port() const;

  /// Holds back the next request whose target is `path` (e.g. "/v1/sync").
  void arm(const std::string& path);
  /// The held request as sent (request line, headers, body); nullopt until
  /// one is held.
  std::optional<std::string> held() const;
  /// Closes the held request's connection: the client sees it fail.
  void release();
  /// Requests forwarded and answered so far.
  int64_t forwarded() const;

  /// Closes the listener and every connection and joins the threads.
  /// Idempotent; also run by the destructor.
  void stop();

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

/// Sends `raw` (a whole HTTP request) to 127.0.0.1:`port` on a new
/// connection, `ready` called once connected (to line senders up), and
/// reads one answer: (status, body); status -1 when the exchange failed.
std::pair<int, std::string> http_exchange(uint16_t port,
                                          const std::string& raw,
                                          const std::function<void()>& ready
                                          = {});

} // namespace fleetd::test
