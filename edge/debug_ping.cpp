#include "edge/debug_ping.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <vector>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/http_client.hpp"
#include "runtime/json.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"
#include "runtime/tls_probe.hpp"

namespace fleetd {

void declare(option_set& opts, ping_config& x) {
  using namespace std::chrono_literals;
  opts.add("debug.ping-count", x.count, 5, "round trips",
           "fleetd debug ping: round trips (GET /healthz) it measures for "
           "the min/median/max",
           1, 100);
  opts.add("debug.slow-rtt", x.slow_rtt, 500ms,
           "fleetd debug ping: a median round trip above this is a slow "
           "link (the verdict, and exit status 1)",
           1ms);
}

caf::error validate(const ping_config& x) {
  if (x.count < 1 || x.count > 100)
    return bad_config("debug.ping-count: must be 1..100");
  if (x.slow_rtt.count() <= 0)
    return bad_config("debug.slow-rtt: must be positive");
  return caf::none;
}

namespace {

using steady = std::chrono::steady_clock;

struct step {
  std::string name;
  /// "ok", "failed" or "skipped".
  std::string verdict = "skipped";
  std::string detail;
  double ms = 0;
  /// What the step saw, shown under it.
  std::vector<std::pair<std::string, std::string>> facts;
};

double ms_since(steady::time_point start) {
  return std::chrono::duration<double, std::milli>(steady::now() - start)
    .count();
}

std::string ms_text(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f ms", ms);
  return buf;
}

// The probe's state: each step fills its own entry, a failure ends the run.
struct ping_run {
  std::vector<step> steps;
  std::string verdict;

