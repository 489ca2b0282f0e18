#include "messages/json_reader.hpp"

#include <cstdint>

namespace fleetd {

namespace {

constexpr int max_depth = 64;

class parser {
public:
  explicit parser(const std::string& s) : s_(s) {
  }

  std::optional<json_node> run(std::string& why) {
    json_node v;
    ws();
    if (value(v, 0)) {
      ws();
      if (pos_ == s_.size())
        return v;
      fail("trailing characters");
    }
    why = why_;
    return std::nullopt;
  }

private:
  bool fail(const std::string& what) {
    if (why_.empty())
      why_ = what + " at offset " + std::to_string(pos_);
    return false;
  }

  void ws() {
    while (pos_ < s_.size()
           && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n'
               || s_[pos_] == '\r'))
      ++pos_;
  }

  bool eat(char c) {
    ws();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  bool value(json_node& out, int depth) {
    if (depth > max_depth)
      return fail("nesting too deep");
    ws();
    if (pos_ >= s_.size())
      return fail("unexpected end of input");
    switch (s_[pos_]) {
      case '{': return object(out, depth);
      case '[': return array(out, depth);
      case '"': out.kind = json_node::string_v; return string(out.text);
      case 't': out.kind = json_node::bool_v; return literal("true", out);
      case 'f': out.kind = json_node::bool_v; return literal("false", out);
      case 'n': out.kind = json_node::null_v; return literal("null", out);
      default: out.kind = json_node::number_v; return number(out.text);
    }
  }

  bool literal(const char* word, json_node& out) {
    std::string w{word};
    if (s_.compare(pos_, w.size(), w) != 0)
      return fail("invalid literal");
    pos_ += w.size();
    out.text = w;
    return true;
  }

  bool object(json_node& out, int depth) {
    out.kind = json_node::object_v;
    ++pos_;
    if (eat('}'))
      return true;
    do {
      ws();
      std::string key;
      if (pos_ >= s_.size() || s_[pos_] != '"' || !string(key))
        return fail("object key must be a string");
      if (!eat(':'))
        return fail("expected ':'");
      json_node v;
      if (!value(v, depth + 1))
        return false;
      out.members.emplace_back(std::move(key), std::move(v));
    } while (eat(','));
    return eat('}') || fail("expected ',' or '}'");
  }

  bool array(json_node& out, int depth) {
    out.kind = json_node::array_v;
    ++pos_;
    if (eat(']'))
      return true;
    do {
      json_node v;
      if (!value(v, depth + 1))
        return false;
      out.items.push_back(std::move(v));
    } while (eat(','));
    return eat(']') || fail("expected ',' or ']'");
  }

  bool number(std::string& out) {
    auto start = pos_;
    auto digits = [&] {
      auto from = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9')
        ++pos_;
      return pos_ > from;
    };
    if (pos_ < s_.size() && s_[pos_] == '-')
      ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0')
      ++pos_;
    else if (!digits())
      return fail("invalid value");
    if (pos_ < s_.size() && s_[pos_] == '.' && (++pos_, !digits()))
      return fail("invalid number");
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-'))
        ++pos_;
      if (!digits())
        return fail("invalid number");
    }
    out = s_.substr(start, pos_ - start);
    return true;
  }

  bool hex4(uint32_t& cp) {
    if (pos_ + 4 > s_.size())
      return fail("short \\u escape");
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      cp <<= 4;
      if (c >= '0' && c <= '9')
        cp |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        cp |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        cp |= static_cast<uint32_t>(c - 'A' + 10);
      else
        return fail("bad \\u escape");
    }
    return true;
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // A \u escape; surrogates only as a proper pair.
  bool unicode_escape(std::string& out) {
    uint32_t cp = 0;
    if (!hex4(cp))
      return false;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
      return fail("lone low surrogate");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      uint32_t lo = 0;
      if (s_.compare(pos_, 2, "\\u") != 0 || (pos_ += 2, !hex4(lo))
          || lo < 0xDC00 || lo > 0xDFFF)
        return fail("unpaired high surrogate");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    put_utf8(out, cp);
    return true;
  }

  bool escape(std::string& out) {
    if (pos_ >= s_.size())
      return fail("unterminated escape");
    char c = s_[pos_++];
    switch (c) {
      case '"': out += '"'; return true;
      case '\\': out += '\\'; return true;
      case '/': out += '/'; return true;
      case 'b': out += '\b'; return true;
      case 'f': out += '\f'; return true;
      case 'n': out += '\n'; return true;
      case 'r': out += '\r'; return true;
      case 't': out += '\t'; return true;
      case 'u': return unicode_escape(out);
      default: return fail("invalid escape");
    }
  }

  // One raw UTF-8 sequence starting at pos_ (lead byte >= 0x80), checked
  // for continuation bytes, overlong forms, surrogates and range.
  bool utf8_sequence(std::string& out) {
    auto lead = static_cast<unsigned char>(s_[pos_]);
    int n = lead >= 0xF0 && lead <= 0xF4   ? 3
            : lead >= 0xE0 && lead <= 0xEF ? 2
            : lead >= 0xC2 && lead <= 0xDF ? 1
                                           : -1;
    if (n < 0 || pos_ + n >= s_.size())
      return fail("invalid UTF-8");
    uint32_t cp = lead & (0x3F >> n);
    for (int i = 1; i <= n; ++i) {
      auto c = static_cast<unsigned char>(s_[pos_ + i]);
      if ((c & 0xC0) != 0x80)
        return fail("invalid UTF-8");
      cp = (cp << 6) | (c & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))
        || (cp >= 0xD800 && cp <= 0xDFFF))
      return fail("invalid UTF-8");
    out.append(s_, pos_, n + 1);
    pos_ += n + 1;
    return true;
  }

  bool string(std::string& out) {
    ++pos_;
    while (pos_ < s_.size()) {
      auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20)
        return fail("control character in string");
      if (c == '\\') {
        ++pos_;
        if (!escape(out))
          return false;
      } else if (c >= 0x80) {
        if (!utf8_sequence(out))
          return false;
      } else {
        out += static_cast<char>(c);
        ++pos_;
      }
    }
    return fail("unterminated string");
  }

  const std::string& s_;
  size_t pos_ = 0;
  std::string why_;
};

} // namespace

std::optional<json_node> parse_json(const std::string& text,
                                     std::string& why) {
  return parser{text}.run(why);
}

const json_node* json_member(const json_node& obj, const std::string& key) {
  if (obj.kind != json_node::object_v)
    return nullptr;
  for (auto& [k, v] : obj.members)
    if (k == key)
      return &v;
  return nullptr;
}

} // namespace fleetd
