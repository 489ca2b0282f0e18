#include "runtime/basp_frames.hpp"

#include <algorithm>

namespace fleetd {

namespace {

// BASP 0.17 header fields, big-endian (CAF's binary serializer).
uint64_t be(const uint8_t* p, size_t n) {
  uint64_t out = 0;
  for (size_t i = 0; i < n; ++i)
    out = (out << 8) | p[i];
  return out;
}

enum op : uint8_t {
  server_handshake = 0,
  client_handshake = 1,
  direct_message = 2,
  routed_message = 3,
  monitor_message = 4,
  down_message = 5,
  heartbeat = 6,
};

constexpr uint8_t named_receiver_flag = 0x01;

} // namespace

basp_frames::basp_frames(basp_direction dir, uint32_t max_payload,
                         uint64_t allowed_dest)
  : dir_(dir), max_payload_(max_payload), allowed_dest_(allowed_dest) {
}

bool basp_frames::feed(const uint8_t* data, size_t n,
                       std::vector<uint8_t>& out) {
  if (!why_.empty())
    return false;
  while (n > 0) {
    if (payload_left_ > 0) {
      auto k = static_cast<size_t>(std::min<uint64_t>(payload_left_, n));
      if (!dropping_)
        out.insert(out.end(), data, data + k);
      payload_left_ -= k;
      data += k;
      n -= k;
      if (payload_left_ == 0)
        ++frames_;
      continue;
    }
    auto k = std::min(n, header_size - header_have_);
    std::copy(data, data + k, header_.begin() + header_have_);
    header_have_ += k;
    data += k;
    n -= k;
    if (header_have_ < header_size)
      break;
    header_have_ = 0;
    auto v = check_header();
    if (v == verdict::close)
      return false;
    dropping_ = v == verdict::drop;
    dropped_ += dropping_ ? 1 : 0;
    if (!dropping_)
      out.insert(out.end(), header_.begin(), header_.end());
    if (payload_left_ == 0)
      ++frames_;
  }
  return true;
}

basp_frames::verdict basp_frames::check_header() {
  auto* h = header_.data();
  auto operation = h[0];
  auto flags = h[3];
  payload_left_ = be(h + 4, 4);
  auto dest = be(h + 24, 8);
  if (payload_left_ > max_payload_) {
    why_ = "frame of " + std::to_string(payload_left_) + " bytes (limit "
           + std::to_string(max_payload_) + ")";
    return verdict::close;
  }
  bool first = headers_++ == 0;
  if (dir_ == basp_direction::to_console)
    return verdict::pass;
  // A console peer starts with its handshake (CAF may repeat it later).
  if (first && operation != client_handshake) {
    why_ = "first frame is operation " + std::to_string(operation)
           + ", not a handshake";
    return verdict::close;
  }
  switch (operation) {
    case client_handshake:
    case heartbeat:
    case down_message:
      return verdict::pass;
    case direct_message:
    case monitor_message:
      // Named receivers (ConfigServ, SpawnServ) and other actors: not here.
      return (flags & named_receiver_flag) == 0 && dest == allowed_dest_
               ? verdict::pass
               : verdict::drop;
    default:
      // Routing through this node and server handshakes: not a console's.
      return verdict::drop;
  }
}

} // namespace fleetd
