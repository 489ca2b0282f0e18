// fleetctl against real fleetd and fleetd-cloud processes: status, devices
// and watch, as text and JSON; and how it fails.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "console-dev";
constexpr const char* cloud_id = "console-cloud";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

/// The value of `name=N` in fleetctl's text output; -1 when absent.
int64_t text_counter(const std::string& text, const std::string& name) {
  std::smatch m;
  std::regex re("(^|\\s)" + name + "=(-?[0-9]+)");
  if (!std::regex_search(text, m, re))
    return -1;
  return std::stoll(m[2]);
}

/// The value of `"name":N` in fleetctl's JSON; -1 when absent.
int64_t json_counter(const std::string& json, const std::string& name) {
  std::smatch m;
  std::regex re("\"" + name + "\":(-?[0-9]+)");
  if (!std::regex_search(json, m, re))
    return -1;
  return std::stoll(m[1]);
}

/// A strict JSON syntax check (RFC 8259), enough to tell fleetctl's output
/// is one well-formed value.
class json_checker {
public:
  explicit json_checker(const std::string& text) : s_(text) {
  }

  bool valid() {
    skip_ws();
    if (!value())
      return false;
    skip_ws();
    return i_ == s_.size();
  }

private:
  void skip_ws() {
    while (i_ < s_.size()
           && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t'
               || s_[i_] == '\r'))
      ++i_;
  }

  bool eat(char c) {
    skip_ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  bool literal(const char* word) {
    std::string w{word};
    if (s_.compare(i_, w.size(), w) != 0)
      return false;
    i_ += w.size();
    return true;
  }

  bool string() {
    if (i_ >= s_.size() || s_[i_] != '"')
      return false;
    for (++i_; i_ < s_.size(); ++i_) {
      auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20)
        return false;
      if (c == '\\') {
        if (++i_ >= s_.size())
          return false;
        auto e = s_[i_];
        if (e == 'u') {
          for (int k = 0; k < 4; ++k)
            if (++i_ >= s_.size() || !std::isxdigit(s_[i_]))
              return false;
        } else if (std::string("\"\\/bfnrt").find(e) == std::string::npos) {
          return false;
        }
      }
    }
    return false;
  }

  bool number() {
    auto start = i_;
    if (i_ < s_.size() && s_[i_] == '-')
      ++i_;
    auto digits = [&] {
      auto from = i_;
      while (i_ < s_.size() && std::isdigit(s_[i_]))
        ++i_;
      return i_ > from;
    };
    if (!digits())
      return false;
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (!digits())
        return false;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-'))
        ++i_;
      if (!digits())
        return false;
    }
    return i_ > start;
  }

  bool value() {
    skip_ws();
    if (i_ >= s_.size())
      return false;
    switch (s_[i_]) {
      case '{': {
        ++i_;
        if (eat('}'))
          return true;
        do {
          skip_ws();
          if (!string() || !eat(':') || !value())
            return false;
        } while (eat(','));
        return eat('}');
      }
      case '[': {
        ++i_;
        if (eat(']'))
          return true;
        do {
          if (!value())
            return false;
        } while (eat(','));
        return eat(']');
      }
      case '"':
        return string();
      case 't':
        return literal("true");
      case 'f':
        return literal("false");
      case 'n':
        return literal("null");
      default:
        return number();
    }
  }

  const std::string& s_;
  size_t i_ = 0;
};

bool valid_json(const std::string& text) {
  return json_checker{text}.valid();
}

/// A port on 127.0.0.1 where nothing listens (bound once, then closed).
uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

uint16_t port_in(const std::string& file) {
  auto port = port_from(file);
  REQUIRE(port != 0);
  return port;
}

/// One cloud and one device syncing to it, both with consoles on free ports.
struct running_nodes {
  temp_dir tmp;
  std::string cloud_dir = tmp.path() + "/cloud";
  std::string dev_dir = tmp.path() + "/device";
  std::unique_ptr<process> cloud;
  std::unique_ptr<process> device;
  uint16_t cloud_console = 0;
  uint16_t dev_console = 0;

