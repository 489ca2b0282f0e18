// Self-metrics and the web console on real processes: a fleetd enrolled
// into an org syncs to a fleetd-cloud; GET /metrics of both reads back
// through the project's Prometheus parser and a real vmagent scrape with the
// values `fleetctl status --json` shows; the Grafana dashboard queries only
// metrics the pages have; and headless Chromium (Debian's chromium) opens
// /console with the org's API token, renders the numbers the node's JSON
// holds, and takes a screenshot.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/json_reader.hpp"
#include "messages/prom_text.hpp"
#include "runtime/http_client.hpp"
#include "runtime/metrics_page.hpp"
#include "json_checks.hpp"
#include "skip.hpp"
#include "support.hpp"
#include "test_pki.hpp"
#include "vm_fixture.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t rounds = 4;

// A cloud, an org "acme" with an API token, and a device enrolled into it
// with a local ingest listener (its /metrics), drained of what it collected.
// With `ops`, the cloud's console port and operator listener
// (console.http-listen, port `web`) take the certificates its CA signed.
struct fleet {
  temp_dir tmp;
  std::string cloud_dir = tmp.path() + "/cloud";
  std::string dev_dir = tmp.path() + "/device";
  std::unique_ptr<process> cloud;
  std::unique_ptr<process> device;
  uint16_t ingest = 0;
  uint16_t console = 0;
  uint16_t dev_console = 0;
  uint16_t dev_http = 0;
  uint16_t web = 0;
  std::string token;
  // fleetctl's certificate arguments when the console takes certificates.
  std::vector<std::string> certs;

  explicit fleet(const test_pki* ops = nullptr) {
    std::vector<std::string> args{"--node.data-dir=" + cloud_dir,
                                  "--ingest.port=0", "--console.port=0"};
    if (ops) {
      args.insert(args.end(), {"--ingest.insecure=true",
                               "--console.tls-cert=" + ops->file("server.pem"),
                               "--console.tls-key=" + ops->file("server.key"),
                               "--console.tls-ca=" + ops->file("ca.pem"),
                               "--console.http-listen=127.0.0.1:0"});
      certs = {"--cert=" + ops->file("client.pem"),
               "--key=" + ops->file("client.key"),
               "--ca=" + ops->file("ca.pem")};
    }
    cloud = std::make_unique<process>(program("fleetd-cloud"), args,
                                      tmp.path() + "/cloud.log");
    ingest = port_from(cloud_dir + "/ingest.port");
    console = port_from(cloud_dir + "/console.port");
    REQUIRE(ingest != 0);
    REQUIRE(console != 0);
    if (ops) {
      web = port_from(cloud_dir + "/console-http.port");
      REQUIRE(web != 0);
    }
    REQUIRE(fleetctl(tmp.path(), console, ctl({"org", "create", "acme"})).first
            == 0);
    REQUIRE(
      fleetctl(tmp.path(), console, ctl({"org", "create", "zenith"})).first
      == 0);
    auto enroll = fleetctl_secret(tmp.path(), console,
                                  ctl({"enroll", "create", "--org", "acme"}));
    token = fleetctl_secret(tmp.path(), console,
                            ctl({"token", "create", "--org", "acme"}));
    device = std::make_unique<process>(
      program("fleetd"),
      std::vector<std::string>{
        "--node.data-dir=" + dev_dir, "--device.id=dev",
        "--cloud.port=" + std::to_string(ingest),
        "--cloud.enroll-token=" + enroll, "--console.port=0",
        "--ingest.listen=127.0.0.1:0", "--collector.rounds=1",
        "--load.series=3", "--load.interval=100ms",
        "--load.rounds=" + std::to_string(rounds), "--sync.interval=50ms",
        "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms"},
      tmp.path() + "/device.log");
    dev_console = port_from(dev_dir + "/console.port");
    REQUIRE(dev_console != 0);
    bool drained = eventually(
      [&] {
        auto st = console_status(dev_console);
        if (!st)
          return false;
        dev_http = static_cast<uint16_t>(counter(*st, "local_ingest", "port"));
        return counter(*st, "load_generator", "rounds") == rounds
               && state_of(*st, "load_generator") == "done"
               && counter(*st, "storage", "queued_batches") == 0
               && counter(*st, "storage", "unbatched_points") == 0;
      },
      60s);
    REQUIRE_MESSAGE(drained, read_file(tmp.path() + "/device.log"));
    REQUIRE(dev_http != 0);
  }

