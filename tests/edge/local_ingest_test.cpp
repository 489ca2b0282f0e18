// Local ingest: applications push Influx lines, Prometheus text, JSON log
// lines and JSON events over a loopback port or a Unix socket into the
// device's store. Each request body is parsed alone (seeded mutations of
// every format through the endpoint's own parse function: no crash, a heap
// bounded by the body limit, the good lines around a bad one kept); over
// the network each format lands in a real SQLite store, a mixed body keeps
// its good lines and names its bad ones, an oversized one is refused, and
// a flood while storage is held gets 429.
#include "edge/local_ingest.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <future>
#include <random>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "edge/fake_storage.hpp"
#include "edge/sqlite_store.hpp"
#include "edge/storage.hpp"
#include "fuzz.hpp"
#include "heap_count.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/json_lines.hpp"
#include "messages/json_reader.hpp"
#include "messages/register.hpp"
#include "runtime/clock.hpp"
#include "scratch_dir.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

constexpr int64_t now_ms = 1'700'000'000'000;

// JSON's own characters and a few bytes that are not text, a NUL among them.
std::string json_alphabet() {
  static constexpr char chars[] = "{}[]\":,\\u0123456789.eE-+TZ \n\t\xff\xc3\x00";
  return std::string(chars, sizeof chars - 1);
}

// One format's fuzz material: a seed body, its alphabet, and lines that
// stand before and after a mutated one.
struct fuzz_format {
  ingest_format format;
  std::string seed;
  std::string alphabet;
  std::string before;
  std::string after;
};

const fuzz_format fuzz_formats[] = {
  {ingest_format::influx,
   "cpu,host=a,region=eu usage=0.5,count=3i,ok=t,note=\"a \\\"b\\\"\" "
   "1700000000000000000\nweather\\ st,city=N\\ Y temp=-1.5e1,u=7u\n"
   "# comment\nmem free=1024i\n",
   ",= \"\\#\n\tiutfTF0123456789.e-+\xff\xc3", "zzguard_before v=1",
   "zzguard_after v=2"},
  {ingest_format::prom,
   "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\n"
   "app_requests_total{code=\"200\",path=\"/a\"} 1027\n"
   "h_bucket{le=\"0.5\"} 3 1699999999000\n# TYPE h histogram\n"
   "s{quantile=\"0.9\"} NaN\n",
   "{}=\",# \n\\eE.+-0123456789NaInf_:\xff\xc3", "zzguard_before 1",
   "zzguard_after 2"},
  {ingest_format::logs,
   "{\"line\":\"a \\\"q\\\" \\u00e9\",\"labels\":{\"app\":\"x\"}}\n"
   "{\"message\":\"m\",\"timestamp\":\"2023-11-14T22:13:20.5+01:00\"}\n"
   "{\"line\":\"n\",\"timestamp\":1700000000000000000}\n",
   json_alphabet(),
   "{\"line\":\"zzguard before\"}", "{\"line\":\"zzguard after\"}"},
  {ingest_format::events,
   "{\"kind\":\"deploy\",\"message\":\"v1\"}\n"
   "{\"kind\":\"a.b\",\"message\":\"\\n\"}\n",
   json_alphabet(),
   "{\"kind\":\"zzguard\",\"message\":\"before\"}",
   "{\"kind\":\"zzguard\",\"message\":\"after\"}"},
};

// The first and last record of a body, as one string, to compare with the
// guard lines'.
std::pair<std::string, std::string> ends(const ingest_body& b) {
  auto of_sample = [](const metric_sample& x) { return x.name; };
  auto of_log = [](const log_line& x) { return x.line; };
  auto of_event = [](const event_record& x) { return x.kind + " " + x.message; };
  if (!b.samples.empty())
    return {of_sample(b.samples.front()), of_sample(b.samples.back())};
  if (!b.logs.empty())
    return {of_log(b.logs.front()), of_log(b.logs.back())};
  if (!b.events.empty())
    return {of_event(b.events.front()), of_event(b.events.back())};
  return {};
}

