#pragma once

// Small helpers every fleetd-bench subcommand uses.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace fleetd::bench {

/// Walks command-line arguments written `--name value` or `--name=value`.
class arg_cursor {
public:
  explicit arg_cursor(const std::vector<std::string>& args) : args_(args) {
    // nop
  }

  /// Moves to the next argument; false past the last one.
  bool next();

  /// The current argument without any "=value".
  const std::string& name() const {
    return name_;
  }

  /// The current argument's value (after '=' or the next argument); false
  /// when it has none.
  bool value(std::string& out);

private:
  const std::vector<std::string>& args_;
  size_t pos_ = 0;
  std::string name_;
  std::string inline_value_;
  bool has_inline_ = false;
};

/// What a benchmark throws when it cannot go on; `what` says why.
struct bench_failure {
  std::string what;
};

[[noreturn]] void fail(const std::string& what);

/// Writes `text` to `path` (mode 0600 when `owner_only`, else 0644); fails
/// with the path named.
void write_file(const std::string& path, const std::string& text,
                bool owner_only);

/// Makes `dir` ready for the databases: when empty, a fresh directory under
/// $TMPDIR or /var/tmp (`own` true: the caller removes it), else `dir` and
/// its parents are created if missing. Returns an error message, empty on
/// success.
std::string prepare_dir(std::string& dir, bool& own);

struct proc_stat {
  pid_t ppid = 0;
  /// User + system CPU seconds so far.
  double cpu_s = 0;
};

/// /proc/PID/stat of a running process; nullopt when it is gone.
std::optional<proc_stat> read_stat(pid_t pid);

/// User + system CPU seconds of running process `pid`; fails when it is
/// gone.
double cpu_seconds_of(pid_t pid);

/// Median of `xs` (mean of the middle two for an even count); 0 when empty.
double median(std::vector<double> xs);

/// Whole decimal number, nothing else; false leaves `out` unchanged.
bool parse_int(const std::string& text, int64_t& out);

/// Finite decimal number, nothing else; false leaves `out` unchanged.
bool parse_double(const std::string& text, double& out);

/// `x` with exactly `decimals` digits after the point.
std::string format(double x, int decimals);

} // namespace fleetd::bench