  std::vector<std::string> ctl(std::vector<std::string> args) const {
    args.insert(args.begin(), certs.begin(), certs.end());
    return args;
  }
};

http_response get(uint16_t port, const std::string& target,
                  const std::string& token = "") {
  http_client c{"127.0.0.1", port, 10s, 16 << 20};
  std::vector<std::pair<std::string, std::string>> headers;
  if (!token.empty())
    headers.emplace_back("Authorization", "Bearer " + token);
  auto r = c.get(target, headers);
  // Not REQUIRE_MESSAGE: doctest -s would read the error of a success.
  if (!r)
    FAIL(render(r.error()));
  return *r;
}

// `fleetctl status --json` of the node on console `port`.
json_node status_json(const std::string& dir, uint16_t port) {
  auto [rc, out] = fleetctl(dir, port, {"status", "--json"});
  REQUIRE_MESSAGE(rc == 0, read_file(dir + "/ctl.err"));
  return parsed(out);
}

// A page's samples by "family|actor label".
std::map<std::string, double> by_actor(const prom_page& page) {
  std::map<std::string, double> out;
  for (auto& s : page.samples) {
    auto a = s.labels.find("actor");
    out[s.name + "|" + (a == s.labels.end() ? "" : a->second)] = s.value;
  }
  return out;
}

const json_node* actor_in(const json_node& status, const std::string& name) {
  for (auto& a : member(status, "actors").items)
    if (member(a, "name").text == name)
      return &a;
  return nullptr;
}

// The page read between two statuses: every actor counter of both is on
// it, a counter between its two values, a gauge present; every runtime
// figure likewise; the page parses without a bad line, every family typed.
void check_page(const prom_page& page, const json_node& before,
                const json_node& after) {
  CHECK(page.bad_lines == 0);
  for (auto& e : page.errors)
    FAIL_CHECK("line ", e.line, ": ", e.reason);
  std::set<std::string> typed;
  for (auto& f : page.families)
    typed.insert(f.name);
  for (auto& s : page.samples)
    CHECK_MESSAGE(typed.count(s.name) == 1, s.name, " has no TYPE line");
  auto xs = by_actor(page);
  size_t checked = 0;
  for (auto& a : member(before, "actors").items) {
    auto name = member(a, "name").text;
    auto* later = actor_in(after, name);
    REQUIRE_MESSAGE(later != nullptr, name);
    for (auto& [counter, value] : member(a, "counters").members) {
      auto* then = json_member(member(*later, "counters"), counter);
      if (!then)
        continue;
      auto key = counter_family(counter) + "|" + name;
      auto i = xs.find(key);
      REQUIRE_MESSAGE(i != xs.end(), key, " missing from /metrics");
      ++checked;
      if (counter_is_gauge(counter))
        continue;
      CHECK_MESSAGE(i->second >= std::stod(value.text), key);
      CHECK_MESSAGE(i->second <= std::stod(then->text), key);
    }
    auto& r = member(a, "runtime");
    if (member(r, "measured").text != "true")
      continue;
    auto handled = xs.find("fleetd_actor_messages_handled_total|" + name);
    REQUIRE_MESSAGE(handled != xs.end(), name);
    CHECK(handled->second >= num(r, "handled"));
    CHECK(handled->second <= num(member(*later, "runtime"), "handled"));
    CHECK(xs["fleetd_actor_restarts_total|" + name] == num(r, "restarts"));
    CHECK(xs.count("fleetd_actor_mailbox_messages|" + name) == 1);
    CHECK(xs.count("fleetd_actor_handling_p99_seconds|" + name) == 1);
  }
  CHECK(checked > 20);
  CHECK(xs["fleetd_process_resident_memory_bytes|"] > 0);
  CHECK(xs["fleetd_process_threads|"] > 0);
}

