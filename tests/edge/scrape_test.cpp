// Prometheus scrape: targets from scrape.targets; a page becomes samples
// with job and instance as Prometheus labels them, plus up,
// scrape_duration_seconds and scrape_samples_scraped; a target that hangs,
// closes early, floods, answers an error or sends malformed text is up 0
// with its reason, and holds up no other target or collector.
#include "edge/scrape.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "edge/fake_storage.hpp"
#include "edge/load_generator.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/register.hpp"
#include "runtime/clock.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

constexpr int64_t now_ms = 1'700'000'000'000;

const std::string good_page =
  "# HELP app_requests_total Requests.\n"
  "# TYPE app_requests_total counter\n"
  "app_requests_total{code=\"200\"} 1027\n"
  "app_requests_total{code=\"500\",job=\"theirs\"} 3\n"
  "app_temperature 21.5 1699999999000\n";

// An exporter on 127.0.0.1 that behaves as told, a thread per connection;
// stopping it closes every connection (a hanging scrape then fails).
class test_exporter {
public:
  enum class mode { page, hang, close_early, flood, status_500 };

  explicit test_exporter(mode m, std::string page = good_page)
    : mode_(m), page_(std::move(page)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~test_exporter() {
    ::shutdown(fd_, SHUT_RDWR);
    acceptor_.join();
    {
      std::lock_guard<std::mutex> guard{mtx_};
      for (int c : conns_)
        ::shutdown(c, SHUT_RDWR);
    }
    for (auto& t : workers_)
      t.join();
    for (int c : conns_)
      ::close(c);
    ::close(fd_);
  }

  uint16_t port() const { return port_; }
  int requests() const { return requests_; }

  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/metrics";
  }

private:
  void accept_loop() {
    for (;;) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0)
        return;
      std::lock_guard<std::mutex> guard{mtx_};
      conns_.push_back(c);
      workers_.emplace_back([this, c] { serve(c); });
    }
  }

  // Requests on one connection until the client closes it.
  void serve(int c) {
    std::string in;
    char buf[4096];
    for (;;) {
      auto end = in.find("\r\n\r\n");
      if (end == std::string::npos) {
        auto n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0)
          return;
        in.append(buf, static_cast<size_t>(n));
        continue;
      }
      in.erase(0, end + 4);
      ++requests_;
      if (!answer(c))
        return;
    }
  }

  bool write_all(int c, const std::string& x) {
    size_t done = 0;
    while (done < x.size()) {
      auto n = ::send(c, x.data() + done, x.size() - done, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // False: the connection is done.
  bool answer(int c) {
    switch (mode_) {
      case mode::page:
        return write_all(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; "
                            "version=0.0.4\r\nContent-Length: "
                              + std::to_string(page_.size()) + "\r\n\r\n"
                              + page_);
      case mode::hang: {
        char b;
        ::recv(c, &b, 1, 0); // until the client or the stop closes it
        return false;
      }
      case mode::close_early:
        write_all(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nup 1\n");
        ::shutdown(c, SHUT_RDWR);
        return false;
      case mode::flood: {
        std::string chunk(64 * 1024, '#');
        if (!write_all(c, "HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n"))
          return false;
        for (int i = 0; i < 160; ++i)
          if (!write_all(c, chunk))
            return false;
        return true;
      }
      case mode::status_500:
        return write_all(c, "HTTP/1.1 500 Internal Server Error\r\n"
                            "Content-Length: 0\r\n\r\n");
    }
    return false;
  }

  mode mode_;
  std::string page_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> requests_{0};
  std::mutex mtx_;
  std::vector<int> conns_;
  std::vector<std::thread> workers_;
  std::thread acceptor_;
};

scrape_target target_of(const std::string& url, const std::string& job,
                        const scrape_config& cfg = {}) {
  scrape_config c = cfg;
  c.targets = job + "=" + url;
  auto ts = scrape_targets(c);
  REQUIRE(ts);
  REQUIRE(ts->size() == 1);
  return ts->front();
}

std::map<std::string, const metric_sample*> by_name(const metric_samples& xs) {
  std::map<std::string, const metric_sample*> out;
  for (auto& x : xs)
    out[x.name] = &x;
  return out;
}

// The samples and problems of one scrape of `url`.
struct one_scrape {
  metric_samples samples;
  std::vector<std::string> problems;
};

one_scrape scrape(const std::string& url, const scrape_config& cfg = {}) {
  one_scrape out;
  out.samples = scrape_source(target_of(url, "app", cfg), cfg)(now_ms,
                                                             &out.problems);
  return out;
}

// A failed scrape: up 0, nothing of the page, the reason named.
void check_failed(const one_scrape& s, const std::string& reason) {
  CAPTURE(s.problems.size() ? s.problems.front() : std::string("none"));
  REQUIRE(s.samples.size() == 3);
  auto m = by_name(s.samples);
  REQUIRE(m.count("up"));
  CHECK(m["up"]->value == 0);
  CHECK(m["up"]->labels.at("job") == "app");
  CHECK(m["scrape_samples_scraped"]->value == 0);
  CHECK(m["scrape_duration_seconds"]->value >= 0);
  REQUIRE(s.problems.size() == 1);
  CHECK(s.problems[0].find("(job app) failed: ") != std::string::npos);
  CHECK(s.problems[0].find(reason) != std::string::npos);
}

} // namespace

TEST_CASE("scrape.targets: jobs, default path, https, and what is refused") {
  scrape_config c;
  c.targets = " http://127.0.0.1:9100 , node = http://localhost:9101/m/x,"
              "https://example:8443/metrics,";
  auto ts = scrape_targets(c);
  REQUIRE(ts);
  REQUIRE(ts->size() == 3);
  CHECK((*ts)[0].job == "scrape");
  CHECK((*ts)[0].instance == "127.0.0.1:9100");
  CHECK((*ts)[0].path == "/metrics");
  CHECK(!(*ts)[0].tls);
  CHECK((*ts)[1].job == "node");
  CHECK((*ts)[1].host == "localhost");
  CHECK((*ts)[1].path == "/m/x");
  CHECK((*ts)[2].tls);
  CHECK((*ts)[2].port == 8443);
  c.targets = "";
  CHECK(scrape_targets(c)->empty());
  for (const char* bad : {"ftp://x/metrics", "http://x:0/metrics",
                          "http://x:9100/metrics?module=a",
                          "=http://x:1/metrics",
                          "http://x:1/metrics, http://x:1/metrics"}) {
    CAPTURE(bad);
    c.targets = bad;
    auto r = scrape_targets(c);
    REQUIRE(!r);
    CHECK(r.error() == ec::bad_config);
    CHECK(render(r.error()).find("scrape.targets") != std::string::npos);
    CHECK(validate(c) == ec::bad_config);
  }
  c.targets = "http://x:1/metrics";
  c.timeout = 20s;
  CHECK(validate(c) == ec::bad_config);
  c.timeout = 5s;
  CHECK(!validate(c));
}

TEST_CASE("a page becomes samples labelled as Prometheus labels them") {
  test_exporter ex(test_exporter::mode::page);
  scrape_config cfg;
  auto source = scrape_source(target_of(ex.url(), "app"), cfg);
  for (int round = 0; round < 2; ++round) { // the connection is kept
    std::vector<std::string> problems;
    auto xs = source(now_ms, &problems);
    CHECK(problems.empty());
    REQUIRE(xs.size() == 6);
    auto instance = "127.0.0.1:" + std::to_string(ex.port());
    CHECK(xs[0].name == "app_requests_total");
    CHECK(xs[0].labels == label_map{{"code", "200"},
                                    {"instance", instance},
                                    {"job", "app"}});
    CHECK(xs[0].timestamp_ms == now_ms);
    CHECK(xs[0].value == 1027);
    CHECK(xs[1].labels == label_map{{"code", "500"},
                                    {"exported_job", "theirs"},
                                    {"instance", instance},
                                    {"job", "app"}});
    CHECK(xs[2].timestamp_ms == 1699999999000);
    auto m = by_name(xs);
    CHECK(m["up"]->value == 1);
    CHECK(m["up"]->labels == label_map{{"instance", instance}, {"job", "app"}});
    CHECK(m["scrape_samples_scraped"]->value == 3);
    CHECK(m["scrape_duration_seconds"]->value >= 0);
    CHECK(m["scrape_duration_seconds"]->value < 5);
  }
  CHECK(ex.requests() == 2);
}

TEST_CASE("a target that fails is up 0 with its reason, each way it can") {
  SUBCASE("nothing listens") {
    check_failed(scrape("http://127.0.0.1:" + std::to_string(test::free_port())
                        + "/metrics"),
                 "");
  }
  SUBCASE("it hangs past scrape.timeout") {
    test_exporter ex(test_exporter::mode::hang);
    scrape_config cfg;
    cfg.timeout = 200ms;
    auto s = scrape(ex.url(), cfg);
    check_failed(s, "");
    CHECK(by_name(s.samples)["scrape_duration_seconds"]->value >= 0.2);
    CHECK(ex.requests() == 1);
  }
  SUBCASE("it closes before the page is whole") {
    test_exporter ex(test_exporter::mode::close_early);
    check_failed(scrape(ex.url()), "");
  }
  SUBCASE("it sends 10 MB, past scrape.max-bytes") {
    test_exporter ex(test_exporter::mode::flood);
    check_failed(scrape(ex.url()), "");
  }
  SUBCASE("it answers 500") {
    test_exporter ex(test_exporter::mode::status_500);
    check_failed(scrape(ex.url()), "HTTP 500");
  }
  SUBCASE("its page is malformed") {
    test_exporter ex(test_exporter::mode::page,
                     "good 1\nthis is { not prometheus\ngood_too 2\n");
    check_failed(scrape(ex.url()), "1 malformed line(s); line 2: ");
  }
  SUBCASE("its page has more than scrape.max-samples") {
    std::string page;
    for (int i = 0; i < 11; ++i)
      page += "m{i=\"" + std::to_string(i) + "\"} 1\n";
    test_exporter ex(test_exporter::mode::page, page);
    scrape_config cfg;
    cfg.max_samples = 10;
    check_failed(scrape(ex.url(), cfg), "more than 10 samples");
    cfg.max_samples = 11;
    auto ok = scrape(ex.url(), cfg);
    CHECK(ok.problems.empty());
    CHECK(ok.samples.size() == 11 + 3);
  }
}

namespace {

storage_actor::behavior_type recording_storage(caf::actor observer) {
  return test::fake_storage_behavior(
    [observer](store_atom, metric_samples& xs) {
      auto n = static_cast<int64_t>(xs.size());
      caf::anon_send(observer, store_atom::value, std::move(xs));
      return n;
    },
    [](event_atom, const std::string&, const std::string&) {},
    [](debug_atom, const std::string&) { return debug_report{}; },
    [](stats_atom) { return actor_stats{}; });
}

} // namespace

TEST_CASE("a target that hangs holds up neither another target nor a "
          "scheduled collector") {
  caf::actor_system_config cfg;
  register_messages(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto storage = sys.spawn(recording_storage, caf::actor_cast<caf::actor>(self));
  std::vector<caf::actor> spawned{caf::actor_cast<caf::actor>(storage)};
  {
    test_exporter hanging(test_exporter::mode::hang);
    test_exporter good(test_exporter::mode::page);
    auto spawn_target = [&](const test_exporter& ex, const std::string& job,
                            std::chrono::milliseconds interval) {
      scrape_config sc;
      sc.interval = interval;
      sc.timeout = interval;
      auto cc = scrape_collector(target_of(ex.url(), job, sc), sc);
      cc.clock = std::make_shared<manual_clock>(now_ms);
      cc.storage = storage;
      CHECK(cc.name == "scrape:" + job + ":127.0.0.1:"
                         + std::to_string(ex.port()));
      spawned.push_back(caf::actor_cast<caf::actor>(
        sys.spawn<caf::detached>(system_collector, cc)));
    };
    // The hanging target's one scrape outlasts the test (until its
    // exporter stops); the good one scrapes every 50 ms meanwhile.
    spawn_target(hanging, "stuck", 60s);
    spawn_target(good, "good", 50ms);
    // And a collector on the scheduler, as the system collector runs.
    system_collector_config lc;
    lc.name = "load_generator";
    lc.source = load_source(2);
    lc.interval = 50ms;
    lc.clock = std::make_shared<manual_clock>(now_ms);
    lc.storage = storage;
    spawned.push_back(
      caf::actor_cast<caf::actor>(sys.spawn(system_collector, lc)));
    std::map<std::string, int> rounds;
    bool timed_out = false;
    while ((rounds["good"] < 5 || rounds["load"] < 5) && !timed_out)
      self->receive(
        [&](store_atom, metric_samples& xs) {
          for (auto& x : xs)
            if (x.name == "up") {
              ++rounds[x.labels.at("job")];
              CHECK(x.value == 1);
            } else if (x.name == "fleetd_load_value"
                       && x.labels.at("series") == "0") {
              ++rounds["load"];
            }
        },
        caf::after(std::chrono::seconds(20)) >> [&] { timed_out = true; });
    CHECK(rounds["good"] >= 5);
    CHECK(rounds["load"] >= 5);
    CHECK(rounds["stuck"] == 0);
    CHECK(test::eventually([&] { return hanging.requests() == 1; }, 10s));
    CHECK(good.requests() >= 5);
  } // the exporters stop: the hanging scrape fails and its actor is free
  for (auto& x : spawned)
    self->send_exit(x, caf::exit_reason::user_shutdown);
}
