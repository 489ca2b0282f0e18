// The cloud link's failover between endpoints: real HTTP servers (ingest
// endpoints in front of one real ingest, like two nodes on one store), a
// port where nothing listens, and the link actor as the sync actors use it.
#include "edge/cloud_link.hpp"

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "ask.hpp"
#include "cloud/ingest.hpp"
#include "cloud_fixture.hpp"
#include "helpers.hpp"
#include "runtime/http_server.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"
#include "test_pki.hpp"

using namespace fleetd;
using test::free_port;
using namespace std::chrono_literals;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;

constexpr const char* device_id = "link-dev";

/// A batch of `seq` as a sync actor hands it to the link.
std::string batch_body(int64_t seq) {
  encode_settings es;
  es.device_id = device_id;
  es.sequence = seq;
  es.now_ms = clock_start_ms;
  metric_samples xs(1);
  xs[0].name = "cpu";
  xs[0].timestamp_ms = clock_start_ms + seq;
  xs[0].value = static_cast<double>(seq);
  return encode_metrics_request(es, xs);
}

/// Batch `seq` of each stream, as three sync actors hand them over at once.
std::vector<std::string> round_bodies(int64_t seq) {
  encode_settings es;
  es.device_id = device_id;
  es.sequence = seq;
  es.now_ms = clock_start_ms;
  log_lines lines;
  for (int64_t i = 0; i < 4; ++i)
    lines.push_back({{{"unit", "a"}}, clock_start_ms * 1000000 + i, "line"});
  return {batch_body(seq), encode_logs_request(es, lines),
          encode_events_request(es, {{clock_start_ms, "lifecycle", "up", {}}})};
}

// -- a door: one node's HTTP endpoint in front of the shared ingest ----------

/// What reached one door; `answer` (0: none) makes it answer that status
/// itself, as a node that refuses (4xx) or cannot serve (5xx) would.
struct door_log {
  std::atomic<int> syncs{0};
  std::atomic<int> enrolls{0};
  std::atomic<int> answer{0};
};

struct door_state {
  static inline const char* name = "door";
};

// A node's own answer: a SyncResponse, or for 502 a proxy's error page.
http_reply own_answer(uint16_t status) {
  if (status == 502)
    return text_reply(502, "bad_gateway", "no upstream");
  sync_ack nack;
  nack.error_code = "answered_" + std::to_string(status);
  nack.error_message = "the test's door answered";
  return sync_answer(status, nack);
}

ingest_actor::behavior_type door(ingest_actor::stateful_pointer<door_state> self,
                                 ingest_actor real,
                                 std::shared_ptr<door_log> log) {
  return {
    [self, real, log](sync_atom, sync_envelope& env) -> caf::result<http_reply> {
      ++log->syncs;
      if (auto status = log->answer.load())
        return own_answer(static_cast<uint16_t>(status));
      return self->delegate(real, sync_atom::value, std::move(env));
    },
    [self, real, log](enroll_atom, sync_envelope& env) {
      ++log->enrolls;
      return self->delegate(real, enroll_atom::value, std::move(env));
    },
    [](health_atom) { return std::string{"ok"}; },
    [](stats_atom) {
      actor_stats out;
      out.name = "door";
      return out;
    },
  };
}

// -- the fixture --------------------------------------------------------------

struct link_fixture : test::cloud_fixture {
  tenancy_actor tenants;
  ingest_actor real;
  std::vector<std::unique_ptr<ingest_endpoint>> doors;

  explicit link_fixture(bool anonymous = true)
    : cloud_fixture("fleetd-link", clock_start_ms) {
    tenants = spawn_tenancy(dir.file("tenancy.db"));
    ingest_config icfg;
    icfg.store = spawn_cloud_store(dir.file("cloud.db"));
    icfg.tenancy = tenants;
    icfg.anonymous = anonymous;
    real = keep(sys->spawn(ingest, icfg));
  }

  ~link_fixture() {
    for (auto& d : doors)
      d->stop();
  }

  /// Opens a door on `port` (0: any), over HTTPS when `tls` names a
  /// certificate; returns the port it bound.
  uint16_t open_door(const std::shared_ptr<door_log>& log, uint16_t port = 0,
                     tls_files tls = {}, http_limits limits = {}) {
    auto front = keep(sys->spawn(door, real, log));
    doors.push_back(std::make_unique<ingest_endpoint>(*sys, front, limits));
    ingest_endpoint_config cfg;
    cfg.port = port;
    cfg.tls = std::move(tls);
    cfg.insecure = cfg.tls.cert.empty();
    auto bound = doors.back()->start(cfg);
    REQUIRE_MESSAGE(bound, render(bound.error()));
    return *bound;
  }