// Every fleetd_... name the dashboard's queries use, with the actor="..."
// its selector names (empty: any).
std::set<std::pair<std::string, std::string>>
dashboard_metrics(const json_node& node) {
  std::set<std::pair<std::string, std::string>> out;
  if (node.kind == json_node::object_v) {
    for (auto& [k, v] : node.members) {
      if (k != "expr" || v.kind != json_node::string_v) {
        auto more = dashboard_metrics(v);
        out.insert(more.begin(), more.end());
        continue;
      }
      auto& e = v.text;
      for (size_t at = e.find("fleetd_"); at != std::string::npos;
           at = e.find("fleetd_", at + 1)) {
        auto end = at;
        while (end < e.size() && (isalnum(static_cast<unsigned char>(e[end]))
                                  || e[end] == '_'))
          ++end;
        std::string actor;
        if (end < e.size() && e[end] == '{') {
          auto close = e.find('}', end);
          auto sel = e.substr(end, close - end);
          auto a = sel.find("actor=\"");
          if (a != std::string::npos)
            actor = sel.substr(a + 7, sel.find('"', a + 7) - a - 7);
        }
        out.emplace(e.substr(at, end - at), actor);
        at = end;
      }
    }
  }
  for (auto& item : node.items) {
    auto more = dashboard_metrics(item);
    out.insert(more.begin(), more.end());
  }
  return out;
}

