#include "messages/json_lines.hpp"

#include <charconv>
#include <limits>
#include <set>
#include <string>

#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/json_reader.hpp"
#include "messages/labels.hpp"
#include "messages/prom_text.hpp"

namespace fleetd {

namespace {

// A member name quoted in a reason: bounded, as it is the client's.
std::string named(const std::string& key) {
  return "'" + key.substr(0, 64) + "'";
}

bool whole_digits(std::string_view x, size_t n, int& out) {
  if (x.size() < n)
    return false;
  out = 0;
  for (size_t i = 0; i < n; ++i) {
    if (x[i] < '0' || x[i] > '9')
      return false;
    out = out * 10 + (x[i] - '0');
  }
  return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's).
int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  auto era = (y >= 0 ? y : y - 399) / 400;
  auto yoe = y - era * 400;
  auto doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  auto doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

// The object of one line (members unique), or the reason it is none.
std::string read_object(std::string_view line, json_node& doc) {
  std::string why;
  auto parsed = parse_json(std::string(line), why);
  if (!parsed)
    return "not JSON: " + why;
  if (parsed->kind != json_node::object_v)
    return "not a JSON object";
  std::set<std::string_view> seen;
  for (auto& [k, v] : parsed->members)
    if (!seen.insert(k).second)
      return "member " + named(k) + " given twice";
  doc = std::move(*parsed);
  return {};
}

// The string member `v` named `key` as text, or the reason it is not.
std::string text_member(const std::string& key, const json_node& v,
                        std::string& out) {
  if (v.kind != json_node::string_v)
    return named(key) + " is not a string";
  if (bad_text_at(v.text) != std::string::npos)
    return named(key) + " holds a NUL or a lone surrogate";
  out = v.text;
  return {};
}

std::string timestamp_of(const json_node& v, int64_t& out) {
  if (v.kind == json_node::string_v) {
    if (!parse_rfc3339_ns(v.text, out))
      return "timestamp '" + v.text.substr(0, 40)
             + "' is not an RFC 3339 date-time";
    return {};
  }
  if (v.kind == json_node::number_v) {
    auto& t = v.text;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
    if (ec != std::errc{} || end != t.data() + t.size() || out < 0)
      return "timestamp " + t.substr(0, 40)
             + " is not whole nanoseconds since 1970 within int64";
    return {};
  }
  return "timestamp is neither an RFC 3339 string nor a number";
}

std::string labels_of(const json_node& v, size_t max, label_map& out) {
  if (v.kind != json_node::object_v)
    return "labels is not an object";
  if (v.members.size() > max)
    return "more than " + std::to_string(max) + " labels";
  for (auto& [k, value] : v.members) {
    if (!is_label_name(k))
      return "label name " + named(k) + " is not [a-zA-Z_][a-zA-Z0-9_]*";
    std::string text;
    if (auto why = text_member("label " + k.substr(0, 64), value, text);
        !why.empty())
      return why;
    if (text.empty())
      return "label " + named(k) + " has an empty value";
    if (!out.emplace(k, std::move(text)).second)
      return "label " + named(k) + " given twice";
  }
  return {};
}

std::string log_record(const json_node& obj, int64_t now_ns,
                       const json_lines_limits& limits, log_line& out) {
  bool has_line = false;
  out.timestamp_ns = now_ns;
  for (auto& [k, v] : obj.members) {
    std::string why;
    if (k == "line" || k == "message") {
      if (has_line)
        return "both line and message";
      has_line = true;
      why = text_member(k, v, out.line);
    } else if (k == "timestamp") {
      why = timestamp_of(v, out.timestamp_ns);
    } else if (k == "labels") {
      why = labels_of(v, limits.max_labels, out.labels);
    } else {
      why = "unknown member " + named(k)
            + " (only line or message, timestamp, labels)";
    }
    if (!why.empty())
      return why;
  }
  if (!has_line)
    return "no line or message";
  return {};
}

bool is_kind(const std::string& x, size_t max) {
  if (x.empty() || x.size() > max)
    return false;
  for (char c : x)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
          || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':'
          || c == '-'))
      return false;
  return true;
}

std::string event_record_of(const json_node& obj, int64_t now_ms,
                            const json_lines_limits& limits,
                            event_record& out) {
  bool has_kind = false, has_message = false;
  out.timestamp_ms = now_ms;
  for (auto& [k, v] : obj.members) {
    std::string why;
    if (k == "kind") {
      has_kind = true;
      why = text_member(k, v, out.kind);
      if (why.empty() && !is_kind(out.kind, limits.max_kind_bytes))
        why = "kind is not 1-" + std::to_string(limits.max_kind_bytes)
              + " of [a-zA-Z0-9_.:-]";
    } else if (k == "message") {
      has_message = true;
      why = text_member(k, v, out.message);
    } else {
      why = "unknown member " + named(k) + " (only kind, message)";
    }
    if (!why.empty())
      return why;
  }
  if (!has_kind || !has_message)
    return "kind and message are both required";
  out.kind = app_event_prefix + out.kind;
  return {};
}

// What a kept record costs the decode budget.
uint64_t cost_of(const log_line& x) {
  // A label's map node beyond its strings (libstdc++, 64-bit): 96 bytes.
  return record_bytes(sizeof(log_line), x.line, x.labels)
         + 96 * x.labels.size();
}

uint64_t cost_of(const event_record& x) {
  return sizeof(event_record) + x.kind.size() + x.message.size();
}

// Each line an object made a record by `make(object, record)`; the records
// charged to the budget before they are kept, at a whole line.
template <class Record, class Make>
void parse_lines(std::string_view text, const json_lines_limits& limits,
                 line_verdicts& out, std::vector<Record>& records,
                 Make make) {
  decode_budget budget(limits.max_decoded_bytes);
  for_each_line(text, [&](std::string_view line, size_t number) {
    if (line.find_first_not_of(" \t") == std::string_view::npos)
      return true;
    if (line.size() > limits.max_line_bytes) {
      out.note_error(number, "line longer than "
                               + std::to_string(limits.max_line_bytes)
                               + " bytes",
                     limits.max_errors);
      return true;
    }
    json_node doc;
    Record x;
    auto why = read_object(line, doc);
    if (why.empty())
      why = make(doc, x);
    if (!why.empty()) {
      out.note_error(number, std::move(why), limits.max_errors);
      return true;
    }
    if (records.size() >= limits.max_samples) {
      out.stopped = make_error(ec::too_large,
                               "more than "
                                 + std::to_string(limits.max_samples)
                                 + " records in one request");
      return false;
    }
    if (auto err = budget.charge(cost_of(x), "records")) {
      out.stopped = std::move(err);
      return false;
    }
    records.push_back(std::move(x));
    return true;
  });
}

} // namespace

