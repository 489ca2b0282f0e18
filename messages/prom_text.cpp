#include "messages/prom_text.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"

namespace fleetd {

namespace {

// What a map node, a hash-set node and a family's index entry take beyond
// their strings' bytes (libstdc++ on 64-bit, rounded up).
constexpr uint64_t map_node_bytes = 96;
constexpr uint64_t set_node_bytes = 64;

bool blank(char c) {
  return c == ' ' || c == '\t';
}

bool name_start(char c, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
         || (colon && c == ':');
}

bool name_char(char c, bool colon) {
  return name_start(c, colon) || (c >= '0' && c <= '9');
}

bool is_name(std::string_view x, bool colon) {
  if (x.empty() || !name_start(x[0], colon))
    return false;
  for (char c : x)
    if (!name_char(c, colon))
      return false;
  return true;
}

bool equals_lower(std::string_view x, std::string_view lower) {
  if (x.size() != lower.size())
    return false;
  for (size_t i = 0; i < x.size(); ++i) {
    char c = x[i];
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i])
      return false;
  }
  return true;
}

bool parse_int64(std::string_view x, int64_t& out) {
  if (!x.empty() && x[0] == '+')
    x.remove_prefix(1);
  if (x.empty() || x[0] == '+')
    return false;
  auto [end, ec] = std::from_chars(x.data(), x.data() + x.size(), out);
  return ec == std::errc{} && end == x.data() + x.size();
}

// One line, consumed left to right; `fail` records the first problem.
class line_cursor {
public:
  explicit line_cursor(std::string_view line) : rest_(line) {}

  bool done() const { return rest_.empty(); }
  char peek() const { return rest_.empty() ? '\0' : rest_[0]; }
  size_t left() const { return rest_.size(); }

  // Skips blanks; whether there were any.
  bool skip_blanks() {
    size_t n = 0;
    while (n < rest_.size() && blank(rest_[n]))
      ++n;
    rest_.remove_prefix(n);
    return n > 0;
  }

  bool take(char c) {
    if (rest_.empty() || rest_[0] != c)
      return false;
    rest_.remove_prefix(1);
    return true;
  }

  // The longest prefix of name characters (possibly empty).
  std::string_view name(bool colon) {
    size_t n = 0;
    while (n < rest_.size() && name_char(rest_[n], colon))
      ++n;
    auto out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return out;
  }

  // Up to the next blank or the end.
  std::string_view token() {
    size_t n = 0;
    while (n < rest_.size() && !blank(rest_[n]))
      ++n;
    auto out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return out;
  }

  std::string_view rest() {
    auto out = rest_;
    rest_ = {};
    return out;
  }

private:
  std::string_view rest_;
};

// A quoted label value after its opening quote, unescaped (\\, \" and \n;
// any other escape is an error); empty reason when it is fine.
std::string label_value(line_cursor& cur, std::string& out) {
  out.clear();
  while (!cur.done()) {
    char c = cur.peek();
    cur.take(c);
    if (c == '"')
      return {};
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (cur.done())
      break;
    char e = cur.peek();
    cur.take(e);
    if (e == '\\' || e == '"')
      out.push_back(e);
    else if (e == 'n')
      out.push_back('\n');
    else
      return std::string("unknown escape \\") + e + " in a label value";
  }
  return "label value without its closing quote";
}

// A HELP docstring: \\ and \n are escapes, any other backslash stays.
std::string help_text(std::string_view x) {
  std::string out;
  out.reserve(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == '\\' && i + 1 < x.size()
        && (x[i + 1] == '\\' || x[i + 1] == 'n')) {
      out.push_back(x[i + 1] == 'n' ? '\n' : '\\');
      ++i;
    } else {
      out.push_back(x[i]);
    }
  }
  return out;
}

bool parse_type(std::string_view x, prom_type& out) {
  static constexpr std::pair<const char*, prom_type> types[] = {
    {"counter", prom_type::counter},     {"gauge", prom_type::gauge},
    {"histogram", prom_type::histogram}, {"summary", prom_type::summary},
    {"untyped", prom_type::untyped}};
  for (auto& [name, type] : types)
    if (x == name) {
      out = type;
      return true;
    }
  return false;
}

bool ends_with(std::string_view x, std::string_view suffix) {
  return x.size() >= suffix.size()
         && x.substr(x.size() - suffix.size()) == suffix;
}

class parser {
public:
  parser(const prom_limits& limits, int64_t timestamp_ms, prom_page& page)
    : limits_(limits), budget_(limits.max_decoded_bytes),
      timestamp_ms_(timestamp_ms), page_(page) {}

  // False once a limit stops the page.
  bool line(std::string_view text, size_t number) {
    if (text.size() > limits_.max_line_bytes) {
      error(number, "line longer than " + std::to_string(limits_.max_line_bytes)
                      + " bytes");
      return true;
    }
    line_cursor cur(text);
    cur.skip_blanks();
    if (cur.done())
      return true;
    std::string reason = cur.take('#') ? comment(cur) : sample(cur, number);
    if (!reason.empty())
      error(number, reason);
    return !page_.stopped;
  }

private:
  void error(size_t number, std::string reason) {
    page_.note_error(number, std::move(reason), limits_.max_errors);
  }