std::string chromium_path() {
  for (auto p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"})
    if (access(p, X_OK) == 0)
      return p;
  return {};
}

// The value of data-field="field" in the element that `anchor` opens
// (up to its </tr> or </div></div>); "" when absent.
std::string field_after(const std::string& dom, const std::string& anchor,
                        const std::string& field) {
  auto at = dom.find(anchor);
  if (at == std::string::npos)
    return {};
  auto end = dom.find("</tr>", at);
  auto key = "data-field=\"" + field + "\" data-value=\"";
  auto f = dom.find(key, at);
  if (f == std::string::npos || f > end)
    return {};
  f += key.size();
  return dom.substr(f, dom.find('"', f) - f);
}

// data-value of the card data-metric="metric"; "" when absent.
std::string card_value(const std::string& dom, const std::string& metric) {
  auto key = "data-metric=\"" + metric + "\" data-value=\"";
  auto f = dom.find(key);
  if (f == std::string::npos)
    return {};
  f += key.size();
  return dom.substr(f, dom.find('"', f) - f);
}

// Runs headless Chromium on `url` with `extra` arguments (and HOME=`home`
// when given: its NSS database); its stdout.
std::string chromium(const std::string& exe, const std::string& dir,
                     const std::string& url, std::vector<std::string> extra,
                     const std::string& home = "") {
  std::vector<std::string> args = {"--headless", "--no-sandbox",
                                   "--disable-gpu", "--hide-scrollbars",
                                   "--user-data-dir=" + dir + "/chrome",
                                   "--virtual-time-budget=8000"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(url);
  auto out = dir + "/chromium.out";
  write_file(out, "");
  if (!home.empty())
    args.insert(args.begin(), {"HOME=" + home, exe});
  process p{home.empty() ? exe : "/usr/bin/env", args, dir + "/chromium.err",
            out};
  auto st = p.wait(90s);
  REQUIRE_MESSAGE(st, "chromium did not finish in 90 s");
  CHECK_MESSAGE(*st == 0, read_file(dir + "/chromium.err"));
  return read_file(out);
}

// A HOME under `dir` whose NSS database (Chromium's on Linux) holds the
// operator's certificate of `ops` and trusts its CA, and a profile in
// `dir`/chrome that picks that certificate for https://127.0.0.1:`port`
// unasked (the AutoSelectCertificateForUrls setting); "" when certutil or
// pk12util failed.
std::string operator_home(const std::string& dir, const test_pki& ops,
                          uint16_t port) {
  auto home = dir + "/home";
  auto db = "sql:" + home + "/.pki/nssdb";
  auto p12 = dir + "/operator.p12";
  for (auto cmd :
       {"mkdir -p '" + home + "/.pki/nssdb' '" + dir + "/chrome/Default'",
        "openssl pkcs12 -export -in '" + ops.file("client.pem") + "' -inkey '"
          + ops.file("client.key") + "' -out '" + p12
          + "' -passout pass: -name operator",
        "certutil -N -d '" + db + "' --empty-password",
        "pk12util -i '" + p12 + "' -d '" + db + "' -W ''",
        "certutil -A -d '" + db + "' -n fleetd-operators -t C,, -i '"
          + ops.file("ca.pem") + "'"})
    if (std::system((cmd + " >/dev/null 2>&1").c_str()) != 0)
      return {};
  write_file(dir + "/chrome/Default/Preferences",
             "{\"profile\":{\"content_settings\":{\"exceptions\":{"
             "\"auto_select_certificate\":{\"https://127.0.0.1:"
               + std::to_string(port)
               + ",*\":{\"setting\":{\"filters\":[{}]}}}}}}}\n");
  return home;
}

// An operator's GET on the operator listener `port`, which must answer.
http_response operator_get(uint16_t port, const test_pki& ops,
                           const std::string& target) {
  http_client c{"127.0.0.1", port, 10s, 16 << 20};
  REQUIRE(!c.use_tls(ops.client(true)));
  auto r = c.get(target, {});
  if (!r)
    FAIL(render(r.error()));
  return *r;
}

} // namespace

namespace {

// /metrics of both nodes, each checked against fleetctl status around it.
std::map<std::string, prom_page> scrape_checked(fleet& f) {
  std::map<std::string, prom_page> pages;
  for (auto [name, console, http] :
       {std::tuple{std::string("cloud"), f.console, f.ingest},
        std::tuple{std::string("device"), f.dev_console, f.dev_http}}) {
    CAPTURE(name);
    auto before = status_json(f.tmp.path(), console);
    auto rep = get(http, "/metrics");
    auto after = status_json(f.tmp.path(), console);
    REQUIRE(rep.status == 200);
    CHECK(rep.content_type == prom_text_type);
    auto page = parse_prom_text(rep.body, 0);
    check_page(page, before, after);
    MESSAGE(name, " /metrics: ", rep.body.size(), " bytes, ",
            page.samples.size(), " samples, ", page.families.size(),
            " families");
    pages[name] = std::move(page);
  }
  return pages;
}

} // namespace

TEST_CASE("GET /metrics on both nodes shows what fleetctl status shows; "
          "the Grafana dashboard queries only metrics the pages have") {
  fleet f;
  auto pages = scrape_checked(f);
  auto cloud = by_actor(pages["cloud"]);
  auto device = by_actor(pages["device"]);
  CHECK(device.count("fleetd_link_state|") == 1);
  // The fleet's delivery: what the cloud counted for the device.
  auto received = std::find_if(
    pages["cloud"].samples.begin(), pages["cloud"].samples.end(),
    [](const metric_sample& x) {
      return x.name == "fleetd_delivery_records"
             && x.labels.at("kind") == "received";
    });
  REQUIRE(received != pages["cloud"].samples.end());
  CHECK(received->value > 0);
  CHECK(cloud["fleetd_delivery_ratio|"] > 0);
  CHECK(cloud["fleetd_delivery_ratio|"] <= 1);
  CHECK(cloud["fleetd_points_stored_total|cloud_store"] > 0);
  CHECK(device["fleetd_requests_self_metrics_total|local_ingest"] >= 1);

  auto doc = parsed(read_file(std::string(FLEETD_SOURCE_DIR)
                              + "/docker/grafana/fleetd-dashboard.json"));
  auto used = dashboard_metrics(doc);
  CHECK(used.size() > 25);
  for (auto& [metric, actor] : used) {
    bool found = false;
    for (auto& [_, page] : pages)
      for (auto& s : page.samples)
        if (s.name == metric
            && (actor.empty()
                || (s.labels.count("actor") && s.labels.at("actor") == actor)))
          found = true;
    CHECK_MESSAGE(found, metric, "{actor=\"", actor, "\"} is on no page");
  }
}

TEST_CASE("a real vmagent scrapes both nodes' /metrics into VictoriaMetrics") {
  std::string why;
  auto vm = start_vm(why);
  if (!vm)
    return skip(why);
  if (access("/usr/bin/vmagent", X_OK) != 0)
    return skip("vmagent is not installed (victoria-metrics package)");
  fleet f;
  auto pages = scrape_checked(f);
  auto cloud = by_actor(pages["cloud"]);
  auto cfg = f.tmp.path() + "/scrape.yml";
  write_file(cfg, "scrape_configs:\n  - job_name: fleetd\n"
                  "    scrape_interval: 1s\n    static_configs:\n"
                  "      - targets: ['127.0.0.1:"
                    + std::to_string(f.ingest) + "', '127.0.0.1:"
                    + std::to_string(f.dev_http) + "']\n");
  process agent{"/usr/bin/vmagent",
                {"-promscrape.config=" + cfg,
                 "-remoteWrite.url=" + vm->url() + "/api/v1/write",
                 "-remoteWrite.tmpDataPath=" + f.tmp.path() + "/vmagent",
                 "-remoteWrite.flushInterval=200ms",
                 "-httpListenAddr=127.0.0.1:" + std::to_string(free_port())},
                f.tmp.path() + "/vmagent.log"};
  auto ups = vm_export(*vm, "up{job=\"fleetd\"}", 2);
  REQUIRE_MESSAGE(ups.size() == 2, read_file(f.tmp.path() + "/vmagent.log"));
  for (auto& s : ups)
    CHECK_MESSAGE(s.values.back() == 1, s.labels_json);
  auto stored =
    vm_export(*vm, "fleetd_points_stored_total{actor=\"cloud_store\"}", 1);
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].values.back()
        >= cloud["fleetd_points_stored_total|cloud_store"]);
  CHECK(vm_export(*vm, "fleetd_link_state{state=\"online\"}", 1).size() == 1);
  CHECK(vm_export(*vm, "fleetd_delivery_ratio", 1).size() == 1);
  agent.signal(SIGTERM);
  agent.wait(10s);
}

