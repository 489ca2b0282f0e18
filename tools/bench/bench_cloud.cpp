#include "tools/bench/bench_cloud.hpp"

#include <caf/typed_event_based_actor.hpp>

#include "cloud/cloud_store.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/embedded_tenancy.hpp"
#include "cloud/ingest.hpp"
#include "cloud/tenancy.hpp"
#include "messages/error.hpp"

namespace fleetd::bench {

transport make_transport(const std::string& dir, bool plain,
                         int64_t quota_pps, const clock_ptr& clock,
                         const std::string& device_id,
                         const std::string& org_name, bool key_when_plain) {
  transport t;
  t.plain = plain;
  t.stored_id = device_id;
  if (plain && !key_when_plain)
    return t;
  if (!plain)
    t.pki = make_bench_pki(dir);
  auto secret = load_or_create_secret(dir + "/tenancy.secret");
  if (!secret)
    fail(render(secret.error()));
  t.secret = *secret;
  t.tenancy_db = dir + "/tenancy.db";
  auto tenants = embedded_tenancy::open(t.tenancy_db, t.secret, clock);
  if (!tenants)
    fail("embedded_tenancy::open: " + render(tenants.error()));
  tenancy_command cmd;
  cmd.op = "org-create";
  cmd.org = org_name;
  if (auto out = tenants->run(cmd); !out)
    fail("org create: " + render(out.error()));
  if (quota_pps > 0) {
    cmd.op = "quota-set";
    cmd.points_per_second = quota_pps;
    if (auto out = tenants->run(cmd); !out)
      fail("quota set: " + render(out.error()));
  }
  cmd.op = "device-add";
  cmd.device = device_id;
  auto added = tenants->run(cmd);
  if (!added || added->secret.empty())
    fail("device add: " + (added ? "no key" : render(added.error())));
  t.authorization = "Bearer " + added->secret;
  t.key_file = dir + "/device.key";
  write_file(t.key_file, added->secret + "\n", true);
  t.stored_id = org_name + "/" + device_id;
  return t;
}

uint16_t world::start_cloud(const std::string& path, clock_ptr clock,
                            uint16_t port, const transport& t) {
  auto store = embedded_store::open(path, clock);
  if (!store)
    fail("embedded_store::open(" + path + "): " + render(store.error()));
  auto st = keep("cloud_store",
                 sys.spawn<caf::detached>(
                   cloud_store,
                   std::make_shared<embedded_store>(std::move(*store))));
  ingest_config icfg;
  icfg.store = st;
  icfg.anonymous = t.plain && t.authorization.empty();
  if (!t.authorization.empty())
    icfg.tenancy = start_tenancy(t, clock);
  auto ing = keep("ingest", sys.spawn(ingest, icfg));
  ingest_hdl = ing;
  endpoints.push_back(
    std::make_unique<ingest_endpoint>(sys, ing, http_limits{}));
  ingest_endpoint_config ecfg;
  ecfg.port = port;
  ecfg.insecure = t.plain;
  if (!t.plain)
    ecfg.tls = t.pki.server;
  auto bound = endpoints.back()->start(ecfg);
  if (!bound)
    fail("cannot start the cloud on port " + std::to_string(port) + ": "
         + render(bound.error()));
  return *bound;
}

tenancy_actor world::start_tenancy(const transport& t,
                                   const clock_ptr& clock) {
  auto tenants = embedded_tenancy::open(t.tenancy_db, t.secret, clock);
  if (!tenants)
    fail("embedded_tenancy::open: " + render(tenants.error()));
  tenancy_config tcfg;
  tcfg.store = std::make_shared<embedded_tenancy>(std::move(*tenants));
  tcfg.clock = clock;
  tenancy_hdl = keep("tenancy", sys.spawn<caf::detached>(tenancy, tcfg));
  return tenancy_hdl;
}

} // namespace fleetd::bench
