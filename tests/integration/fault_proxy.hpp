#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace fleetd::test {

/// A TCP proxy for tests: listens on 127.0.0.1:<port()> and forwards each
/// accepted connection to 127.0.0.1:<upstream>, on its own Asio thread.
/// Its fault mode can be changed at any time from any thread.
///
/// Modes (each applies to every chunk read from either side from then on):
///  - pass:      forward as is.
///  - delay:     hold each chunk back `ms` before forwarding it.
///  - throttle:  forward at most about `bytes_per_s` per direction and
///               connection (chunks are cut small and paced).
///  - drop:      close every open connection now, and each new one right
///               after accept.
///  - blackhole: accept and keep connections open but forward nothing in
///               either direction; bytes already read are held, and sent on
///               once the mode leaves blackhole (like a healed partition).
class fault_proxy {
public:
  struct counters {
    int64_t connections = 0; ///< Accepted, including those dropped at once.
    int64_t dropped = 0;     ///< Closed by `drop`.
    int64_t bytes_up = 0;    ///< Forwarded client -> upstream.
    int64_t bytes_down = 0;  ///< Forwarded upstream -> client.
    int64_t open = 0;        ///< Connections open now.
    int64_t writing = 0;     ///< Chunks being written now (0: none moves).
  };

  explicit fault_proxy(uint16_t upstream_port);
  ~fault_proxy();
  fault_proxy(const fault_proxy&) = delete;
  fault_proxy& operator=(const fault_proxy&) = delete;

  /// The bound listening port.
  uint16_t port() const;

  void pass();
  void delay(std::chrono::milliseconds ms);
  void throttle(int64_t bytes_per_s);
  void drop();
  void blackhole();

  /// Sees every chunk once it is forwarded: the connection's number (from
  /// 1, in accept order), its direction (true: client -> upstream) and the
  /// bytes. Runs on the proxy's thread; set it before any connection.
  using tap_fn = std::function<void(uint64_t connection, bool up,
                                    std::string_view bytes)>;
  void tap(tap_fn f);

  /// The current mode as text, e.g. "delay(200ms)".
  std::string mode() const;
  counters stats() const;

  /// Closes the listener and every connection and joins the thread.
  /// Idempotent; also run by the destructor.
  void stop();

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace fleetd::test
