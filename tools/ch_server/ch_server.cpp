#include "tools/ch_server/ch_server.hpp"

#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <sstream>

#include "runtime/http_client.hpp"
#include "runtime/random.hpp"
#include "tools/pg_server/process.hpp"
#include "tools/pg_server/waiting.hpp"

namespace fleetd {

namespace {

using namespace std::chrono_literals;

// The server binary, or ""; FLEETD_CH_SERVER names another.
std::string find_binary() {
  if (auto* path = ::getenv("FLEETD_CH_SERVER"))
    return executable(path) ? path : "";
  for (const char* path : {"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"})
    if (executable(path))
      return path;
  return {};
}

// Only the HTTP port is named: 18.16 opens no listener whose port is absent.
std::string server_config(const std::string& dir, int port) {
  std::ostringstream out;
  out << "<?xml version=\"1.0\"?>\n<yandex>\n"
      << "  <logger><level>information</level><log>" << dir
      << "/server.log</log><errorlog>" << dir
      << "/error.log</errorlog><console>0</console></logger>\n"
      << "  <http_port>" << port << "</http_port>\n"
      << "  <listen_host>127.0.0.1</listen_host>\n"
      << "  <path>" << dir << "/data/</path>\n"
      << "  <tmp_path>" << dir << "/tmp/</tmp_path>\n"
      << "  <user_files_path>" << dir << "/user_files/</user_files_path>\n"
      << "  <format_schema_path>" << dir << "/schemas/</format_schema_path>\n"
      << "  <users_config>" << dir << "/users.xml</users_config>\n"
      << "  <default_profile>default</default_profile>\n"
      << "  <default_database>default</default_database>\n"
      << "  <timezone>UTC</timezone>\n"
      << "  <mark_cache_size>67108864</mark_cache_size>\n"
      << "  <uncompressed_cache_size>8388608</uncompressed_cache_size>\n"
      << "  <mlock_executable>false</mlock_executable>\n"
      << "</yandex>\n";
  return out.str();
}

std::string users_config(const std::string& password) {
  auto user = [](const char* name, const std::string& pw) {
    return std::string{"    <"} + name + "><password>" + pw
           + "</password><networks><ip>127.0.0.1</ip></networks>"
             "<profile>default</profile><quota>default</quota></"
           + name + ">\n";
  };
  return "<?xml version=\"1.0\"?>\n<yandex>\n"
         "  <profiles><default><max_memory_usage>2000000000</max_memory_usage>"
         "<background_pool_size>4</background_pool_size></default></profiles>\n"
         "  <users>\n"
         + user("default", "") + user("fleetd", password)
         + "  </users>\n  <quotas><default></default></quotas>\n</yandex>\n";
}

} // namespace

struct ch_server::holder {
  temp_dir scratch{"fleetd-ch"};
  std::string binary;
  child_spec base;
};

std::unique_ptr<ch_server> ch_server::start(failure& fail) {
  std::unique_ptr<ch_server> s{new ch_server};
  if (!s->start_checked(fail))
    return nullptr;
  return s;
}

ch_server::~ch_server() {
  // The data is thrown away: no need for a clean shutdown.
  fleetd::stop(pid_, SIGKILL);
}

// SIGKILL: an outage as a crash (MergeTree parts are written whole); a
// clean SIGTERM waits ~10 s for clients' kept-alive connections.
void ch_server::stop() {
  fleetd::stop(pid_, SIGKILL);
  pid_ = 0;
}

std::string ch_server::url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

bool ch_server::start_checked(failure& fail) {
  holder_ = std::make_unique<holder>();
  holder_->binary = find_binary();
  if (holder_->binary.empty()) {
    fail = {true, "clickhouse-server not installed (tools/install-deps)"};
    return false;
  }
  dir_ = holder_->scratch.path();
  auto& base = holder_->base;
  base.cwd = dir_;
  base.log = dir_ + "/stdout.log";
  base.death_signal = SIGKILL;
  // Least privilege when we can; 18.16 would run as root too.
  if (auto* pw = ::geteuid() == 0 ? ::getpwnam("clickhouse") : nullptr) {
    base.switch_user = true;
    base.uid = pw->pw_uid;
    base.gid = pw->pw_gid;
  }
  if (dir_.empty()
      || (base.switch_user && ::chown(dir_.c_str(), base.uid, base.gid) != 0)) {
    fail = {false, "cannot make a directory for the server under /tmp"};
    return false;
  }
  password_ = random_hex(16);
  return write_config(fail) && launch(fail);
}

bool ch_server::write_config(failure& fail) {
  port_ = free_port();
  auto& who = holder_->base;
  if (!write_file(dir_ + "/config.xml", server_config(dir_, port_), who)
      || !write_file(dir_ + "/users.xml", users_config(password_), who)) {
    fail = {false, "cannot write ClickHouse's config in " + dir_};
    return false;
  }
  return true;
}

bool ch_server::launch(failure& fail) {
  // A port found free may be taken before the server binds it: retry.
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto spec = holder_->base;
    spec.argv = {holder_->binary, "--config-file=" + dir_ + "/config.xml"};
    auto t0 = std::chrono::steady_clock::now();
    pid_ = spawn(spec);
    if (pid_ < 0) {
      pid_ = 0;
      fail = {false, "cannot start clickhouse-server"};
      return false;
    }
    http_client ping{"127.0.0.1", static_cast<uint16_t>(port_), 1s, 4096};
    bool exited = false;
    poll_until(
      [&] {
        exited = wait_for_child(pid_, 0ms).has_value();
        if (exited)
          return true;
        auto res = ping.get("/ping");
        return res && res->status == 200;
      },
      60s);
    if (!exited && ping.get("/ping")) {
      start_seconds_ = seconds_since(t0);
      return true;
    }
    auto log = read_tail(dir_ + "/error.log") + read_tail(dir_ + "/stdout.log");
    fleetd::stop(pid_, SIGKILL);
    pid_ = 0;
    fail = {false, "clickhouse-server did not start: " + log};
    if (log.find("Address already in use") == std::string::npos)
      return false;
    if (!write_config(fail))
      return false;
  }
  return false;
}

bool ch_server::restart(failure& fail) {
  if (pid_ > 0)
    return true;
  return launch(fail);
}

} // namespace fleetd
