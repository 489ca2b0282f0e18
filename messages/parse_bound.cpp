#include "messages/parse_bound.hpp"

#include <map>
#include <string>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include "messages/error.hpp"

namespace fleetd {

namespace {

namespace gp = google::protobuf;

// What a heap allocation costs beyond its bytes (malloc's header, rounding).
constexpr uint64_t alloc_overhead = 16;
// A growing repeated field holds its old array and the doubled one at once.
constexpr uint64_t growth = 3;
// An unknown field: its entry in the message's set (with growth), the set.
constexpr uint64_t unknown_field_bytes = 64;
// A string on the heap: the object, and its bytes in a buffer of their own.
constexpr uint64_t string_bytes = sizeof(std::string) + 2 * alloc_overhead + 1;
// protobuf refuses deeper nesting too (its default recursion limit).
constexpr int max_depth = 100;

enum wire_type : uint32_t {
  varint = 0,
  fixed64 = 1,
  delimited = 2,
  fixed32 = 5,
};

bool read_varint(std::string_view& in, uint64_t& out) {
  out = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty())
      return false;
    auto b = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    out |= uint64_t{b & 0x7fu} << shift;
    if ((b & 0x80) == 0)
      return true;
  }
  return false;
}

// The wire type a field is sent as when not packed; a group has none here.
uint32_t wire_type_of(const gp::FieldDescriptor* f) {
  switch (f->type()) {
    case gp::FieldDescriptor::TYPE_DOUBLE:
    case gp::FieldDescriptor::TYPE_FIXED64:
    case gp::FieldDescriptor::TYPE_SFIXED64:
      return fixed64;
    case gp::FieldDescriptor::TYPE_FLOAT:
    case gp::FieldDescriptor::TYPE_FIXED32:
    case gp::FieldDescriptor::TYPE_SFIXED32:
      return fixed32;
    case gp::FieldDescriptor::TYPE_STRING:
    case gp::FieldDescriptor::TYPE_BYTES:
    case gp::FieldDescriptor::TYPE_MESSAGE:
      return delimited;
    case gp::FieldDescriptor::TYPE_GROUP:
      return 3;
    default:
      return varint;
  }
}

// Bytes of one element of a repeated scalar field in memory.
uint64_t scalar_bytes(const gp::FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case gp::FieldDescriptor::CPPTYPE_INT64:
    case gp::FieldDescriptor::CPPTYPE_UINT64:
    case gp::FieldDescriptor::CPPTYPE_DOUBLE:
      return 8;
    case gp::FieldDescriptor::CPPTYPE_BOOL:
      return 1;
    default:
      return 4;
  }
}

// Elements a packed payload of `f` holds: one per varint (each ends in a
// byte below 0x80), or its length over the fixed width, rounded up.
uint64_t packed_count(std::string_view payload, uint32_t type) {
  if (type == fixed64)
    return (payload.size() + 7) / 8;
  if (type == fixed32)
    return (payload.size() + 3) / 4;
  uint64_t n = 0;
  for (auto c : payload)
    n += (static_cast<uint8_t>(c) & 0x80) == 0 ? 1 : 0;
  return n + 1;
}

caf::error not_a_message(const char* why) {
  return make_error(ec::decode_failed, std::string("not a protobuf message: ")
                                         + why);
}

class walker {
public:
  explicit walker(uint64_t limit) : limit_(limit) {
  }

  uint64_t total() const {
    return total_;
  }

  bool over() const {
    return total_ > limit_;
  }

  // Adds what the fields of one `type` message in `in` allocate.
  caf::error message(std::string_view in, const gp::Descriptor* type,
                     int depth) {
    if (depth > max_depth)
      return not_a_message("nested too deep");
    while (!in.empty() && !over()) {
      uint64_t tag = 0;
      if (!read_varint(in, tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return not_a_message("bad field tag");
      auto type_on_wire = static_cast<uint32_t>(tag & 7);
      std::string_view payload;
      if (auto err = take(in, type_on_wire, payload))
        return err;
      auto* f = type->FindFieldByNumber(static_cast<int>(tag >> 3));
      if (auto err = field(f, type_on_wire, payload, depth))
        return err;
    }
    return caf::none;
  }

private:
  // Splits the value of a field of `type` off `in` (a group: refused).
  static caf::error take(std::string_view& in, uint32_t type,
                         std::string_view& out) {
    uint64_t n = 0;
    auto rest = in;
    switch (type) {
      case varint:
        if (!read_varint(rest, n))
          return not_a_message("bad varint");
        break;
      case fixed64:
      case fixed32:
        n = type == fixed64 ? 8 : 4;
        if (rest.size() < n)
          return not_a_message("truncated fixed field");
        rest.remove_prefix(n);
        break;
      case delimited:
        if (!read_varint(rest, n) || n > rest.size())
          return not_a_message("length past the end");
        out = rest.substr(0, n);
        rest.remove_prefix(n);
        break;
      default:
        return not_a_message("groups are not part of the wire format");
    }
    in = rest;
    return caf::none;
  }

  caf::error field(const gp::FieldDescriptor* f, uint32_t type,
                   std::string_view payload, int depth) {
    if (f == nullptr || wire_type_of(f) == 3
        || (type != wire_type_of(f) && !(f->is_packable() && type == delimited))) {
      // Kept as an unknown field, a delimited one with a copy of its bytes.
      total_ += unknown_field_bytes
                + (type == delimited ? payload.size() + string_bytes : 0);
      return caf::none;
    }
    uint64_t slot = f->is_repeated() ? growth * sizeof(void*) : 0;
    if (f->type() == gp::FieldDescriptor::TYPE_MESSAGE) {
      total_ += object_bytes(f->message_type()) + alloc_overhead + slot;
      return message(payload, f->message_type(), depth + 1);
    }
    if (type == delimited && wire_type_of(f) == delimited) {
      total_ += payload.size() + string_bytes + slot;
      return caf::none;
    }
    if (!f->is_repeated())
      return caf::none;
    auto count = type == delimited ? packed_count(payload, wire_type_of(f)) : 1;
    total_ += count * growth * scalar_bytes(f);
    return caf::none;
  }

  // The in-memory size of an empty `type` message (its default instance's).
  uint64_t object_bytes(const gp::Descriptor* type) {
    auto i = objects_.find(type);
    if (i != objects_.end())
      return i->second;
    auto* proto = gp::MessageFactory::generated_factory()->GetPrototype(type);
    uint64_t n = proto != nullptr ? proto->SpaceUsedLong() : 1024;
    objects_.emplace(type, n);
    return n;
  }

  std::map<const gp::Descriptor*, uint64_t> objects_;
  uint64_t limit_;
  uint64_t total_ = 0;
};

} // namespace

caf::expected<uint64_t> parse_bound(std::string_view wire,
                                    const gp::Descriptor* type,
                                    uint64_t limit) {
  walker w{limit};
  if (auto err = w.message(wire, type, 0))
    return err;
  return w.total();
}

} // namespace fleetd
