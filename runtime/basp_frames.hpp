#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fleetd {

/// Which direction a byte stream of CAF BASP frames flows.
enum class basp_direction {
  /// A console peer to the node: only what a console needs passes.
  to_node,
  /// The node to the console: only the frame size is checked.
  to_console,
};

/// Checks a BASP byte stream frame by frame before CAF sees it. CAF 0.17.6
/// allocates a frame's announced payload before reading it and lets a peer
/// address any actor; this refuses both on the 32-byte header.
class basp_frames {
public:
  static constexpr size_t header_size = 32;

  /// `allowed_dest`: the one actor id a peer may message (to_node).
  basp_frames(basp_direction dir, uint32_t max_payload, uint64_t allowed_dest);

  /// Checks the next `n` bytes of the stream and appends those that may pass
  /// to `out`; a frame for anyone but the console is left out (counted in
  /// `dropped`). False (see `why`) when the connection is to be closed: a
  /// frame too large or a stream that is no console's.
  bool feed(const uint8_t* data, size_t n, std::vector<uint8_t>& out);

  int64_t dropped() const {
    return dropped_;
  }

  /// True once a whole frame passed (the peer's BASP handshake, to_node).
  bool handshake_seen() const {
    return frames_ > 0;
  }

  const std::string& why() const {
    return why_;
  }

private:
  enum class verdict { pass, drop, close };
  verdict check_header();

  basp_direction dir_;
  uint32_t max_payload_;
  uint64_t allowed_dest_;
  std::array<uint8_t, header_size> header_{};
  size_t header_have_ = 0;
  uint64_t payload_left_ = 0;
  uint64_t frames_ = 0;
  uint64_t headers_ = 0;
  bool dropping_ = false;
  int64_t dropped_ = 0;
  std::string why_;
};

} // namespace fleetd
