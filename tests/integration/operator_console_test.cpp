// The web console for operators (console.http-listen) on a real cloud with
// real certificates: the operators' CA signs the console port's and the
// listener's clients, the devices' CA the ingest port's. An operator
// certificate sees every org with the numbers the node's JSON holds; a
// device's, an expired, a foreign or no certificate is refused and counted;
// the org token path on the ingest port answers as before.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <map>
#include <string>
#include <vector>

#include "messages/error.hpp"
#include "messages/json_reader.hpp"
#include "messages/prom_text.hpp"
#include "runtime/http_client.hpp"
#include "json_checks.hpp"
#include "support.hpp"
#include "test_pki.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

// A cloud whose console port and operator listener trust the operators' CA
// (ops/) and whose ingest port asks for device certificates (dev/).
struct operator_cloud {
  temp_dir tmp;
  test_pki ops = make_test_pki(tmp.path() + "/ops");
  test_pki dev = make_test_pki(tmp.path() + "/dev");
  std::string dir = tmp.path() + "/cloud";
  process node{program("fleetd-cloud"),
               {"--node.data-dir=" + dir, "--ingest.port=0",
                "--console.port=0",
                "--ingest.tls-cert=" + dev.file("server.pem"),
                "--ingest.tls-key=" + dev.file("server.key"),
                "--ingest.tls-client-ca=" + dev.file("ca.pem"),
                "--console.tls-cert=" + ops.file("server.pem"),
                "--console.tls-key=" + ops.file("server.key"),
                "--console.tls-ca=" + ops.file("ca.pem"),
                "--console.http-listen=127.0.0.1:0"},
               tmp.path() + "/cloud.log"};
  uint16_t ingest = port_from(dir + "/ingest.port");
  uint16_t console = port_from(dir + "/console.port");
  uint16_t web = port_from(dir + "/console-http.port");

  // fleetctl with the operator's certificate, as on any console port.
  std::vector<std::string> with_cert(std::vector<std::string> args) const {
    args.insert(args.begin(), {"--cert=" + ops.file("client.pem"),
                               "--key=" + ops.file("client.key"),
                               "--ca=" + ops.file("ca.pem")});
    return args;
  }

  std::string secret(std::vector<std::string> args) {
    return fleetctl_secret(tmp.path(), console, with_cert(std::move(args)));
  }

  json_node ctl_json(std::vector<std::string> args) {
    auto [rc, out] = fleetctl(tmp.path(), console, with_cert(std::move(args)));
    REQUIRE_MESSAGE(rc == 0, read_file(tmp.path() + "/ctl.err"));
    return parsed(out);
  }

  // A counter of `actor` in `fleetctl status --json`; -1 when absent.
  int64_t counter(const std::string& actor, const std::string& name) {
    auto st = ctl_json({"status", "--json"});
    for (auto& a : member(st, "actors").items)
      if (member(a, "name").text == actor) {
        auto* c = json_member(member(a, "counters"), name);
        return c ? std::stoll(c->text) : -1;
      }
    return -1;
  }

  // A device's sync over the ingest port with the device certificate.
  void sync(const std::string& key, const std::string& device, int64_t seq) {
    http_client c{"127.0.0.1", ingest, 10s, 1 << 20};
    REQUIRE(!c.use_tls(dev.client(true)));
    auto res = c.post("/v1/sync", one_point_sync(device, seq),
                      {{"Content-Type", "application/x-protobuf"},
                       {"Content-Encoding", "zstd"},
                       {"Authorization", "Bearer " + key}});
    REQUIRE_MESSAGE(res, render(res.error()));
    REQUIRE_MESSAGE(res->status == 200, res->error);
  }
};