  running_nodes() {
    cloud = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{"--node.data-dir=" + cloud_dir,
                               std::string{"--node.id="} + cloud_id,
                               "--ingest.port=0", "--console.port=0"},
      tmp.path() + "/cloud.log");
    auto ingest = port_in(cloud_dir + "/ingest.port");
    cloud_console = port_in(cloud_dir + "/console.port");
    device = std::make_unique<process>(
      program("fleetd"),
      std::vector<std::string>{
        "--node.data-dir=" + dev_dir, std::string{"--device.id="} + device_id,
        "--cloud.port=" + std::to_string(ingest), "--console.port=0",
        "--collector.interval=50ms", "--sync.interval=50ms",
        "--sync.backoff-base=20ms", "--sync.backoff-cap=200ms"},
      tmp.path() + "/device.log");
    dev_console = port_in(dev_dir + "/console.port");
    // Data flows end to end before anyone looks.
    REQUIRE(eventually(
      [&] {
        auto st = console_status(cloud_console);
        return st && counter(*st, "ingest", "points") > 0;
      },
      30s));
    REQUIRE(eventually(
      [&] {
        auto st = console_status(dev_console);
        return st && counter(*st, "sync_metrics", "records_synced") > 0;
      },
      30s));
  }

  ~running_nodes() {
    for (auto* p : {device.get(), cloud.get()})
      if (p) {
        p->signal(SIGTERM);
        p->wait(10s);
      }
  }

  static std::string at(uint16_t port) {
    return "127.0.0.1:" + std::to_string(port);
  }

  /// Runs fleetctl; its exit status and everything it wrote.
  std::pair<int, std::string> ctl(uint16_t port,
                                  std::vector<std::string> args) {
    std::vector<std::string> argv{"--node", at(port)};
    argv.insert(argv.end(), args.begin(), args.end());
    auto out = run_to_end(program("fleetctl"), argv, 30s);
    // -1: still running at the deadline (and killed).
    CHECK(out.first != -1);
    return out;
  }
};

} // namespace

