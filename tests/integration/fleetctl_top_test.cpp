// fleetctl top in a real terminal (tmux) against a real fleetd syncing to a
// real fleetd-cloud; nodes, streams and --json/--watch on both nodes.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "messages/json_reader.hpp"
#include "skip.hpp"
#include "running_nodes.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "top-dev";
constexpr const char* cloud_id = "top-cloud";

std::string in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && ::access((dir + "/" + name).c_str(), X_OK) == 0)
      return dir + "/" + name;
  return "";
}

/// A tmux server of its own (a socket in the test's directory), one window.
struct tmux {
  std::string bin;
  std::string socket;

  std::pair<int, std::string> run(std::vector<std::string> args) {
    args.insert(args.begin(), {"-S", socket});
    return run_to_end(bin, args, 10s);
  }

  std::string pane() {
    return run({"capture-pane", "-p", "-t", "top"}).second;
  }

  void keys(std::vector<std::string> ks) {
    ks.insert(ks.begin(), {"send-keys", "-t", "top"});
    REQUIRE(run(ks).first == 0);
  }

  ~tmux() {
    run({"kill-server"});
  }
};

/// The actor rows of top's pane, in screen order: name and handled.
std::vector<std::pair<std::string, int64_t>>
rows_of(const std::string& pane) {
  std::vector<std::pair<std::string, int64_t>> out;
  bool table = false;
  for (auto& line : lines_of(pane)) {
    if (line.rfind("ACTOR", 0) == 0) {
      table = true;
      continue;
    }
    if (!table)
      continue;
    std::istringstream in(line);
    std::string name, mailbox, handled;
    if (!(in >> name >> mailbox >> handled) || name == "q" || name == "...")
      break;
    // "-": not measured; sorted as the 0 the runtime holds for it.
    out.emplace_back(name, handled == "-" ? 0 : std::atoll(handled.c_str()));
  }
  return out;
}

std::vector<std::string> names_of(
  const std::vector<std::pair<std::string, int64_t>>& rows) {
  std::vector<std::string> out;
  for (auto& r : rows)
    out.push_back(r.first);
  return out;
}

int64_t handled_sum(const std::string& pane) {
  int64_t out = 0;
  for (auto& r : rows_of(pane))
    out += std::max<int64_t>(r.second, 0);
  return out;
}

} // namespace

