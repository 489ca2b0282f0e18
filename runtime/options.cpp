#include "runtime/options.hpp"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include <caf/actor_system_config.hpp>
#include <caf/config_value.hpp>
#include <caf/settings.hpp>

#include "messages/error.hpp"

namespace fleetd {

namespace {

caf::error bad(const std::string& what) {
  return make_error(ec::bad_config, what);
}

// The option a line of INI text sets ("group.key"), for error messages.
std::string option_at_line(const std::string& text, long line) {
  std::istringstream in(text);
  std::string row;
  std::string group;
  for (long i = 1; std::getline(in, row); ++i) {
    auto first = row.find_first_not_of(" \t");
    if (first != std::string::npos && row[first] == '[') {
      auto close = row.find(']', first);
      group = row.substr(first + 1, close == std::string::npos
                                      ? std::string::npos
                                      : close - first - 1);
    }
    if (i == line) {
      auto eq = row.find('=');
      if (eq == std::string::npos || first == std::string::npos)
        return "";
      auto key = row.substr(first, eq - first);
      key.erase(key.find_last_not_of(" \t") + 1);
      return group.empty() ? key : group + "." + key;
    }
  }
  return "";
}

// Finds `"key" = N` in CAF's rendering of a parser error; -1 when absent.
long grab_position(const std::string& rendered, const char* key) {
  auto pos = rendered.find(key);
  if (pos == std::string::npos)
    return -1;
  pos = rendered.find('=', pos);
  if (pos == std::string::npos)
    return -1;
  auto end = rendered.find_first_of(",})", pos);
  auto v = rendered.substr(pos + 1, end - pos - 1);
  char* rest = nullptr;
  auto n = std::strtol(v.c_str(), &rest, 10);
  return rest == v.c_str() ? -1 : n;
}

// Length of line `n` (1-based) of `text`, without its newline.
long line_length(const std::string& text, long n) {
  size_t begin = 0;
  for (long i = 1; i < n; ++i) {
    begin = text.find('\n', begin);
    if (begin == std::string::npos)
      return 0;
    ++begin;
  }
  auto end = text.find('\n', begin);
  return static_cast<long>((end == std::string::npos ? text.size() : end)
                           - begin);
}

std::string describe_parse_error(const caf::error& err,
                                 const std::string& text) {
  // CAF reports parser errors as parser_error(reason, {"column" = C, "line" = L}).
  auto rendered = caf::actor_system_config::render(err);
  auto reason_begin = rendered.find('(');
  auto reason_end = rendered.find_first_of(",)", reason_begin + 1);
  std::string reason = reason_begin == std::string::npos
                         ? rendered
                         : rendered.substr(reason_begin + 1,
                                           reason_end - reason_begin - 1);
  bool at_newline = reason == "unexpected_newline";
  for (auto& c : reason)
    if (c == '_')
      c = ' ';
  auto line = grab_position(rendered, "\"line\"");
  auto column = grab_position(rendered, "\"column\"");
  // CAF 0.17's parser_state counts a newline as column 1 of the *next* line:
  // an error at a newline names the line after the offending one, and every
  // column after the first line is one too high. Report what editors show.
  if (line > 1 && at_newline) {
    --line;
    column = line_length(text, line) + 1;
  } else if (line > 1 && column > 1) {
    --column;
  }
  auto num = [](long x) { return x < 0 ? std::string("?") : std::to_string(x); };
  auto key = line > 0 ? option_at_line(text, line) : std::string();
  return "line " + num(line) + ", column " + num(column) + ": "
         + (key.empty() ? "" : key + ": ") + reason
         + " (strings must be \"quoted\")";
}

void flatten(const caf::settings& xs, const std::string& prefix,
             std::vector<std::pair<std::string, caf::config_value>>& out) {
  for (auto& kv : xs) {
    auto key = prefix.empty() ? kv.first : prefix + "." + kv.first;
    if (auto sub = caf::get_if<caf::settings>(&kv.second))
      flatten(*sub, key, out);
    else
      out.emplace_back(key, kv.second);
  }
}

} // namespace

const char* fleetd_version() {
  return FLEETD_VERSION;
}

const char* const duration_units
  = "a whole number with a unit: ms, s, m (or min), h, d, combinable as 1h30m; "
    "e.g. 500ms, 10s, 10m, 7d";

const char* const size_units
  = "a whole number of bytes, optionally with a unit: k, M, G, T (powers of "
    "1000) or Ki, Mi, Gi, Ti (powers of 1024), B optional; e.g. 512k, 100MB, "
    "5MiB";

namespace {

constexpr int64_t max_config_bytes = 1024 * 1024;

// Longest duration or size text read; longer is refused before parsing.
constexpr size_t max_unit_text = 64;

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

// Reads the digits at text[i...] into out; false on none or overflow.
bool read_number(const std::string& text, size_t& i, int64_t& out) {
  auto begin = i;
  out = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i)
    if (__builtin_mul_overflow(out, 10, &out)
        || __builtin_add_overflow(out, text[i] - '0', &out))
      return false;
  return i > begin;
}

std::string read_word(const std::string& text, size_t& i) {
  while (i < text.size() && is_blank(text[i]))
    ++i;
  auto begin = i;
  while (i < text.size()
         && ((text[i] >= 'a' && text[i] <= 'z')
             || (text[i] >= 'A' && text[i] <= 'Z')))
    ++i;
  auto word = text.substr(begin, i - begin);
  while (i < text.size() && is_blank(text[i]))
    ++i;
  return word;
}

// Why `text` is not a duration (empty when it is one; then `out` holds it).
std::string duration_problem(const std::string& text,
                             std::chrono::milliseconds& out) {
  auto quoted = "'" + text.substr(0, max_unit_text) + "'";
  auto wrong = [&] { return quoted + " is not a duration; use "
                            + duration_units; };
  if (text.empty() || text.size() > max_unit_text)
    return wrong();
  if (text == "0") {
    out = std::chrono::milliseconds{0};
    return "";
  }
  int64_t total_ns = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t n = 0;
    if (!read_number(text, i, n))
      return wrong();
    auto unit = read_word(text, i);
    int64_t ns_per = 0;
    if (unit == "ns")
      ns_per = 1;
    else if (unit == "us")
      ns_per = 1000;
    else if (unit == "ms")
      ns_per = 1000000;
    else if (unit == "s")
      ns_per = 1000000000;
    else if (unit == "m" || unit == "min")
      ns_per = int64_t{60} * 1000000000;
    else if (unit == "h")
      ns_per = int64_t{3600} * 1000000000;
    else if (unit == "d")
      ns_per = int64_t{86400} * 1000000000;
    else
      return wrong();
    int64_t part = 0;
    if (__builtin_mul_overflow(n, ns_per, &part)
        || __builtin_add_overflow(total_ns, part, &total_ns))
      return quoted + " is too long a duration";
  }
  // Truncating 1500us to 1ms would change the value silently.
  if (total_ns % 1000000 != 0)
    return text + " is not a whole number of milliseconds";
  out = std::chrono::milliseconds{total_ns / 1000000};
  return "";
}

