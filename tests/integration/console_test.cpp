// fleetctl against real fleetd and fleetd-cloud processes: status, devices
// and watch, as text and JSON; watch across a node restart; and how it fails.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "running_nodes.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "console-dev";
constexpr const char* cloud_id = "console-cloud";

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

/// Every stdout line of `watch --json`: one JSON object each, and only
/// whole lines.
void check_json_lines(const std::string& out) {
  REQUIRE_FALSE(out.empty());
  CHECK(out.back() == '\n');
  for (auto& line : lines_of(out)) {
    CAPTURE(line);
    CHECK(valid_json(line));
    CHECK(line.front() == '{');
  }
}

} // namespace

TEST_CASE("fleetctl status, devices and watch show what flows through real "
          "nodes") {
  running_nodes n{cloud_id, device_id};

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
    CHECK(out.find("  cloud_store: ok") != std::string::npos);
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
    CHECK(out.find("\"name\":\"cloud_store\"") != std::string::npos);
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

  SUBCASE("watch --json prints one JSON object per line and nothing else") {
    auto run = ctl_split(n.cloud_console, {"watch", "--json", "--count=3",
                                           "--interval=100ms"});
    INFO(run.out);
    INFO(run.err);
    CHECK(run.rc == 0);
    CHECK(run.err.empty());
    auto lines = lines_of(run.out);
    CHECK(lines.size() == 3);
    check_json_lines(run.out);
    auto st = console_status(n.cloud_console);
    REQUIRE(st);
    for (auto& line : lines) {
      CAPTURE(line);
      CHECK(line.find(std::string{"\"node_id\":\""} + cloud_id + "\"")
            != std::string::npos);
      CHECK(line.find("\"role\":\"cloud\"") != std::string::npos);
      CHECK(json_counter(line, "started_ms") == st->started_ms);
      CHECK(json_counter(line, "time_ms") >= st->started_ms);
      CHECK(json_counter(line, "points") > 0);
      CHECK(json_counter(line, "requests") > 0);
    }
    auto dev = ctl_split(n.dev_console, {"watch", "--json", "--count=2",
                                         "--interval=100ms"});
    INFO(dev.out);
    CHECK(dev.rc == 0);
    CHECK(dev.err.empty());
    CHECK(lines_of(dev.out).size() == 2);
    check_json_lines(dev.out);
    CHECK(json_counter(dev.out, "synced") > 0);
    CHECK(dev.out.find("\"link\":\"") != std::string::npos);
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

  SUBCASE("actors --json lists every actor of both nodes with the runtime's "
          "figures; the table sorts by a column") {
    struct node_case {
      uint16_t port;
      std::vector<std::string> actors;
      // Busy enough to have handled messages by now.
      std::vector<std::string> busy;
    };
    for (auto& nc : {node_case{n.dev_console,
                               {"system_collector", "storage", "backoff",
                                "cloud_link", "capability", "sync_events",
                                "sync_metrics", "sync_logs", "supervisor",
                                "inspector"},
                               {"system_collector", "storage",
                                "sync_metrics", "cloud_link"}},
                     node_case{n.cloud_console,
                               {"ingest", "cloud_store", "tenancy",
                                "supervisor", "query", "inspector"},
                               {"ingest", "cloud_store", "tenancy"}}}) {
      auto out_run = n.ctl(nc.port, {"actors", "--json", "--sort=handled"});
      const std::string& out = out_run.second;
      INFO(out);
      CHECK(out_run.first == 0);
      REQUIRE(valid_json(out));
      CHECK(json_counter(out, "rss_bytes") > 0);
      CHECK(json_counter(out, "threads") >= 1);
      CHECK(json_counter(out, "fds") >= 3);
      CHECK(json_counter(out, "cpu_ms") >= 0);
      CHECK(json_counter(out, "sockets") >= 1);
      for (auto& name : nc.actors) {
        CAPTURE(name);
        auto at = out.find("{\"name\":\"" + name + "\"");
        REQUIRE(at != std::string::npos);
        auto row = out.substr(at, out.find("}}", at) - at);
        CHECK(row.find("\"measured\":true") != std::string::npos);
        for (auto field : {"mailbox", "handled", "per_second", "p50_us",
                           "p99_us", "errors", "restarts", "idle_ms"})
          CHECK(json_counter(row, field) >= (field == std::string{"idle_ms"}
                                               ? -1 : 0));
        CHECK(row.find("\"last_error\":\"") != std::string::npos);
      }
      for (auto& name : nc.busy) {
        CAPTURE(name);
        auto at = out.find("{\"name\":\"" + name + "\"");
        REQUIRE(at != std::string::npos);
        auto row = out.substr(at, out.find("}}", at) - at);
        CHECK(json_counter(row, "handled") > 0);
        CHECK(json_counter(row, "p99_us") >= json_counter(row, "p50_us"));
        CHECK(json_counter(row, "p50_us") > 0);
        CHECK(json_counter(row, "idle_ms") >= 0);
      }
      // Sorted by handled, largest first.
      std::vector<int64_t> handled;
      for (auto at = out.find("\"handled\":"); at != std::string::npos;
           at = out.find("\"handled\":", at + 1))
        handled.push_back(json_counter(out.substr(at), "handled"));
      CHECK(std::is_sorted(handled.rbegin(), handled.rend()));
      // status --json carries the same figures.
      auto st_run = n.ctl(nc.port, {"status", "--json"});
      CHECK(valid_json(st_run.second));
      CHECK(st_run.second.find("\"runtime\":{\"measured\":true")
            != std::string::npos);
      CHECK(st_run.second.find("\"process\":{\"rss_bytes\":")
            != std::string::npos);
    }
    auto table = n.ctl(n.dev_console, {"actors", "--sort", "p99"});
    INFO(table.second);
    CHECK(table.first == 0);
    auto lines = lines_of(table.second);
    REQUIRE(lines.size() >= 12);
    CHECK(lines[0].rfind(std::string{"node "} + device_id + " (edge), up ", 0)
          == 0);
    CHECK(lines[0].find(" MiB, cpu ") != std::string::npos);
    for (auto col : {"ACTOR", "MAILBOX", "HANDLED", "MSG/S", "P50_US",
                     "P99_US", "ERRORS", "RESTARTS", "IDLE_MS", "LAST_ERROR"})
      CHECK(lines[1].find(col) != std::string::npos);
    auto bad = n.ctl(n.dev_console, {"actors", "--sort", "colour"});
    CHECK(bad.first == 2);
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

TEST_CASE("fleetctl watch rides out a node restart: says so on stderr, "
          "reconnects and goes on") {
  temp_dir tmp;
  auto cloud_dir = tmp.path() + "/cloud";
  // A fixed console port, so the restarted node is found where it was.
  auto console = free_port();
  auto start_cloud = [&] {
    ::unlink((cloud_dir + "/console.port").c_str());
    auto p = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{"--node.data-dir=" + cloud_dir,
                               std::string{"--node.id="} + cloud_id,
                               "--ingest.port=0",
                               "--console.port=" + std::to_string(console)},
      tmp.path() + "/cloud.log");
    REQUIRE(port_in(cloud_dir + "/console.port") == console);
    return p;
  };
  auto cloud = start_cloud();
  auto out_file = tmp.path() + "/watch.out";
  auto err_file = tmp.path() + "/watch.err";
  process watch{program("fleetctl"),
                {"--node", "127.0.0.1:" + std::to_string(console), "watch",
                 "--json", "--interval=100ms", "--timeout=2s"},
                err_file,
                out_file};
  auto started = [&] {
    std::vector<int64_t> out;
    for (auto& line : lines_of(read_file(out_file)))
      if (out.empty() || out.back() != json_counter(line, "started_ms"))
        out.push_back(json_counter(line, "started_ms"));
    return out;
  };
  REQUIRE(eventually([&] { return lines_of(read_file(out_file)).size() >= 2; },
                     30s));
  auto before = started();
  REQUIRE(before.size() == 1);
  cloud->signal(SIGTERM);
  REQUIRE(cloud->wait(10s) == 0);
  REQUIRE(eventually(
    [&] {
      return read_file(err_file).find("fleetctl: watch: lost node")
             != std::string::npos;
    },
    30s));
  CHECK(watch.running());
  cloud = start_cloud();
  // The lines go on, now from the new process, which the JSON names.
  REQUIRE(eventually([&] { return started().size() == 2; }, 30s));
  auto after = started();
  CHECK(after[0] == before[0]);
  CHECK(after[1] > after[0]);
  auto st = console_status(console);
  REQUIRE(st);
  CHECK(after[1] == st->started_ms);
  CHECK(watch.running());
  watch.signal(SIGTERM);
  watch.wait(10s);
  auto err = read_file(err_file);
  INFO(err);
  CHECK(err.find("fleetctl: watch: reconnected to 127.0.0.1:"
                 + std::to_string(console))
        != std::string::npos);
  CHECK(err.find("restarted at") != std::string::npos);
  // stderr says it once per outage, not once per attempt.
  CHECK(lines_of(err).size() == 3);
  check_json_lines(read_file(out_file));
  cloud->signal(SIGTERM);
  CHECK(cloud->wait(10s) == 0);
}
