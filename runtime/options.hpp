#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

namespace fleetd {

/// The options of one program, each declared once with default, unit and
/// description. Values come from defaults, then the INI file (`--config`),
/// then `--group.option=value` flags; every error names the option.
class option_set {
public:
  using duration = std::chrono::milliseconds;

  explicit option_set(std::string program, std::string summary);

  void add(const std::string& key, bool& ref, bool def, std::string desc);
  void add(const std::string& key, int64_t& ref, int64_t def, std::string unit,
           std::string desc, int64_t min = INT64_MIN, int64_t max = INT64_MAX);
  void add(const std::string& key, std::string& ref, std::string def,
           std::string desc, bool required = false, bool secret = false);
  void add(const std::string& key, duration& ref, duration def,
           std::string desc, duration min = duration{0});
  /// A switch with a default decided elsewhere: true, false or "auto" (the
  /// INI's booleans and the strings "true", "false", "auto"); `ref` holds
  /// "auto", "true" or "false".
  void add_auto_bool(const std::string& key, std::string& ref,
                     std::string desc);
  /// A byte count written as 512, 100MB, 5MiB or 512k (see parse_size).
  void add_size(const std::string& key, int64_t& ref, int64_t def,
                std::string desc, int64_t min = 0, int64_t max = INT64_MAX);
  /// Declared string option `key`, when set non-empty, stands instead of the
  /// declared `others`: parse refuses setting any of them as well.
  void replaces(const std::string& key, std::vector<std::string> others);

  /// Parses the command line; positional words (commands) land in `args()`.
  /// Returns ec::bad_config naming the option or file on any problem.
  caf::error parse(int argc, char** argv);

  /// Same for an argument list without the program name.
  caf::error parse(const std::vector<std::string>& argv);

  /// True when `--help` was given; `help()` then says what to print.
  bool help_requested() const { return help_; }
  /// True when `--version` was given.
  bool version_requested() const { return version_; }
  /// Text of the program's commands, listed by help() after the options.
  void set_commands(std::string text) { commands_ = std::move(text); }
  const std::vector<std::string>& args() const { return args_; }
  const std::string& config_file() const { return config_file_; }

  /// Where `key`'s value came from: "flag" (the command line), "file" (the
  /// INI of --config) or "" (its default; also for an unknown key).
  std::string source_of(const std::string& key) const;

  /// Usage text: every option with default, unit and description.
  std::string help() const;

  /// "group.option = value" lines, secrets masked.
  std::string dump() const;

  /// Reads options from INI text (CAF's format); `origin` names it in errors.
  caf::error load_ini(const std::string& text, const std::string& origin);

private:
  struct entry {
    std::string key;
    std::string type;
    std::string unit;
    std::string desc;
    std::string default_text;
    bool required = false;
    bool secret = false;
    bool was_set = false;
    /// Where the value came from once set: "file" (--config) or "flag".
    const char* source = "";
    std::function<caf::error(const caf::config_value&)> set;
    /// Durations and sizes read their own text (CAF's syntax has no 1h30m).
    std::function<caf::error(const std::string&)> set_text;
    std::function<std::string()> get;
    std::function<bool()> empty;
  };

  entry* find(const std::string& key);
  caf::error set_from_text(const std::string& key, const std::string& raw,
                           const std::string& origin);
  std::string take_unit_lines(const std::string& text,
                              const std::string& origin, caf::error& err);
  caf::error check_replaced();

  std::string program_;
  std::string summary_;
  std::vector<entry> entries_;
  /// An option and the options it stands instead of (replaces()).
  std::vector<std::pair<std::string, std::vector<std::string>>> replaced_;
  std::vector<std::string> args_;
  std::string config_file_;
  bool help_ = false;
  bool version_ = false;
  std::string commands_;
};

/// The project version from CMake (project(fleetd VERSION ...)).
const char* fleetd_version();

/// Units a duration option accepts, for messages and --help.
extern const char* const duration_units;

/// Units a size option accepts, for messages and --help.
extern const char* const size_units;

/// Reads "500ms", "10s", "10m" or "5min", "1h30m", "7d" (numbers with units
/// ns, us, ms, s, m/min, h, d, summed); refuses plain numbers, negatives,
/// overflow and anything finer than a millisecond. The error says why.
caf::expected<std::chrono::milliseconds> parse_duration(const std::string& text);

/// Reads a byte count: a plain number is bytes; k, M, G, T (optionally with
/// B: kB, MB) are decimal (1000^n, as disks are sold); Ki, Mi, Gi, Ti
/// (optionally with B: KiB, MiB) are binary (1024^n). Letters in any case.
caf::expected<int64_t> parse_size(const std::string& text);

/// Renders a duration in the units parse_duration reads ("250ms", "1m30s",
/// "7d"); parse_duration(to_duration_text(x)) == x.
std::string to_duration_text(std::chrono::milliseconds x);

/// Renders a byte count exactly: "512KiB", "100MB" or plain bytes.
std::string to_size_text(int64_t bytes);

} // namespace fleetd