  /// A link to 127.0.0.1 at `ports` over plain HTTP, unless `cfg` already
  /// names its endpoints (and TLS).
  cloud_link_actor spawn_link(const std::vector<uint16_t>& ports,
                              cloud_link_config cfg = {}) {
    if (cfg.endpoints.empty()) {
      for (auto port : ports)
        cfg.endpoints += (cfg.endpoints.empty() ? "" : ",")
                         + std::string("127.0.0.1:") + std::to_string(port);
      cfg.insecure = true;
    }
    cfg.timeout = 5s;
    cfg.device_id = device_id;
    if (cfg.key_file.empty())
      cfg.key_file = dir.file("device.key");
    return keep(sys->spawn<caf::detached>(cloud_link, cfg));
  }

  /// One request with batch `seq`; the link's failure as an ack of status 0.
  sync_ack send(const cloud_link_actor& link, int64_t seq) {
    sync_ack out;
    (*self)
      ->request(link, 20s, sync_atom::value, batch_body(seq))
      .receive([&](sync_ack& x) { out = std::move(x); },
               [&](caf::error& err) { out.error_message = render(err); });
    return out;
  }

  /// A link to a stand-in node, its server started here on any port.
  cloud_link_actor link_to(http_server& node, cloud_link_config cfg) {
    auto port = node.start("127.0.0.1", 0);
    REQUIRE(port);
    return spawn_link({*port}, std::move(cfg));
  }

  /// The bodies asked for all at once, then every answer (status 0 with
  /// the error for a link failure).
  std::vector<sync_ack> send_all(const cloud_link_actor& link,
                                 const std::vector<std::string>& bodies) {
    auto ask = [&](const std::string& body) {
      return (*self)->request(link, 20s, sync_atom::value, body);
    };
    std::vector<decltype(ask(bodies[0]))> handles;
    for (auto& body : bodies)
      handles.push_back(ask(body));
    std::vector<sync_ack> out(bodies.size());
    for (size_t i = 0; i < handles.size(); ++i)
      handles[i].receive(
        [&](sync_ack& x) { out[i] = std::move(x); },
        [&](caf::error& err) { out[i].error_message = render(err); });
    return out;
  }

  actor_stats stats(const cloud_link_actor& link) {
    return test::ask<actor_stats>(*self, link, 5s, stats_atom::value);
  }

  std::string url(uint16_t port) {
    return "http://127.0.0.1:" + std::to_string(port);
  }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos;
       pos = text.find(what, pos + 1))
    ++n;
  return n;
}

/// A node of sync version 2 (404 to POST /v3/sync and newer), 3 (404 to
/// POST /v4/sync and newer) or 4 (404 to POST /v5/sync): it answers each
/// item of a bundle it takes.
struct old_bundle_node {
  std::atomic<int> refused{0};
  std::atomic<int> bundles{0};
  std::atomic<int> whole{0};
  std::shared_ptr<http_server> server;

  explicit old_bundle_node(int version) {
    server = std::make_shared<http_server>(
      http_limits{}, [this, version](http_request req,
                                     http_server::respond_fn done) {
        bool v3 = version >= 3 && req.target == "/v3/sync";
        bool v4 = version >= 4 && req.target == "/v4/sync";
        if (req.target != "/v2/sync" && !v3 && !v4) {
          ++refused;
          done(text_reply(404, "not_found", "no such endpoint"));
          return;
        }
        ++bundles;
        whole += v3 || v4;
        auto items = decode_bundle_body(req.body, v3 || v4, 1 << 20,
                                        coding_of_path(req.target));
        std::vector<sync_ack> acks;
        for (auto& item : items ? *items : std::vector<bundle_item>{}) {
          auto batch = decode_request(item.request, item.zstd, 1 << 20);
          sync_ack ack;
          ack.success = static_cast<bool>(batch);
          ack.status = batch ? 200 : 400;
          ack.error_code = batch ? "" : "refused";
          ack.last_sequence_ack = batch ? batch->sequence : 0;
          acks.push_back(ack);
        }
        http_reply rep;
        rep.body = encode_bundle_response(acks);
        done(std::move(rep));
      });
  }

  ~old_bundle_node() {
    server->stop();
  }
};

/// Two rounds from a link at `link_version` to a node of `node_version`:
/// one 404, then every batch acked; the first round's bundle `whole`
/// (zstd as a whole) or not, the second (a drain: the clock stands still)
/// a batch a request, as queued.
void check_older_node(int node_version, int64_t link_version, int whole) {
  link_fixture f;
  old_bundle_node old{node_version};
  cloud_link_config cfg;
  cfg.coalesce_window = 60s;
  cfg.sync_version = link_version;
  cfg.clock = f.clock;
  auto link = f.link_to(*old.server, cfg);
  for (int64_t seq : {1, 2})
    for (auto& ack : f.send_all(link, round_bodies(seq)))
      CHECK(ack.last_sequence_ack == seq);
  CHECK(old.refused == 1);
  CHECK(old.whole == whole);
  CHECK(old.bundles == 1 + 3);
  CHECK(f.stats(link).counters["failures"] == 0);
}

