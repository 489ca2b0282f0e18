#include "cloud/vm_sink.hpp"

#include <chrono>
#include <cmath>
#include <limits>

#include <doctest/doctest.h>

#include "messages/error.hpp"
#include "runtime/http_server.hpp"
#include "skip.hpp"
#include "vm_fixture.hpp"

using namespace fleetd;

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

// Timestamps inside the server's 1-day retention: its clock is the host's.
int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

journal_entry entry(int64_t id, std::string org, std::string device,
                    metric_samples samples) {
  journal_entry e;
  e.id = id;
  e.org = std::move(org);
  e.device = std::move(device);
  e.samples = std::move(samples);
  return e;
}

metric_sample sample(std::string name, label_map labels, int64_t ts,
                     double v) {
  return metric_sample{std::move(name), std::move(labels), ts, v};
}

std::unique_ptr<vm_sink> sink_for(const vm_server& vm,
                                  int64_t max_request_bytes = 4 << 20) {
  vm_sink_config cfg;
  cfg.url = vm.url();
  cfg.max_request_bytes = max_request_bytes;
  cfg.timeout = std::chrono::seconds(5);
  auto s = make_vm_sink(cfg);
  REQUIRE_MESSAGE(s, render(s.error()));
  return std::move(*s);
}

// A series' readings of one magnitude, which VictoriaMetrics 1.79 stores
// exactly (up to 15 significant digits); it scales a block of a series to
// one decimal exponent, so extremes get series of their own
// (docs/data-stack.md).
const std::vector<double> exact_values = {0.1, -273.15, 1.5, 0, 42,
                                          3.14159, -0.001};
const std::vector<double> extreme_values = {
  1e300, -1e-9, 9007199254740992.0, 123456789012345.0, inf, -inf, 1e-300};

} // namespace

TEST_CASE("vm_import_target: single node and vminsert tenants from config") {
  vm_sink_config cfg;
  cfg.url = "http://127.0.0.1:8428/";
  auto t = vm_import_target(cfg, "acme");
  REQUIRE(t);
  CHECK(!t->tls);
  CHECK(t->host == "127.0.0.1");
  CHECK(t->port == 8428);
  CHECK(t->path == "/api/v1/import/prometheus");
  cfg.url = "https://vminsert.example:8480/insert/{tenant}/prometheus";
  cfg.tenants = "acme=7,globex=12:3";
  t = vm_import_target(cfg, "globex");
  REQUIRE(t);
  CHECK(t->tls);
  CHECK(t->host == "vminsert.example");
  CHECK(t->path == "/insert/12:3/prometheus/api/v1/import/prometheus");
  CHECK(vm_import_target(cfg, "acme")->path
        == "/insert/7/prometheus/api/v1/import/prometheus");
  // An org without a tenant is refused, never written to another one.
  CHECK(vm_import_target(cfg, "initech").error() == ec::invalid_record);
  for (auto* bad : {"acme=x", "acme=-1", "=3", "acme", "acme=1:", "a=1,a=2",
                    "acme=4294967296"}) {
    cfg.tenants = bad;
    CAPTURE(bad);
    CHECK(vm_import_target(cfg, "acme").error() == ec::bad_config);
    CHECK(!make_vm_sink(cfg));
  }
  for (auto* bad : {"ftp://h:1", "http://:80", "http://h:0", "http://h:x",
                    "http://h:1/p?q=1", "h:8428"}) {
    cfg.url = bad;
    CAPTURE(bad);
    CHECK(!make_vm_sink(cfg));
  }
  cfg.url = "http://h:1";
  cfg.tenants = "acme=1";
  CHECK(make_vm_sink(cfg).error() == ec::bad_config);
}

TEST_CASE("vm_line: escaping, our labels first, the device's renamed") {
  vm_sink_config cfg;
  auto line = vm_line("o\"rg", "dev\n1",
                      sample("m:x", {{"org_id", "fake"},
                                     {"exported_org_id", "e"},
                                     {"device_id", "d"},
                                     {"empty", ""},
                                     {"w", "a\\b\"c\nd é"}},
                             17, -inf),
                      cfg);
  REQUIRE(line);
  CHECK(*line
        == "m:x{org_id=\"o\\\"rg\",device_id=\"dev\\n1\",exported_device_id="
           "\"d\",exported_exported_org_id=\"e\",exported_org_id=\"fake\","
           "w=\"a\\\\b\\\"c\\nd é\"} -Inf 17\n");
}

