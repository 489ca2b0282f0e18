#pragma once

// fleetctl query and fleetctl logs: the query API of a cloud node's ingest
// endpoint (GET /v1/query, /v1/logs) with an org's API token.

#include <string>

#include "runtime/tls.hpp"

namespace fleetd {

struct query_options {
  /// File holding the API token; "": the FLEETD_API_TOKEN environment.
  std::string token_file;
  std::string metric;
  std::string device;
  /// Milliseconds since the epoch, "now", or "-DURATION" (e.g. -1h) before
  /// now.
  std::string from = "-1h";
  std::string to = "now";
  std::string step = "60s";
  std::string agg = "avg";
  int64_t limit = 1000;
  /// Plain HTTP (a node with ingest.insecure); else HTTPS verified by ca.
  bool plain_http = false;
  std::string ca;
};

class option_set;

/// Declares --token, --metric, --device, --from, --to, --step, --agg,
/// --limit and --plain-http.
void declare(option_set& opts, query_options& x);

/// True when `word` is query or logs.
bool is_query_command(const std::string& word);

/// Runs it against HOST:PORT and prints a table (or the JSON answer); the
/// exit code: 0, 1 (unreachable or failed), 2 (refused: 400, 401, 413).
int run_query(const std::string& cmd, const std::string& host, uint16_t port,
              const query_options& opt, bool json);

/// Usage lines for --help.
extern const char* const query_usage;

} // namespace fleetd