/// A link at sync `version` (the default when 0) sends a round as one
/// request of exactly encode_bundle_body(round, level, `coding`), then the
/// batch `lone` of round 2 alone, as `coding` makes it; each acked, 4
/// batches synced. Returns the link for more.
cloud_link_actor check_round_coding(link_fixture& f,
                                    const std::shared_ptr<door_log>& log,
                                    int64_t version, bundle_coding coding,
                                    size_t lone) {
  cloud_link_config cfg;
  if (version > 0)
    cfg.sync_version = version;
  cfg.coalesce_window = 60s;
  cfg.clock = f.clock;
  auto link = f.spawn_link({f.open_door(log)}, cfg);
  for (auto& ack : f.send_all(link, round_bodies(1))) {
    CHECK(ack.status == 200);
    CHECK(ack.last_sequence_ack == 1);
  }
  CHECK(log->syncs == 3);
  // One request of exactly that body: no 404 and second try.
  auto round = round_bodies(1);
  size_t queued = 0;
  for (auto& b : round)
    queued += b.size();
  auto body = encode_bundle_body(round, bundle_zstd_level(queued), coding);
  REQUIRE(body.coded);
  auto st = f.stats(link);
  CHECK(st.counters["requests"] == 1);
  CHECK(st.counters["bytes_sent"] == static_cast<int64_t>(body.bytes.size()));
  // A drain: the lone batch goes at once, recoded as the coding says.
  auto batch = round_bodies(2)[lone];
  sync_ack ack;
  (*f.self)
    ->request(link, 20s, sync_atom::value, batch)
    .receive([&](sync_ack& x) { ack = std::move(x); },
             [&](caf::error& err) { FAIL(render(err)); });
  CHECK(ack.last_sequence_ack == 2);
  auto sent = f.stats(link).counters["bytes_sent"] - st.counters["bytes_sent"];
  CHECK(sent == static_cast<int64_t>(
                  encode_bundle_body({batch}, bundle_zstd_level(batch.size()),
                                     coding)
                    .bytes.size()));
  CHECK(log->syncs == 4);
  return link;
}

} // namespace

TEST_CASE("a refused connection fails over to the next endpoint, and the "
          "link stays there") {
  link_fixture f;
  auto good = std::make_shared<door_log>();
  auto dead = free_port();
  auto port = f.open_door(good);
  auto link = f.spawn_link({dead, port});
  auto first = f.send(link, 1);
  CHECK(first.status == 0);
  CHECK(first.error_message.find("unreachable") != std::string::npos);
  auto st = f.stats(link);
  CHECK(st.counters["failovers"] == 1);
  CHECK(st.counters["failures"] == 1);
  // The same batch again, as the sync actor resends it after its backoff.
  for (int64_t seq = 1; seq <= 3; ++seq) {
    auto ack = f.send(link, seq);
    CHECK(ack.status == 200);
    CHECK(ack.last_sequence_ack == seq);
  }
  st = f.stats(link);
  CHECK(st.counters["failovers"] == 1);
  CHECK(st.counters["failures"] == 1);
  CHECK(st.counters["connects"] == 1);
  CHECK(st.state == "connected to " + f.url(port));
  CHECK(good->syncs == 3);
}

TEST_CASE("a 4xx is an answer and moves nothing; a 5xx or a proxy's error "
          "page fails over, round-robin") {
  link_fixture f;
  auto a = std::make_shared<door_log>();
  auto b = std::make_shared<door_log>();
  auto pa = f.open_door(a);
  auto pb = f.open_door(b);
  auto link = f.spawn_link({pa, pb});
  for (int status : {401, 403, 409, 413, 429}) {
    CAPTURE(status);
    a->answer = status;
    auto ack = f.send(link, 1);
    CHECK(ack.status == status);
    CHECK(ack.error_code == "answered_" + std::to_string(status));
  }
  CHECK(a->syncs == 5);
  CHECK(f.stats(link).counters["failovers"] == 0);
  // The sync actor gets the node's 503 as it did before; the next request
  // goes to the other node.
  a->answer = 503;
  CHECK(f.send(link, 1).status == 503);
  CHECK(f.stats(link).counters["failovers"] == 1);
  CHECK(f.send(link, 1).status == 200);
  CHECK(b->syncs == 1);
  CHECK(a->syncs == 6);
  // An error page without a SyncResponse is a link failure, and wraps to a.
  b->answer = 502;
  CHECK(f.send(link, 2).status == 0);
  a->answer = 0;
  auto ack = f.send(link, 2);
  CHECK(ack.status == 200);
  CHECK(ack.last_sequence_ack == 2);
  auto st = f.stats(link);
  CHECK(st.counters["failovers"] == 2);
  CHECK(st.state == "connected to " + f.url(pa));
  CHECK(a->syncs == 7);
  CHECK(b->syncs == 2);
}