// Why `text` is not a size (empty when it is one; then `out` holds it).
std::string size_problem(const std::string& text, int64_t& out) {
  auto quoted = "'" + text.substr(0, max_unit_text) + "'";
  auto wrong = [&] { return quoted + " is not a size; use " + size_units; };
  if (text.empty() || text.size() > max_unit_text)
    return wrong();
  size_t i = 0;
  int64_t n = 0;
  if (!read_number(text, i, n))
    return wrong();
  auto unit = read_word(text, i);
  if (i != text.size())
    return wrong();
  for (auto& c : unit)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'b')
    unit.pop_back();
  int64_t per = 0;
  if (unit.empty() || unit == "b")
    per = 1;
  else if (unit.size() <= 2 && (unit.size() == 1 || unit[1] == 'i')) {
    auto at = std::string("kmgt").find(unit[0]);
    if (at == std::string::npos)
      return wrong();
    per = 1;
    for (size_t k = 0; k <= at; ++k)
      per *= unit.size() == 2 ? 1024 : 1000;
  } else {
    return wrong();
  }
  if (__builtin_mul_overflow(n, per, &out))
    return quoted + " is too large a size";
  return "";
}

} // namespace

caf::expected<std::chrono::milliseconds>
parse_duration(const std::string& text) {
  std::chrono::milliseconds out{0};
  auto why = duration_problem(text, out);
  if (!why.empty())
    return bad(why);
  return out;
}

