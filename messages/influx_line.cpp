#include "messages/influx_line.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <vector>

#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/prom_text.hpp"

namespace fleetd {

namespace {

// What a label's map node takes beyond its strings (libstdc++, 64-bit).
constexpr uint64_t map_node_bytes = 96;

// An escaped token from `pos` up to an unescaped byte of `stops` (or the
// end), where `pos` is left: a backslash before one of `escapable` stands
// for it, any other backslash for itself.
std::string token(std::string_view line, size_t& pos, std::string_view stops,
                  std::string_view escapable) {
  std::string out;
  while (pos < line.size()) {
    char c = line[pos];
    if (c == '\\' && pos + 1 < line.size()
        && escapable.find(line[pos + 1]) != std::string_view::npos) {
      out.push_back(line[pos + 1]);
      pos += 2;
      continue;
    }
    if (stops.find(c) != std::string_view::npos)
      break;
    out.push_back(c);
    ++pos;
  }
  return out;
}

bool parse_whole(std::string_view x, int64_t& out) {
  if (x.empty())
    return false;
  auto [end, ec] = std::from_chars(x.data(), x.data() + x.size(), out);
  return ec == std::errc{} && end == x.data() + x.size();
}

bool parse_unsigned(std::string_view x, uint64_t& out) {
  if (x.empty() || x[0] == '-')
    return false;
  auto [end, ec] = std::from_chars(x.data(), x.data() + x.size(), out);
  return ec == std::errc{} && end == x.data() + x.size();
}

// A field value: float, 12i, 12u, a boolean, or a string (`is_string`).
std::string field_value(std::string_view line, size_t& pos, double& out,
                        bool& is_string) {
  is_string = false;
  if (pos < line.size() && line[pos] == '"') {
    ++pos;
    while (pos < line.size() && line[pos] != '"')
      pos += line[pos] == '\\' && pos + 1 < line.size() ? 2 : 1;
    if (pos >= line.size())
      return "string field without its closing quote";
    ++pos;
    is_string = true;
    return {};
  }
  auto start = pos;
  while (pos < line.size() && line[pos] != ',' && line[pos] != ' ')
    ++pos;
  auto v = line.substr(start, pos - start);
  if (v.empty())
    return "field without a value";
  for (std::string_view t : {"t", "T", "true", "True", "TRUE"})
    if (v == t) {
      out = 1;
      return {};
    }
  for (std::string_view f : {"f", "F", "false", "False", "FALSE"})
    if (v == f) {
      out = 0;
      return {};
    }
  auto bad = "bad field value '" + std::string(v.substr(0, 32)) + "'";
  if (v.back() == 'i') {
    int64_t i = 0;
    if (!parse_whole(v.substr(0, v.size() - 1), i))
      return bad;
    out = static_cast<double>(i);
    return {};
  }
  if (v.back() == 'u') {
    uint64_t u = 0;
    if (!parse_unsigned(v.substr(0, v.size() - 1), u))
      return bad;
    out = static_cast<double>(u);
    return {};
  }
  // Influx floats are decimal; NaN and infinities are not values there.
  if (!parse_prom_float(v, out) || std::isnan(out) || std::isinf(out))
    return bad;
  return {};
}

// `ts` in `precision` as milliseconds; false past int64's milliseconds.
bool to_ms(int64_t ts, influx_precision precision, int64_t& out) {
  switch (precision) {
    case influx_precision::ns:
      out = ts / 1'000'000 - (ts % 1'000'000 < 0 ? 1 : 0);
      return true;
    case influx_precision::us:
      out = ts / 1'000 - (ts % 1'000 < 0 ? 1 : 0);
      return true;
    case influx_precision::ms:
      out = ts;
      return true;
    case influx_precision::s:
      if (ts > std::numeric_limits<int64_t>::max() / 1000
          || ts < std::numeric_limits<int64_t>::min() / 1000)
        return false;
      out = ts * 1000;
      return true;
  }
  return false;
}

class parser {
public:
  parser(const influx_limits& limits, int64_t now_ms,
         influx_precision precision, influx_batch& out)
    : limits_(limits), budget_(limits.max_decoded_bytes), now_ms_(now_ms),
      precision_(precision), out_(out) {}

  bool line(std::string_view text, size_t number) {
    if (text.size() > limits_.max_line_bytes) {
      error(number, "line longer than "
                      + std::to_string(limits_.max_line_bytes) + " bytes");
      return true;
    }
    size_t pos = 0;
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t'))
      ++pos;
    if (pos == text.size() || text[pos] == '#')
      return true;
    if (auto reason = parse(text, pos); !reason.empty())
      error(number, reason);
    return !out_.stopped;
  }

private:
  // A numeric or boolean field of the line being parsed.
  struct field {
    std::string key;
    double value;
  };

  void error(size_t number, std::string reason) {
    out_.note_error(number, std::move(reason), limits_.max_errors);
  }