TEST_CASE("each endpoint is verified under its own host name; a TLS failure "
          "fails over") {
  link_fixture f;
  auto pki = test::make_test_pki(f.dir.file("pki"));
  auto a = std::make_shared<door_log>();
  auto b = std::make_shared<door_log>();
  // a shows a certificate for wrong.example only; b one for localhost.
  auto pa = f.open_door(a, 0, {pki.file("wrongname.pem"),
                               pki.file("wrongname.key"), ""});
  auto pb = f.open_door(b, 0, pki.server());
  cloud_link_config cfg;
  cfg.tls = pki.client();
  cfg.endpoints = "127.0.0.1:" + std::to_string(pa) + ",localhost:"
                  + std::to_string(pb);
  auto link = f.spawn_link({}, cfg);
  auto first = f.send(link, 1);
  CHECK(first.status == 0);
  CHECK(first.error_message.find("TLS handshake with 127.0.0.1") != std::string::npos);
  CHECK(f.send(link, 1).status == 200);
  auto st = f.stats(link);
  CHECK(st.counters["failovers"] == 1);
  CHECK(st.state == "connected to https://localhost:" + std::to_string(pb));
  CHECK(a->syncs == 0);
  CHECK(b->syncs == 1);
}

TEST_CASE("after a failover the link does not go back to an endpoint that "
          "returns, until the one it moved to fails; then it wraps") {
  link_fixture f;
  auto a = std::make_shared<door_log>();
  auto c = std::make_shared<door_log>();
  auto dead = free_port();
  auto pa = f.open_door(a);
  auto pc = f.open_door(c);
  auto link = f.spawn_link({dead, pa, pc});
  CHECK(f.send(link, 1).status == 0); // the dead port: on to a
  CHECK(f.send(link, 1).status == 200);
  f.doors[0]->stop();
  CHECK(f.send(link, 2).status == 0); // a is gone: on to c
  CHECK(f.send(link, 2).status == 200);
  // a is back on its port; the link stays with c.
  f.open_door(a, pa);
  for (int64_t seq = 3; seq <= 5; ++seq)
    CHECK(f.send(link, seq).status == 200);
  CHECK(a->syncs == 1);
  CHECK(c->syncs == 4);
  f.doors[1]->stop();
  CHECK(f.send(link, 6).status == 0); // c is gone: on to the dead port
  CHECK(f.send(link, 6).status == 0); // which wraps to a
  auto ack = f.send(link, 6);
  CHECK(ack.status == 200);
  CHECK(ack.last_sequence_ack == 6);
  CHECK(a->syncs == 2);
  CHECK(f.stats(link).counters["failovers"] == 4);
}

TEST_CASE("enrollment fails over when a node does not answer, not when the "
          "token is refused") {
  link_fixture f{false};
  tenancy_command cmd;
  cmd.op = "org-create";
  cmd.org = "acme";
  test::ask<tenancy_answer>(*f.self, f.tenants, 5s, tenancy_atom::value, cmd);
  cmd.op = "enroll-create";
  cmd.uses = 5;
  cmd.duration_ms = 3'600'000;
  auto token = test::ask<tenancy_answer>(*f.self, f.tenants, 5s,
                                         tenancy_atom::value, cmd)
                 .secret;
  REQUIRE(!token.empty());
  auto a = std::make_shared<door_log>();
  auto b = std::make_shared<door_log>();
  auto pa = f.open_door(a);
  auto pb = f.open_door(b);
  cloud_link_config bad;
  bad.enroll_token = "fdt_" + std::string(64, '0');
  bad.key_file = f.dir.file("refused.key");
  auto refused = f.spawn_link({pa, pb}, bad);
  auto no = f.send(refused, 1);
  CHECK(no.status == 0);
  CHECK(no.error_message.find("HTTP 401") != std::string::npos);
  CHECK(f.stats(refused).counters["failovers"] == 0);
  CHECK(a->enrolls == 1);
  CHECK(b->enrolls == 0);
  cloud_link_config good;
  good.enroll_token = token;
  auto link = f.spawn_link({free_port(), pb}, good);
  CHECK(f.send(link, 1).status == 0);
  auto ack = f.send(link, 1);
  CHECK(ack.status == 200);
  CHECK(ack.last_sequence_ack == 1);
  auto st = f.stats(link);
  CHECK(st.counters["failovers"] == 1);
  CHECK(st.counters["enrollments"] == 2);
  CHECK(b->enrolls == 1);
  CHECK(b->syncs == 1);
  CHECK(slurp(f.dir.file("device.key")).rfind("fdk_", 0) == 0);
}

