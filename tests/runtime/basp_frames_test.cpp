// The console front's BASP frame check against headers CAF itself writes.
#include <doctest/doctest.h>

#include <caf/binary_serializer.hpp>
#include <caf/io/basp/header.hpp>

#include "runtime/basp_frames.hpp"

using namespace fleetd;
namespace basp = caf::io::basp;

namespace {

constexpr uint64_t console_id = 42;

// A frame as CAF 0.17.6 puts it on the wire: its header, then the payload.
std::vector<uint8_t> frame(basp::message_type op, uint8_t flags,
                           uint32_t payload_len, uint64_t dest,
                           size_t payload_present = SIZE_MAX) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  basp::header hdr{op, flags, payload_len, 0, 7, dest};
  REQUIRE(!sink(hdr));
  REQUIRE(buf.size() == basp_frames::header_size);
  buf.resize(buf.size() + std::min<size_t>(payload_len, payload_present), 'p');
  return {buf.begin(), buf.end()};
}

struct stream {
  basp_frames frames{basp_direction::to_node, 1024, console_id};
  std::vector<uint8_t> out;

  // Feeds `bytes` one at a time, as a peer trickling them would.
  bool feed(const std::vector<uint8_t>& bytes) {
    for (auto b : bytes)
      if (!frames.feed(&b, 1, out))
        return false;
    return true;
  }
};

} // namespace

TEST_CASE("a console peer's handshake and requests to the console pass") {
  stream s;
  auto hello = frame(basp::message_type::client_handshake, 0, 100, 0);
  auto ask = frame(basp::message_type::direct_message, 0, 300, console_id);
  auto beat = frame(basp::message_type::heartbeat, 0, 0, 0);
  CHECK_FALSE(s.frames.handshake_seen());
  REQUIRE(s.feed(hello));
  CHECK(s.frames.handshake_seen());
  REQUIRE(s.feed(ask));
  REQUIRE(s.feed(beat));
  std::vector<uint8_t> all = hello;
  all.insert(all.end(), ask.begin(), ask.end());
  all.insert(all.end(), beat.begin(), beat.end());
  CHECK(s.out == all);
  CHECK(s.frames.dropped() == 0);
}

TEST_CASE("messages to named receivers and other actors are left out") {
  stream s;
  auto hello = frame(basp::message_type::client_handshake, 0, 10, 0);
  REQUIRE(s.feed(hello));
  auto config_serv = static_cast<uint64_t>(caf::atom("ConfigServ"));
  REQUIRE(s.feed(frame(basp::message_type::direct_message,
                       basp::header::named_receiver_flag, 500, config_serv)));
  REQUIRE(s.feed(frame(basp::message_type::direct_message, 0, 50, 7)));
  REQUIRE(s.feed(frame(basp::message_type::routed_message, 0, 50, console_id)));
  REQUIRE(s.feed(frame(basp::message_type::monitor_message, 0, 0, 99)));
  auto ask = frame(basp::message_type::direct_message, 0, 20, console_id);
  REQUIRE(s.feed(ask));
  std::vector<uint8_t> all = hello;
  all.insert(all.end(), ask.begin(), ask.end());
  CHECK(s.out == all);
  CHECK(s.frames.dropped() == 4);
}

TEST_CASE("a header announcing more than the limit closes the stream at once") {
  stream s;
  REQUIRE(s.feed(frame(basp::message_type::client_handshake, 0, 10, 0)));
  s.out.clear();
  CHECK_FALSE(s.feed(frame(basp::message_type::direct_message, 0,
                           0xFFFFFFF0u, console_id, 0)));
  CHECK(s.frames.why() == "frame of 4294967280 bytes (limit 1024)");
  CHECK(s.out.empty());
  uint8_t more = 0;
  CHECK_FALSE(s.frames.feed(&more, 1, s.out));
}

TEST_CASE("a stream that does not open with a handshake is closed") {
  stream s;
  CHECK_FALSE(s.feed(frame(basp::message_type::direct_message, 0, 5,
                           console_id)));
  CHECK(s.frames.why().find("not a handshake") != std::string::npos);
}

TEST_CASE("towards the console only the size is checked") {
  basp_frames frames{basp_direction::to_console, 1024, 0};
  std::vector<uint8_t> out;
  auto hello = frame(basp::message_type::server_handshake, 0, 30, 0);
  CHECK(frames.feed(hello.data(), hello.size(), out));
  CHECK(out == hello);
  auto huge = frame(basp::message_type::direct_message, 0, 1u << 30, 5, 0);
  CHECK_FALSE(frames.feed(huge.data(), huge.size(), out));
}