TEST_CASE("fleetctl top under tmux shows every actor live, sorts by key and "
          "gives the terminal back") {
  auto bin = in_path("tmux");
  if (bin.empty())
    return skip("tmux is not installed (tools/install-deps installs it)");
  running_nodes n{cloud_id, device_id};
  auto st = console_status(n.dev_console);
  REQUIRE(st);
  std::vector<std::string> actors;
  for (auto& a : st->actors)
    actors.push_back(a.name);
  REQUIRE(actors.size() >= 8);
  tmux t{bin, n.tmp.path() + "/tmux.sock"};
  REQUIRE(t.run({"new-session", "-d", "-x", "160", "-y", "50", "-s", "top",
                 "env PS1='top-test$ ' bash --norc --noprofile"})
            .first
          == 0);
  auto top_cmd = program("fleetctl") + " --node 127.0.0.1:"
                 + std::to_string(n.dev_console)
                 + " top --interval 200ms --timeout 60s; echo top-exit=$?";
  t.keys({top_cmd, "Enter"});
  // The header and every actor the node lists.
  std::string pane;
  REQUIRE(eventually(
    [&] {
      pane = t.pane();
      if (pane.find(std::string{"fleetctl top - node "} + device_id
                    + " (edge, fleetd ")
          == std::string::npos)
        return false;
      auto shown = names_of(rows_of(pane));
      for (auto& a : actors)
        if (std::find(shown.begin(), shown.end(), a) == shown.end())
          return false;
      return true;
    },
    30s));
  INFO(pane);
  CHECK(pane.find("process: rss ") != std::string::npos);
  CHECK(pane.find("MSG/Sv") != std::string::npos);
  CHECK(pane.find("q quit") != std::string::npos);
  CHECK(t.run({"display", "-p", "-t", "top", "#{alternate_on}"}).second
        == "1\n");
  // Live: messages handled grow between two captures; rates appear.
  auto first = handled_sum(pane);
  REQUIRE(eventually([&] { return handled_sum(t.pane()) > first; }, 30s));
  CHECK(eventually(
    [&] { return t.pane().find("% of a core") != std::string::npos; }, 30s));
  // 1: by name, A first; r: Z first.
  t.keys({"1"});
  REQUIRE(eventually(
    [&] {
      pane = t.pane();
      auto names = names_of(rows_of(pane));
      return pane.find("ACTOR^") != std::string::npos
             && names.size() == actors.size()
             && std::is_sorted(names.begin(), names.end());
    },
    30s));
  t.keys({"r"});
  REQUIRE(eventually(
    [&] {
      pane = t.pane();
      auto names = names_of(rows_of(pane));
      return pane.find("ACTORv") != std::string::npos
             && names.size() == actors.size()
             && std::is_sorted(names.rbegin(), names.rend());
    },
    30s));
  // > from name: mailbox, again: handled, largest first (r is still on:
  // smallest first).
  t.keys({">", ">", "r"});
  REQUIRE(eventually(
    [&] {
      pane = t.pane();
      auto rows = rows_of(pane);
      std::vector<int64_t> handled;
      for (auto& r : rows)
        handled.push_back(r.second);
      return pane.find("HANDLEDv") != std::string::npos
             && rows.size() == actors.size()
             && std::is_sorted(handled.rbegin(), handled.rend());
    },
    30s));
  // Keys work while the node does not answer (its asks wait on a thread of
  // their own, up to --timeout 60s).
  n.device->signal(SIGSTOP);
  REQUIRE(eventually(
    [&] { return t.pane().find("! no answer for ") != std::string::npos; },
    30s));
  t.keys({"1"});
  CHECK(eventually(
    [&] { return t.pane().find("ACTOR^") != std::string::npos; }, 10s));
  n.device->signal(SIGCONT);
  // + doubles the interval, - halves it.
  t.keys({"+"});
  CHECK(eventually(
    [&] { return t.pane().find("every 400 ms") != std::string::npos; }, 10s));
  t.keys({"-", "-"});
  CHECK(eventually(
    [&] { return t.pane().find("every 100 ms") != std::string::npos; }, 10s));
  // A smaller window: the table is cut, SIGWINCH redraws.
  REQUIRE(t.run({"resize-window", "-t", "top", "-x", "70", "-y", "12"}).first
          == 0);
  REQUIRE(eventually(
    [&] {
      pane = t.pane();
      return pane.find(" more actors") != std::string::npos;
    },
    30s));
  for (auto& line : lines_of(pane))
    CHECK(line.size() <= 70);
  // q: top ends, the shell has its screen back.
  t.keys({"q"});
  REQUIRE(eventually(
    [&] { return t.pane().find("top-exit=0") != std::string::npos; }, 30s));
  CHECK(t.run({"display", "-p", "-t", "top", "#{alternate_on}"}).second
        == "0\n");
  pane = t.pane();
  CHECK(pane.find("top-test$") != std::string::npos); // the prompt is back
  CHECK(pane.find("fleetctl top - node") == std::string::npos);
  // Ctrl-C ends it as well, the terminal restored.
  t.run({"resize-window", "-t", "top", "-x", "160", "-y", "50"});
  t.keys({"clear; " + top_cmd, "Enter"});
  REQUIRE(eventually(
    [&] {
      return t.pane().find("fleetctl top - node") != std::string::npos;
    },
    30s));
  t.keys({"C-c"});
  REQUIRE(eventually(
    [&] { return t.pane().find("top-exit=0") != std::string::npos; }, 30s));
  CHECK(t.run({"display", "-p", "-t", "top", "#{alternate_on}"}).second
        == "0\n");
  // The node gone: top says so (within --timeout) and goes on; q still
  // ends it.
  t.keys({"clear; " + program("fleetctl") + " --node 127.0.0.1:"
            + std::to_string(n.dev_console)
            + " top --interval 200ms --timeout 2s; echo top-exit=$?",
          "Enter"});
  REQUIRE(eventually(
    [&] {
      return t.pane().find("fleetctl top - node") != std::string::npos;
    },
    30s));
  n.device->signal(SIGTERM);
  REQUIRE(n.device->wait(30s));
  REQUIRE(eventually(
    [&] {
      pane = t.pane();
      return pane.find("! lost node 127.0.0.1:") != std::string::npos
             || pane.find("! cannot reach node 127.0.0.1:")
                  != std::string::npos;
    },
    30s));
  t.keys({"q"});
  REQUIRE(eventually(
    [&] { return t.pane().find("top-exit=0") != std::string::npos; }, 30s));
}

