#pragma once

// Base-128 varints and zigzag, as protobuf writes them: one copy for the
// hand-written encoders (metrics codec, v4 log recoding, rounds file).

#include <cstdint>
#include <string>
#include <string_view>

namespace fleetd {

inline void put_varint(std::string& out, uint64_t x) {
  while (x >= 0x80) {
    out.push_back(static_cast<char>((x & 0x7F) | 0x80));
    x >>= 7;
  }
  out.push_back(static_cast<char>(x));
}

/// Reads one varint at `pos` (advanced past it); false past the end of `in`
/// or for more than 64 bits.
inline bool get_varint(std::string_view in, size_t& pos, uint64_t& x) {
  x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= in.size())
      return false;
    auto b = static_cast<uint8_t>(in[pos++]);
    if (shift == 63 && b > 1)
      return false;
    x |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0)
      return true;
  }
  return false;
}

/// Reads varints from `in` at `pos`; the first read past the end (or of
/// more than 64 bits) clears `ok`, and every read after it gives 0.
struct varint_reader {
  std::string_view in;
  size_t pos = 0;
  bool ok = true;

  size_t left() const {
    return in.size() - pos;
  }
  uint64_t varint() {
    uint64_t x = 0;
    if (!ok || !get_varint(in, pos, x)) {
      ok = false;
      return 0;
    }
    return x;
  }
};

/// An int64 in two's complement, carried as uint64, as a zigzag value.
inline uint64_t zigzag(uint64_t x) {
  return (x << 1) ^ (0 - (x >> 63));
}

inline uint64_t unzigzag(uint64_t x) {
  return (x >> 1) ^ (0 - (x & 1));
}

} // namespace fleetd