TEST_CASE("headless Chromium: the console renders the node's numbers, "
          "refuses a bad token, and a screenshot is taken") {
  auto exe = chromium_path();
  if (exe.empty())
    return skip("chromium is not installed (tools/install-deps)");
  fleet f;
  // Stopped: what the cloud holds of it no longer changes.
  f.device->signal(SIGTERM);
  REQUIRE(f.device->wait(30s));
  auto url = "http://127.0.0.1:" + std::to_string(f.ingest) + "/console";

  // Hostile requests first, so their counters show on the page's node.
  CHECK(get(f.ingest, "/console/api/overview").status == 401);
  CHECK(get(f.ingest, "/console/api/overview", "fqt_wrong").status == 401);
  CHECK(get(f.ingest, "/console/../etc/passwd").status == 404);
  CHECK(get(f.ingest, "/console/api/delivery?device=../x", f.token).status
        == 400);
  CHECK(get(f.ingest, "/console/api/overview?hours=99999", f.token).status
        == 400);

  auto overview = parsed(get(f.ingest, "/console/api/overview", f.token).body);
  auto actors_before =
    parsed(get(f.ingest, "/console/api/actors", f.token).body);
  auto dom = chromium(exe, f.tmp.path(), url + "#token=" + f.token
                                           + "&device=dev",
                      {"--dump-dom"});
  auto actors_after =
    parsed(get(f.ingest, "/console/api/actors", f.token).body);
  auto delivery = parsed(
    get(f.ingest, "/console/api/delivery?device=dev&hours=24", f.token).body);

  REQUIRE_MESSAGE(dom.find("data-loaded=\"1\"") != std::string::npos,
                  dom.substr(0, 2000));
  // Live: within the virtual 8 s the page polled again (every 3 s).
  auto polls_at = dom.find("data-polls=\"");
  REQUIRE(polls_at != std::string::npos);
  CHECK(std::stoi(dom.substr(polls_at + 12)) >= 2);
  // The token left the address bar: the page keeps it in sessionStorage.
  CHECK(dom.find(f.token) == std::string::npos);
  CHECK(card_value(dom, "devices_total")
        == std::to_string(num(overview, "devices_total")));
  CHECK(card_value(dom, "online") == std::to_string(num(overview, "online")));
  CHECK(card_value(dom, "offline")
        == std::to_string(num(overview, "offline")));
  auto& devices = member(overview, "devices").items;
  REQUIRE(devices.size() == 1);
  auto& d = devices[0];
  CHECK(card_value(dom, "tier_" + member(d, "tier").text) == "1");
  auto row = "data-device=\"dev\"";
  for (auto field : {"tier", "points_received", "batches_received",
                     "streams", "last_seen_ms", "duplicates", "gaps"})
    CHECK_MESSAGE(field_after(dom, row, field) == member(d, field).text,
                  field);
  CHECK(num(d, "points_received") > 0);
  // The actors table: every actor, its stable figures equal, its
  // message count between the two answers around the page's polls.
  auto& before = member(actors_before, "actors").items;
  auto& after = member(actors_after, "actors").items;
  REQUIRE(before.size() == after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    auto name = member(before[i], "name").text;
    CAPTURE(name);
    auto anchor = "data-actor=\"" + name + "\"";
    REQUIRE(dom.find(anchor) != std::string::npos);
    CHECK(field_after(dom, anchor, "restarts")
          == member(after[i], "restarts").text);
    CHECK(field_after(dom, anchor, "errors") == member(after[i], "errors").text);
    auto handled = std::stoll(field_after(dom, anchor, "handled"));
    CHECK(handled >= num(before[i], "handled"));
    CHECK(handled <= num(after[i], "handled"));
  }
  // The delivery view read the same answer the API gives: a row and a bar
  // per stream and hour.
  CHECK(dom.find("data-available=\"true\"") != std::string::npos);
  auto& hours = member(delivery, "rows").items;
  CHECK(!hours.empty());
  CHECK(dom.find("data-rows=\"" + std::to_string(hours.size()) + "\"")
        != std::string::npos);
  for (auto& h : hours) {
    auto anchor = "<tr data-stream=\"" + member(h, "stream").text
                  + "\" data-hour=\"" + member(h, "hour_ms").text + "\">";
    CAPTURE(anchor);
    for (auto field : {"received", "duplicates", "missing", "declared_drops",
                       "collected", "stored"})
      CHECK_MESSAGE(field_after(dom, anchor, field) == member(h, field).text,
                    field);
  }
  auto ratio_at = dom.find("data-ratio=\"");
  REQUIRE(ratio_at != std::string::npos);
  CHECK(std::stod(dom.substr(ratio_at + 12))
        == doctest::Approx(std::stod(member(delivery, "ratio").text)));

  // Another org's token sees none of acme's devices.
  auto zenith = fleetctl_secret(f.tmp.path(), f.console,
                                {"token", "create", "--org", "zenith"});
  auto other = parsed(get(f.ingest, "/console/api/overview", zenith).body);
  CHECK(num(other, "devices_total") == 0);

  // A refused token: the page asks for one again; the node counts it.
  auto refused = chromium(exe, f.tmp.path(), url + "#token=fqt_bad",
                          {"--dump-dom"});
  CHECK(refused.find("data-loaded=\"0\"") != std::string::npos);
  CHECK(refused.find("token refused") != std::string::npos);
  // No token: the first poll's 401 brings the form (the operator listener
  // would have answered).
  auto asked = chromium(exe, f.tmp.path(), url, {"--dump-dom"});
  CHECK(asked.find("data-loaded=\"0\"") != std::string::npos);
  CHECK(asked.find("an API token is needed") != std::string::npos);
  auto st = console_status(f.console);
  REQUIRE(st);
  CHECK(counter(*st, "web_console", "refused_unauthorized") >= 4);

  auto out_dir = std::string(FLEETD_BUILD_DIR) + "/tests/web_console_test.out";
  mkdir(out_dir.c_str(), 0755);
  auto shot = out_dir + "/console.png";
  std::remove(shot.c_str());
  chromium(exe, f.tmp.path(), url + "#token=" + f.token + "&device=dev",
           {"--screenshot=" + shot, "--window-size=1280,900"});
  REQUIRE(file_size(shot) > 10000);
  std::printf("web console screenshot: %s\n", shot.c_str());
  MESSAGE("web console screenshot: ", shot);
}

