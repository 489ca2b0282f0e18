#include "cloud/clickhouse_text.hpp"

#include <cmath>
#include <cstdio>

#include "runtime/text.hpp"

namespace fleetd {

namespace {

// The byte an escape letter stands for (ClickHouse's set); the letter
// itself when it is none of them (\\, \', \q).
char unescaped(char c) {
  switch (c) {
    case 'b':
      return '\b';
    case 'f':
      return '\f';
    case 'n':
      return '\n';
    case 'r':
      return '\r';
    case 't':
      return '\t';
    case '0':
      return '\0';
    case 'a':
      return '\a';
    case 'v':
      return '\v';
    default:
      return c;
  }
}

} // namespace

std::string ch_escape(std::string_view text) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() + 8);
  for (char c : text) {
    auto b = static_cast<unsigned char>(c);
    if (c == '\\' || c == '\'') {
      out += '\\';
      out += c;
    } else if (b < 0x20 || b == 0x7F) {
      out += "\\x";
      out += digits[b >> 4];
      out += digits[b & 0xF];
    } else {
      out += c;
    }
  }
  return out;
}

std::string ch_literal(std::string_view text) {
  return "'" + ch_escape(text) + "'";
}

std::string ch_unescape(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] != '\\' || i + 1 == field.size()) {
      out += field[i];
      continue;
    }
    char c = field[++i];
    int hi = i + 2 < field.size() ? hex_digit(field[i + 1]) : -1;
    int lo = hi >= 0 ? hex_digit(field[i + 2]) : -1;
    if (c == 'x' && lo >= 0) {
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += unescaped(c);
    }
  }
  return out;
}

std::vector<std::vector<std::string>>
ch_rows(std::string_view body, size_t max_rows, bool& truncated) {
  std::vector<std::vector<std::string>> rows;
  truncated = false;
  while (!body.empty()) {
    if (rows.size() == max_rows) {
      truncated = true;
      break;
    }
    auto end = body.find('\n');
    auto line = body.substr(0, end);
    body = end == std::string_view::npos ? std::string_view{}
                                         : body.substr(end + 1);
    auto& row = rows.emplace_back();
    for (;;) {
      auto tab = line.find('\t');
      row.push_back(ch_unescape(line.substr(0, tab)));
      if (tab == std::string_view::npos)
        break;
      line = line.substr(tab + 1);
    }
  }
  return rows;
}

std::string canonical_labels(const label_map& labels) {
  auto put = [](std::string& out, const std::string& s) {
    for (char c : s) {
      if (c == '\\' || c == ',' || c == '=')
        out += '\\';
      out += c;
    }
  };
  std::string out;
  for (auto& [key, value] : labels) {
    if (!out.empty())
      out += ',';
    put(out, key);
    out += '=';
    put(out, value);
  }
  return out;
}

label_map parse_canonical_labels(std::string_view text) {
  label_map out;
  if (text.empty())
    return out;
  std::string key;
  std::string value;
  auto* part = &key;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size()) {
      *part += text[++i];
    } else if (c == '=' && part == &key) {
      part = &value;
    } else if (c == ',') {
      out[std::move(key)] = std::move(value);
      key.clear();
      value.clear();
      part = &key;
    } else {
      *part += c;
    }
  }
  out[std::move(key)] = std::move(value);
  return out;
}

std::string ch_double(double x) {
  if (std::isnan(x))
    return "nan";
  if (std::isinf(x))
    return x > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", x);
  return buf;
}

} // namespace fleetd