TEST_CASE("vm_line: what VictoriaMetrics would drop or change is refused") {
  vm_sink_config cfg;
  cfg.max_labels = 5;
  cfg.max_label_value_bytes = 8;
  auto refused = [&](metric_sample s, const std::string& reason) {
    auto line = vm_line("o", "d", s, cfg);
    CAPTURE(reason);
    REQUIRE(!line);
    CHECK(line.error() == ec::invalid_record);
    CHECK(render(line.error()).find(reason + ":") != std::string::npos);
  };
  refused(sample("m", {}, 1, std::nan("")), "nan");
  refused(sample("", {}, 1, 1), "metric_name");
  refused(sample("1m", {}, 1, 1), "metric_name");
  refused(sample("m{x=\"1\"}", {}, 1, 1), "metric_name");
  refused(sample("m", {{"", "v"}}, 1, 1), "label_name");
  refused(sample("m", {{"a b", "v"}}, 1, 1), "label_name");
  refused(sample("m", {{"a\"", "v"}}, 1, 1), "label_name");
  refused(sample("m", {{"é", "v"}}, 1, 1), "label_name");
  refused(sample("m", {{"__name__", "other"}}, 1, 1), "label_name");
  refused(sample("m", {{"a", "123456789"}}, 1, 1), "label_value");
  refused(sample("m", {{"a", "\xff"}}, 1, 1), "label_value");
  refused(sample("m", {{"a", "\xc3"}}, 1, 1), "label_value");
  refused(sample("m", {{"a", "1"}, {"b", "2"}, {"c", "3"}}, 1, 1), "labels");
  CHECK(vm_line("o", "d", sample("m", {{"a", "1"}, {"b", "2"}}, 1, 1), cfg));
  CHECK(vm_line("o", "d", sample("m", {{"a", "é"}}, 1, 1), cfg));
}

TEST_CASE("vm_sink: 429 and 5xx are retried, other 4xx refused, silence a "
          "timeout") {
  // A server answering each import with the next status of a script
  // (VictoriaMetrics cannot be made to answer 429/5xx on demand).
  std::vector<uint16_t> script = {503, 429, 500, 413, 400, 204, 0};
  size_t next = 0;
  std::vector<http_server::respond_fn> held;
  http_server server(http_limits{}, [&](http_request req,
                                        http_server::respond_fn respond) {
    auto status = next < script.size() ? script[next++] : 204;
    CHECK(req.target == "/api/v1/import/prometheus");
    if (status == 0)
      return held.push_back(std::move(respond));
    // A 204 has no body (as VictoriaMetrics answers).
    respond(http_reply{status, "text/plain", status == 204 ? "" : "scripted",
                       ""});
  });
  auto port = server.start("127.0.0.1", 0);
  REQUIRE(port);
  vm_sink_config cfg;
  cfg.url = "http://127.0.0.1:" + std::to_string(*port);
  cfg.timeout = std::chrono::milliseconds(300);
  auto sink = make_vm_sink(cfg);
  REQUIRE(sink);
  journal_entries one{entry(1, "acme", "d", {sample("m", {}, 1, 1)})};
  for (auto want : {ec::remote_error, ec::remote_error, ec::remote_error,
                    ec::invalid_record, ec::invalid_record}) {
    auto err = (*sink)->write(one);
    CHECK(err == want);
  }
  CHECK((*sink)->stats().last_problem.find("HTTP 400") != std::string::npos);
  CHECK(!(*sink)->write(one));
  CHECK((*sink)->stats().samples == 1);
  CHECK((*sink)->write(one) == ec::timeout);
  server.stop();
}

