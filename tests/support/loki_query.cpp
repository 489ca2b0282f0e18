#include "support/loki_query.hpp"

#include <algorithm>
#include <charconv>

#include "runtime/text.hpp"

namespace fleetd::test {

namespace {

class selector_parser {
public:
  explicit selector_parser(const std::string& s) : s_(s) {
  }

  std::optional<std::vector<logql_matcher>> run(std::string& why) {
    std::vector<logql_matcher> out;
    if (!eat('{'))
      return fail(why, "parse error: a stream selector starts with {");
    while (!eat('}')) {
      if (!out.empty() && !eat(','))
        return fail(why, "parse error: expected , or } between matchers");
      logql_matcher m;
      if (!name(m.name) || !op(m) || !string(m.value))
        return fail(why, why_);
      out.push_back(std::move(m));
    }
    ws();
    if (pos_ != s_.size())
      return fail(why, "stand-in: pipelines and metric queries are not "
                       "modelled, only a stream selector");
    return out;
  }

private:
  std::nullopt_t fail(std::string& why, const std::string& what) {
    why = what.empty() ? "parse error at offset " + std::to_string(pos_) : what;
    return std::nullopt;
  }

  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t'
                                || s_[pos_] == '\n' || s_[pos_] == '\r'))
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

  bool name(std::string& out) {
    ws();
    auto start = pos_;
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
                || (pos_ > start && c >= '0' && c <= '9');
      if (!ok)
        break;
      ++pos_;
    }
    out = s_.substr(start, pos_ - start);
    if (out.empty())
      why_ = "parse error: expected a label name at offset "
             + std::to_string(pos_);
    return !out.empty();
  }

  bool op(logql_matcher& m) {
    ws();
    if (s_.compare(pos_, 2, "=~") == 0 || s_.compare(pos_, 2, "!~") == 0) {
      why_ = "stand-in: regex matchers are not modelled";
      return false;
    }
    if (s_.compare(pos_, 2, "!=") == 0) {
      m.equal = false;
      pos_ += 2;
      return true;
    }
    if (pos_ < s_.size() && s_[pos_] == '=') {
      ++pos_;
      return true;
    }
    why_ = "parse error: expected = or != after " + m.name;
    return false;
  }

  bool string(std::string& out) {
    ws();
    if (pos_ < s_.size() && s_[pos_] == '`') {
      auto end = s_.find('`', pos_ + 1);
      if (end == std::string::npos)
        return bad("parse error: unterminated raw string");
      out = s_.substr(pos_ + 1, end - pos_ - 1);
      pos_ = end + 1;
      return true;
    }
    if (pos_ >= s_.size() || s_[pos_] != '"')
      return bad("parse error: expected a quoted string");
    for (++pos_; pos_ < s_.size(); ++pos_) {
      char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c == '\n')
        return bad("parse error: newline in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (!escape(out))
        return false;
    }
    return bad("parse error: unterminated string");
  }

  // After a backslash: Go's escapes the sink and the query sources write.
  bool escape(std::string& out) {
    if (++pos_ >= s_.size())
      return bad("parse error: unterminated escape");
    switch (s_[pos_]) {
      case '\\': out += '\\'; return true;
      case '"': out += '"'; return true;
      case 'n': out += '\n'; return true;
      case 't': out += '\t'; return true;
      case 'r': out += '\r'; return true;
      case 'x': {
        auto hi = pos_ + 2 < s_.size() ? hex_digit(s_[pos_ + 1]) : -1;
        auto lo = pos_ + 2 < s_.size() ? hex_digit(s_[pos_ + 2]) : -1;
        if (hi < 0 || lo < 0)
          return bad("parse error: bad \\x escape");
        out += static_cast<char>(hi * 16 + lo);
        pos_ += 2;
        return true;
      }
      default: return bad("parse error: unknown escape sequence");
    }
  }

  bool bad(const char* what) {
    why_ = what;
    return false;
  }

  const std::string& s_;
  size_t pos_ = 0;
  std::string why_;
};

