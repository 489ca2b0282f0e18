// fleetctl top's frame: a pure function of two answers, the view and the
// window size.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>

#include "tools/fleetctl_actors.hpp"
#include "tools/fleetctl_top_frame.hpp"

using namespace fleetd;

namespace {

actor_stats actor(std::string name, int64_t handled, int64_t p99) {
  actor_stats a;
  a.name = std::move(name);
  a.state = "ok";
  a.runtime.measured = true;
  a.runtime.handled = handled;
  a.runtime.p50_us = 1;
  a.runtime.p99_us = p99;
  a.runtime.per_second = 12345; // the node's own figure: top ignores it
  a.runtime.idle_ms = 3;
  return a;
}

node_status status(int64_t base) {
  node_status x;
  x.role = "edge";
  x.node_id = "dev-1";
  x.version = "0.9.0";
  x.uptime_ms = 90'061'000; // 1d 01:01:01
  x.process.rss_bytes = 10 * 1024 * 1024;
  x.process.cpu_ms = 1000 + base;
  x.process.threads = 4;
  x.process.fds = 9;
  x.process.sockets = 2;
  x.actors = {actor("storage", 100 + base, 64), actor("backoff", 10, 8),
              actor("sync_metrics", 50 + 2 * base, 512)};
  return x;
}

/// The actor names of a frame's table, top to bottom.
std::vector<std::string> names_in(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  auto header = std::find_if(lines.begin(), lines.end(), [](auto& l) {
    return l.rfind("ACTOR", 0) == 0;
  });
  REQUIRE(header != lines.end());
  for (auto i = header + 1; i != lines.end(); ++i) {
    std::istringstream in(*i);
    std::string name;
    in >> name;
    if (name == "q" || name == "...")
      break;
    out.push_back(name);
  }
  return out;
}

/// The MSG/S figure of `name`'s row.
std::string rate_of(const std::vector<std::string>& lines,
                    const std::string& name) {
  for (auto& l : lines)
    if (l.rfind(name + " ", 0) == 0) {
      std::istringstream in(l);
      std::string n, mailbox, handled, rate;
      in >> n >> mailbox >> handled >> rate;
      return rate;
    }
  return "";
}

} // namespace

TEST_CASE("top's frame: header, every actor, rates from two answers") {
  auto before = status(0);
  top_sample s;
  s.now = status(500); // 500 more storage, 1000 more sync_metrics in 2 s
  s.before = &before;
  s.elapsed_ms = 2000;
  s.at_ms = 0;
  top_view view;
  auto lines = top_frame(s, view, 0, 0);
  INFO(lines.front());
  CHECK(lines[0].rfind("fleetctl top - node dev-1 (edge, fleetd 0.9.0), up "
                       "1d 01:01:01",
                       0)
        == 0);
  CHECK(lines[1].find("rss 10.0 MiB") != std::string::npos);
  // 500 ms of CPU in 2 s.
  CHECK(lines[1].find("cpu 25.0% of a core") != std::string::npos);
  CHECK(lines[2].find("actors: 3, 750 msg/s in all; sort rate") == 0);
  CHECK(rate_of(lines, "storage") == "250");
  CHECK(rate_of(lines, "sync_metrics") == "500");
  CHECK(rate_of(lines, "backoff") == "0");
  // By rate, largest first; the header marks the column.
  CHECK(names_in(lines)
        == std::vector<std::string>{"sync_metrics", "storage", "backoff"});
  auto header = *std::find_if(lines.begin(), lines.end(), [](auto& l) {
    return l.rfind("ACTOR", 0) == 0;
  });
  CHECK(header.find("MSG/Sv") != std::string::npos);
  CHECK(lines.back().rfind("backoff ", 0) == 0); // the slowest, last
  CHECK(lines.back().find("q quit") == std::string::npos);
  // In a window the last line names the keys.
  CHECK(top_frame(s, view, 50, 0).back().rfind("q quit", 0) == 0);
}

TEST_CASE("top's frame without an earlier answer shows no rates") {
  top_sample s;
  s.now = status(0);
  auto lines = top_frame(s, top_view{}, 0, 0);
  CHECK(rate_of(lines, "storage") == "-");
  CHECK(lines[1].find("% of a core") == std::string::npos);
  CHECK(lines[2].find("- msg/s in all") != std::string::npos);
}

TEST_CASE("top's frame sorts by any column, reversed on demand") {
  auto before = status(0);
  top_sample s;
  s.now = status(10);
  s.before = &before;
  s.elapsed_ms = 1000;
  top_view view;
  view.sort = "name";
  CHECK(names_in(top_frame(s, view, 0, 0))
        == std::vector<std::string>{"backoff", "storage", "sync_metrics"});
  view.reverse = true;
  auto lines = top_frame(s, view, 0, 0);
  CHECK(names_in(lines)
        == std::vector<std::string>{"sync_metrics", "storage", "backoff"});
  CHECK(lines[2].find("sort name reversed") != std::string::npos);
  view = top_view{};
  view.sort = "p99";
  CHECK(names_in(top_frame(s, view, 0, 0))
        == std::vector<std::string>{"sync_metrics", "storage", "backoff"});
  view.reverse = true;
  lines = top_frame(s, view, 0, 0);
  CHECK(names_in(lines)
        == std::vector<std::string>{"backoff", "storage", "sync_metrics"});
  // Every column the keys step through sorts.
  for (auto& col : actor_column_names()) {
    view.sort = col;
    CHECK(names_in(top_frame(s, view, 0, 0)).size() == 3);
  }
}

TEST_CASE("top's frame fits the window: short rows, cut lines") {
  auto before = status(0);
  top_sample s;
  s.now = status(10);
  s.before = &before;
  s.elapsed_ms = 1000;
  for (int i = 0; i < 40; ++i)
    s.now.actors.push_back(actor("extra_" + std::to_string(i), i, 1));
  auto lines = top_frame(s, top_view{}, 12, 40);
  CHECK(lines.size() == 12);
  for (auto& l : lines)
    CHECK(l.size() <= 40);
  // The key line stays; the last table row says how many are missing.
  CHECK(lines.back().rfind("q quit", 0) == 0);
  CHECK(lines[lines.size() - 2].rfind("... 38 more actors", 0) == 0);
  // A window too small for the table still gets no more lines than it has.
  CHECK(top_frame(s, top_view{}, 3, 80).size() == 3);
  CHECK(top_frame(s, top_view{}, 1, 80).size() == 1);
}

TEST_CASE("top's frame does not pass the node's control bytes to the "
          "terminal") {
  top_sample s;
  s.now = status(0);
  s.now.node_id = "evil\x1b[2J";
  s.now.actors[0].runtime.last_error = "boom\x1b]0;title\x07\r\n";
  s.error = "lost\x1b[H";
  for (auto& l : top_frame(s, top_view{}, 0, 0))
    for (auto c : l)
      CHECK(static_cast<unsigned char>(c) >= 0x20);
}

TEST_CASE("top's rates: a restarted actor (handled went down) has none") {
  auto before = status(100);
  auto now = status(0);
  auto x = with_rates(now, &before, 1000);
  for (auto& a : x.actors) {
    CAPTURE(a.name);
    CHECK(a.runtime.per_second == (a.name == "backoff" ? 0 : -1));
  }
  CHECK(with_rates(now, &before, 0).actors[0].runtime.per_second == -1);
}
