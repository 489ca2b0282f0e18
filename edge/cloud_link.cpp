#include "edge/cloud_link.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fcntl.h>
#include <unistd.h>

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

namespace fleetd {

void declare(option_set& opts, cloud_link_config& x) {
  using namespace std::chrono_literals;
  opts.add("cloud.host", x.host, "127.0.0.1",
           "Host name or address of the cloud ingest endpoint");
  opts.add("cloud.port", x.port, 7480, "port",
           "TCP port of the cloud ingest endpoint", 1, 65535);
  opts.add("cloud.timeout", x.timeout, 10s,
           "Deadline for connecting and for each sync request", 100ms);
  opts.add("cloud.ca-file", x.tls.ca, "",
           "PEM CA file the cloud's certificate must chain to (empty: the "
           "system's trusted CAs); its name must match cloud.host");
  opts.add("cloud.tls-cert", x.tls.cert, "",
           "PEM client certificate for clouds that require one");
  opts.add("cloud.tls-key", x.tls.key, "", "PEM private key of cloud.tls-cert");
  opts.add("cloud.key-file", x.key_file, "",
           "File holding this device's key (written once by enrollment, "
           "mode 0600); \"\": <data-dir>/device.key");
  opts.add("cloud.enroll-token", x.enroll_token, "",
           "Enrollment token (fleetctl enroll create) used once when the "
           "device has no key yet", false, true);
  opts.add("cloud.enroll-token-file", x.enroll_token_file, "",
           "File holding the enrollment token instead of cloud.enroll-token");
  opts.add("cloud.insecure", x.insecure, false,
           "Sync over plain HTTP without TLS; allowed only to a loopback "
           "cloud.host, for local testing");
}

caf::error validate(const cloud_link_config& x) {
  if (x.host.empty())
    return bad_config("cloud.host: must not be empty");
  if (x.port < 1 || x.port > 65535)
    return bad_config("cloud.port: must be 1..65535, got "
                      + std::to_string(x.port));
  if (x.timeout.count() <= 0)
    return bad_config("cloud.timeout: must be positive");
  if (x.insecure && !is_loopback_host(x.host))
    return bad_config("cloud.insecure: plain HTTP is allowed only to a "
                      "loopback address, not cloud.host = " + x.host);
  if (x.tls.cert.empty() != x.tls.key.empty())
    return bad_config(std::string(x.tls.cert.empty() ? "cloud.tls-cert"
                                                     : "cloud.tls-key")
                      + ": cloud.tls-cert and cloud.tls-key go together");
  if (!x.insecure)
    if (auto err = check_tls_client(x.tls))
      return bad_config("cloud.ca-file/tls-cert/tls-key: " + error_text(err));
  if (x.max_response_bytes == 0)
    return bad_config("cloud_link_config.max_response_bytes: must be positive");
  return caf::none;
}

namespace {

using link_ptr = cloud_link_actor::stateful_pointer<cloud_link_state>;

// The first line of `path`, trimmed; empty when it cannot be read.
std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return std::string(trim(line));
}

// Keeps the key where only this user reads it, before it is used.
caf::error save_key(const std::string& path, const std::string& key) {
  auto tmp = path + ".tmp";
  auto fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return make_error(ec::io_error, "cannot create " + tmp + ": "
                                      + strerror(errno));
  auto line = key + "\n";
  bool ok = ::write(fd, line.data(), line.size())
              == static_cast<ssize_t>(line.size())
            && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(ec::io_error, "cannot write " + path);
  return caf::none;
}

// A key from key_file, or from enrolling with the token; none when the
// device has neither (it then syncs without a key).
caf::error ensure_key(link_ptr self) {
  auto& st = self->state;
  if (!st.authorization.empty())
    return caf::none;
  auto key = first_line(st.cfg.key_file);
  auto token = st.cfg.enroll_token.empty()
                 ? first_line(st.cfg.enroll_token_file)
                 : st.cfg.enroll_token;
  if (key.empty() && !token.empty()) {
    ++st.enrollments;
    auto res = st.client->post("/v1/enroll", st.cfg.device_id + "\n",
                               {{"Content-Type", "text/plain"},
                                {"Authorization", "Bearer " + token}});
    if (!res)
      return res.error();
    if (res->status != 200)
      return make_error(ec::remote_error,
                        "enrollment refused (HTTP "
                          + std::to_string(res->status) + "): "
                          + printable(res->error, 200));
    key = std::string(trim(res->body));
    if (auto err = save_key(st.cfg.key_file, key))
      return err;
    log_info("cloud_link", "enrolled as ", st.cfg.device_id, "; key kept in ",
             st.cfg.key_file);
  }
  if (!key.empty())
    st.authorization = "Bearer " + key;
  return caf::none;
}

} // namespace

