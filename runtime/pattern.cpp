#include "runtime/pattern.hpp"

#include <utility>

namespace fleetd {

namespace {

// Perl's digit classes read as a literal letter in ERE: refuse them rather
// than silently never match (node_exporter's own defaults use \d).
bool has_perl_digit(const std::string& expr) {
  for (size_t i = 0; i + 1 < expr.size(); ++i) {
    if (expr[i] != '\\')
      continue;
    if (expr[i + 1] == 'd' || expr[i + 1] == 'D')
      return true;
    ++i; // An escaped backslash does not start an escape.
  }
  return false;
}

} // namespace

pattern::pattern(const std::string& expr) : expr_(expr) {
  if (has_perl_digit(expr)) {
    error_ = "'" + expr + "': \\d is not POSIX ERE, write [0-9]";
    return;
  }
  auto rc = ::regcomp(&re_, expr.c_str(), REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char buf[256];
    ::regerror(rc, &re_, buf, sizeof(buf));
    error_ = "'" + expr + "': " + buf;
    return;
  }
  compiled_ = true;
}

pattern::pattern(pattern&& other) noexcept
  : expr_(std::move(other.expr_)),
    error_(std::move(other.error_)),
    re_(other.re_),
    compiled_(other.compiled_) {
  other.compiled_ = false;
}

pattern& pattern::operator=(pattern&& other) noexcept {
  if (this != &other) {
    release();
    expr_ = std::move(other.expr_);
    error_ = std::move(other.error_);
    re_ = other.re_;
    compiled_ = other.compiled_;
    other.compiled_ = false;
  }
  return *this;
}

pattern::~pattern() {
  release();
}

void pattern::release() {
  if (compiled_)
    ::regfree(&re_);
  compiled_ = false;
}

bool pattern::matches(const std::string& x) const {
  return compiled_ && ::regexec(&re_, x.c_str(), 0, nullptr, 0) == 0;
}

std::string pattern_error(const std::string& expr) {
  return pattern{expr}.error();
}

} // namespace fleetd
