#include "messages/labels.hpp"

#include "messages/error.hpp"

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

namespace {

// Bytes of the UTF-8 sequence led by `c` (0: not a lead byte), and the
// least code point it may encode (shorter forms are overlong).
std::pair<size_t, uint32_t> utf8_lead(unsigned char c) {
  if (c < 0x80)
    return {1, 0};
  if ((c & 0xE0) == 0xC0)
    return {2, 0x80};
  if ((c & 0xF0) == 0xE0)
    return {3, 0x800};
  if ((c & 0xF8) == 0xF0)
    return {4, 0x10000};
  return {0, 0};
}

} // namespace

size_t bad_text_at(std::string_view x) {
  for (size_t i = 0; i < x.size();) {
    auto c = static_cast<unsigned char>(x[i]);
    auto [n, least] = utf8_lead(c);
    if (c == 0 || n == 0 || i + n > x.size())
      return i;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      auto t = static_cast<unsigned char>(x[i + k]);
      if ((t & 0xC0) != 0x80)
        return i;
      cp = (cp << 6) | (t & 0x3F);
    }
    if (cp < least || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return i;
    i += n;
  }
  return std::string_view::npos;
}

caf::error check_text(std::string_view x, const std::string& what) {
  auto at = bad_text_at(x);
  if (at == std::string_view::npos)
    return caf::none;
  return make_error(ec::invalid_record,
                    what + " is not UTF-8 text without NUL (byte "
                      + std::to_string(at) + ")");
}

caf::error check_labels(const label_map& labels, const std::string& what) {
  for (auto& [name, value] : labels) {
    if (auto err = check_text(name, what + " label name"))
      return err;
    if (auto err = check_text(value, what + " label value"))
      return err;
  }
  return caf::none;
}

size_t repair_text(std::string& x) {
  size_t fixed = 0;
  for (size_t from = 0;;) {
    auto at = bad_text_at(std::string_view{x}.substr(from));
    if (at == std::string_view::npos)
      return fixed;
    x[from + at] = '?';
    ++fixed;
    from += at + 1;
  }
}

size_t repair_labels(label_map& labels) {
  size_t fixed = 0;
  label_map out;
  for (auto& [key, val] : labels) {
    std::string name = key, value = val;
    fixed += repair_text(name) + repair_text(value);
    out[std::move(name)] = std::move(value);
  }
  if (fixed > 0)
    labels = std::move(out);
  return fixed;
}

int64_t repair_texts(ingest_batch& b) {
  int64_t fields = 0;
  auto fix = [&fields](size_t replaced) { fields += replaced > 0 ? 1 : 0; };
  fix(repair_text(b.epoch));
  for (auto& x : b.samples) {
    fix(repair_text(x.name));
    fix(repair_labels(x.labels));
  }
  for (auto& x : b.logs) {
    fix(repair_text(x.line));
    fix(repair_labels(x.labels));
  }
  for (auto& x : b.events) {
    fix(repair_text(x.kind));
    fix(repair_text(x.message));
    fix(repair_labels(x.attributes));
  }
  return fields;
}

} // namespace fleetd
