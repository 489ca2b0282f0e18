#include "messages/decode_budget.hpp"

#include "messages/error.hpp"

namespace fleetd {

caf::error decode_budget::charge(uint64_t bytes, const char* what) {
  if (bytes > left())
    return make_error(ec::too_large,
                      std::string(what) + " (more than the decode budget of "
                        + std::to_string(limit_) + " bytes)");
  used_ += bytes;
  return caf::none;
}

uint64_t record_bytes(size_t struct_size, const std::string& name,
                      const label_map& labels) {
  uint64_t n = struct_size + name.size();
  for (auto& [k, v] : labels)
    n += k.size() + v.size();
  return n;
}

} // namespace fleetd