TEST_CASE("fleetctl status, devices and watch show what flows through real "
          "nodes") {
  running_nodes n;

  SUBCASE("status of the cloud names the node and its actors' counters") {
    auto out_run = n.ctl(n.cloud_console, {"status"});
    int rc = out_run.first;
    const std::string& out = out_run.second;
    INFO(out);
    CHECK(rc == 0);
    auto lines = lines_of(out);
    REQUIRE_FALSE(lines.empty());
    CHECK(lines[0].rfind(std::string{"node "} + cloud_id + " (cloud, fleetd ",
                         0)
          == 0);
    CHECK(out.find("  ingest: serving") != std::string::npos);
    CHECK(out.find("  embedded_store: ok") != std::string::npos);
    CHECK(text_counter(out, "points") > 0);
    CHECK(text_counter(out, "points_stored") > 0);
    CHECK(text_counter(out, "accepted") > 0);
  }

  SUBCASE("status of the device shows collector, storage, sync and link") {
    auto out_run = n.ctl(n.dev_console, {"status"});
    int rc = out_run.first;
    const std::string& out = out_run.second;
    INFO(out);
    CHECK(rc == 0);
    CHECK(out.rfind(std::string{"node "} + device_id + " (edge, fleetd ", 0)
          == 0);
    for (auto actor : {"system_collector", "storage", "sync_metrics",
                       "sync_events", "sync_logs", "backoff", "cloud_link"})
      CHECK(out.find(std::string{"  "} + actor + ": ") != std::string::npos);
    CHECK(text_counter(out, "points_collected") > 0);
    // The metrics stream's own counters follow its name.
    CHECK(text_counter(out.substr(out.find("  sync_metrics: ")),
                       "records_synced")
          > 0);
    CHECK(text_counter(out, "send_failures") == 0);
  }

  SUBCASE("status --json is one well-formed JSON object") {
    auto out_run = n.ctl(n.cloud_console, {"status", "--json"});
    int rc = out_run.first;
    const std::string& out = out_run.second;
    INFO(out);
    CHECK(rc == 0);
    REQUIRE(lines_of(out).size() == 1);
    CHECK(valid_json(out));
    CHECK(out.front() == '{');
    CHECK(out.find("\"role\":\"cloud\"") != std::string::npos);
    CHECK(out.find(std::string{"\"node_id\":\""} + cloud_id + "\"")
          != std::string::npos);
    CHECK(out.find("\"name\":\"ingest\"") != std::string::npos);
    CHECK(out.find("\"name\":\"embedded_store\"") != std::string::npos);
    CHECK(json_counter(out, "points") > 0);
    auto dev_run = n.ctl(n.dev_console, {"--json", "status"});
    int drc = dev_run.first;
    const std::string& dev = dev_run.second;
    INFO(dev);
    CHECK(drc == 0);
    CHECK(valid_json(dev));
    CHECK(dev.find("\"role\":\"edge\"") != std::string::npos);
    CHECK(json_counter(dev.substr(dev.find("\"name\":\"sync_metrics\"")),
                       "records_synced")
          > 0);
  }

  SUBCASE("devices lists the device's metrics stream with points received") {
    auto out_run = n.ctl(n.cloud_console, {"devices"});
    int rc = out_run.first;
    const std::string& out = out_run.second;
    INFO(out);
    CHECK(rc == 0);
    auto lines = lines_of(out);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].rfind("DEVICE", 0) == 0);
    for (auto col : {"STREAM", "POINTS", "BATCHES", "DUPS", "GAPS", "LAST_ACK"})
      CHECK(lines[0].find(col) != std::string::npos);
    std::istringstream row(lines[1]);
    std::string dev, stream;
    int64_t points = -1, batches = -1, dups = -1, gaps = -1, last_ack = -1;
    row >> dev >> stream >> points >> batches >> dups >> gaps >> last_ack;
    CHECK(dev == device_id);
    CHECK(stream == "metrics");
    CHECK(points > 0);
    CHECK(batches > 0);
    CHECK(dups >= 0);
    CHECK(gaps == 0);
    CHECK(last_ack >= batches);
  }

  SUBCASE("devices --json is a well-formed JSON array of streams") {
    auto out_run = n.ctl(n.cloud_console, {"devices", "--json"});
    int rc = out_run.first;
    const std::string& out = out_run.second;
    INFO(out);
    CHECK(rc == 0);
    CHECK(valid_json(out));
    CHECK(out.front() == '[');
    CHECK(out.find(std::string{"\"device_id\":\""} + device_id + "\"")
          != std::string::npos);
    CHECK(out.find("\"stream\":\"metrics\"") != std::string::npos);
    CHECK(json_counter(out, "points_received") > 0);
    CHECK(json_counter(out, "batches_received") > 0);
    CHECK(json_counter(out, "gaps") == 0);
  }

  SUBCASE("devices on a device node is an empty list") {
    auto out_run = n.ctl(n.dev_console, {"devices", "--json"});
    int rc = out_run.first;
    const std::string& out = out_run.second;
    INFO(out);
    CHECK(rc == 0);
    CHECK(out == "[]\n");
    auto text_run = n.ctl(n.dev_console, {"devices"});
    int trc = text_run.first;
    const std::string& text = text_run.second;
    CHECK(trc == 0);
    CHECK(lines_of(text).size() == 1);
  }

  SUBCASE("watch --count 2 prints two flow lines and exits") {
    auto out_run = n.ctl(n.cloud_console,
                           {"watch", "--count", "2", "--interval", "100ms"});
    int rc = out_run.first;
    const std::string& out = out_run.second;
    INFO(out);
    CHECK(rc == 0);
    auto lines = lines_of(out);
    REQUIRE(lines.size() == 2);
    std::regex cloud_line("^[0-9]{2}:[0-9]{2}:[0-9]{2} " + std::string{cloud_id}
                          + " batches=[0-9]+ points=[0-9]+ duplicates=[0-9]+ "
                            "requests=[0-9]+$");
    for (auto& line : lines) {
      CAPTURE(line);
      CHECK(std::regex_match(line, cloud_line));
      CHECK(text_counter(line, "points") > 0);
    }
    auto dev_run = n.ctl(n.dev_console,
                            {"watch", "--count=2", "--interval=100ms"});
    int drc = dev_run.first;
    const std::string& dev = dev_run.second;
    INFO(dev);
    CHECK(drc == 0);
    auto dlines = lines_of(dev);
    REQUIRE(dlines.size() == 2);
    for (auto& line : dlines) {
      CAPTURE(line);
      CHECK(line.find(std::string{" "} + device_id + " collected=")
            != std::string::npos);
      CHECK(text_counter(line, "synced") > 0);
    }
  }
}

TEST_CASE("fleetctl against a port where nothing listens exits 1 with one "
          "line") {
  auto port = free_port();
  auto out_run = run_to_end(program("fleetctl"),
                              {"--node", "127.0.0.1:" + std::to_string(port),
                               "status"},
                              30s);
  int rc = out_run.first;
  const std::string& out = out_run.second;
  INFO(out);
  CHECK(rc == 1);
  auto lines = lines_of(out);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind("fleetctl: cannot reach node 127.0.0.1:"
                         + std::to_string(port),
                       0)
        == 0);
}

TEST_CASE("fleetctl with an unknown command exits 2 and names the command") {
  auto out_run = run_to_end(program("fleetctl"),
                              {"--node", "127.0.0.1:1", "frobnicate"}, 30s);
  int rc = out_run.first;
  const std::string& out = out_run.second;
  INFO(out);
  CHECK(rc == 2);
  auto lines = lines_of(out);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("unknown command 'frobnicate'") != std::string::npos);
}
