#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <caf/error.hpp>
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

  /// Parses the command line; positional words (commands) land in `args()`.
  /// Returns ec::bad_config naming the option or file on any problem.
  caf::error parse(int argc, char** argv);

  /// Same for an argument list without the program name.
  caf::error parse(const std::vector<std::string>& argv);

  /// True when `--help` was given; `help()` then says what to print.
  bool help_requested() const { return help_; }
  const std::vector<std::string>& args() const { return args_; }
  const std::string& config_file() const { return config_file_; }

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
    std::function<caf::error(const caf::config_value&)> set;
    std::function<std::string()> get;
    std::function<bool()> empty;
  };

  entry* find(const std::string& key);
  caf::error set_from_text(const std::string& key, const std::string& raw,
                           const std::string& origin);

  std::string program_;
  std::string summary_;
  std::vector<entry> entries_;
  std::vector<std::string> args_;
  std::string config_file_;
  bool help_ = false;
};

/// Renders a duration as CAF writes it ("250ms", "5s", "2min").
std::string to_duration_text(std::chrono::milliseconds x);

} // namespace fleetd
