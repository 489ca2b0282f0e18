#pragma once

#include <cstdint>
#include <string_view>

#include <caf/expected.hpp>

namespace google::protobuf {
class Descriptor;
} // namespace google::protobuf

namespace fleetd {

/// An upper bound of the bytes that parsing `wire` as a message of `type`
/// allocates: every message object, repeated field array (with its growth),
/// string and unknown field it would hold. Walks the wire format without
/// allocating, so a body is charged before it is parsed: two bytes of an
/// empty sub-message become an object of 50 and more, one byte of a packed
/// varint eight. Stops with ec::too_large once past `limit`;
/// ec::decode_failed when the bytes are no message (bad varint, length past
/// the end, a group, nesting deeper than protobuf's own limit).
caf::expected<uint64_t> parse_bound(std::string_view wire,
                                    const google::protobuf::Descriptor* type,
                                    uint64_t limit);

} // namespace fleetd