  step& start(const std::string& name) {
    steps.emplace_back();
    steps.back().name = name;
    return steps.back();
  }
  bool fail(step& s, const std::string& detail, const std::string& verdict_) {
    s.verdict = "failed";
    s.detail = detail;
    verdict = verdict_;
    return false;
  }
};

struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

// Connects to one address within `timeout`; errno's text when it cannot.
std::string connect_to(const addrinfo& ai, std::chrono::milliseconds timeout,
                       fd_guard& out) {
  out.fd = ::socket(ai.ai_family, ai.ai_socktype | SOCK_CLOEXEC,
                    ai.ai_protocol);
  if (out.fd < 0)
    return std::strerror(errno);
  auto flags = fcntl(out.fd, F_GETFL, 0);
  fcntl(out.fd, F_SETFL, flags | O_NONBLOCK);
  if (::connect(out.fd, ai.ai_addr, ai.ai_addrlen) != 0) {
    if (errno != EINPROGRESS)
      return std::strerror(errno);
    pollfd p{out.fd, POLLOUT, 0};
    auto n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n == 0)
      return "timed out after " + to_duration_text(timeout);
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(out.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (n < 0 || err != 0)
      return std::strerror(n < 0 ? errno : err);
  }
  fcntl(out.fd, F_SETFL, flags);
  return "";
}

std::string address_text(const addrinfo& ai) {
  char host[NI_MAXHOST];
  if (getnameinfo(ai.ai_addr, ai.ai_addrlen, host, sizeof(host), nullptr, 0,
                  NI_NUMERICHOST)
      != 0)
    return "?";
  return host;
}

// The server sent them: shown printable and bounded.
std::string names_text(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : ", ") + printable(x, 256);
  return out.empty() ? "(none)" : out;
}

// The code of an X-Fleetd-Error ("unknown_key: ...").
std::string error_code(const http_response& res) {
  return res.error.substr(0, res.error.find(':'));
}

bool auth_refusal(const std::string& code) {
  return code == "missing_key" || code == "unknown_key"
         || code == "expired_key" || code == "revoked_key"
         || code == "client_certificate_required";
}

std::string render_text(const ping_run& run, const std::string& where) {
  std::ostringstream out;
  out << "ping " << where << "\n";
  for (auto& s : run.steps) {
    out << "  " << s.name << ": " << s.verdict;
    if (!s.detail.empty())
      out << ": " << s.detail;
    if (s.verdict != "skipped")
      out << " (" << ms_text(s.ms) << ")";
    out << "\n";
    for (auto& f : s.facts)
      out << "      " << f.first << ": " << f.second << "\n";
  }
  out << "verdict: " << run.verdict << "\n";
  return out.str();
}

std::string render_json(const ping_run& run, const std::string& where) {
  std::string steps = "[";
  for (auto& s : run.steps) {
    json_object facts;
    for (auto& f : s.facts)
      facts.add(f.first, f.second);
    char ms[32];
    std::snprintf(ms, sizeof(ms), "%.3f", s.ms);
    json_object o;
    o.add("step", s.name).add("verdict", s.verdict).add("detail", s.detail);
    o.raw("ms", ms).raw("facts", facts.str());
    steps += (steps.size() > 1 ? "," : "") + o.str();
  }
  steps += "]";
  json_object out;
  out.add("endpoint", where)
    .add("healthy", run.verdict == "healthy")
    .add("verdict", run.verdict)
    .raw("steps", steps);
  return out.str();
}

// The steps in order; false at the first that fails.
bool run_steps(ping_run& run, const cloud_link_config& link,
               const ping_config& cfg, const cloud_endpoint& ep) {
  auto where = ep.host + ":" + std::to_string(ep.port);
  auto& dns = run.start("dns");
  auto t0 = steady::now();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  auto rc = getaddrinfo(ep.host.c_str(), std::to_string(ep.port).c_str(),
                        &hints, &found);
  dns.ms = ms_since(t0);
  if (rc == EAI_AGAIN)
    return run.fail(dns, ep.host + ": " + gai_strerror(rc),
                    "DNS unreachable: no DNS server answered for " + ep.host
                      + " (" + gai_strerror(rc) + ")");
  if (rc != 0)
    return run.fail(dns, ep.host + ": " + gai_strerror(rc),
                    "no such host: " + ep.host + " does not resolve ("
                      + gai_strerror(rc) + ")");
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addrs{found,
                                                           freeaddrinfo};
  std::string list;
  for (auto ai = found; ai; ai = ai->ai_next)
    list += (list.empty() ? "" : ", ") + address_text(*ai);
  dns.verdict = "ok";
  dns.facts.emplace_back("addresses", list);

  auto& tcp = run.start("tcp");
  t0 = steady::now();
  fd_guard sock;
  std::string why;
  for (auto ai = found; ai; ai = ai->ai_next) {
    fd_guard attempt;
    why = connect_to(*ai, link.timeout, attempt);
    if (why.empty()) {
      std::swap(sock.fd, attempt.fd);
      tcp.facts.emplace_back("address", address_text(*ai));
      break;
    }
  }
  tcp.ms = ms_since(t0);
  if (sock.fd < 0) {
    auto refused = why == std::strerror(ECONNREFUSED);
    return run.fail(tcp, why + " at " + where,
                    std::string(refused ? "cloud down: connection refused"
                                        : "cloud unreachable: " + why)
                      + " at " + where);
  }
  tcp.verdict = "ok";

  auto& tls = run.start("tls");
  if (link.insecure) {
    tls.verdict = "skipped";
    tls.detail = "cloud.insecure: plain HTTP";
  } else {
    t0 = steady::now();
    auto peer = probe_tls(sock.fd, ep.host, link.tls, link.timeout);
    tls.ms = ms_since(t0);
    if (!peer)
      return run.fail(tls, render(peer.error()),
                      "TLS failed at " + where + ": " + render(peer.error()));
    tls.facts = {{"version", peer->version},
                 {"cipher", peer->cipher},
                 {"subject", peer->subject},
                 {"issuer", peer->issuer},
                 {"valid from", peer->not_before},
                 {"valid until", peer->not_after},
                 {"names", names_text(peer->names)},
                 {"verified against",
                  link.tls.ca.empty() ? "the system CA store" : link.tls.ca}};
    if (!peer->verified) {
      auto against = link.tls.ca.empty() ? std::string("the system CA store")
                                         : link.tls.ca;
      auto why = "certificate does not verify: " + peer->verify_error;
      if (peer->verify_problem == "validity")
        return run.fail(tls, why,
                        "clock or certificate validity: the certificate of "
                          + where + " is valid from " + peer->not_before
                          + " until " + peer->not_after
                          + " (check this device's clock): "
                          + peer->verify_error);
      if (peer->verify_problem == "name")
        return run.fail(tls, why,
                        "wrong host name: the certificate of " + where
                          + " names " + names_text(peer->names) + ", not "
                          + ep.host + ": " + peer->verify_error);
      return run.fail(tls, why,
                      "wrong CA: the certificate of " + where + " ("
                        + peer->subject + ", issued by " + peer->issuer
                        + ") does not verify against " + against + ": "
                        + peer->verify_error);
    }
    tls.verdict = "ok";
    tls.detail = "certificate verified";
  }

  auto& key_step = run.start("key");
  auto read = read_key_file(link.key_file);
  if (!read)
    return run.fail(key_step, render(read.error()),
                    "unreadable key: " + render(read.error()));
  auto key = std::move(*read);
  key_step.verdict = "ok";
  key_step.detail = key.empty() ? link.key_file + " holds no key"
                                : "read from " + link.key_file;

  auto& auth = run.start("auth");
  http_client client{ep.host, ep.port, link.timeout, 64 * 1024};
  if (!link.insecure)
    if (auto err = client.use_tls(link.tls))
      return run.fail(auth, render(err), "TLS setup failed: " + render(err));
  std::vector<std::pair<std::string, std::string>> headers{
    {"Content-Type", "application/x-protobuf"}};
  if (!key.empty())
    headers.emplace_back("Authorization", "Bearer " + key);
  auth.facts.emplace_back("key file", link.key_file
                                        + (key.empty() ? " (none)" : ""));
  t0 = steady::now();
  // No batch: the cloud checks the key first, then refuses the body.
  auto res = client.post("/v1/sync", "", headers);
  auth.ms = ms_since(t0);
  // TCP (and TLS) got through: the cloud is there but did not answer.
  if (!res)
    return run.fail(auth, render(res.error()),
                    "slow link / no answer: " + where
                      + " took the connection but did not answer: "
                      + render(res.error()));
  auto code = error_code(*res);
  auth.facts.emplace_back("answer", "HTTP " + std::to_string(res->status)
                                      + (res->error.empty()
                                           ? ""
                                           : " " + printable(res->error, 200)));
  if (res->status >= 500)
    return run.fail(auth, "the cloud failed (HTTP "
                            + std::to_string(res->status) + ")",
                    "cloud error: HTTP " + std::to_string(res->status)
                      + " from " + where);
  if (code == "revoked_key")
    return run.fail(auth, printable(res->error, 200),
                    "revoked: the cloud revoked this device's key ("
                      + link.key_file + ")");
  if (code == "unknown_key" || code == "expired_key")
    return run.fail(auth, printable(res->error, 200),
                    "wrong key: the cloud refuses the key in " + link.key_file
                      + " (" + code + ")");
  if (code == "missing_key")
    return run.fail(auth, printable(res->error, 200),
                    "no key: the cloud wants a device key and " + link.key_file
                      + " holds none");
  if (auth_refusal(code))
    return run.fail(auth, printable(res->error, 200),
                    "refused: " + printable(res->error, 200));
  // Only a refusal of the body itself says the key was looked at.
  auto status = res->status;
  if (status != 200 && status != 400 && status != 409 && status != 422)
    return run.fail(auth, "unexpected answer HTTP " + std::to_string(status),
                    "not a fleetd cloud? HTTP " + std::to_string(status)
                      + " from " + where + " to the probe");
  auth.verdict = "ok";
  auth.detail = key.empty() ? "the cloud takes this device without a key"
                            : "the cloud accepts the key";

  auto& rtt = run.start("rtt");
  t0 = steady::now();
  // The connection is open: each GET is one round trip, not a handshake.
  std::vector<double> rtts;
  for (int64_t i = 0; i < cfg.count; ++i) {
    auto one = steady::now();
    auto r = client.get("/healthz");
    if (!r || r->status != 200)
      return run.fail(rtt, r ? "GET /healthz: HTTP " + std::to_string(r->status)
                             : render(r.error()),
                      "cloud unhealthy: GET /healthz at " + where + " "
                        + (r ? "answered HTTP " + std::to_string(r->status)
                             : "failed: " + render(r.error())));
    rtts.push_back(ms_since(one));
  }
  rtt.ms = ms_since(t0);
  std::sort(rtts.begin(), rtts.end());
  auto median = rtts[rtts.size() / 2];
  rtt.facts = {{"min", ms_text(rtts.front())},
               {"median", ms_text(median)},
               {"max", ms_text(rtts.back())},
               {"pings", std::to_string(rtts.size())}};
  auto limit = static_cast<double>(cfg.slow_rtt.count());
  if (median > limit)
    return run.fail(rtt, "median " + ms_text(median) + " above "
                           + ms_text(limit) + " (debug.slow-rtt)",
                    "slow link: RTT median " + ms_text(median) + " above "
                      + ms_text(limit) + " (debug.slow-rtt) to " + where);
  rtt.verdict = "ok";
  rtt.detail = "median " + ms_text(median);
  run.verdict = "healthy";
  return true;
}

} // namespace

ping_outcome debug_ping(const cloud_link_config& link, const ping_config& cfg) {
  ping_run run;
  std::string where = "(no endpoint)";
  auto eps = endpoints_of(link);
  if (!eps || eps->empty()) {
    run.verdict = "bad config: "
                  + (eps ? std::string("no cloud endpoint") : render(eps.error()));
  } else {
    auto& ep = eps->front();
    where = ep.host + ":" + std::to_string(ep.port);
    run_steps(run, link, cfg, ep);
  }
  // The steps after a failure did not run: listed, so none is silently left.
  for (auto name : {"dns", "tcp", "tls", "key", "auth", "rtt"})
    if (std::none_of(run.steps.begin(), run.steps.end(),
                     [&](const step& s) { return s.name == name; }))
    {
      step s;
      s.name = name;
      s.detail = "an earlier step failed";
      run.steps.push_back(std::move(s));
    }
  ping_outcome out;
  out.healthy = run.verdict == "healthy";
  out.report = debug_report{render_text(run, where), render_json(run, where)};
  return out;
}

} // namespace fleetd