std::optional<int64_t> integer(const std::string& text) {
  int64_t x = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), x);
  if (text.empty() || r.ec != std::errc{} || r.ptr != text.data() + text.size())
    return std::nullopt;
  return x;
}

// The query string as Go's url.Values: the first of a repeated key wins.
std::optional<std::map<std::string, std::string>>
params_of(const std::string& target) {
  std::map<std::string, std::string> out;
  auto q = target.find('?');
  if (q == std::string::npos)
    return out;
  auto text = target.substr(q + 1);
  for (size_t pos = 0; pos <= text.size();) {
    auto amp = std::min(text.find('&', pos), text.size());
    auto part = text.substr(pos, amp - pos);
    pos = amp + 1;
    auto eq = part.find('=');
    std::string k;
    std::string v;
    if (!url_unescape(part.substr(0, eq), k)
        || !url_unescape(eq == std::string::npos ? "" : part.substr(eq + 1), v))
      return std::nullopt;
    out.emplace(std::move(k), std::move(v));
  }
  return out;
}

} // namespace

std::optional<std::vector<logql_matcher>>
parse_selector(const std::string& text, std::string& why) {
  auto out = selector_parser{text}.run(why);
  if (!out)
    return out;
  // Loki refuses a selector that would match every stream.
  for (auto& m : *out)
    if (m.equal && !m.value.empty())
      return out;
  why = "parse error : queries require at least one regexp or equality "
        "matcher that does not have an empty-compatible value. For instance, "
        "app=~\".*\" does not meet this requirement, but app=~\".+\" will";
  return std::nullopt;
}

std::optional<range_request> parse_range_request(const std::string& target,
                                                 int64_t max_limit,
                                                 int64_t now_ns,
                                                 std::string& why) {
  auto ps = params_of(target);
  if (!ps) {
    why = "invalid URL escape";
    return std::nullopt;
  }
  auto get = [&](const char* k) {
    auto i = ps->find(k);
    return i == ps->end() ? std::optional<std::string>{} : i->second;
  };
  range_request r;
  auto query = get("query");
  auto ms = parse_selector(query.value_or(""), why);
  if (!ms)
    return std::nullopt;
  r.matchers = std::move(*ms);
  // Loki's defaults: the last hour, 100 entries, backward.
  r.end_ns = now_ns;
  r.start_ns = now_ns - int64_t{3600} * 1'000'000'000;
  for (auto [key, field] : {std::pair{"start", &r.start_ns},
                            std::pair{"end", &r.end_ns},
                            std::pair{"limit", &r.limit}}) {
    auto text = get(key);
    if (!text)
      continue;
    auto x = integer(*text);
    if (!x) {
      why = std::string{"stand-in: "} + key
            + " must be an integer (times in nanoseconds)";
      return std::nullopt;
    }
    *field = *x;
  }
  auto dir = get("direction").value_or("backward");
  if (dir != "forward" && dir != "backward") {
    why = "invalid direction '" + dir + "'";
    return std::nullopt;
  }
  r.forward = dir == "forward";
  if (r.limit <= 0)
    why = "limit must be a positive value";
  else if (r.limit > max_limit)
    why = "max entries limit per query exceeded, limit > max_entries_limit ("
          + std::to_string(r.limit) + " > " + std::to_string(max_limit) + ")";
  else if (r.end_ns <= r.start_ns)
    why = "end timestamp must not be before or equal to start time";
  if (!why.empty())
    return std::nullopt;
  return r;
}

bool selects(const std::vector<logql_matcher>& ms,
             const std::map<std::string, std::string>& labels) {
  for (auto& m : ms) {
    auto i = labels.find(m.name);
    auto value = i == labels.end() ? std::string{} : i->second;
    if ((value == m.value) != m.equal)
      return false;
  }
  return true;
}

} // namespace fleetd::test
