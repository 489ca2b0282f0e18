#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "messages/interfaces.hpp"
#include "runtime/http_client.hpp"

namespace fleetd {

struct cloud_link_config {
  std::string host;
  int64_t port = 0;
  std::chrono::milliseconds timeout{10000};
  size_t max_response_bytes = 1024 * 1024;
  /// Trusted CA (empty: the system store) and optional client certificate.
  tls_files tls;
  /// Plain HTTP (loopback only): for local tests, never a fleet.
  bool insecure = false;
  /// The device's key ("fdk_..."); "": <data-dir>/device.key.
  std::string key_file;
  /// Enrollment token (or a file holding it) used once when no key exists.
  std::string enroll_token;
  std::string enroll_token_file;
  /// The device id an enrollment asks a key for.
  std::string device_id;
};

class option_set;

/// Declares cloud.host, cloud.port, cloud.timeout, cloud.ca-file,
/// cloud.tls-cert, cloud.tls-key, cloud.insecure, cloud.key-file,
/// cloud.enroll-token and cloud.enroll-token-file.
void declare(option_set& opts, cloud_link_config& x);

/// bad_config naming the option key when `x` cannot work.
caf::error validate(const cloud_link_config& x);

struct cloud_link_state {
  cloud_link_config cfg;
  std::unique_ptr<http_client> client;
  /// "Bearer <key>" once the device has a key; empty: none (anonymous).
  std::string authorization;
  int64_t enrollments = 0;
  int64_t requests = 0;
  int64_t failures = 0;
  int64_t bytes_sent = 0;
  int64_t bytes_received = 0;
  std::string last_error;
  static inline const char* name = "cloud_link";
};

/// Carries each SyncRequest body as POST /v1/sync with keep-alive and the
/// device key, and turns the SyncResponse into the reply. Without a key but
/// with an enrollment token it first enrolls (POST /v1/enroll) and keeps the
/// key in key_file (0600); a refused enrollment is a link failure: the data
/// waits and the sync actors back off. Spawn detached: the HTTP call blocks.
cloud_link_actor::behavior_type
cloud_link(cloud_link_actor::stateful_pointer<cloud_link_state> self,
           cloud_link_config cfg);

} // namespace fleetd