  void stop(caf::error err) { page_.stopped = std::move(err); }

  // "# HELP name text", "# TYPE name type", or any other comment; a bad
  // line makes no family.
  std::string comment(line_cursor& cur) {
    cur.skip_blanks();
    auto keyword = cur.token();
    if (keyword != "HELP" && keyword != "TYPE")
      return {};
    if (!cur.skip_blanks())
      return std::string(keyword) + " line without a metric name";
    auto name = cur.token();
    if (!is_metric_name(name))
      return std::string(keyword) + " line with a bad metric name";
    auto known = families_.find(std::string(name));
    if (keyword == "HELP") {
      if (known != families_.end() && known->second.help_seen)
        return "second HELP line for " + std::string(name);
      cur.skip_blanks();
      auto text = help_text(cur.rest());
      if (auto bad = bad_text_at(text); bad != std::string::npos)
        return "HELP text is not UTF-8 text at byte " + std::to_string(bad);
      auto* fam = family(name, text.size());
      if (!fam)
        return {}; // stopped
      fam->help_seen = true;
      page_.families[fam->index].help = std::move(text);
      return {};
    }
    if (!cur.skip_blanks())
      return "TYPE line without a type";
    prom_type type;
    auto word = cur.token();
    if (!parse_type(word, type))
      return "unknown metric type '" + std::string(word.substr(0, 32)) + "'";
    cur.skip_blanks();
    if (!cur.done())
      return "text after the type";
    if (known != families_.end() && known->second.type_seen)
      return "second TYPE line for " + std::string(name);
    if (sample_names_.count(std::string(name)))
      return "TYPE line for " + std::string(name) + " after its samples";
    auto* fam = family(name, 0);
    if (!fam)
      return {}; // stopped
    fam->type_seen = true;
    page_.families[fam->index].type = type;
    return {};
  }

  struct family_state {
    size_t index = 0;
    bool help_seen = false;
    bool type_seen = false;
  };

  // The family of `name`, made on first sight, with `extra` bytes to come
  // charged; null when the budget stops.
  family_state* family(std::string_view name, size_t extra) {
    auto key = std::string(name);
    auto i = families_.find(key);
    uint64_t cost = extra;
    if (i == families_.end())
      cost += 2 * (name.size() + map_node_bytes) + sizeof(prom_family);
    if (auto err = budget_.charge(cost, "metric families")) {
      stop(std::move(err));
      return nullptr;
    }
    if (i != families_.end())
      return &i->second;
    page_.families.push_back({key, prom_type::untyped, {}});
    auto& fam = families_[key];
    fam.index = page_.families.size() - 1;
    return &fam;
  }

  // The type of the family a sample of `name` belongs to when one was
  // declared: its own name's, or a histogram's or summary's with the suffix
  // taken off.
  prom_type family_type(std::string_view name) const {
    for (std::string_view suffix : {"", "_bucket", "_sum", "_count"}) {
      if (!ends_with(name, suffix) || name.size() == suffix.size())
        continue;
      auto i = families_.find(std::string(name.substr(0, name.size()
                                                           - suffix.size())));
      if (i == families_.end())
        continue;
      auto t = page_.families[i->second.index].type;
      if (suffix.empty() || t == prom_type::histogram
          || (t == prom_type::summary && suffix != "_bucket"))
        return t;
    }
    return prom_type::untyped;
  }

  // The label a sample of `name` must have: a histogram bucket's "le", a
  // summary quantile's "quantile".
  static const char* bound_label(std::string_view name, prom_type type) {
    if (type == prom_type::histogram && ends_with(name, "_bucket"))
      return "le";
    if (type == prom_type::summary && !ends_with(name, "_sum")
        && !ends_with(name, "_count"))
      return "quantile";
    return nullptr;
  }