// GET `target` on `port` over HTTPS trusting the server `ca` signed and
// presenting `cert` (of `who`: its .pem and .key) unless empty; the error
// when the connection was refused.
caf::expected<http_response> get(uint16_t port, const test_pki& ca,
                                 const test_pki& who, const std::string& cert,
                                 const std::string& target,
                                 const std::string& token = "") {
  http_client c{"127.0.0.1", port, 10s, 16 << 20};
  tls_files files{"", "", ca.file("ca.pem")};
  if (!cert.empty())
    files = {who.file(cert + ".pem"), who.file(cert + ".key"),
             ca.file("ca.pem")};
  if (auto err = c.use_tls(files))
    return err;
  std::vector<std::pair<std::string, std::string>> headers;
  if (!token.empty())
    headers.emplace_back("Authorization", "Bearer " + token);
  return c.get(target, headers);
}

// The answer of an operator's GET, which must succeed.
http_response op_get(const operator_cloud& c, const std::string& target) {
  auto r = get(c.web, c.ops, c.ops, "client", target);
  if (!r)
    FAIL(render(r.error()));
  return *r;
}

} // namespace

TEST_CASE("the operator certificate opens the web console on every org; "
          "device, expired, foreign or no certificates are refused and "
          "counted; the org token works as before") {
  operator_cloud c;
  REQUIRE_MESSAGE(c.web != 0, read_file(c.tmp.path() + "/cloud.log"));
  REQUIRE(c.ingest != 0);
  REQUIRE(c.console != 0);
  for (auto org : {"acme", "zenith"})
    REQUIRE(fleetctl(c.tmp.path(), c.console,
                     c.with_cert({"org", "create", org}))
              .first
            == 0);
  auto acme_key = c.secret({"device", "add", "--org", "acme", "a1"});
  auto zenith_key = c.secret({"device", "add", "--org", "zenith", "z1"});
  auto token = c.secret({"token", "create", "--org", "acme"});
  for (int64_t seq = 1; seq <= 3; ++seq)
    c.sync(acme_key, "a1", seq);
  c.sync(zenith_key, "z1", 1);

  // The page and its files, the node's actors and /metrics.
  auto page = op_get(c, "/console");
  CHECK(page.status == 200);
  CHECK(page.content_type.rfind("text/html", 0) == 0);
  CHECK(op_get(c, "/console/console.js").status == 200);
  auto metrics = op_get(c, "/metrics");
  CHECK(metrics.status == 200);
  CHECK(parse_prom_text(metrics.body, 0).bad_lines == 0);
  // Only the console's paths: not the ingest port's.
  CHECK(op_get(c, "/healthz").status == 404);
  CHECK(op_get(c, "/v1/query?series=x").status == 404);

  // Every org, each row naming its org; the numbers are the node's
  // (fleetctl devices --json).
  auto devices = c.ctl_json({"devices", "--json"});
  std::map<std::string, int64_t> points;
  for (auto& d : devices.items)
    points[member(d, "device_id").text] += num(d, "points_received");
  REQUIRE(points.size() == 2);
  auto all = op_get(c, "/console/api/overview");
  REQUIRE(all.status == 200);
  auto every = parsed(all.body);
  CHECK(member(every, "org").text.empty());
  CHECK(num(every, "devices_total") == 2);
  for (auto& d : member(every, "devices").items) {
    auto id = member(d, "org").text + "/" + member(d, "device").text;
    CAPTURE(id);
    REQUIRE(points.count(id) == 1);
    CHECK(num(d, "points_received") == points[id]);
  }
  // org= selects one org: the answer its token gets on the ingest port.
  auto acme = parsed(op_get(c, "/console/api/overview?org=acme").body);
  auto by_token = get(c.ingest, c.dev, c.dev, "client", "/console/api/overview",
                      token);
  REQUIRE(by_token);
  REQUIRE(by_token->status == 200);
  auto tok = parsed(by_token->body);
  CHECK(member(acme, "org").text == "acme");
  CHECK(num(acme, "devices_total") == 1);
  auto& mine = member(acme, "devices").items;
  auto& theirs = member(tok, "devices").items;
  REQUIRE(mine.size() == 1);
  REQUIRE(theirs.size() == 1);
  CHECK(json_member(mine[0], "org") == nullptr);
  for (auto field : {"device", "tier", "points_received", "batches_received",
                     "streams", "last_seen_ms", "duplicates", "gaps"})
    CHECK_MESSAGE(member(mine[0], field).text == member(theirs[0], field).text,
                  field);
  CHECK(num(mine[0], "points_received") == points["acme/a1"]);
  // One device's delivery: the same as by the token.
  auto del = parsed(
    op_get(c, "/console/api/delivery?org=acme&device=a1&hours=24").body);
  auto del_tok = get(c.ingest, c.dev, c.dev, "client",
                     "/console/api/delivery?device=a1&hours=24", token);
  REQUIRE(del_tok);
  REQUIRE(del_tok->status == 200);
  CHECK(num(del, "received") == num(parsed(del_tok->body), "received"));
  CHECK(num(del, "received") > 0);
  // The node's actors: those fleetctl status lists.
  auto actors = parsed(op_get(c, "/console/api/actors").body);
  auto st = c.ctl_json({"status", "--json"});
  CHECK(member(actors, "node_id").text == member(st, "node_id").text);
  std::vector<std::string> a, b;
  for (auto& x : member(actors, "actors").items)
    a.push_back(member(x, "name").text);
  for (auto& x : member(st, "actors").items)
    b.push_back(member(x, "name").text);
  CHECK(a == b);
  CHECK(std::find(b.begin(), b.end(), "console_http") != b.end());

  // Hostile or incomplete operator requests: 400, not another answer.
  CHECK(op_get(c, "/console/api/delivery?device=a1").status == 400);
  CHECK(op_get(c, "/console/api/overview?org=../x").status == 400);
  CHECK(op_get(c, "/console/api/overview?org=acme&org=zenith").status == 400);
  CHECK(op_get(c, "/console/nope").status == 404);
  // A token may not choose an org.
  auto chose = get(c.ingest, c.dev, c.dev, "client",
                   "/console/api/overview?org=zenith", token);
  REQUIRE(chose);
  CHECK(chose->status == 400);

  // Refusals: no certificate (403), then at the handshake a device's,
  // an expired and a foreign CA's certificate.
  auto none = get(c.web, c.ops, c.ops, "", "/console/api/overview");
  REQUIRE(none);
  CHECK(none->status == 403);
  CHECK(none->error.rfind("client_certificate_required", 0) == 0);
  auto device_cert = get(c.web, c.ops, c.dev, "client",
                         "/console/api/overview");
  CHECK_MESSAGE(!device_cert, (device_cert ? device_cert->body : std::string{}));
  auto expired = get(c.web, c.ops, c.ops, "expired", "/console/api/overview");
  CHECK_MESSAGE(!expired, (expired ? expired->body : std::string{}));
  auto foreign = get(c.web, c.ops, c.ops, "stranger", "/console/api/overview");
  CHECK_MESSAGE(!foreign, (foreign ? foreign->body : std::string{}));
  // The device certificate is still good where it belongs.
  auto on_ingest = get(c.ingest, c.dev, c.dev, "client", "/healthz");
  REQUIRE(on_ingest);
  CHECK(on_ingest->status == 200);
  // The operator's certificate does not open the ingest port (devices' CA).
  CHECK(!static_cast<bool>(get(c.ingest, c.dev, c.ops, "client", "/healthz")));

  CHECK(c.counter("console_http", "client_cert_missing") == 1);
  CHECK(c.counter("console_http", "tls_handshake_failures") == 3);
  CHECK(c.counter("web_console", "operator_requests") == 13);
  auto log = read_file(c.tmp.path() + "/cloud.log");
  CHECK(log.find("web console for operators on https://127.0.0.1:"
                 + std::to_string(c.web))
        != std::string::npos);
  c.node.signal(SIGTERM);
  CHECK(c.node.wait(15s) == 0);
}
