#pragma once

#include <regex.h>

#include <string>

namespace fleetd {

/// A POSIX extended regular expression (<regex.h>, no std::regex: device
/// size), compiled once and matched many times. Matching is unanchored, as
/// Go's MatchString that node_exporter's filter flags use: a pattern anchors
/// itself with ^ and $.
class pattern {
public:
  /// No pattern: empty() is true and matches() is false.
  pattern() = default;

  /// Compiles `expr`; on failure ok() is false and error() says why.
  explicit pattern(const std::string& expr);

  pattern(pattern&& other) noexcept;
  pattern& operator=(pattern&& other) noexcept;
  pattern(const pattern&) = delete;
  pattern& operator=(const pattern&) = delete;
  ~pattern();

  /// True when `expr` was given (even one that failed to compile).
  bool empty() const {
    return expr_.empty();
  }

  bool ok() const {
    return compiled_;
  }

  /// Why `expr` does not compile, with regerror's text; empty when ok().
  const std::string& error() const {
    return error_;
  }

  const std::string& expr() const {
    return expr_;
  }

  /// True when some part of `x` matches; false for a pattern that is not ok.
  bool matches(const std::string& x) const;

private:
  void release();

  std::string expr_;
  std::string error_;
  regex_t re_{};
  bool compiled_ = false;
};

/// Empty when `expr` compiles as a pattern, else why not.
std::string pattern_error(const std::string& expr);

} // namespace fleetd