log_batch parse_log_lines(std::string_view text, int64_t now_ns,
                          const json_lines_limits& limits) {
  log_batch out;
  parse_lines(text, limits, out, out.lines,
              [&](const json_node& obj, log_line& x) {
                return log_record(obj, now_ns, limits, x);
              });
  return out;
}

event_batch parse_event_lines(std::string_view text, int64_t now_ms,
                              const json_lines_limits& limits) {
  event_batch out;
  parse_lines(text, limits, out, out.events,
              [&](const json_node& obj, event_record& x) {
                return event_record_of(obj, now_ms, limits, x);
              });
  return out;
}

bool parse_rfc3339_ns(std::string_view x, int64_t& out) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (x.size() < 20 || !whole_digits(x, 4, y) || x[4] != '-'
      || !whole_digits(x.substr(5), 2, mo) || x[7] != '-'
      || !whole_digits(x.substr(8), 2, d)
      || (x[10] != 'T' && x[10] != 't')
      || !whole_digits(x.substr(11), 2, h) || x[13] != ':'
      || !whole_digits(x.substr(14), 2, mi) || x[16] != ':'
      || !whole_digits(x.substr(17), 2, s))
    return false;
  static constexpr int month_days[] = {31, 28, 31, 30, 31, 30,
                                       31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1
      || d > month_days[mo - 1] + (mo == 2 && leap(y) ? 1 : 0) || h > 23
      || mi > 59 || s > 60)
    return false;
  // A leap second is the next second's start, as most clocks step it.
  size_t pos = 19;
  int64_t frac = 0;
  if (x[pos] == '.') {
    size_t digits = 0;
    ++pos;
    while (pos < x.size() && x[pos] >= '0' && x[pos] <= '9') {
      if (digits < 9)
        frac = frac * 10 + (x[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0)
      return false;
    for (; digits < 9; ++digits)
      frac *= 10;
  }
  int64_t offset = 0;
  auto zone = x.substr(pos);
  if (zone == "Z" || zone == "z") {
    offset = 0;
  } else {
    int oh = 0, om = 0;
    if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-')
        || !whole_digits(zone.substr(1), 2, oh) || zone[3] != ':'
        || !whole_digits(zone.substr(4), 2, om) || oh > 23 || om > 59)
      return false;
    offset = (zone[0] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
  }
  int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
                 - offset;
  constexpr int64_t max = std::numeric_limits<int64_t>::max();
  constexpr int64_t min = std::numeric_limits<int64_t>::min();
  if (secs > (max - frac) / 1'000'000'000 || secs < min / 1'000'000'000)
    return false;
  out = secs * 1'000'000'000 + frac;
  return true;
}

} // namespace fleetd
