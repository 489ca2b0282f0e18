#include "tools/fleetctl_tenancy.hpp"

#include <cctype>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "messages/error.hpp"
#include "runtime/json.hpp"

namespace fleetd {

const char* const tenancy_usage =
  "  org create NAME | org list\n"
  "            on a cloud node: make an org (a customer); list them\n"
  "  enroll create --org ORG [--uses N] [--expires 24h]\n"
  "            an enrollment token: a device started with\n"
  "            cloud.enroll-token gets its own key with it, N times until\n"
  "            it expires. Printed once, alone on stdout\n"
  "  enroll revoke --org ORG\n"
  "            every enrollment token of the org stops working\n"
  "  device add|rotate-key|revoke --org ORG DEVICE | device list [--org ORG]\n"
  "            the manual path: add prints the device's key once;\n"
  "            rotate-key prints a new one, the old ones work --overlap\n"
  "            longer; revoke refuses the device's keys within seconds\n"
  "  token create --org ORG [--ttl 90d] | token list --org ORG |\n"
  "  token revoke --org ORG ID\n"
  "            an org's API token for the query API (fleetctl query,\n"
  "            GET /v1/query): printed once, alone on stdout; list shows\n"
  "            ids, revoke stops one within tenancy.cache-ttl\n"
  "  quota set --org ORG --points-per-second N --bytes-per-day N\n"
  "            an org's quota (0: unlimited); over it devices get 429 and\n"
  "            keep their data";

bool is_tenancy_command(const std::string& word) {
  return word == "org" || word == "enroll" || word == "device"
         || word == "quota" || word == "token";
}

namespace {

caf::error usage(const std::string& what) {
  return make_error(ec::bad_config, what + " (see --help)");
}

} // namespace

caf::expected<tenancy_command>
tenancy_command_of(const std::vector<std::string>& args,
                   const tenancy_options& opt) {
  auto verb = args.size() > 1 ? args[0] + " " + args[1] : args[0];
  auto operand = args.size() > 2 ? args[2] : std::string{};
  tenancy_command cmd;
  cmd.org = opt.org;
  cmd.device = operand;
  size_t want_args = 3;
  bool needs_org = true;
  if (verb == "org create") {
    cmd.op = "org-create";
    cmd.org = operand;
    needs_org = false;
  } else if (verb == "org list") {
    cmd.op = "org-list";
    want_args = 2;
    needs_org = false;
  } else if (verb == "enroll create") {
    cmd.op = "enroll-create";
    cmd.uses = opt.uses;
    cmd.duration_ms = opt.expires.count();
    want_args = 2;
  } else if (verb == "enroll revoke") {
    cmd.op = "enroll-revoke";
    want_args = 2;
  } else if (verb == "device add" || verb == "device revoke") {
    cmd.op = verb == "device add" ? "device-add" : "revoke";
  } else if (verb == "device rotate-key") {
    cmd.op = "rotate-key";
    cmd.duration_ms = opt.overlap.count();
  } else if (verb == "device list") {
    cmd.op = "device-list";
    want_args = 2;
    needs_org = false;
  } else if (verb == "token create" || verb == "token list") {
    cmd.op = verb == "token create" ? "api-token-create" : "api-token-list";
    cmd.duration_ms = opt.ttl.count();
    want_args = 2;
  } else if (verb == "token revoke") {
    cmd.op = "api-token-revoke";
  } else if (verb == "quota set") {
    cmd.op = "quota-set";
    cmd.points_per_second = opt.points_per_second;
    cmd.bytes_per_day = opt.bytes_per_day;
    want_args = 2;
  } else {
    return usage("unknown command '" + verb + "'");
  }
  if (args.size() != want_args)
    return usage(verb + ": expected "
                 + (want_args == 3 ? std::string("one name") : "no name")
                 + " after it");
  if (needs_org && cmd.org.empty())
    return usage(verb + ": needs --org ORG");
  return cmd;
}

namespace {

std::string to_text(const tenancy_answer& x) {
  std::ostringstream out;
  auto row = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) {
      char cell[96];
      snprintf(cell, sizeof(cell), i + 1 < cells.size() ? "%-24s " : "%s",
               cells[i].c_str());
      out << cell;
    }
    out << "\n";
  };
  auto head = x.columns;
  for (auto& c : head)
    for (auto& ch : c)
      ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  row(head);
  for (auto& r : x.rows)
    row(r);
  return out.str();
}

std::string to_json(const tenancy_answer& x) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < x.rows.size(); ++i) {
    json_object obj;
    for (size_t j = 0; j < x.columns.size() && j < x.rows[i].size(); ++j)
      obj.add(x.columns[j], x.rows[i][j]);
    out << (i ? "," : "") << obj.str();
  }
  out << "]";
  return out.str();
}

} // namespace

int run_tenancy(caf::scoped_actor& self, const inspector_actor& node,
                const tenancy_command& cmd, bool json,
                caf::timespan timeout) {
  int rc = 0;
  self->request(node, timeout, tenancy_atom::value, cmd)
    .receive(
      [&](tenancy_answer& x) {
        if (!x.secret.empty()) {
          // Alone on stdout, for scripts; never stored by the node.
          std::cout << (json ? json_object{}
                                   .add(cmd.op == "device-add"
                                            || cmd.op == "rotate-key"
                                          ? "key"
                                          : "token",
                                        x.secret)
                                   .add("org", cmd.org)
                                   .add("device", cmd.device)
                                   .str()
                             : x.secret)
                    << std::endl;
          std::cerr << "fleetctl: shown once; the node keeps only its hash"
                    << std::endl;
          return;
        }
        std::cout << (json ? to_json(x) + "\n" : to_text(x));
      },
      [&](const caf::error& err) {
        bool refused = err.category() == caf::atom("fleetd");
        std::cerr << "fleetctl: " << cmd.op
                  << (refused ? " refused: " : " failed: ") << render(err)
                  << std::endl;
        rc = refused ? 2 : 1;
      });
  return rc;
}

} // namespace fleetd