std::pair<std::string, std::string> guard_records(ingest_format f) {
  switch (f) {
    case ingest_format::influx:
      return {"zzguard_before_v", "zzguard_after_v"};
    case ingest_format::prom:
      return {"zzguard_before", "zzguard_after"};
    case ingest_format::logs:
      return {"zzguard before", "zzguard after"};
    case ingest_format::events:
      return {"app.zzguard before", "app.zzguard after"};
  }
  return {};
}

// --- the network side -------------------------------------------------

struct answer {
  int status = 0;
  std::string head;
  std::string body;
};

int connect_tcp(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int connect_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// One request on a new connection (`fd`, closed here), read to its end.
answer post(int fd, const std::string& target, const std::string& body) {
  answer out;
  if (fd < 0)
    return out;
  auto req = "POST " + target + " HTTP/1.1\r\nHost: localhost\r\n"
             + "Content-Length: " + std::to_string(body.size())
             + "\r\nConnection: close\r\n\r\n" + body;
  for (size_t at = 0; at < req.size();) {
    auto n = ::send(fd, req.data() + at, req.size() - at, MSG_NOSIGNAL);
    if (n <= 0)
      break;
    at += static_cast<size_t>(n);
  }
  std::string all;
  char buf[4096];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      break;
    all.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  auto split = all.find("\r\n\r\n");
  if (all.size() < 12 || split == std::string::npos)
    return out;
  out.status = std::stoi(all.substr(9, 3));
  out.head = all.substr(0, split);
  out.body = all.substr(split + 4);
  return out;
}

struct node_fixture {
  test::scratch_dir dir{"fleetd-ingest"};
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<manual_clock> clock = std::make_shared<manual_clock>(now_ms);

  node_fixture() {
    REQUIRE(dir.ok());
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
  }

  local_ingest_config config(storage_actor st) {
    local_ingest_config c;
    c.listen = "127.0.0.1:0";
    c.socket = dir.file("ingest.sock");
    c.clock = clock;
    c.storage = std::move(st);
    return c;
  }

  std::map<std::string, int64_t> stats(const local_ingest_actor& a) {
    caf::scoped_actor self{*sys};
    std::map<std::string, int64_t> out;
    self->request(a, 5s, stats_atom::value)
      .receive([&](actor_stats& x) { out = std::move(x.counters); },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return out;
  }
};

unbatched_points fetch(caf::actor_system& sys, const storage_actor& st,
                       const std::string& stream) {
  caf::scoped_actor self{sys};
  unbatched_points out;
  self->request(st, 5s, fetch_atom::value, stream, int64_t{1000},
                int64_t{1} << 30)
    .receive([&](unbatched_points& x) { out = std::move(x); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  return out;
}

// A storage stand-in that holds every store's answer until an event
// "release" comes (then all are answered), so a test decides when storage
// is slow.
struct holding_state {
  std::vector<caf::typed_response_promise<int64_t>> held;
  std::vector<int64_t> sizes;
};

storage_actor::behavior_type
holding_storage(storage_actor::stateful_pointer<holding_state> self) {
  return test::fake_storage_behavior(
    [self](store_atom, const metric_samples& xs) -> caf::result<int64_t> {
      auto rp = self->make_response_promise<int64_t>();
      self->state.held.push_back(rp);
      self->state.sizes.push_back(static_cast<int64_t>(xs.size()));
      return rp;
    },
    [self](event_atom, const std::string& kind, const std::string&) {
      if (kind != "release")
        return;
      for (size_t i = 0; i < self->state.held.size(); ++i)
        self->state.held[i].deliver(self->state.sizes[i]);
      self->state.held.clear();
      self->state.sizes.clear();
    },
    [](debug_atom, const std::string&) { return debug_report{}; },
    [self](stats_atom) {
      actor_stats out;
      out.counters["held"] = static_cast<int64_t>(self->state.held.size());
      return out;
    });
}

} // namespace

TEST_CASE("ingest options: loopback by default, listen form, pending bound") {
  local_ingest_config x;
  CHECK(!validate(x));
  for (auto ok : {"127.0.0.1:7402", "127.1.2.3:0", "[::1]:7402"}) {
    x.listen = ok;
    CHECK_MESSAGE(!validate(x), ok);
  }
  for (auto bad : {"0.0.0.0:7402", "192.168.1.2:7402", "[::]:7402"}) {
    x.listen = bad;
    auto err = validate(x);
    CHECK_MESSAGE(render(err).find("not a loopback") != std::string::npos,
                  render(err));
    x.allow_remote = true;
    CHECK(!validate(x));
    x.allow_remote = false;
  }
  for (auto bad : {"7402", "localhost:7402", "127.0.0.1:", "127.0.0.1:99999",
                   "127.0.0.1:-1"}) {
    x.listen = bad;
    CHECK_MESSAGE(validate(x), bad);
  }
  x.listen = "";
  x.max_pending_bytes = x.max_body_bytes - 1;
  CHECK(validate(x));
}

TEST_CASE("a request body: precision, line limit, the answer's form") {
  local_ingest_config x;
  x.max_lines = 3;
  auto b = parse_ingest_body(ingest_format::influx, "m v=1 1700000000\n",
                             "db=x&precision=s", now_ms, x);
  REQUIRE(b);
  REQUIRE(b->samples.size() == 1);
  CHECK(b->samples[0].timestamp_ms == 1'700'000'000'000);
  CHECK(parse_ingest_body(ingest_format::influx, "m v=1\n", "precision=h",
                          now_ms, x)
          .error()
        == ec::decode_failed);
  CHECK(parse_ingest_body(ingest_format::logs, "{}\n{}\n{}\n{}", "", now_ms, x)
          .error()
        == ec::too_large);
  auto logs = parse_ingest_body(ingest_format::logs, "{\"line\":\"a\"}", "",
                                now_ms, x);
  REQUIRE(logs);
  CHECK(logs->logs.at(0).timestamp_ns == now_ms * 1'000'000);
  CHECK(ingest_answer(*logs).status == 204);
  auto mixed = parse_ingest_body(ingest_format::logs,
                                 "{\"line\":\"a\"}\nbad\n{\"line\":\"b\"}", "",
                                 now_ms, x);
  REQUIRE(mixed);
  auto rep = ingest_answer(*mixed);
  CHECK(rep.status == 200);
  CHECK(rep.content_type == "application/json");
  CHECK(rep.body.find("\"stored\":2,\"bad_lines\":1,\"errors\":[{\"line\":2,")
        != std::string::npos);
  // A reason quoting bytes that are not UTF-8 still makes valid JSON.
  auto raw = parse_ingest_body(ingest_format::influx, "m v=\xff\xfe\nm v=1\n",
                               "", now_ms, x);
  REQUIRE(raw);
  std::string why;
  CHECK_MESSAGE(parse_json(ingest_answer(*raw).body, why), why);
  auto none = parse_ingest_body(ingest_format::events, "bad\n", "", now_ms, x);
  REQUIRE(none);
  CHECK(ingest_answer(*none).status == 400);
  CHECK(ingest_answer(*none).error.find("line 1: not JSON") != std::string::npos);
}

TEST_CASE("seeded mutations of every format: no crash, a bounded heap, the "
          "good lines around a bad one kept") {
  auto iterations = test::fuzz_iterations(5000);
  local_ingest_config x;
  x.max_body_bytes = 64 * 1024;
  // What a request may make the parse hold at its peak: the decode budget
  // (32 times the body limit) and one line's JSON tree.
  const int64_t heap_bound = 40 * x.max_body_bytes;
  std::mt19937_64 rng(20261207);
  for (auto& ff : fuzz_formats) {
    CAPTURE(std::string(to_string(ff.format)));
    auto [first, last] = guard_records(ff.format);
    size_t kept = 0, refused = 0, whole_refusals = 0;
    int64_t peak = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < iterations; ++i) {
      auto middle = test::mutate(ff.seed, ff.alphabet, rng);
      auto body = ff.before + "\n" + middle + "\n" + ff.after + "\n";
      auto before = test::heap_reset_peak();
      {
        auto b = parse_ingest_body(ff.format, body, "", now_ms, x);
        if (!b) {
          // Only a limit refuses a whole body; these are far below them.
          ++whole_refusals;
          continue;
        }
        REQUIRE(b->errors.size() <= b->bad_lines);
        auto [got_first, got_last] = ends(*b);
        REQUIRE(got_first == first);
        REQUIRE(got_last == last);
        kept += b->records();
        refused += b->bad_lines;
        auto rep = ingest_answer(*b);
        REQUIRE((rep.status == 204 || rep.status == 200));
      }
      peak = std::max(peak, test::heap_peak() - before);
      REQUIRE(peak <= heap_bound);
    }
    auto took = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                              - t0)
                  .count();
    MESSAGE(std::string(to_string(ff.format)) << ": " << iterations << " mutated bodies in "
                                 << took << " s; records kept " << kept
                                 << ", lines refused " << refused
                                 << ", heap peak " << peak << " bytes (bound "
                                 << heap_bound << ")");
    CHECK(whole_refusals == 0);
    CHECK(refused > 0);
  }
}

TEST_CASE("a body at the size limit is taken or refused whole, its heap "
          "bounded by that limit") {
  local_ingest_config x;
  x.max_body_bytes = 256 * 1024;
  x.max_lines = 1'000'000;
  const int64_t heap_bound = 40 * x.max_body_bytes;
  auto fill = [&](auto line) {
    std::string out;
    for (int i = 0;; ++i) {
      auto next = line(i) + "\n";
      if (out.size() + next.size() > static_cast<size_t>(x.max_body_bytes))
        return out;
      out += next;
    }
  };
  // Lines as Telegraf and exporters write them are taken whole at the limit.
  std::pair<ingest_format, std::string> taken[] = {
    {ingest_format::influx, fill([](int i) {
       return "cpu,host=dev-" + std::to_string(i % 7)
              + ",cpu=cpu" + std::to_string(i % 4)
              + " usage_user=0.52,usage_system=0.1 "
              + std::to_string(1'700'000'000'000'000'000 + i);
     })},
    {ingest_format::prom, fill([](int i) {
       return "node_cpu_seconds_total{cpu=\"" + std::to_string(i)
              + "\",mode=\"idle\"} 12345.67";
     })},
  };
  for (auto& [f, body] : taken) {
    auto b = parse_ingest_body(f, body, "", now_ms, x);
    REQUIRE_MESSAGE(b, render(b.error()));
    MESSAGE(std::string(to_string(f)) << ": body " << body.size()
                                      << " bytes of typical lines, "
                                      << b->records() << " records taken");
    CHECK(b->bad_lines == 0);
  }
  std::pair<ingest_format, std::string> bodies[] = {
    {ingest_format::influx,
     fill([](int i) { return "m,t=" + std::to_string(i) + " a=1,b=2,c=3"; })},
    {ingest_format::prom,
     fill([](int i) { return "m{a=\"" + std::to_string(i) + "\"} 1"; })},
    {ingest_format::logs,
     fill([](int i) {
       return "{\"line\":\"\",\"labels\":{\"a\":\"" + std::to_string(i)
              + "\"}}";
     })},
    {ingest_format::events,
     fill([](int) { return std::string("{\"kind\":\"k\",\"message\":\"\"}"); })},
    // One line of deep and wide JSON: the reader's tree, then refused.
    {ingest_format::logs,
     "{\"line\":\"x\",\"labels\":[" + std::string(60'000, '[')
       + std::string(60'000, ']') + "]}\n"},
    {ingest_format::logs,
     "{\"line\":\"x\",\"labels\":[0"
       + [] {
           std::string s;
           for (int i = 0; i < 30'000; ++i)
             s += ",0";
           return s;
         }()
       + "]}\n"},
  };
  for (auto& [f, body] : bodies) {
    CAPTURE(std::string(to_string(f)));
    auto before = test::heap_reset_peak();
    size_t records = 0;
    std::string refused;
    {
      auto b = parse_ingest_body(f, body, "", now_ms, x);
      if (b)
        records = b->records();
      else
        refused = render(b.error());
    }
    auto grew = test::heap_peak() - before;
    MESSAGE(std::string(to_string(f))
            << ": body " << body.size() << " bytes, " << records
            << " records, heap peak +" << grew << " " << refused);
    CHECK(grew <= heap_bound);
  }
}

TEST_CASE("every format over TCP and the Unix socket lands in SQLite") {
  node_fixture f;
  sqlite_store_config scfg;
  scfg.path = f.dir.file("fleetd.db");
  scfg.clock = f.clock;
  auto opened = sqlite_store::open(scfg);
  REQUIRE(opened);
  auto st = f.sys->spawn<caf::detached>(
    storage, std::make_shared<sqlite_store>(std::move(*opened)));
  auto cfg = f.config(st);
  cfg.max_body_bytes = 4096;
  cfg.max_pending_bytes = 8192;
  cfg.max_lines = 100;
  auto ingest = spawn_local_ingest(*f.sys, cfg);
  REQUIRE_MESSAGE(ingest, render(ingest.error()));
  auto port = static_cast<uint16_t>(f.stats(*ingest)["port"]);
  REQUIRE(port > 0);
  auto tcp = [&] { return connect_tcp(port); };
  auto unix_socket = [&] { return connect_unix(cfg.socket); };
  for (auto [name, connect] :
       {std::pair<std::string, std::function<int()>>{"tcp", tcp},
        {"unix", unix_socket}}) {
    CAPTURE(name);
    auto a = post(connect(), "/write?precision=ms",
                  "cpu,via=" + name + " usage=0.5 1700000000001\n");
    CHECK(a.status == 204);
    a = post(connect(), "/metrics/import",
             "# TYPE temp gauge\ntemp{via=\"" + name + "\"} 21.5\n");
    CHECK(a.status == 204);
    a = post(connect(), "/logs",
             "{\"line\":\"hello " + name
               + "\",\"timestamp\":\"2023-11-14T22:13:20Z\","
                 "\"labels\":{\"app\":\"web\"}}\n");
    CHECK(a.status == 204);
    a = post(connect(), "/events",
             "{\"kind\":\"deploy\",\"message\":\"over " + name + "\"}\n");
    CHECK(a.status == 204);
  }
  std::string many_events;
  for (int i = 0; i < 90; ++i)
    many_events += "{\"kind\":\"bulk\",\"message\":\"" + std::to_string(i)
                   + "\"}\n";
  CHECK(post(tcp(), "/events", many_events).status == 204);
  auto metrics = fetch(*f.sys, st, "metrics");
  REQUIRE(metrics.samples.size() == 4);
  CHECK(metrics.samples[0].name == "cpu_usage");
  CHECK(metrics.samples[0].labels.at("via") == "tcp");
  CHECK(metrics.samples[0].timestamp_ms == 1'700'000'000'001);
  CHECK(metrics.samples[1].name == "temp");
  CHECK(metrics.samples[1].timestamp_ms == now_ms);
  CHECK(metrics.samples[3].labels.at("via") == "unix");
  auto logs = fetch(*f.sys, st, "logs");
  REQUIRE(logs.logs.size() == 2);
  CHECK(logs.logs[0].line == "hello tcp");
  CHECK(logs.logs[0].timestamp_ns == 1'700'000'000'000'000'000);
  CHECK(logs.logs[1].line == "hello unix");
  CHECK(logs.logs[1].labels == label_map{{"app", "web"}});
  auto events = fetch(*f.sys, st, "events");
  std::vector<std::string> kinds;
  for (auto& e : events.events)
    if (e.kind == "app.deploy")
      kinds.push_back(e.message);
  CHECK(kinds == std::vector<std::string>{"over tcp", "over unix"});
  CHECK(std::count_if(events.events.begin(), events.events.end(),
                      [](auto& e) { return e.kind == "app.bulk"; })
        == 90);

  SUBCASE("a mixed body keeps its good lines and names its bad ones") {
    auto a = post(tcp(), "/logs",
                  "{\"line\":\"one\"}\n{\"line\":1}\n{\"line\":\"three\"}\n"
                  "not json\n{\"line\":\"five\"}\n");
    CHECK_MESSAGE(a.status == 200, a.head << a.body);
    CHECK(a.body.find("\"stored\":3,\"bad_lines\":2") != std::string::npos);
    CHECK(a.body.find("{\"line\":2,\"reason\":\"'line' is not a string\"}")
          != std::string::npos);
    CHECK(a.body.find("{\"line\":4,\"reason\":\"not JSON") != std::string::npos);
    auto after = fetch(*f.sys, st, "logs");
    REQUIRE(after.logs.size() == 5);
    CHECK(after.logs[2].line == "one");
    CHECK(after.logs[3].line == "three");
    CHECK(after.logs[4].line == "five");
    a = post(unix_socket(), "/write", "bad line\n");
    CHECK(a.status == 400);
    CHECK(a.head.find("X-Fleetd-Error: bad_lines: 1 bad line(s), none stored")
          != std::string::npos);
    auto counters = f.stats(*ingest);
    CHECK(counters["bad_lines_logs"] == 2);
    CHECK(counters["bad_lines_write"] == 1);
    CHECK(counters["records_logs"] == 5);
    CHECK(counters["requests_write"] == 3);
  }
  SUBCASE("an oversized body, a long request, a wrong path are refused") {
    auto a = post(tcp(), "/logs",
                  "{\"line\":\"" + std::string(5000, 'x') + "\"}\n");
    CHECK(a.status == 413);
    std::string many;
    for (int i = 0; i < 200; ++i)
      many += "m v=1\n";
    a = post(tcp(), "/write", many);
    CHECK(a.status == 413);
    CHECK(a.head.find("more than 100 lines") != std::string::npos);
    a = post(unix_socket(), "/nowhere", "x");
    CHECK(a.status == 404);
    CHECK(fetch(*f.sys, st, "logs").logs.size() == 2);
  }
  caf::anon_send_exit(*ingest, caf::exit_reason::user_shutdown);
  CHECK(test::eventually([&] { return ::access(cfg.socket.c_str(), F_OK) != 0; },
                         5s));
}

TEST_CASE("a flood while storage is held is answered 429, then served") {
  node_fixture f;
  auto st = f.sys->spawn(holding_storage);
  auto cfg = f.config(st);
  cfg.socket.clear();
  cfg.max_pending_requests = 2;
  cfg.max_lines = 50;
  auto ingest = spawn_local_ingest(*f.sys, cfg);
  REQUIRE_MESSAGE(ingest, render(ingest.error()));
  auto port = static_cast<uint16_t>(f.stats(*ingest)["port"]);
  std::vector<std::future<answer>> waiting;
  for (int i = 0; i < 2; ++i)
    waiting.push_back(std::async(std::launch::async, [port, i] {
      return post(connect_tcp(port), "/write",
                  "held v=" + std::to_string(i) + "\n");
    }));
  REQUIRE(test::eventually(
    [&] { return f.stats(*ingest)["pending_requests"] == 2; }, 10s));
  for (int i = 0; i < 20; ++i) {
    auto a = post(connect_tcp(port), "/write", "flood v=1\n");
    CHECK(a.status == 429);
    CHECK(a.head.find("Retry-After: 1") != std::string::npos);
  }
  CHECK(f.stats(*ingest)["refused_busy"] == 20);
  caf::anon_send(st, event_atom::value, std::string("release"), std::string());
  for (auto& w : waiting)
    CHECK(w.get().status == 204);
  CHECK(test::eventually(
    [&] { return f.stats(*ingest)["pending_requests"] == 0; }, 10s));
  // Room again: the next one waits for storage, not refused.
  auto later = std::async(std::launch::async, [port] {
    return post(connect_tcp(port), "/write", "later v=1\n");
  });
  REQUIRE(test::eventually(
    [&] { return f.stats(*ingest)["pending_requests"] == 1; }, 10s));
  caf::anon_send(st, event_atom::value, std::string("release"), std::string());
  CHECK(later.get().status == 204);
  caf::anon_send_exit(*ingest, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(st, caf::exit_reason::user_shutdown);
}