cloud_link_actor::behavior_type
cloud_link(cloud_link_actor::stateful_pointer<cloud_link_state> self,
           cloud_link_config cfg) {
  if (stop_on_bad_config(self, "cloud_link", validate(cfg)))
    return cloud_link_actor::behavior_type::make_empty_behavior();
  self->state.client = std::make_unique<http_client>(
    cfg.host, static_cast<uint16_t>(cfg.port), cfg.timeout,
    cfg.max_response_bytes);
  if (!cfg.insecure)
    if (auto err = self->state.client->use_tls(cfg.tls)) {
      stop_on_bad_config(self, "cloud_link", err);
      return cloud_link_actor::behavior_type::make_empty_behavior();
    }
  auto target = (cfg.insecure ? "http://" : "https://") + cfg.host + ":"
                + std::to_string(cfg.port);
  self->state.cfg = std::move(cfg);
  return {
    [self, target](sync_atom, const std::string& body) -> caf::result<sync_ack> {
      auto& st = self->state;
      ++st.requests;
      auto fail = [&](caf::error err) -> caf::result<sync_ack> {
        ++st.failures;
        auto text = render(err);
        if (text != st.last_error)
          log_warning("cloud_link", target, ": ", text);
        st.last_error = std::move(text);
        return err;
      };
      if (auto err = ensure_key(self))
        return fail(err);
      std::vector<std::pair<std::string, std::string>> headers{
        {"Content-Type", "application/x-protobuf"}};
      if (is_zstd(body))
        headers.emplace_back("Content-Encoding", "zstd");
      if (!st.authorization.empty())
        headers.emplace_back("Authorization", st.authorization);
      auto res = st.client->post("/v1/sync", body, headers);
      if (!res)
        return fail(res.error());
      st.bytes_sent += static_cast<int64_t>(body.size());
      st.bytes_received += static_cast<int64_t>(res->body.size());
      auto ack = decode_response(res->body);
      if (res->status == 413 && (!ack || ack->error_code.empty())) {
        // The server's body limit refused this batch before the ingest
        // actor saw it: a refusal of the batch, not a link failure. Other
        // statuses without a SyncResponse (a proxy's error page) are.
        sync_ack nack;
        nack.status = res->status;
        nack.error_code = "http_" + std::to_string(res->status);
        nack.error_message = res->body.substr(0, 200);
        st.last_error.clear();
        return nack;
      }
      if (!ack || (res->status != 200 && ack->error_code.empty()))
        return fail(make_error(ec::remote_error,
                               "HTTP " + std::to_string(res->status) + " from "
                                 + target));
      ack->status = res->status;
      if (!res->retry_after.empty() && ack->retry_after_ms == 0)
        ack->retry_after_ms = std::atoll(res->retry_after.c_str()) * 1000;
      if (!st.last_error.empty()) {
        log_info("cloud_link", target, ": reachable again");
        st.last_error.clear();
      }
      return std::move(*ack);
    },
    [self, target](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = "cloud_link";
      out.state = st.last_error.empty() ? "connected to " + target
                                        : "failing: " + st.last_error;
      out.counters["requests"] = st.requests;
      out.counters["failures"] = st.failures;
      out.counters["bytes_sent"] = st.bytes_sent;
      out.counters["bytes_received"] = st.bytes_received;
      out.counters["connects"] = st.client->connects();
      out.counters["enrollments"] = st.enrollments;
      return out;
    },
  };
}

} // namespace fleetd