TEST_CASE("victoria: two orgs' samples land exactly, with org_id and "
          "device_id, and a replay adds nothing") {
  std::string why;
  auto vm = test::start_vm(why);
  if (!vm)
    return test::skip(why);
  auto sink = sink_for(*vm);
  auto t0 = now_ms() - 60'000;
  journal_entries entries;
  for (auto [org, device] : {std::pair{"acme", "d1"}, std::pair{"globex", "d1"},
                             std::pair{"acme", "d2"}}) {
    metric_samples samples;
    for (size_t i = 0; i < exact_values.size(); ++i) {
      samples.push_back(
        sample("temp", {{"zone", "a"}}, t0 + i, exact_values[i]));
      samples.push_back(sample("load", {}, t0 + i, exact_values[i] * 2));
    }
    for (size_t i = 0; i < extreme_values.size(); ++i)
      samples.push_back(sample("edge", {{"i", std::to_string(i)}}, t0,
                               extreme_values[i]));
    entries.push_back(entry(entries.size() + 1, org, device, samples));
  }
  REQUIRE(!sink->write(entries));
  CHECK(sink->stats().samples
        == 3 * (2 * exact_values.size() + extreme_values.size()));
  CHECK(sink->stats().refused.empty());
  auto check_all = [&] {
    CHECK(test::vm_export(*vm, "{__name__=~\"temp|load\"}",
                          6 * exact_values.size()).size() == 6);
    for (auto& e : entries) {
      auto got = test::vm_export(*vm, "temp{org_id=\"" + e.org
                                        + "\",device_id=\"" + e.device + "\"}",
                                exact_values.size());
      REQUIRE(got.size() == 1);
      CHECK(got[0].labels_json
            == "{\"__name__\":\"temp\",\"device_id\":\"" + e.device
                 + "\",\"org_id\":\"" + e.org + "\",\"zone\":\"a\"}");
      REQUIRE(got[0].values.size() == exact_values.size());
      for (size_t i = 0; i < exact_values.size(); ++i) {
        CHECK(got[0].values[i] == exact_values[i]);
        CHECK(got[0].timestamps[i] == t0 + static_cast<int64_t>(i));
      }
      for (size_t i = 0; i < extreme_values.size(); ++i) {
        auto edge = test::vm_export(*vm, "edge{org_id=\"" + e.org
                                           + "\",device_id=\"" + e.device
                                           + "\",i=\"" + std::to_string(i)
                                           + "\"}",
                                    1);
        REQUIRE(edge.size() == 1);
        CHECK(edge[0].values == std::vector<double>{extreme_values[i]});
      }
    }
  };
  check_all();
  // A replay after a crash: the server deduplicates identical timestamps.
  REQUIRE(!sink->write(entries));
  REQUIRE(!sink->write({entries[1], entries[0]}));
  check_all();
  CHECK(test::vm_dropped_rows(*vm) == 0);
}

TEST_CASE("victoria: stopped is retryable, restarted takes the write") {
  std::string why;
  auto vm = test::start_vm(why);
  if (!vm)
    return test::skip(why);
  auto sink = sink_for(*vm);
  auto t0 = now_ms() - 60'000;
  journal_entries first{entry(1, "acme", "d1", {sample("up", {}, t0, 1)})};
  REQUIRE(!sink->write(first));
  vm->stop();
  journal_entries second{entry(2, "acme", "d1", {sample("up", {}, t0 + 1, 2)})};
  auto down = sink->write(second);
  CHECK(down == ec::unreachable);
  vm_server::failure failed;
  REQUIRE_MESSAGE(vm->restart(failed), failed.why);
  // The kept-alive connection died with the server: the sink reconnects.
  REQUIRE(!sink->write(second));
  auto got = test::vm_export(*vm, "up", 2);
  REQUIRE(got.size() == 1);
  CHECK(got[0].values == std::vector<double>{1, 2});
  CHECK(test::vm_dropped_rows(*vm) == 0);
}

TEST_CASE("victoria: a refusing server (4xx) is invalid_record, the rest "
          "of the batch still goes out") {
  std::string why;
  auto vm = test::start_vm(why);
  if (!vm)
    return test::skip(why);
  // A single node has no /insert/<tenant>/ paths: it answers 400.
  vm_sink_config cfg;
  cfg.url = vm->url() + "/insert/{tenant}/prometheus";
  cfg.tenants = "acme=1";
  auto sink = make_vm_sink(cfg);
  REQUIRE(sink);
  auto t0 = now_ms() - 60'000;
  auto err
    = (*sink)->write({entry(1, "acme", "d", {sample("m", {}, t0, 1)}),
                      entry(2, "initech", "d", {sample("m", {}, t0, 1)})});
  CHECK(err == ec::invalid_record);
  CHECK((*sink)->stats().refused.at("unmapped_org") == 1);
  CHECK((*sink)->stats().last_problem.find("HTTP 400") != std::string::npos);
}

