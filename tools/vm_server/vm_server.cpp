#include "tools/vm_server/vm_server.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <sstream>

#include "messages/error.hpp"
#include "runtime/http_client.hpp"
#include "tools/pg_server/process.hpp"
#include "tools/pg_server/waiting.hpp"

namespace fleetd {

namespace {

using namespace std::chrono_literals;

const char* binary() {
  if (auto* path = ::getenv("FLEETD_VM_BINARY"))
    return path;
  return "/usr/bin/victoria-metrics";
}

std::string percent_encode(const std::string& in) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

} // namespace

struct vm_server::holder {
  temp_dir scratch{"fleetd-vm"};
  http_client client;
  explicit holder(uint16_t port)
    : client("127.0.0.1", port, 60s, 64 << 20) {
  }
};

std::unique_ptr<vm_server> vm_server::start(failure& fail) {
  if (::access(binary(), X_OK) != 0) {
    fail = {true, std::string{binary()}
                    + " not installed (tools/install-deps: victoria-metrics)"};
    return nullptr;
  }
  std::unique_ptr<vm_server> s{new vm_server};
  // A port found free may be taken before the server binds it: retry.
  for (int attempt = 0; attempt < 3; ++attempt) {
    s->port_ = free_port();
    s->holder_ = std::make_unique<holder>(s->port());
    s->dir_ = s->holder_->scratch.path();
    if (s->dir_.empty()) {
      fail = {false, "cannot make a directory for the server under /tmp"};
      return nullptr;
    }
    if (s->launch(fail))
      return s;
  }
  return nullptr;
}

bool vm_server::launch(failure& fail) {
  auto t0 = std::chrono::steady_clock::now();
  child_spec spec;
  spec.argv = {binary(),
               "-storageDataPath=" + dir_ + "/data",
               "-httpListenAddr=127.0.0.1:" + std::to_string(port_),
               "-retentionPeriod=1d",
               "-dedup.minScrapeInterval=1ms",
               "-search.disableCache",
               "-loggerLevel=ERROR"};
  spec.log = dir_ + "/victoria-metrics.log";
  spec.cwd = dir_;
  spec.death_signal = SIGKILL;
  pid_ = spawn(spec);
  if (pid_ <= 0) {
    pid_ = 0;
    fail = {false, "cannot start victoria-metrics"};
    return false;
  }
  bool exited = false;
  auto up = poll_until(
    [&] {
      if (wait_for_child(pid_, 0ms)) {
        exited = true;
        return true;
      }
      auto res = holder_->client.get("/health");
      return res && res->status == 200;
    },
    30s);
  if (up && !exited) {
    start_seconds_ = seconds_since(t0);
    return true;
  }
  if (!exited)
    fleetd::stop(pid_, SIGKILL);
  pid_ = 0;
  fail = {false, "victoria-metrics did not start: " + read_tail(spec.log)};
  return false;
}

vm_server::~vm_server() {
  stop();
}

void vm_server::stop() {
  if (holder_)
    holder_->client.close();
  fleetd::stop(pid_, SIGTERM);
  pid_ = 0;
}

void vm_server::kill() {
  if (holder_)
    holder_->client.close();
  fleetd::stop(pid_, SIGKILL);
  pid_ = 0;
}

bool vm_server::restart(failure& fail) {
  stop();
  return launch(fail);
}

std::string vm_server::url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

caf::error vm_server::flush() {
  auto res = get("/internal/force_flush");
  return res ? caf::none : res.error();
}

caf::expected<std::string> vm_server::get(const std::string& target,
                                          size_t max_bytes) {
  auto res = holder_->client.get(target);
  if (!res)
    return res.error();
  if (res->status != 200 || res->body.size() > max_bytes)
    return make_error(ec::remote_error, "GET " + target + ": HTTP "
                                          + std::to_string(res->status) + " "
                                          + res->body.substr(0, 300));
  return std::move(res->body);
}

caf::error vm_server::post(const std::string& target,
                           const std::string& body) {
  auto res = holder_->client.post(target, body, {});
  if (!res)
    return res.error();
  if (res->status / 100 != 2)
    return make_error(ec::remote_error, "POST " + target + ": HTTP "
                                          + std::to_string(res->status) + " "
                                          + res->body.substr(0, 300));
  return caf::none;
}

caf::expected<double> vm_server::metric(const std::string& name) {
  auto text = get("/metrics");
  if (!text)
    return text.error();
  if (auto sum = metric_sum(*text, name))
    return *sum;
  return make_error(ec::remote_error, name + " not on /metrics");
}

std::optional<double> metric_sum(const std::string& exposition,
                                 const std::string& name) {
  std::istringstream in(exposition);
  std::string line;
  double sum = 0;
  bool seen = false;
  while (std::getline(in, line)) {
    if (line.compare(0, name.size(), name) != 0
        || (line.size() > name.size() && line[name.size()] != '{'
            && line[name.size()] != ' '))
      continue;
    auto space = line.rfind(' ');
    sum += std::strtod(line.c_str() + space + 1, nullptr);
    seen = true;
  }
  if (!seen)
    return std::nullopt;
  return sum;
}

std::string vm_export_target(const std::string& match) {
  return "/api/v1/export?match[]=" + percent_encode(match);
}

} // namespace fleetd
