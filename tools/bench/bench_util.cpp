#include "tools/bench/bench_util.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include "messages/error.hpp"
#include "runtime/node.hpp"

namespace fleetd::bench {

bool arg_cursor::next() {
  if (pos_ >= args_.size())
    return false;
  name_ = args_[pos_++];
  has_inline_ = false;
  if (auto eq = name_.find('=');
      name_.rfind("--", 0) == 0 && eq != std::string::npos) {
    inline_value_ = name_.substr(eq + 1);
    name_ = name_.substr(0, eq);
    has_inline_ = true;
  }
  return true;
}

bool arg_cursor::value(std::string& out) {
  if (has_inline_) {
    out = inline_value_;
    return true;
  }
  if (pos_ >= args_.size())
    return false;
  out = args_[pos_++];
  return true;
}

void fail(const std::string& what) {
  throw bench_failure{what};
}

void write_file(const std::string& path, const std::string& text,
                bool owner_only) {
  auto fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                   owner_only ? 0600 : 0644);
  if (fd < 0)
    fail("cannot create " + path + ": " + strerror(errno));
  auto ok = ::write(fd, text.data(), text.size())
            == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok)
    fail("cannot write " + path);
}

std::string prepare_dir(std::string& dir, bool& own) {
  own = dir.empty();
  if (!own) {
    auto err = ensure_directory(dir);
    return err ? render(err) : std::string{};
  }
  auto base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/var/tmp")
                     + "/fleetd-bench-XXXXXX";
  if (!mkdtemp(tmpl.data()))
    return "cannot create " + tmpl + ": " + strerror(errno);
  dir = tmpl;
  return {};
}

double cpu_seconds_of(pid_t pid) {
  auto st = read_stat(pid);
  if (!st)
    fail("process " + std::to_string(pid) + " is gone");
  return st->cpu_s;
}

double median(std::vector<double> xs) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto n = xs.size();
  return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

bool parse_int(const std::string& text, int64_t& out) {
  if (text.empty())
    return false;
  char* end = nullptr;
  errno = 0;
  auto v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0')
    return false;
  out = v;
  return true;
}

bool parse_double(const std::string& text, double& out) {
  if (text.empty())
    return false;
  char* end = nullptr;
  errno = 0;
  auto v = std::strtod(text.c_str(), &end);
  if (errno != 0 || *end != '\0' || !std::isfinite(v))
    return false;
  out = v;
  return true;
}

std::string format(double x, int decimals) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(decimals) << x;
  return out.str();
}

std::optional<proc_stat> read_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto close = stat.rfind(')');
  if (close == std::string::npos)
    return std::nullopt;
  std::istringstream fields(stat.substr(close + 2));
  std::string state;
  proc_stat out;
  fields >> state >> out.ppid;
  std::string skip;
  // Fields 5..13 (pgrp .. cmajflt), then utime and stime.
  for (int i = 5; i <= 13; ++i)
    fields >> skip;
  double utime = 0;
  double stime = 0;
  fields >> utime >> stime;
  out.cpu_s = (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return out;
}


} // namespace fleetd::bench