TEST_CASE("victoria: hostile labels are stored exactly or refused clearly") {
  std::string why;
  auto vm = test::start_vm(why);
  if (!vm)
    return test::skip(why);
  auto sink = sink_for(*vm);
  auto t0 = now_ms() - 60'000;
  const std::vector<std::string> values = {
    "q\"uote", "back\\slash", "new\nline", "ünï€😀", "{x=\"1\"} 5 6", "\t",
    std::string(16 * 1024, 'v')};
  metric_samples good, bad;
  for (size_t i = 0; i < values.size(); ++i)
    good.push_back(sample("h", {{"v", values[i]}, {"i", std::to_string(i)}},
                          t0, static_cast<double>(i)));
  good.push_back(sample("h", {{"org_id", "globex"}, {"i", "o"}}, t0, 9));
  bad.push_back(sample("h", {{"", "empty name"}}, t0, 1));
  bad.push_back(sample("h", {{"sp ace", "1"}}, t0, 1));
  bad.push_back(sample("h", {{"__name__", "x"}}, t0, 1));
  bad.push_back(sample("h", {{"v", std::string(16 * 1024 + 1, 'v')}}, t0, 1));
  bad.push_back(sample("h", {}, t0 + 1, std::nan("")));
  journal_entries entries{entry(1, "acme", "d\"1\n", good),
                          entry(2, "acme", "d2", bad)};
  CHECK(!sink->write(entries));
  CHECK(sink->stats().refused.at("label_name") == 3);
  CHECK(sink->stats().refused.at("label_value") == 1);
  CHECK(sink->stats().refused.at("nan") == 1);
  CHECK(test::vm_export(*vm, "h", values.size() + 1).size() == values.size() + 1);
  auto quote = [](const std::string& v) {
    std::string out = "\"";
    for (char c : v)
      out += c == '\n' ? std::string{"\\n"}
             : c == '"' || c == '\\' ? std::string{"\\"} + c
                                     : std::string{c};
    return out + "\"";
  };
  for (size_t i = 0; i < values.size(); ++i) {
    CAPTURE(i);
    // An equality matcher: the stored value is byte for byte the sent one.
    auto got = test::vm_export(*vm, "h{v=" + quote(values[i])
                                      + ",device_id=\"d\\\"1\\n\"}",
                                1);
    REQUIRE(got.size() == 1);
    CHECK(got[0].values == std::vector<double>{static_cast<double>(i)});
  }
  auto renamed = test::vm_export(
    *vm, "h{org_id=\"acme\",exported_org_id=\"globex\",i=\"o\"}", 1);
  CHECK(renamed.size() == 1);
  CHECK(test::vm_export(*vm, "h{org_id=\"globex\"}", 0).empty());
  CHECK(test::vm_dropped_rows(*vm) == 0);
}

TEST_CASE("victoria: a batch past max-request-bytes goes in several "
          "requests, every sample once") {
  std::string why;
  auto vm = test::start_vm(why);
  if (!vm)
    return test::skip(why);
  auto sink = sink_for(*vm, 1 << 20);
  auto t0 = now_ms() - 600'000;
  journal_entries entries;
  for (int d = 0; d < 40; ++d) {
    metric_samples samples;
    for (int i = 0; i < 500; ++i)
      samples.push_back(sample("big", {{"series", std::to_string(i % 50)},
                                       {"pad", std::string(40, 'p')}},
                               t0 + i, i));
    entries.push_back(entry(d + 1, "acme", "d" + std::to_string(d), samples));
  }
  REQUIRE(!sink->write(entries));
  CHECK(sink->stats().requests >= 3);
  CHECK(sink->stats().samples == 20'000);
  size_t points = 0;
  for (auto& s : test::vm_export(*vm, "big", 20'000))
    points += s.values.size();
  CHECK(points == 20'000);
  CHECK(test::vm_dropped_rows(*vm) == 0);
}