  std::string parse(std::string_view line, size_t pos) {
    strings_ = 0;
    auto measurement = token(line, pos, ", ", ", ");
    if (measurement.empty())
      return "line without a measurement";
    label_map tags;
    while (pos < line.size() && line[pos] == ',') {
      ++pos;
      auto key = token(line, pos, "=, ", ",= ");
      if (key.empty() || pos >= line.size() || line[pos] != '=')
        return "tag without a key or '='";
      ++pos;
      auto value = token(line, pos, ", ", ",= ");
      if (value.empty())
        return "tag " + key.substr(0, 64) + " without a value";
      if (tags.size() >= limits_.max_tags)
        return "more than " + std::to_string(limits_.max_tags) + " tags";
      if (!tags.emplace(std::move(key), std::move(value)).second)
        return "a tag given twice";
    }
    if (pos >= line.size() || line[pos] != ' ')
      return "no fields after the measurement and tags";
    while (pos < line.size() && line[pos] == ' ')
      ++pos;
    std::vector<field> fields;
    for (;;) {
      auto key = token(line, pos, "=, ", ",= ");
      if (key.empty() || pos >= line.size() || line[pos] != '=')
        return "field without a key or '='";
      ++pos;
      double value = 0;
      bool is_string = false;
      if (auto reason = field_value(line, pos, value, is_string);
          !reason.empty())
        return reason;
      for (auto& f : fields)
        if (f.key == key)
          return "field " + key.substr(0, 64) + " given twice";
      if (fields.size() >= limits_.max_fields)
        return "more than " + std::to_string(limits_.max_fields) + " fields";
      if (is_string)
        ++strings_;
      else
        fields.push_back({std::move(key), value});
      if (pos < line.size() && line[pos] == ',') {
        ++pos;
        continue;
      }
      break;
    }
    int64_t ts = now_ms_;
    while (pos < line.size() && line[pos] == ' ')
      ++pos;
    if (pos < line.size()) {
      auto end = line.find(' ', pos);
      auto text = line.substr(pos, end == std::string_view::npos
                                     ? std::string_view::npos
                                     : end - pos);
      int64_t raw = 0;
      if (!parse_whole(text, raw) || !to_ms(raw, precision_, ts))
        return "bad timestamp '" + std::string(text.substr(0, 32)) + "'";
      pos += text.size();
      while (pos < line.size() && line[pos] == ' ')
        ++pos;
      if (pos < line.size())
        return "text after the timestamp";
    }
    if (bad_text_at(measurement) != std::string::npos)
      return "measurement is not UTF-8 text";
    if (auto err = check_labels(tags, "tag"))
      return "a tag is not UTF-8 text";
    for (auto& f : fields)
      if (bad_text_at(f.key) != std::string::npos)
        return "a field key is not UTF-8 text";
    return keep(measurement, tags, fields, ts);
  }

  // The line's samples, charged first; whole or not at all.
  std::string keep(const std::string& measurement, const label_map& tags,
                   const std::vector<field>& fields, int64_t ts) {
    uint64_t labels_cost = 0;
    for (auto& [k, v] : tags)
      labels_cost += 2 * (k.size() + v.size() + 2) + map_node_bytes;
    uint64_t cost = 0;
    for (auto& f : fields)
      cost += 3 * sizeof(metric_sample) + measurement.size() + f.key.size()
              + 1 + labels_cost;
    if (out_.samples.size() + fields.size() > limits_.max_samples) {
      out_.stopped = make_error(ec::too_large,
                                "more than "
                                  + std::to_string(limits_.max_samples)
                                  + " samples in one request");
      return {};
    }
    if (auto err = budget_.charge(cost, "samples")) {
      out_.stopped = std::move(err);
      return {};
    }
    for (auto& f : fields)
      out_.samples.push_back({measurement + "_" + f.key, tags, ts, f.value});
    out_.skipped_strings += strings_;
    strings_ = 0;
    return {};
  }

  const influx_limits& limits_;
  decode_budget budget_;
  int64_t now_ms_;
  influx_precision precision_;
  influx_batch& out_;
  // String fields of the line being parsed.
  size_t strings_ = 0;
};

} // namespace

bool parse_influx_precision(std::string_view x, influx_precision& out) {
  if (x == "ns" || x == "n")
    out = influx_precision::ns;
  else if (x == "us" || x == "u")
    out = influx_precision::us;
  else if (x == "ms")
    out = influx_precision::ms;
  else if (x == "s")
    out = influx_precision::s;
  else
    return false;
  return true;
}

influx_batch parse_influx_lines(std::string_view text, int64_t now_ms,
                                influx_precision precision,
                                const influx_limits& limits) {
  influx_batch out;
  parser p(limits, now_ms, precision, out);
  for_each_line(text, [&](std::string_view line, size_t number) {
    return p.line(line, number);
  });
  return out;
}

} // namespace fleetd
