#include "tools/fleetctl_query.hpp"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>

#include "messages/error.hpp"
#include "runtime/http_client.hpp"
#include "runtime/json.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

namespace fleetd {

const char* const query_usage =
  "\n  query --node HOST:INGEST_PORT --metric M --device D [--from -1h]\n"
  "        [--to now] [--step 60s] [--agg avg|sum|count|min|max]\n"
  "        [--token FILE] [--plain-http | --ca FILE]\n"
  "            a metric of a device of the token's org, aggregated per\n"
  "            step (GET /v1/query); the token from FILE or\n"
  "            FLEETD_API_TOKEN (fleetctl token create)\n"
  "  logs --node HOST:INGEST_PORT --device D [--from] [--to] [--limit N]\n"
  "            the device's log lines (GET /v1/logs)";

namespace {

constexpr size_t max_answer_bytes = 64 * 1024 * 1024;

// %-escaped for a query string: unreserved bytes stay.
std::string escape(const std::string& x) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : x) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 0xF];
    }
  }
  return out;
}

// "now" and "-DURATION" as milliseconds since the epoch; others as given.
std::string time_of(const std::string& x) {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  if (x == "now")
    return std::to_string(now);
  if (x.empty() || x[0] != '-')
    return x;
  char* end = nullptr;
  auto n = std::strtoll(x.c_str() + 1, &end, 10);
  std::string unit = end ? end : "";
  int64_t scale = unit == "s"   ? 1000
                  : unit == "m" ? 60'000
                  : unit == "h" ? 3'600'000
                  : unit == "d" ? 86'400'000
                                : 1;
  return std::to_string(now - n * scale);
}

caf::expected<std::string> token_of(const query_options& opt) {
  std::string token;
  if (opt.token_file.empty()) {
    auto env = std::getenv("FLEETD_API_TOKEN");
    token = env ? env : "";
  } else {
    std::ifstream in(opt.token_file);
    std::getline(in, token);
  }
  if (token.empty())
    return make_error(ec::bad_config,
                      "no API token: --token FILE or FLEETD_API_TOKEN");
  return token;
}

std::string target_of(const std::string& cmd, const query_options& opt) {
  auto common = "device=" + escape(opt.device) + "&from="
                + escape(time_of(opt.from)) + "&to=" + escape(time_of(opt.to));
  if (cmd == "logs")
    return "/v1/logs?" + common + "&limit=" + std::to_string(opt.limit);
  return "/v1/query?metric=" + escape(opt.metric) + "&" + common + "&step="
         + escape(opt.step) + "&agg=" + escape(opt.agg);
}

std::string labels_text(const boost::property_tree::ptree& labels) {
  std::string out;
  for (auto& [k, v] : labels)
    out += (out.empty() ? "" : ",") + k + "=" + v.data();
  return out.empty() ? "-" : out;
}

// The answer as a table: one row per point or line, labels spelled k=v.
void print_table(const std::string& cmd, const std::string& body) {
  namespace pt = boost::property_tree;
  pt::ptree doc;
  std::istringstream in(body);
  pt::read_json(in, doc);
  bool logs = cmd == "logs";
  std::cout << "TIME  " << (logs ? "LABELS  LINE" : "LABELS  VALUE")
            << "\n";
  for (auto& [_, s] : doc.get_child(logs ? "streams" : "series")) {
    auto labels = labels_text(s.get_child("labels"));
    for (auto& [__, p] : s.get_child(logs ? "lines" : "points")) {
      auto it = p.begin();
      auto ts = it->second.data();
      ++it;
      std::cout << ts << "  " << labels << "  " << it->second.data() << "\n";
    }
  }
}

} // namespace

void declare(option_set& opts, query_options& x) {
  opts.add("token", x.token_file, "",
           "query, logs: file holding the org's API token (\"\": the "
           "FLEETD_API_TOKEN environment variable)");
  opts.add("metric", x.metric, "", "query: the metric's name");
  opts.add("device", x.device, "", "query, logs, delivery: the device");
  opts.add("from", x.from, "-1h",
           "query, logs: start (ms since the epoch, now, or -DURATION such as "
           "-1h)");
  opts.add("to", x.to, "now", "query, logs: end (as --from)");
  opts.add("step", x.step, "60s",
           "query: the step (>= 1s; e.g. 60s, 5m, 1h)");
  opts.add("agg", x.agg, "avg",
           "query: each step's avg, sum, count, min or max");
  opts.add("limit", x.limit, 1000, "lines",
           "logs: at most this many lines", 1);
  opts.add("plain-http", x.plain_http, false,
           "query, logs: the node's ingest endpoint speaks plain HTTP "
           "(ingest.insecure)");
}

bool is_query_command(const std::string& word) {
  return word == "query" || word == "logs";
}

int run_query(const std::string& cmd, const std::string& host, uint16_t port,
              const query_options& opt, bool json) {
  auto token = token_of(opt);
  if (!token) {
    std::cerr << "fleetctl: " << cmd << ": " << render(token.error())
              << std::endl;
    return 2;
  }
  http_client client(host, port, std::chrono::seconds(30), max_answer_bytes);
  if (!opt.plain_http) {
    tls_files files;
    files.ca = opt.ca;
    if (auto err = client.use_tls(files)) {
      std::cerr << "fleetctl: " << cmd << ": " << render(err) << std::endl;
      return 1;
    }
  }
  auto got = client.get(target_of(cmd, opt),
                        {{"Authorization", "Bearer " + *token}});
  if (!got) {
    std::cerr << "fleetctl: " << cmd << " failed: " << render(got.error())
              << std::endl;
    return 1;
  }
  if (got->status != 200) {
    std::cerr << "fleetctl: " << cmd << " refused (" << got->status
              << "): " << printable(got->error, 400) << std::endl;
    return got->status < 500 ? 2 : 1;
  }
  if (json) {
    std::cout << got->body;
    return 0;
  }
  try {
    print_table(cmd, got->body);
  } catch (const std::exception& e) {
    std::cerr << "fleetctl: " << cmd << ": unreadable answer: " << e.what()
              << std::endl;
    return 1;
  }
  return 0;
}

} // namespace fleetd