TEST_CASE("each failover is one warning line, rate-limited, without the "
          "device's key") {
  link_fixture f;
  auto file = f.dir.file("fleetd.log");
  REQUIRE(!logger::init(log_level::info, file));
  auto clk = std::make_shared<manual_clock>(0);
  logger::set_rate_limit(clk, 10s);
  std::string key = "fdk_" + std::string(64, '7');
  std::ofstream(f.dir.file("device.key")) << key << "\n";
  auto d1 = free_port();
  auto d2 = free_port();
  auto link = f.spawn_link({d1, d2});
  for (int i = 0; i < 3; ++i)
    CHECK(f.send(link, 1).status == 0);
  clk->advance(10'000);
  CHECK(f.send(link, 1).status == 0);
  CHECK(f.stats(link).counters["failovers"] == 4);
  logger::init(log_level::info, "");
  logger::set_rate_limit(make_system_clock(), 10s);
  auto text = slurp(file);
  CAPTURE(text);
  CHECK(count_of(text, "cloud_link: ") == 2);
  CHECK(count_of(text, "cloud_link: failing over from " + f.url(d1) + " to "
                         + f.url(d2) + ": unreachable")
        == 1);
  CHECK(count_of(text, "cloud_link: failing over from " + f.url(d2) + " to "
                         + f.url(d1))
        == 1);
  CHECK(count_of(text, "(2 more like this suppressed)") == 1);
  CHECK(text.find(std::string(16, '7')) == std::string::npos);
}

TEST_CASE("cloud.endpoints is read strictly and stands instead of "
          "cloud.host and cloud.port") {
  cloud_link_config x;
  x.insecure = true;
  x.endpoints = "127.0.0.1:7480, localhost:7481,[::1]:7482";
  auto eps = endpoints_of(x);
  REQUIRE_MESSAGE(eps, render(eps.error()));
  REQUIRE(eps->size() == 3);
  CHECK((*eps)[1].host == "localhost");
  CHECK((*eps)[1].port == 7481);
  CHECK((*eps)[2].host == "::1");
  CHECK(!validate(x));
  auto refused = [&](std::string text, const std::string& why) {
    CAPTURE(text);
    x.endpoints = std::move(text);
    auto err = render(validate(x));
    CHECK(err.find("cloud.endpoints") != std::string::npos);
    CHECK(err.find(why) != std::string::npos);
  };
  refused("127.0.0.1", "expected host:port");
  refused("127.0.0.1:7480,", "expected host:port");
  refused("127.0.0.1:0", "port must be");
  refused("127.0.0.1:65536", "port must be");
  refused("127.0.0.1:99999999999999999999", "port must be");
  refused("127.0.0.1:+80", "port must be");
  refused(":7480", "bad host");
  refused("a b:7480", "bad host");
  refused("host\n:7480", "bad host");
  refused("::1:7480", "in brackets");
  refused("[::1:7480", "expected [v6-address]:port");
  refused("127.0.0.1:7480,127.0.0.1:7480", "listed twice");
  refused(std::string(300, 'a') + ":1", "bad host");
  std::string many;
  for (int i = 1; i <= 17; ++i)
    many += (i > 1 ? "," : "") + std::string("127.0.0.1:") + std::to_string(i);
  refused(many, "more than 16");
  x.endpoints = "127.0.0.1:7480,cloud.example:443";
  CHECK(render(validate(x)).find("cloud.insecure") != std::string::npos);
  // As options: either the list or the single endpoint.
  auto parse = [](std::vector<std::string> args) {
    cloud_link_config c;
    option_set opts("t", "t");
    declare(opts, c);
    return opts.parse(args);
  };
  CHECK(!parse({"--cloud.endpoints=a:1,b:2"}));
  CHECK(!parse({"--cloud.host=a", "--cloud.port=1"}));
  CHECK(!parse({"--cloud.endpoints=", "--cloud.host=a"}));
  for (auto other : {"--cloud.host=a", "--cloud.port=1"}) {
    auto err = render(parse({"--cloud.endpoints=a:1,b:2", other}));
    CHECK(err.find("cloud.endpoints") != std::string::npos);
    CHECK(err.find("not both") != std::string::npos);
  }
}

// -- health probes ----------------------------------------------------------------

namespace {

/// A node that answers every request with `response` and closes: what a
/// broken or hostile cloud (or a proxy in front of it) might send.
class canned_node {
public:
  explicit canned_node(std::string response)
    : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }

  ~canned_node() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }

  uint16_t port() const {
    return port_;
  }

private:
  void serve() {
    for (;;) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0)
        return;
      std::string got;
      char buf[1024];
      ssize_t n;
      while (got.find("\r\n\r\n") == std::string::npos
             && (n = ::read(c, buf, sizeof(buf))) > 0)
        got.append(buf, static_cast<size_t>(n));
      auto ignored = ::write(c, response_.data(), response_.size());
      (void) ignored;
      ::close(c);
    }
  }

  std::string response_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

