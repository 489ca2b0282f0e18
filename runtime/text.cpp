#include "runtime/text.hpp"

namespace fleetd {

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    auto end = text.find('\n');
    out.push_back(text.substr(0, end));
    if (end == std::string_view::npos)
      break;
    text.remove_prefix(end + 1);
  }
  return out;
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < line.size()) {
    auto begin = line.find_first_not_of(" \t", pos);
    if (begin == std::string_view::npos)
      break;
    auto end = line.find_first_of(" \t", begin);
    if (end == std::string_view::npos)
      end = line.size();
    out.push_back(line.substr(begin, end - begin));
    pos = end;
  }
  return out;
}

std::string_view trim(std::string_view x) {
  auto begin = x.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos)
    return {};
  auto end = x.find_last_not_of(" \t\r\n");
  return x.substr(begin, end - begin + 1);
}

std::string printable(std::string_view x, size_t max) {
  std::string out;
  for (auto c : x.substr(0, max)) {
    auto u = static_cast<unsigned char>(c);
    out += u >= 0x20 && u < 0x7f ? c : '?';
  }
  return out;
}

std::vector<std::string_view> split_list(std::string_view list, char sep) {
  std::vector<std::string_view> out;
  if (list.empty())
    return out;
  for (;;) {
    auto end = list.find(sep);
    out.push_back(trim(list.substr(0, end)));
    if (end == std::string_view::npos)
      return out;
    list.remove_prefix(end + 1);
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string query_string(std::string_view x) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : x) {
    auto b = static_cast<unsigned char>(c);
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (b < 0x20 || b == 0x7f) {
      out += "\\x";
      out += digits[b >> 4];
      out += digits[b & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

bool url_unescape(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] != '%') {
      out += in[i];
    } else {
      if (i + 2 >= in.size())
        return false;
      auto hi = hex_digit(in[i + 1]);
      auto lo = hex_digit(in[i + 2]);
      if (hi < 0 || lo < 0)
        return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    }
  }
  return true;
}

std::string url_escape(std::string_view x) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(x.size());
  for (char c : x) {
    auto b = static_cast<unsigned char>(c);
    if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')
        || (b >= '0' && b <= '9') || c == '-' || c == '.' || c == '_'
        || c == '~') {
      out += c;
    } else {
      out += '%';
      out += digits[b >> 4];
      out += digits[b & 15];
    }
  }
  return out;
}

} // namespace fleetd