TEST_CASE("fleetctl top, nodes, streams and --watch/--json on real nodes") {
  running_nodes n{cloud_id, device_id};

  SUBCASE("top without a terminal prints one frame with every actor") {
    for (auto port : {n.cloud_console, n.dev_console}) {
      auto st = console_status(port);
      REQUIRE(st);
      auto run = ctl_split(port, {"top", "--interval=200ms"});
      INFO(run.out);
      CHECK(run.rc == 0);
      CHECK(run.out.rfind("fleetctl top - node " + st->node_id, 0) == 0);
      auto shown = names_of(rows_of(run.out));
      CHECK(shown.size() == st->actors.size());
      for (auto& a : st->actors)
        CHECK(std::find(shown.begin(), shown.end(), a.name) != shown.end());
    }
  }

  SUBCASE("--watch --count 2 --json prints two JSON documents, on every "
          "console command") {
    for (auto port : {n.cloud_console, n.dev_console})
      for (auto cmd :
           {"status", "actors", "devices", "nodes", "streams", "delivery"}) {
        auto run = ctl_split(port, {cmd, "--watch", "--count=2", "--json",
                                "--interval=100ms"});
        CAPTURE(cmd);
        INFO(run.out);
        CHECK(run.rc == 0);
        auto lines = lines_of(run.out);
        REQUIRE(lines.size() == 2);
        for (auto& line : lines) {
          std::string why;
          CHECK_MESSAGE(parse_json(line, why), why);
        }
      }
    // Text: a time line before each answer.
    auto run = ctl_split(n.dev_console, {"status", "--watch", "--count=2",
                                     "--interval=100ms"});
    CHECK(run.rc == 0);
    auto lines = lines_of(run.out);
    CHECK(std::count_if(lines.begin(), lines.end(), [](auto& l) {
            return l.rfind("--- ", 0) == 0;
          })
          == 2);
    // --watch where it means nothing is refused.
    CHECK(ctl_split(n.dev_console, {"debug", "kill", "x", "--watch"}).rc == 2);
    CHECK(ctl_split(n.dev_console, {"top", "--watch"}).rc == 2);
    CHECK(ctl_split(n.dev_console, {"top", "--json"}).rc == 2);
  }

  SUBCASE("nodes: the device and its cloud link; the cloud and its device") {
    auto dev = ctl_split(n.dev_console, {"nodes", "--json"});
    INFO(dev.out);
    CHECK(dev.rc == 0);
    std::string why;
    auto doc = parse_json(dev.out, why);
    REQUIRE(doc);
    REQUIRE(doc->items.size() == 2);
    CHECK(json_member(doc->items[0], "id")->text == device_id);
    CHECK(json_member(doc->items[0], "link")->text == "self");
    CHECK(json_member(doc->items[1], "role")->text == "cloud");
    CHECK(json_member(doc->items[1], "link")->text == "online");
    CHECK(json_member(doc->items[1], "address")->text.rfind("http://", 0)
          == 0);
    auto cloud = ctl_split(n.cloud_console, {"nodes"});
    INFO(cloud.out);
    CHECK(cloud.rc == 0);
    auto lines = lines_of(cloud.out);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0].rfind("NODE", 0) == 0);
    CHECK(lines[1].rfind(cloud_id, 0) == 0);
    std::istringstream row(lines[2]);
    std::string id, role, link;
    row >> id >> role >> link;
    CHECK(id == device_id);
    CHECK(role == "device");
    CHECK(link == "online");
  }

  SUBCASE("streams: the device's sync streams, the cloud's device streams") {
    auto dev = ctl_split(n.dev_console, {"streams", "--json"});
    INFO(dev.out);
    CHECK(dev.rc == 0);
    std::string why;
    auto doc = parse_json(dev.out, why);
    REQUIRE(doc);
    std::vector<std::string> streams;
    for (auto& s : doc->items) {
      streams.push_back(json_member(s, "stream")->text);
      if (streams.back() == "metrics") {
        CHECK(std::atoll(json_member(s, "records")->text.c_str()) > 0);
        CHECK(std::atoll(json_member(s, "last_acked_sequence")->text.c_str())
              > 0);
      }
    }
    std::sort(streams.begin(), streams.end());
    CHECK(streams == std::vector<std::string>{"events", "logs", "metrics"});
    auto cloud = ctl_split(n.cloud_console, {"streams"});
    INFO(cloud.out);
    CHECK(cloud.rc == 0);
    auto lines = lines_of(cloud.out);
    REQUIRE(lines.size() >= 2);
    CHECK(lines[0].rfind("DEVICE", 0) == 0);
    CHECK(cloud.out.find(std::string{device_id} + " ") != std::string::npos);
    CHECK(cloud.out.find(" seen ") != std::string::npos);
  }
}