TEST_CASE("headless Chromium with an operator certificate: the console "
          "shows every org over console.http-listen, no token asked") {
  auto exe = chromium_path();
  if (exe.empty())
    return skip("chromium is not installed (tools/install-deps)");
  if (access("/usr/bin/certutil", X_OK) != 0
      || access("/usr/bin/pk12util", X_OK) != 0)
    return skip("certutil and pk12util are not installed (libnss3-tools, "
                "tools/install-deps)");
  temp_dir certs;
  auto ops = make_test_pki(certs.path() + "/ops");
  fleet f{&ops};
  f.device->signal(SIGTERM);
  REQUIRE(f.device->wait(30s));
  auto home = operator_home(f.tmp.path(), ops, f.web);
  REQUIRE_MESSAGE(!home.empty(), "certutil/pk12util failed");
  auto url = "https://127.0.0.1:" + std::to_string(f.web) + "/console";

  auto overview = parsed(operator_get(f.web, ops, "/console/api/overview").body);
  auto dom = chromium(exe, f.tmp.path(), url + "#device=dev", {"--dump-dom"},
                      home);
  auto delivery = parsed(
    operator_get(f.web, ops, "/console/api/delivery?org=acme&device=dev").body);

  REQUIRE_MESSAGE(dom.find("data-loaded=\"1\"") != std::string::npos,
                  dom.substr(0, 2000));
  CHECK(dom.find("every org (operator certificate)") != std::string::npos);
  CHECK(card_value(dom, "devices_total")
        == std::to_string(num(overview, "devices_total")));
  auto& devices = member(overview, "devices").items;
  REQUIRE(devices.size() == 1);
  auto& d = devices[0];
  CHECK(member(d, "org").text == "acme");
  auto row = "data-device=\"dev\" data-org=\"acme\"";
  REQUIRE_MESSAGE(dom.find(row) != std::string::npos, dom.substr(0, 4000));
  for (auto field : {"tier", "points_received", "batches_received",
                     "streams", "last_seen_ms", "duplicates", "gaps"})
    CHECK_MESSAGE(field_after(dom, row, field) == member(d, field).text,
                  field);
  CHECK(num(d, "points_received") > 0);
  // The delivery view asked with the row's org: the API's rows.
  CHECK(dom.find("data-available=\"true\"") != std::string::npos);
  auto& hours = member(delivery, "rows").items;
  CHECK(!hours.empty());
  CHECK(dom.find("data-rows=\"" + std::to_string(hours.size()) + "\"")
        != std::string::npos);
  auto [rc, out] = fleetctl(f.tmp.path(), f.console,
                            f.ctl({"status", "--json"}));
  REQUIRE(rc == 0);
  auto st = parsed(out);
  auto* web = actor_in(st, "web_console");
  REQUIRE(web != nullptr);
  CHECK(num(member(*web, "counters"), "operator_requests") >= 5);

  auto out_dir = std::string(FLEETD_BUILD_DIR) + "/tests/web_console_test.out";
  mkdir(out_dir.c_str(), 0755);
  auto shot = out_dir + "/console-operator.png";
  std::remove(shot.c_str());
  chromium(exe, f.tmp.path(), url + "#device=dev",
           {"--screenshot=" + shot, "--window-size=1280,900"}, home);
  REQUIRE(file_size(shot) > 10000);
  MESSAGE("operator web console screenshot: ", shot);
}