  std::string sample(line_cursor& cur, size_t number) {
    auto name = cur.name(true);
    if (!is_metric_name(name))
      return "expected a metric name, a comment or a blank line";
    label_map labels;
    if (cur.take('{')) {
      if (auto reason = label_set(cur, labels); !reason.empty())
        return reason;
    }
    if (!cur.skip_blanks())
      return cur.done() ? "sample without a value"
                        : "unexpected character after the metric name";
    double value = 0;
    auto value_text = cur.token();
    if (!parse_prom_float(value_text, value))
      return "bad sample value '" + std::string(value_text.substr(0, 32))
             + "'";
    int64_t ts = timestamp_ms_;
    cur.skip_blanks();
    if (!cur.done()) {
      auto ts_text = cur.token();
      if (!parse_int64(ts_text, ts))
        return "bad timestamp '" + std::string(ts_text.substr(0, 32)) + "'";
      cur.skip_blanks();
      if (!cur.done())
        return "text after the timestamp";
    }
    auto type = family_type(name);
    if (auto* bound = bound_label(name, type)) {
      auto i = labels.find(bound);
      double b = 0;
      if (i == labels.end())
        return std::string(to_string(type)) + " sample without its '" + bound
               + "' label";
      if (!parse_prom_float(i->second, b))
        return std::string("bad '") + bound + "' label value";
    }
    // Charged before the sample and its duplicate-check keys are made (the
    // struct thrice: the vector holds up to twice its samples, and both
    // buffers while it grows).
    bool new_name = !sample_names_.count(std::string(name));
    uint64_t cost = 3 * sizeof(metric_sample) + 2 * name.size()
                    + set_node_bytes;
    if (new_name)
      cost += name.size() + set_node_bytes;
    for (auto& [k, v] : labels)
      cost += 2 * (k.size() + v.size() + 2) + map_node_bytes;
    if (page_.samples.size() >= limits_.max_samples) {
      stop(make_error(ec::too_large,
                      "more than " + std::to_string(limits_.max_samples)
                        + " samples in one page (line "
                        + std::to_string(number) + ")"));
      return {};
    }
    if (auto err = budget_.charge(cost, "samples")) {
      stop(std::move(err));
      return {};
    }
    auto key = std::string(name);
    key.push_back('\0');
    key += encode_labels(labels);
    if (!seen_.insert(std::move(key)).second)
      return "series given twice: " + std::string(name.substr(0, 64));
    if (new_name)
      sample_names_.emplace(name);
    page_.samples.push_back({std::string(name), std::move(labels), ts, value});
    return {};
  }

  // Label pairs after '{' up to and with '}'.
  std::string label_set(line_cursor& cur, label_map& labels) {
    std::string value;
    std::vector<std::string_view> names; // empty values too: no repeats
    for (;;) {
      cur.skip_blanks();
      if (cur.take('}'))
        return {};
      auto lname = cur.name(false);
      if (!is_label_name(lname))
        return cur.done() ? "labels without their closing brace"
                          : "expected a label name";
      cur.skip_blanks();
      if (!cur.take('='))
        return "expected '=' after label " + std::string(lname);
      cur.skip_blanks();
      if (!cur.take('"'))
        return "expected a quoted value for label " + std::string(lname);
      if (auto reason = label_value(cur, value); !reason.empty())
        return reason;
      if (auto bad = bad_text_at(value); bad != std::string::npos)
        return "value of label " + std::string(lname)
               + " is not UTF-8 text at byte " + std::to_string(bad);
      for (auto n : names)
        if (n == lname)
          return "label " + std::string(lname) + " given twice";
      if (names.size() >= limits_.max_labels)
        return "more than " + std::to_string(limits_.max_labels) + " labels";
      names.push_back(lname);
      if (!value.empty())
        labels.emplace(std::string(lname), value);
      cur.skip_blanks();
      if (cur.take(','))
        continue;
      if (cur.take('}'))
        return {};
      if (cur.done())
        return "labels without their closing brace";
      return "expected ',' or '}' after label " + std::string(lname);
    }
  }

  const prom_limits& limits_;
  decode_budget budget_;
  int64_t timestamp_ms_;
  prom_page& page_;
  std::unordered_map<std::string, family_state> families_;
  // Series (name NUL labels) and metric names with samples so far.
  std::unordered_set<std::string> seen_;
  std::unordered_set<std::string> sample_names_;
};

} // namespace

const char* to_string(prom_type x) {
  switch (x) {
    case prom_type::counter:
      return "counter";
    case prom_type::gauge:
      return "gauge";
    case prom_type::histogram:
      return "histogram";
    case prom_type::summary:
      return "summary";
    case prom_type::untyped:
      break;
  }
  return "untyped";
}

bool is_metric_name(std::string_view x) {
  return is_name(x, true);
}

bool is_label_name(std::string_view x) {
  return is_name(x, false);
}

bool parse_prom_float(std::string_view x, double& out) {
  auto body = x;
  bool negative = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (equals_lower(body, "inf") || equals_lower(body, "infinity")) {
    out = negative ? -std::numeric_limits<double>::infinity()
                   : std::numeric_limits<double>::infinity();
    return true;
  }
  if (equals_lower(body, "nan")) {
    out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  if (body.empty() || body[0] == '+' || body[0] == '-')
    return false;
  // Decimal only: from_chars would also take "nan(...)" and hex digits.
  for (char c : body)
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E'
          || c == '+' || c == '-'))
      return false;
  double v = 0;
  auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), v,
                                   std::chars_format::general);
  if (ec != std::errc{} || end != body.data() + body.size())
    return false;
  out = negative ? -v : v;
  return true;
}

prom_page parse_prom_text(std::string_view text, int64_t timestamp_ms,
                          const prom_limits& limits) {
  prom_page page;
  parser p(limits, timestamp_ms, page);
  for_each_line(text, [&](std::string_view line, size_t number) {
    return p.line(line, number);
  });
  return page;
}

void append_prom_label_value(std::string& out, std::string_view v) {
  out += '"';
  // Most values need no escape: one append.
  if (v.find_first_of("\\\"\n") == std::string_view::npos) {
    out += v;
    out += '"';
    return;
  }
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  out += '"';
}

} // namespace fleetd
