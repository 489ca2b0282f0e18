#include "messages/labels.hpp"

namespace fleetd {

std::string encode_labels(const label_map& labels) {
  std::string out;
  for (auto& kv : labels) {
    out += kv.first;
    out += '\0';
    out += kv.second;
    out += '\0';
  }
  return out;
}

label_map decode_labels(const std::string& bytes) {
  label_map out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    auto a = bytes.find('\0', pos);
    if (a == std::string::npos)
      break;
    auto b = bytes.find('\0', a + 1);
    if (b == std::string::npos)
      break;
    out.emplace(bytes.substr(pos, a - pos), bytes.substr(a + 1, b - a - 1));
    pos = b + 1;
  }
  return out;
}

} // namespace fleetd