caf::expected<int64_t> parse_size(const std::string& text) {
  int64_t out = 0;
  auto why = size_problem(text, out);
  if (!why.empty())
    return bad(why);
  return out;
}

std::string to_duration_text(std::chrono::milliseconds x) {
  auto ms = x.count();
  if (ms == 0)
    return "0s";
  std::string out = ms < 0 ? "-" : "";
  // Whole milliseconds of each unit, largest first.
  const std::pair<int64_t, const char*> units[] = {
    {86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
  for (auto& [per, name] : units) {
    auto n = ms / per;
    if (n != 0)
      out += std::to_string(n < 0 ? -n : n) + name;
    ms %= per;
  }
  return out;
}

std::string to_size_text(int64_t bytes) {
  if (bytes == 0)
    return "0";
  static const char* const binary[] = {"KiB", "MiB", "GiB", "TiB"};
  static const char* const decimal[] = {"kB", "MB", "GB", "TB"};
  std::string best = std::to_string(bytes);
  int64_t best_n = bytes;
  // The exact rendering with the smallest number wins; binary on a tie.
  for (int pass = 0; pass < 2; ++pass) {
    int64_t per = 1;
    for (int k = 0; k < 4; ++k) {
      per *= pass == 0 ? 1024 : 1000;
      if (bytes % per == 0 && bytes / per < best_n) {
        best_n = bytes / per;
        best = std::to_string(best_n) + (pass == 0 ? binary : decimal)[k];
      }
    }
  }
  return best;
}

option_set::option_set(std::string program, std::string summary)
  : program_(std::move(program)), summary_(std::move(summary)) {
  // Defaults apply at declaration; the setters below overwrite them.
}

void option_set::add(const std::string& key, bool& ref, bool def,
                     std::string desc) {
  ref = def;
  entry e;
  e.key = key;
  e.type = "bool";
  e.desc = std::move(desc);
  e.default_text = def ? "true" : "false";
  e.set = [&ref, key](const caf::config_value& v) -> caf::error {
    if (auto b = caf::get_if<bool>(&v)) {
      ref = *b;
      return caf::none;
    }
    return bad(key + ": expected true or false, got " + caf::to_string(v));
  };
  e.get = [&ref] { return std::string(ref ? "true" : "false"); };
  entries_.push_back(std::move(e));
}

void option_set::add(const std::string& key, int64_t& ref, int64_t def,
                     std::string unit, std::string desc, int64_t min,
                     int64_t max) {
  ref = def;
  entry e;
  e.key = key;
  e.type = "integer";
  e.unit = std::move(unit);
  e.desc = std::move(desc);
  e.default_text = std::to_string(def);
  e.set = [&ref, key, min, max](const caf::config_value& v) -> caf::error {
    auto i = caf::get_if<caf::config_value::integer>(&v);
    if (!i)
      return bad(key + ": expected an integer, got " + caf::to_string(v));
    if (*i < min || *i > max)
      return bad(key + ": " + std::to_string(*i) + " is out of range ["
                 + std::to_string(min) + ", " + std::to_string(max) + "]");
    ref = *i;
    return caf::none;
  };
  e.get = [&ref] { return std::to_string(ref); };
  entries_.push_back(std::move(e));
}

void option_set::add(const std::string& key, std::string& ref,
                     std::string def, std::string desc, bool required,
                     bool secret) {
  ref = def;
  entry e;
  e.key = key;
  e.type = "string";
  e.desc = std::move(desc);
  e.default_text = def.empty() ? "\"\"" : "\"" + def + "\"";
  e.required = required;
  e.secret = secret;
  e.set = [&ref, key](const caf::config_value& v) -> caf::error {
    if (auto s = caf::get_if<std::string>(&v)) {
      ref = *s;
      return caf::none;
    }
    return bad(key + ": expected a \"quoted string\", got " + caf::to_string(v));
  };
  e.empty = [&ref] { return ref.empty(); };
  e.get = [&ref, secret] {
    return secret && !ref.empty() ? std::string("\"***\"") : "\"" + ref + "\"";
  };
  entries_.push_back(std::move(e));
}

void option_set::add_auto_bool(const std::string& key, std::string& ref,
                               std::string desc) {
  ref = "auto";
  entry e;
  e.key = key;
  e.type = "auto or bool";
  e.desc = std::move(desc);
  e.default_text = "auto";
  // Read from its text, as durations are: `auto` needs no quotes in an INI.
  e.set_text = [&ref, key](const std::string& raw) -> caf::error {
    auto v = raw;
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"')
      v = v.substr(1, v.size() - 2);
    if (v != "auto" && v != "true" && v != "false")
      return bad(key + ": expected true, false or auto, got '" + raw + "'");
    ref = v;
    return caf::none;
  };
  e.get = [&ref] { return ref; };
  entries_.push_back(std::move(e));
}

void option_set::add(const std::string& key, duration& ref, duration def,
                     std::string desc, duration min) {
  ref = def;
  entry e;
  e.key = key;
  e.type = "duration";
  e.desc = std::move(desc);
  e.default_text = to_duration_text(def);
  e.set_text = [&ref, key, min](const std::string& raw) -> caf::error {
    duration d{0};
    auto why = duration_problem(raw, d);
    if (!why.empty())
      return bad(key + ": " + why);
    if (d < min)
      return bad(key + ": must be at least " + to_duration_text(min));
    ref = d;
    return caf::none;
  };
  e.get = [&ref] { return to_duration_text(ref); };
  entries_.push_back(std::move(e));
}

void option_set::add_size(const std::string& key, int64_t& ref, int64_t def,
                          std::string desc, int64_t min, int64_t max) {
  ref = def;
  entry e;
  e.key = key;
  e.type = "size";
  e.desc = std::move(desc);
  e.default_text = to_size_text(def);
  e.set_text = [&ref, key, min, max](const std::string& raw) -> caf::error {
    int64_t n = 0;
    auto why = size_problem(raw, n);
    if (!why.empty())
      return bad(key + ": " + why);
    if (n < min || n > max)
      return bad(key + ": " + raw + " is out of range [" + to_size_text(min)
                 + ", " + to_size_text(max) + "]");
    ref = n;
    return caf::none;
  };
  e.get = [&ref] { return to_size_text(ref); };
  entries_.push_back(std::move(e));
}

void option_set::replaces(const std::string& key,
                          std::vector<std::string> others) {
  replaced_.emplace_back(key, std::move(others));
}

caf::error option_set::check_replaced() {
  for (auto& [key, others] : replaced_) {
    auto e = find(key);
    if (!e || !e->was_set || !e->empty || e->empty())
      continue;
    for (auto& other : others)
      if (auto o = find(other); o && o->was_set)
        return bad(key + ": stands instead of " + other
                   + "; set one or the other, not both");
  }
  return caf::none;
}

option_set::entry* option_set::find(const std::string& key) {
  for (auto& e : entries_)
    if (e.key == key)
      return &e;
  return nullptr;
}

caf::error option_set::set_from_text(const std::string& key,
                                     const std::string& raw,
                                     const std::string& origin) {
  auto e = find(key);
  if (!e)
    return bad(key + ": unknown option (" + origin + "); see --help");
  if (e->set_text) {
    if (auto err = e->set_text(raw))
      return err;
    e->was_set = true;
    e->source = "flag";
    return caf::none;
  }
  caf::config_value v;
  if (e->type == "string") {
    v = caf::config_value{raw};
  } else {
    auto parsed = caf::config_value::parse(raw);
    if (!parsed)
      return bad(key + ": cannot read value '" + raw + "' as " + e->type);
    v = std::move(*parsed);
  }
  if (auto err = e->set(v))
    return err;
  e->was_set = true;
  e->source = "flag";
  return caf::none;
}

std::string option_set::source_of(const std::string& key) const {
  for (auto& e : entries_)
    if (e.key == key)
      return e.source;
  return "";
}

// Durations and sizes are read here, not by CAF: its INI syntax has no
// `10m`, `1h30m`, `7d` or `100MB`. Their lines are blanked (line numbers stay)
// and set from the value text, quoted or not.
std::string option_set::take_unit_lines(const std::string& text,
                                        const std::string& origin,
                                        caf::error& err) {
  std::string rest;
  std::string group;
  size_t pos = 0;
  for (long line = 1; pos < text.size(); ++line) {
    auto end = text.find('\n', pos);
    if (end == std::string::npos)
      end = text.size();
    auto row = text.substr(pos, end - pos);
    auto first = row.find_first_not_of(" \t");
    auto eq = row.find('=');
    if (first != std::string::npos && row[first] == '[') {
      auto close = row.find(']', first);
      group = row.substr(first + 1, close == std::string::npos
                                      ? std::string::npos
                                      : close - first - 1);
    } else if (first != std::string::npos && row[first] != ';'
               && eq != std::string::npos) {
      auto key = row.substr(first, eq - first);
      key.erase(key.find_last_not_of(" \t") + 1);
      auto e = find(group.empty() ? key : group + "." + key);
      if (e && e->set_text) {
        auto value = row.substr(eq + 1);
        auto quote = value.find_first_not_of(" \t");
        if (quote != std::string::npos && value[quote] == '"') {
          auto close = value.find('"', quote + 1);
          value = value.substr(quote + 1, close == std::string::npos
                                            ? std::string::npos
                                            : close - quote - 1);
        } else {
          value = value.substr(0, value.find(';'));
        }
        auto b = value.find_first_not_of(" \t");
        value = b == std::string::npos
                  ? std::string()
                  : value.substr(b, value.find_last_not_of(" \t") - b + 1);
        if (auto set_err = e->set_text(value)) {
          err = make_error(ec::bad_config,
                           render(set_err).substr(sizeof("bad_config: ") - 1)
                             + " (" + origin + " line "
                             + std::to_string(line) + ")");
          return text;
        }
        e->was_set = true;
        e->source = "file";
        row.clear();
      }
    }
    rest += row;
    if (end < text.size())
      rest += '\n';
    pos = end + 1;
  }
  return rest;
}

caf::error option_set::load_ini(const std::string& text,
                                const std::string& origin) {
  caf::error err;
  auto rest = take_unit_lines(text, origin, err);
  if (err)
    return err;
  std::istringstream in(rest);
  auto parsed = caf::actor_system_config::parse_config(in);
  if (!parsed)
    return bad(origin + ": " + describe_parse_error(parsed.error(), rest));
  std::vector<std::pair<std::string, caf::config_value>> flat;
  flatten(*parsed, "", flat);
  for (auto& kv : flat) {
    auto e = find(kv.first);
    if (!e)
      return bad(kv.first + ": unknown option (" + origin + "); see --help");
    if (!e->set)
      return bad(kv.first + ": cannot read " + caf::to_string(kv.second)
                 + " as a " + e->type + " (" + origin + ")");
    if (auto err = e->set(kv.second))
      return make_error(ec::bad_config,
                        render(err).substr(sizeof("bad_config: ") - 1) + " ("
                          + origin + ")");
    e->was_set = true;
    e->source = "file";
  }
  return caf::none;
}

caf::error option_set::parse(int argc, char** argv) {
  std::vector<std::string> xs;
  for (int i = 1; i < argc; ++i)
    xs.emplace_back(argv[i]);
  return parse(xs);
}

caf::error option_set::parse(const std::vector<std::string>& argv) {
  std::vector<std::pair<std::string, std::string>> flags;
  for (size_t i = 0; i < argv.size(); ++i) {
    const auto& arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg == "--version") {
      version_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      args_.push_back(arg);
      continue;
    }
    auto body = arg.substr(2);
    std::string key;
    std::string value;
    auto eq = body.find('=');
    if (eq != std::string::npos) {
      key = body.substr(0, eq);
      value = body.substr(eq + 1);
    } else {
      key = body;
      auto e = find(key);
      if (key != "config" && e && e->type == "bool") {
        value = "true";
      } else if (i + 1 < argv.size() && argv[i + 1].rfind("--", 0) != 0) {
        // The next word is the value unless it is a flag itself: taking
        // "--config" as the value of "--log.file" would silently drop the
        // config file.
        value = argv[++i];
      } else if (key != "config" && !e) {
        return bad(key + ": unknown option (command line); see --help");
      } else {
        return bad(key + ": missing value (use --" + key + "=VALUE)");
      }
    }
    if (key == "config")
      config_file_ = value;
    else
      flags.emplace_back(key, value);
  }
  if (help_ || version_)
    return caf::none;
  if (!config_file_.empty()) {
    struct stat st;
    if (stat(config_file_.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
      return bad("config: cannot read file '" + config_file_
                 + "' (missing or not a regular file)");
    // A config file is a page of text; anything larger is a wrong path.
    if (st.st_size > max_config_bytes)
      return bad("config: file '" + config_file_ + "' is larger than "
                 + to_size_text(max_config_bytes));
    std::ifstream in(config_file_);
    if (!in)
      return bad("config: cannot read file '" + config_file_ + "'");
    std::stringstream buf;
    buf << in.rdbuf();
    if (in.bad())
      return bad("config: cannot read file '" + config_file_ + "'");
    if (auto err = load_ini(buf.str(), config_file_))
      return err;
  }
  for (auto& kv : flags)
    if (auto err = set_from_text(kv.first, kv.second, "command line"))
      return err;
  for (auto& e : entries_)
    if (e.required && e.empty && e.empty())
      return bad(e.key + ": required, but not set (in the config file or as --"
                 + e.key + "=...)");
  return check_replaced();
}

std::string option_set::help() const {
  std::ostringstream out;
  out << "usage: " << program_ << (commands_.empty() ? "" : " [COMMAND]")
      << " [--config FILE] [--group.option=VALUE ...]"
      << "\n\n"
      << summary_ << "\n\noptions (also [group] / option = value in the INI "
      << "file given by --config):\n";
  out << "  --config FILE  INI file to read options from (CAF's format; "
         "strings quoted)\n";
  out << "  --help         print this text\n";
  out << "  --version      print the version\n";
  for (auto& e : entries_) {
    out << "  --" << e.key << " (" << e.type;
    if (!e.unit.empty())
      out << ", " << e.unit;
    out << ", default " << e.default_text << (e.required ? ", required" : "")
        << ")\n      " << e.desc << "\n";
  }
  if (!commands_.empty())
    out << "\ncommands:\n" << commands_;
  out << "\ndurations: " << duration_units << "\nsizes: " << size_units
      << "\n";
  return out.str();
}

std::string option_set::dump() const {
  std::ostringstream out;
  for (auto& e : entries_)
    out << e.key << " = " << e.get() << "\n";
  return out.str();
}

} // namespace fleetd