sync_ack probe(link_fixture& f, const cloud_link_actor& link) {
  sync_ack out;
  (*f.self)
    ->request(link, 20s, health_atom::value)
    .receive([&](sync_ack& x) { out = std::move(x); },
             [&](caf::error& err) { out.error_message = render(err); });
  return out;
}

} // namespace

TEST_CASE("a health probe is GET /healthz: 200 is success, anything else "
          "is not; Retry-After is read bounded, garbage ignored") {
  link_fixture f;
  auto a = std::make_shared<door_log>();
  auto link = f.spawn_link({f.open_door(a)});
  auto ok = probe(f, link);
  CHECK(ok.success);
  CHECK(ok.status == 200);
  CHECK(a->syncs == 0); // no batch
  struct hint_case {
    const char* header;
    int64_t ms;
  };
  for (auto [header, ms] :
       {hint_case{"120", 120000}, hint_case{"99999999999999999999", 86400000},
        hint_case{"-5", 0}, hint_case{"garbage", 0},
        hint_case{"Wed, 21 Oct 2015 07:28:00 GMT", 0}}) {
    CAPTURE(header);
    canned_node node(std::string("HTTP/1.1 503 Service Unavailable\r\n")
                     + "Retry-After: " + header
                     + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    auto l = f.spawn_link({node.port()});
    auto busy = probe(f, l);
    CHECK_FALSE(busy.success);
    CHECK(busy.status == 503);
    CHECK(busy.retry_after_ms == ms);
    CHECK(f.stats(l).counters["health_probes_failed"] == 1);
  }
}

namespace {

/// A node older than POST /v2/sync: 404 there; POST /v1/sync acked by the
/// batch's sequence (only with its Content-Type, as that node demands).
struct old_node {
  std::atomic<int> v2{0};
  std::atomic<int> v1{0};
  std::shared_ptr<http_server> server;

  old_node() {
    server = std::make_shared<http_server>(
      http_limits{}, [this](http_request req, http_server::respond_fn done) {
        if (req.target != "/v1/sync") {
          v2 += req.target == "/v2/sync";
          done(text_reply(404, "not_found", "no such endpoint"));
          return;
        }
        ++v1;
        auto batch = decode_request(req.body, req.content_encoding == "zstd",
                                    1 << 20);
        sync_ack ack;
        ack.success = batch && is_protobuf_type(req.content_type);
        ack.last_sequence_ack = batch ? batch->sequence : 0;
        if (!ack.success)
          ack.error_code = "refused";
        done(sync_answer(ack.success ? 200 : 400, ack));
      });
  }

  ~old_node() {
    server->stop();
  }
};

} // namespace

TEST_CASE("batches that arrive together share one POST /v2/sync; each gets "
          "its own ack; a drain sends at once") {
  link_fixture f;
  auto log = std::make_shared<door_log>();
  auto port = f.open_door(log);
  cloud_link_config cfg;
  // Longer than any request's timeout: only the third batch, or a drain,
  // can end the wait in time.
  cfg.coalesce_window = 60s;
  // Version 2: the items as queued (version 3 compresses them as a whole).
  cfg.sync_version = 2;
  auto link = f.spawn_link({port}, cfg);
  // Three batches of three streams at once, as three sync actors send them.
  for (auto& ack : f.send_all(link, round_bodies(1))) {
    CHECK(ack.error_message.empty());
    CHECK(ack.status == 200);
    CHECK(ack.last_sequence_ack == 1);
  }
  auto st = f.stats(link);
  CHECK(st.counters["requests"] == 1);
  CHECK(st.counters["bundles"] == 1);
  CHECK(st.counters["batches"] == 3);
  CHECK(log->syncs == 3);
  // Version 2 sends the queued bytes as they are.
  CHECK(st.counters["bytes_sent"]
        == static_cast<int64_t>(encode_bundle(round_bodies(1)).size()));
  // Right after an exchange a lone batch goes at once, without the window.
  CHECK(f.send(link, 2).last_sequence_ack == 2);
  CHECK(f.stats(link).counters["requests"] == 2);
}

TEST_CASE("the quiet spell is measured on the injected clock: a lone batch "
          "within it goes at once, one after it waits for the others") {
  link_fixture f;
  auto log = std::make_shared<door_log>();
  auto port = f.open_door(log);
  cloud_link_config cfg;
  // Longer than any request's timeout: only the third batch, or a drain,
  // can end the wait in time.
  cfg.coalesce_window = 60s;
  cfg.clock = f.clock;
  auto link = f.spawn_link({port}, cfg);
  for (auto& ack : f.send_all(link, round_bodies(1)))
    CHECK(ack.last_sequence_ack == 1);
  // The clock stands still: a lone batch is part of a drain.
  f.clock->advance(coalesce_quiet_spell.count() - 1);
  CHECK(f.send(link, 2).last_sequence_ack == 2);
  CHECK(f.stats(link).counters["requests"] == 2);
  // A quiet spell passes on the clock, not in real time: each batch waits
  // for the next, and the three share one request.
  f.clock->advance(coalesce_quiet_spell.count());
  for (auto& ack : f.send_all(link, round_bodies(3)))
    CHECK(ack.last_sequence_ack == 3);
  auto st = f.stats(link);
  CHECK(st.counters["requests"] == 3);
  CHECK(st.counters["bundles"] == 2);
}

TEST_CASE("at sync version 3 a v2 node (404 to POST /v3/sync) gets the "
          "batches' own bytes in one POST /v2/sync, from then on") {
  // The first round: 404, then POST /v2/sync; the second a drain, a batch
  // a request, each as queued.
  check_older_node(2, 3, 0);
}

TEST_CASE("at sync version 3 a round of zstd batches is one POST /v3/sync, "
          "smaller than their own frames, each batch acked; a lone batch "
          "goes as queued") {
  link_fixture f;
  auto log = std::make_shared<door_log>();
  cloud_link_config cfg;
  cfg.sync_version = 3;
  cfg.coalesce_window = 60s;
  cfg.clock = f.clock;
  auto link = f.spawn_link({f.open_door(log)}, cfg);
  for (auto& ack : f.send_all(link, round_bodies(1))) {
    CHECK(ack.status == 200);
    CHECK(ack.last_sequence_ack == 1);
  }
  auto st = f.stats(link);
  CHECK(st.counters["requests"] == 1);
  CHECK(log->syncs == 3);
  auto sent = st.counters["bytes_sent"];
  CHECK(sent < static_cast<int64_t>(encode_bundle(round_bodies(1)).size()));
  // The clock stands still: a drain, one batch a request, its queued bytes
  // as they are (a resend is byte for byte the same).
  CHECK(f.send(link, 2).last_sequence_ack == 2);
  CHECK(f.stats(link).counters["bytes_sent"] - sent
        == static_cast<int64_t>(encode_bundle({batch_body(2)}).size()));
}

TEST_CASE("at sync version 5 (the default) a round goes as POST /v5/sync, "
          "a lone batch too; the cloud restores and acks each batch") {
  REQUIRE(cloud_link_config{}.sync_version == 5);
  link_fixture f;
  auto log = std::make_shared<door_log>();
  // The lone batch: metrics, which version 4 would send as queued.
  auto link = check_round_coding(f, log, 0, bundle_coding::log_lines, 0);
  CHECK(f.stats(link).counters["failures"] == 0);
}

TEST_CASE("at sync version 5 a v4 node (404 to POST /v5/sync) gets POST "
          "/v4/sync from then on, every batch acked") {
  // The first round: 404, then POST /v4/sync; in the drain the lone logs
  // batch goes as /v4/sync too (its timestamps as deltas), the rest as
  // queued.
  check_older_node(4, 5, 2);
}

TEST_CASE("at sync version 4 a round goes as POST /v4/sync, log timestamps "
          "as deltas, a lone logs batch too; the cloud restores and acks "
          "each batch") {
  link_fixture f;
  auto log = std::make_shared<door_log>();
  auto link = check_round_coding(f, log, 4, bundle_coding::log_times, 1);
  CHECK(f.send(link, 2).last_sequence_ack == 2);
  CHECK(log->syncs == 5);
  CHECK(f.stats(link).counters["failures"] == 0);
}

TEST_CASE("at sync version 4 a v3 node (404 to POST /v4/sync) gets POST "
          "/v3/sync from then on, every batch acked") {
  // The first round: 404, then POST /v3/sync; the second a drain, a batch
  // a request, each as queued.
  check_older_node(3, 4, 1);
}

TEST_CASE("with cloud.stream on, rounds go as frames of one sync stream: "
          "one connection, every batch acked, each round smaller than its "
          "POST /v4/sync") {
  link_fixture f;
  auto log = std::make_shared<door_log>();
  cloud_link_config cfg;
  cfg.coalesce_window = 60s;
  cfg.clock = f.clock;
  cfg.use_stream = true;
  auto link = f.spawn_link({f.open_door(log)}, cfg);
  int64_t v4_bytes = 0;
  for (int64_t seq = 1; seq <= 4; ++seq) {
    f.clock->advance(coalesce_quiet_spell.count());
    for (auto& ack : f.send_all(link, round_bodies(seq))) {
      CHECK(ack.status == 200);
      CHECK(ack.last_sequence_ack == seq);
    }
    auto round = round_bodies(seq);
    size_t queued = 0;
    for (auto& b : round)
      queued += b.size();
    v4_bytes += static_cast<int64_t>(
      encode_bundle_body(round, bundle_zstd_level(queued), bundle_coding::log_times).bytes.size());
  }
  CHECK(log->syncs == 12);
  auto st = f.stats(link);
  CHECK(st.counters["requests"] == 4);
  CHECK(st.counters["stream_frames"] == 4);
  CHECK(st.counters["connects"] == 1);
  CHECK(st.counters["failures"] == 0);
  CHECK(st.state.find("(sync stream)") != std::string::npos);
  INFO("stream " << st.counters["bytes_sent"] << " B, v4 " << v4_bytes);
  CHECK(st.counters["bytes_sent"] < v4_bytes);
}

TEST_CASE("with cloud.stream on, a node without streams (404 to the "
          "upgrade) gets HTTP requests from then on") {
  // The upgrade, POST /v5/sync and /v4/sync refused once each, then POST
  // /v3/sync.
  link_fixture f;
  old_bundle_node old{3};
  cloud_link_config cfg;
  cfg.coalesce_window = 60s;
  cfg.clock = f.clock;
  cfg.use_stream = true;
  auto link = f.link_to(*old.server, cfg);
  for (int64_t seq : {1, 2})
    for (auto& ack : f.send_all(link, round_bodies(seq)))
      CHECK(ack.last_sequence_ack == seq);
  CHECK(old.refused == 3);
  CHECK(f.stats(link).counters["stream_frames"] == 0);
  CHECK(f.stats(link).counters["failures"] == 0);
}

TEST_CASE("with cloud.stream on, a node whose streams are all taken (503 "
          "to the upgrade) gets HTTP requests, and the upgrade again only "
          "after stream_refused_pause") {
  link_fixture f;
  auto log = std::make_shared<door_log>();
  http_limits full;
  full.max_streams = 0;
  auto port = f.open_door(log, 0, {}, full);
  cloud_link_config cfg;
  cfg.coalesce_window = 60s;
  cfg.clock = f.clock;
  cfg.use_stream = true;
  auto link = f.spawn_link({port}, cfg);
  auto refused = [&] { return f.doors.back()->counters().streams_refused; };
  for (int64_t seq = 1; seq <= 3; ++seq) {
    f.clock->advance(coalesce_quiet_spell.count());
    for (auto& ack : f.send_all(link, round_bodies(seq)))
      CHECK(ack.last_sequence_ack == seq);
  }
  CHECK(refused() == 1);
  f.clock->advance(stream_refused_pause.count());
  for (auto& ack : f.send_all(link, round_bodies(4)))
    CHECK(ack.last_sequence_ack == 4);
  CHECK(refused() == 2);
  auto st = f.stats(link);
  CHECK(st.counters["stream_frames"] == 0);
  CHECK(st.counters["failures"] == 0);
  CHECK(log->syncs == 12);
}

TEST_CASE("cloud.stream auto: on for syncs every 30 s or faster with "
          "compressed batches") {
  CHECK(stream_wanted("auto", 10000, 3));
  CHECK(stream_wanted("auto", 30000, 1));
  CHECK(!stream_wanted("auto", 30001, 3));
  CHECK(!stream_wanted("auto", 10000, 0));
  CHECK(stream_wanted("true", 300000, 0));
  CHECK(!stream_wanted("false", 1000, 3));
}

TEST_CASE("a node older than POST /v2/sync (404) gets each batch as POST "
          "/v1/sync with its Content-Type, from then on") {
  link_fixture f;
  old_node old;
  cloud_link_config cfg;
  cfg.coalesce_window = 0s;
  auto link = f.link_to(*old.server, cfg);
  for (int64_t seq = 1; seq <= 3; ++seq) {
    auto ack = f.send(link, seq);
    CHECK(ack.status == 200);
    CHECK(ack.last_sequence_ack == seq);
  }
  CHECK(old.v2 == 1);
  CHECK(old.v1 == 3);
  auto st = f.stats(link);
  CHECK(st.counters["failures"] == 0);
  CHECK(st.counters["failovers"] == 0);
  // cloud.sync-version = 1 never asks for v2.
  old_node older;
  cfg.sync_version = 1;
  link = f.link_to(*older.server, cfg);
  CHECK(f.send(link, 1).last_sequence_ack == 1);
  CHECK(older.v2 == 0);
  CHECK(older.v1 == 1);
}
