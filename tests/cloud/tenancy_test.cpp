// Device identity on the cloud: the tenancy stores' contract (keys hashed,
// rotation, revocation, enrollment tokens, listings, hostile headers), run
// against the embedded store and PostgreSQL (pg_tenancy behind PgBouncer in
// transaction pooling); and the ingest actor with the tenancy actor in front
// of the store (401/403/429, orgs kept apart). The PostgreSQL cases skip
// when no server can run.
#include "cloud/tenancy.hpp"

#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "cloud/cloud_store.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/embedded_tenancy.hpp"
#include "cloud/ingest.hpp"
#include "cloud/pg_tenancy.hpp"
#include "cloud_fixture.hpp"
#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/http_client.hpp"
#include "ask.hpp"
#include "check_samples.hpp"
#include "helpers.hpp"
#include "pg_fixture.hpp"
#include "contract_case.hpp"
#include "pg_schema.hpp"
#include "skip.hpp"
#include "tenancy_ops.hpp"

using namespace fleetd;
using test::ack_of;
using test::op;
using namespace std::chrono_literals;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;

bool has_code(const caf::error& err, ec code) {
  return err.category() == caf::atom("fleetd")
         && err.code() == static_cast<uint8_t>(code);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// One backend's tenancy stores over one database: open() again is a
// restart (or another node, for PostgreSQL).
struct backend {
  virtual ~backend() = default;
  virtual std::unique_ptr<tenancy_backend> open(const std::string& secret) = 0;
  // Every byte the backend keeps of keys and tokens, as text.
  virtual std::string stored() = 0;
  std::shared_ptr<manual_clock> clock
    = std::make_shared<manual_clock>(clock_start_ms);
};

struct embedded_backend : backend {
  test::scratch_dir dir{"fleetd-tenancy"};
  std::unique_ptr<tenancy_backend> open(const std::string& secret) override {
    auto x = embedded_tenancy::open(dir.file("tenancy.db"), secret, clock);
    REQUIRE_MESSAGE(x, render(x.error()));
    return std::make_unique<embedded_tenancy>(std::move(*x));
  }
  std::string stored() override {
    return slurp(dir.file("tenancy.db")) + slurp(dir.file("tenancy.db-wal"));
  }
};

struct pg_backend : backend {
  std::string why;
  std::optional<test::pg_database> db;
  pg_backend() : db(test::migrated_pg_database("tenancy", why)) {
  }
  std::unique_ptr<tenancy_backend> open(const std::string& secret) override {
    auto x = pg_tenancy::open(db->pooled_url, secret, clock,
                              test::pooled_options());
    REQUIRE_MESSAGE(x, render(x.error()));
    return std::make_unique<pg_tenancy>(std::move(*x));
  }
  std::string stored() override {
    // The superuser reads past Row Level Security.
    auto admin = test::pg_connect(db->admin_url);
    return std::string{
      test::pg_must(admin,
                    "SELECT coalesce(string_agg(encode(hash, 'hex') || "
                    "encode(hash, 'escape') || org, ','), '') FROM "
                    "(SELECT hash, org FROM device_keys UNION ALL SELECT "
                    "hash, org FROM enroll_tokens UNION ALL SELECT hash, org FROM "
                    "api_tokens) t")
        .text(0, 0)};
  }
};

struct store_fixture {
  backend& be;
  std::unique_ptr<tenancy_backend> db;

  explicit store_fixture(backend& be) : be(be), db(open("secret-one")) {
  }

  std::unique_ptr<tenancy_backend> open(const std::string& secret) {
    return be.open(std::string(64 - secret.size(), 'a') + secret);
  }

  std::string secret_of(const tenancy_command& cmd) {
    auto out = db->run(cmd);
    REQUIRE_MESSAGE(out, render(out.error()));
    REQUIRE_FALSE(out->secret.empty());
    return out->secret;
  }

  tenancy_backend::rows rows_of(const tenancy_command& cmd) {
    auto out = db->run(cmd);
    REQUIRE_MESSAGE(out, render(out.error()));
    return out->rows;
  }
};

using contract = void (*)(store_fixture&);

void run_embedded(contract fn) {
  embedded_backend be;
  store_fixture f{be};
  fn(f);
}

void run_pg(contract fn) {
  pg_backend be;
  if (!be.db)
    return test::skip(be.why);
  store_fixture f{be};
  fn(f);
}

void keys_are_hashed(store_fixture& f) {
  REQUIRE(f.db->run(op("org-create", "acme")));
  auto key = f.secret_of(op("device-add", "acme", "d1"));
  CHECK(key.size() == 4 + 64);
  CHECK(key.rfind("fdk_", 0) == 0);
  CHECK(key != f.secret_of(op("device-add", "acme", "d2")));
  auto who = f.db->authenticate("Bearer " + key);
  REQUIRE_MESSAGE(who, render(who.error()));
  CHECK(who->org == "acme");
  CHECK(who->device == "d1");
  // Neither the key nor its hex digits are in the database.
  auto stored = f.be.stored();
  CHECK(stored.find("acme") != std::string::npos);
  CHECK(stored.find(key.substr(4)) == std::string::npos);
  CHECK(stored.find(key.substr(4, 16)) == std::string::npos);
  // The database without the node's secret proves nothing.
  auto other = f.open("secret-two");
  CHECK(has_code(other->authenticate("Bearer " + key).error(),
                 ec::unknown_key));
  // Errors never quote the key.
  auto wrong = f.db->authenticate("Bearer fdk_" + std::string(64, '0'));
  CHECK(has_code(wrong.error(), ec::unknown_key));
  CHECK(render(wrong.error()).find("0000") == std::string::npos);
  CHECK(has_code(f.db->authenticate("").error(), ec::missing_key));
  CHECK(has_code(f.db->authenticate("Basic abc").error(), ec::unknown_key));
  CHECK(has_code(f.db->authenticate("Bearer " + key + "x").error(),
                 ec::unknown_key));
}

void rotation_and_revocation(store_fixture& f) {
  REQUIRE(f.db->run(op("org-create", "acme")));
  auto first = f.secret_of(op("device-add", "acme", "d1"));
  auto rotate = op("rotate-key", "acme", "d1");
  rotate.duration_ms = 60'000;
  auto second = f.secret_of(rotate);
  CHECK(f.db->authenticate("Bearer " + first));
  CHECK(f.db->authenticate("Bearer " + second));
  f.be.clock->advance(59'999);
  CHECK(f.db->authenticate("Bearer " + first));
  f.be.clock->advance(1);
  CHECK(has_code(f.db->authenticate("Bearer " + first).error(),
                 ec::expired_key));
  CHECK(f.db->authenticate("Bearer " + second));
  auto listed = f.rows_of(op("device-list", ""));
  REQUIRE(listed.size() == 1);
  CHECK(listed[0][4] == "1"); // one key in use
  CHECK(has_code(f.db->run(op("rotate-key", "acme", "nope")).error(),
                 ec::unknown_device));
  REQUIRE(f.db->run(op("revoke", "acme", "d1")));
  CHECK(has_code(f.db->authenticate("Bearer " + second).error(),
                 ec::revoked_key));
  CHECK(has_code(f.db->run(rotate).error(), ec::revoked_key));
  CHECK(has_code(f.db->run(op("revoke", "acme", "d1")).error(),
                 ec::unknown_device));
}

void enrollment_tokens(store_fixture& f) {
  REQUIRE(f.db->run(op("org-create", "acme")));
  auto create = op("enroll-create", "acme");
  create.uses = 2;
  create.duration_ms = 3'600'000;
  auto token = f.secret_of(create);
  CHECK(token.rfind("fdt_", 0) == 0);
  auto bearer = "Bearer " + token;
  auto a = f.db->enroll(bearer, "a");
  REQUIRE_MESSAGE(a, render(a.error()));
  CHECK(a->first.org == "acme");
  CHECK(f.db->authenticate("Bearer " + a->second));
  // The same name again is a conflict and uses nothing up.
  CHECK(has_code(f.db->enroll(bearer, "a").error(), ec::conflict));
  CHECK(has_code(f.db->enroll(bearer, "../a").error(), ec::conflict));
  CHECK(f.db->enroll(bearer, "b"));
  auto used = f.db->enroll(bearer, "c");
  CHECK(has_code(used.error(), ec::bad_enroll_token));
  CHECK(render(used.error()).find("used up") != std::string::npos);
  auto late = f.secret_of(create);
  f.be.clock->advance(3'600'000);
  CHECK(render(f.db->enroll("Bearer " + late, "d").error()).find("expired")
        != std::string::npos);
  auto revoked = f.secret_of(create);
  auto out = f.db->run(op("enroll-revoke", "acme"));
  REQUIRE(out);
  CHECK(out->rows.at(0).at(1) == "3");
  CHECK(render(f.db->enroll("Bearer " + revoked, "e").error()).find("revoked")
        != std::string::npos);
  CHECK(has_code(f.db->enroll("Bearer fdt_" + std::string(64, '1'), "f")
                   .error(),
                 ec::bad_enroll_token));
  CHECK(has_code(f.db->enroll("Bearer " + token.substr(0, 10), "f").error(),
                 ec::bad_enroll_token));
  // A device key is no enrollment token, nor the other way round.
  CHECK(has_code(f.db->enroll("Bearer " + a->second, "g").error(),
                 ec::bad_enroll_token));
  CHECK(has_code(f.db->authenticate(bearer).error(), ec::unknown_key));
  CHECK(f.rows_of(op("device-list", "acme")).size() == 2);
}

void names_checked(store_fixture& f) {
  CHECK(has_code(f.db->run(op("org-create", "a/b")).error(), ec::conflict));
  CHECK(has_code(f.db->run(op("org-create", "")).error(), ec::conflict));
  CHECK(has_code(f.db->run(op("org-create", std::string(65, 'x'))).error(),
                 ec::conflict));
  REQUIRE(f.db->run(op("org-create", "acme")));
  CHECK(has_code(f.db->run(op("org-create", "acme")).error(), ec::conflict));
  CHECK(has_code(f.db->run(op("device-add", "nope", "d")).error(),
                 ec::unknown_org));
  CHECK(has_code(f.db->run(op("device-add", "acme", "../x")).error(),
                 ec::conflict));
  REQUIRE(f.db->run(op("device-add", "acme", "d")));
  CHECK(has_code(f.db->run(op("device-add", "acme", "d")).error(),
                 ec::conflict));
  auto token = op("enroll-create", "nope");
  token.uses = 1;
  token.duration_ms = 1000;
  CHECK(has_code(f.db->run(token).error(), ec::unknown_org));
  token.org = "acme";
  token.uses = 0;
  CHECK(has_code(f.db->run(token).error(), ec::conflict));
  CHECK(has_code(f.db->run(op("quota-set", "nope")).error(), ec::unknown_org));
  CHECK(has_code(f.db->run(op("frobnicate", "acme")).error(), ec::conflict));
}

void listings(store_fixture& f) {
  for (auto org : {"zeta", "Acme", "acme", "a-b"})
    REQUIRE(f.db->run(op("org-create", org)));
  REQUIRE(f.db->run(op("device-add", "acme", "d2")));
  REQUIRE(f.db->run(op("device-add", "acme", "D1")));
  REQUIRE(f.db->run(op("device-add", "zeta", "x")));
  REQUIRE(f.db->run(op("revoke", "acme", "d2")));
  auto quota = op("quota-set", "acme");
  quota.points_per_second = 7;
  quota.bytes_per_day = 9000;
  REQUIRE(f.db->run(quota));
  using rows = tenancy_backend::rows;
  // Byte order (upper case first), active devices counted, quotas shown.
  CHECK(f.rows_of(op("org-list", ""))
        == rows{{"Acme", "0", "0", "0"},
                {"a-b", "0", "0", "0"},
                {"acme", "1", "7", "9000"},
                {"zeta", "1", "0", "0"}});
  auto t = std::to_string(clock_start_ms);
  CHECK(f.rows_of(op("device-list", ""))
        == rows{{"acme", "D1", t, "-", "1"},
                {"acme", "d2", t, t, "1"},
                {"zeta", "x", t, "-", "1"}});
  CHECK(f.rows_of(op("device-list", "zeta")) == rows{{"zeta", "x", t, "-", "1"}});
  CHECK(f.rows_of(op("device-list", "nope")).empty());
  auto q = f.db->quota("acme");
  REQUIRE(q);
  CHECK(q->points_per_second == 7);
  CHECK(q->bytes_per_day == 9000);
  q = f.db->quota("zeta");
  REQUIRE(q);
  CHECK(q->points_per_second == 0);
  q = f.db->quota("nope");
  REQUIRE(q);
  CHECK(q->bytes_per_day == 0);
  quota.points_per_second = 0;
  REQUIRE(f.db->run(quota));
  CHECK(f.db->quota("acme")->points_per_second == 0);
}

// Headers from the network: each malformed one is refused with the code a
// wrong key gets, quoting nothing of it.
void hostile_headers(store_fixture& f) {
  REQUIRE(f.db->run(op("org-create", "acme")));
  auto key = f.secret_of(op("device-add", "acme", "d1"));
  auto hex = key.substr(4);
  std::string nul = "Bearer fdk_" + hex;
  nul[20] = '\0';
  const std::string headers[] = {
    std::string(1 << 20, 'B'),
    "Bearer " + std::string(1 << 20, 'f'),
    "Bearer fdk_" + hex + hex,
    "bearer " + key,
    "Bearer  " + key.substr(0, key.size() - 1),
    "Bearer fdk_" + hex.substr(0, 63) + "g",
    "Bearer fdk_" + hex.substr(0, 63) + "\xff",
    "Bearer fdk_" + hex.substr(0, 62) + "'\\",
    nul,
    "Bearer fdt_" + hex,
    "Bearer " + std::string(68, '\x80'),
  };
  for (auto& h : headers) {
    CAPTURE(h.size());
    auto who = f.db->authenticate(h);
    CHECK(has_code(who.error(), ec::unknown_key));
    CHECK(render(who.error()).size() < 200);
    auto api = f.db->authenticate_api(h);
    CHECK(has_code(api.error(), ec::unknown_key));
    CHECK(render(api.error()).size() < 200);
    auto in = f.db->enroll(h, "x");
    CHECK(has_code(in.error(), ec::bad_enroll_token));
    CHECK(render(in.error()).size() < 200);
  }
  // Device names from the network are bounded and never echoed whole.
  auto create = op("enroll-create", "acme");
  create.uses = 5;
  create.duration_ms = 60'000;
  auto token = "Bearer " + f.secret_of(create);
  auto long_name = f.db->enroll(token, std::string(1 << 20, 'd'));
  CHECK(has_code(long_name.error(), ec::conflict));
  CHECK(render(long_name.error()).size() < 300);
  CHECK(has_code(f.db->enroll(token, "a'; DROP TABLE devices; --").error(),
                 ec::conflict));
  CHECK(f.db->authenticate("Bearer " + key));
  CHECK(f.rows_of(op("device-list", "")).size() == 1);
}

// Org API tokens: shown once, stored as a keyed hash, listed by id,
// expiring and revoked; never a device key nor an enrollment token.
void api_tokens(store_fixture& f) {
  REQUIRE(f.db->run(op("org-create", "acme")));
  REQUIRE(f.db->run(op("org-create", "other")));
  auto create = op("api-token-create", "acme");
  auto out = f.db->run(create);
  REQUIRE_MESSAGE(out, render(out.error()));
  auto token = out->secret;
  CHECK(token.size() == 4 + 64);
  CHECK(token.rfind("fqt_", 0) == 0);
  auto id = out->rows.at(0).at(1);
  CHECK(id.size() == 12);
  auto org = f.db->authenticate_api("Bearer " + token);
  REQUIRE_MESSAGE(org, render(org.error()));
  CHECK(*org == "acme");
  CHECK(f.be.stored().find(token.substr(4, 16)) == std::string::npos);
  CHECK(has_code(f.open("secret-two")->authenticate_api("Bearer " + token)
                   .error(),
                 ec::unknown_key));
  // Not a device key, not an enrollment token, and the other way round.
  CHECK(has_code(f.db->authenticate("Bearer " + token).error(),
                 ec::unknown_key));
  CHECK(has_code(f.db->enroll("Bearer " + token, "x").error(),
                 ec::bad_enroll_token));
  auto key = f.secret_of(op("device-add", "acme", "d1"));
  CHECK(has_code(f.db->authenticate_api("Bearer " + key).error(),
                 ec::unknown_key));
  CHECK(has_code(f.db->authenticate_api("").error(), ec::missing_key));
  CHECK(has_code(f.db->authenticate_api("Bearer fqt_" + std::string(64, '0'))
                   .error(),
                 ec::unknown_key));
  // With a lifetime: valid until then.
  create.duration_ms = 60'000;
  auto brief = f.secret_of(create);
  auto listed = f.rows_of(op("api-token-list", "acme"));
  REQUIRE(listed.size() == 2);
  CHECK(f.rows_of(op("api-token-list", "other")).empty());
  f.be.clock->advance(60'000);
  CHECK(has_code(f.db->authenticate_api("Bearer " + brief).error(),
                 ec::expired_key));
  // Revoked by id, within its org only.
  CHECK(has_code(f.db->run(op("api-token-revoke", "other", id)).error(),
                 ec::unknown_key));
  CHECK(f.db->authenticate_api("Bearer " + token));
  REQUIRE(f.db->run(op("api-token-revoke", "acme", id)));
  CHECK(has_code(f.db->authenticate_api("Bearer " + token).error(),
                 ec::revoked_key));
  CHECK(has_code(f.db->run(op("api-token-revoke", "acme", id)).error(),
                 ec::unknown_key));
  CHECK(has_code(f.db->run(op("api-token-create", "nope")).error(),
                 ec::unknown_org));
  create.duration_ms = -1;
  CHECK(has_code(f.db->run(create).error(), ec::conflict));
  for (auto& row : f.rows_of(op("api-token-list", "acme")))
    if (row[1] == id)
      CHECK(row[4] != "-");
}

} // namespace


CONTRACT_CASE("a device key is 256 random bits, shown once and stored only "
              "as a keyed hash",
              keys_are_hashed)
CONTRACT_CASE("rotation keeps the old key for the overlap, then it is "
              "expired; revocation refuses every key of the device",
              rotation_and_revocation)
CONTRACT_CASE("an enrollment token enrolls N devices until it expires, is "
              "used up or revoked",
              enrollment_tokens)
CONTRACT_CASE("names are checked; unknown orgs and duplicates are refused",
              names_checked)
CONTRACT_CASE("orgs and devices are listed in byte order with their active "
              "devices, keys and quotas",
              listings)
CONTRACT_CASE("an org API token is shown once, stored as a keyed hash, "
              "expires, is revoked by id and proves only its org",
              api_tokens)
CONTRACT_CASE("a malformed or oversized Authorization header is refused as "
              "an unknown key or token, quoting nothing",
              hostile_headers)

TEST_CASE("names: 1-64 of A-Z a-z 0-9 . _ -, not starting with a dot") {
  CHECK(valid_name("edge-01.site_a"));
  CHECK_FALSE(valid_name(".hidden"));
}

TEST_CASE("the hashing secret is made once, 0600, and read back") {
  test::scratch_dir dir{"fleetd-secret"};
  auto path = dir.file("tenancy.secret");
  CHECK(has_code(load_secret(path).error(), ec::bad_config));
  auto made = load_or_create_secret(path);
  REQUIRE(made);
  CHECK(made->size() == 64);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(*load_or_create_secret(path) == *made);
  CHECK(*load_secret(path) == *made);
  std::ofstream(path) << "short\n";
  CHECK(has_code(load_or_create_secret(path).error(), ec::bad_config));
}

// -- ingest with the tenancy actor --------------------------------------------

namespace {

struct tenancy_fixture : test::cloud_fixture {
  cloud_store_actor store;
  tenancy_actor tenants;
  ingest_actor ing;

  explicit tenancy_fixture(bool anonymous = false)
    : cloud_fixture("fleetd-tenancy-ingest", clock_start_ms) {
    store = spawn_cloud_store(dir.file("cloud.db"));
    tenants = spawn_tenancy(dir.file("tenancy.db"));
    ingest_config icfg;
    icfg.store = store;
    icfg.tenancy = tenants;
    icfg.anonymous = anonymous;
    ing = keep(sys->spawn(ingest, icfg));
  }

  tenancy_answer run(const tenancy_command& cmd) {
    return test::ask<tenancy_answer>(*self, tenants, 5s, tenancy_atom::value,
                                     cmd);
  }

  std::string add(const std::string& org, const std::string& device) {
    return run(op("device-add", org, device)).secret;
  }

  http_reply sync(const std::string& key, const std::string& device,
                  int64_t seq, const metric_samples& xs) {
    encode_settings es;
    es.device_id = device;
    es.sequence = seq;
    es.now_ms = clock_start_ms;
    return test::ask<http_reply>(
      *self, ing, 10s, sync_atom::value,
      sync_envelope{encode_metrics_request(es, xs), "zstd", protobuf_type,
                    key.empty() ? "" : "Bearer " + key});
  }

  metric_samples stored(const std::string& device) {
    return test::ask<metric_samples>(*self, store, 5s, points_atom::value,
                                     device);
  }

  int64_t counter(const std::string& name) {
    auto st = test::ask<actor_stats>(*self, ing, 5s, stats_atom::value);
    return st.counters[name];
  }
};

metric_samples points(const std::string& name, size_t n) {
  metric_samples out;
  for (size_t i = 0; i < n; ++i) {
    metric_sample x;
    x.name = name;
    x.timestamp_ms = clock_start_ms + static_cast<int64_t>(i);
    x.value = static_cast<double>(i);
    out.push_back(x);
  }
  return out;
}

void check_refused(const http_reply& rep, uint16_t status, const char* code) {
  CHECK(rep.status == status);
  auto ack = ack_of(rep.body);
  CHECK_FALSE(ack.success);
  CHECK(ack.error_code == code);
}

} // namespace

TEST_CASE("each wrong key is refused with its own code and counter, and "
          "nothing is stored") {
  tenancy_fixture f;
  f.run(op("org-create", "acme"));
  auto key = f.add("acme", "d1");
  auto other = f.add("acme", "d2");
  auto xs = points("cpu", 3);
  check_refused(f.sync("", "d1", 1, xs), 401, "missing_key");
  check_refused(f.sync("fdk_" + std::string(64, 'f'), "d1", 1, xs), 401,
                "unknown_key");
  check_refused(f.sync(other, "d1", 1, xs), 403, "device_mismatch");
  auto rotate = op("rotate-key", "acme", "d2");
  rotate.duration_ms = 1000;
  auto newer = f.run(rotate).secret;
  f.clock->advance(1000);
  check_refused(f.sync(other, "d2", 1, xs), 401, "expired_key");
  f.run(op("revoke", "acme", "d2"));
  // Revocation on this node takes effect at once (the cache is dropped).
  check_refused(f.sync(newer, "d2", 1, xs), 401, "revoked_key");
  for (auto code : {"missing_key", "unknown_key", "device_mismatch",
                    "expired_key", "revoked_key"})
    CHECK_MESSAGE(f.counter(std::string("rejected_") + code) == 1, code);
  CHECK(f.stored("acme/d1").empty());
  CHECK(f.stored("acme/d2").empty());
  // The right key stores, stamped with the org it proved.
  auto ok = f.sync(key, "d1", 1, xs);
  CHECK(ok.status == 200);
  test::check_same_samples(f.stored("acme/d1"), xs);
  CHECK(f.stored("d1").empty());
}

TEST_CASE("two orgs with the same device name are kept apart") {
  tenancy_fixture f;
  f.run(op("org-create", "acme"));
  f.run(op("org-create", "globex"));
  auto a = f.add("acme", "edge");
  auto g = f.add("globex", "edge");
  auto xa = points("acme.cpu", 4);
  auto xg = points("globex.cpu", 2);
  REQUIRE(f.sync(a, "edge", 1, xa).status == 200);
  REQUIRE(f.sync(g, "edge", 1, xg).status == 200);
  test::check_same_samples(f.stored("acme/edge"), xa);
  test::check_same_samples(f.stored("globex/edge"), xg);
  // Sequence 1 of one org is no duplicate of the other's.
  CHECK(f.counter("duplicates") == 0);
  // Settings for one org's device never reach the other's.
  settings_change change;
  change.values.batch_size = 77;
  change.fields = field_batch_size;
  test::ask<cloud_settings>(*f.self, f.store, 5s, config_atom::value,
                            std::string{"acme/edge"}, change);
  auto ack_g = ack_of(f.sync(g, "edge", 2, xg).body);
  CHECK(ack_g.config.version == 0);
  auto ack_a = ack_of(f.sync(a, "edge", 2, xa).body);
  CHECK(ack_a.config.batch_size == 77);
  // The org list counts each org's own devices.
  auto orgs = f.run(op("org-list", ""));
  REQUIRE(orgs.rows.size() == 2);
  CHECK(orgs.rows[0][1] == "1");
  CHECK(f.run(op("device-list", "globex")).rows.size() == 1);
}

TEST_CASE("anonymous mode stores requests without a key as the device they "
          "name, but never a name with an org in it") {
  tenancy_fixture f(true);
  auto xs = points("cpu", 2);
  CHECK(f.sync("", "plain-dev", 1, xs).status == 200);
  test::check_same_samples(f.stored("plain-dev"), xs);
  check_refused(f.sync("", "acme/d1", 1, xs), 400, "decode_failed");
  CHECK(f.stored("acme/d1").empty());
  // A key is still checked when one is sent.
  check_refused(f.sync("fdk_" + std::string(64, 'f'), "plain-dev", 2, xs), 401,
                "unknown_key");
}

TEST_CASE("an org over its points-per-second quota gets 429 with a wait, "
          "and gets through when the quota is raised") {
  tenancy_fixture f;
  f.run(op("org-create", "acme"));
  auto key = f.add("acme", "d1");
  auto quota = op("quota-set", "acme");
  quota.points_per_second = 10;
  f.run(quota);
  // A quiet org may send 10 s worth at once; this batch takes it into debt.
  REQUIRE(f.sync(key, "d1", 1, points("cpu", 150)).status == 200);
  auto over = f.sync(key, "d1", 2, points("mem", 5));
  check_refused(over, 429, "over_quota");
  CHECK(ack_of(over.body).retry_after_ms == 5000);
  CHECK(f.counter("rejected_over_quota") == 1);
  // Time pays the debt off...
  f.clock->advance(5000);
  CHECK(f.sync(key, "d1", 2, points("mem", 5)).status == 200);
  // Batch 2 owes 5 points: 0.5 s pays them.
  f.clock->advance(500);
  REQUIRE(f.sync(key, "d1", 3, points("disk", 500)).status == 200);
  // ...and a raised quota lets the device through at once.
  check_refused(f.sync(key, "d1", 4, points("net", 5)), 429, "over_quota");
  quota.points_per_second = 0;
  f.run(quota);
  f.clock->advance(2000); // the node rereads quotas after tenancy.cache-ttl
  CHECK(f.sync(key, "d1", 4, points("net", 5)).status == 200);
  CHECK(f.stored("acme/d1").size() == 150 + 5 + 500 + 5);
  auto bytes = op("quota-set", "acme");
  bytes.bytes_per_day = 1;
  f.run(bytes);
  f.clock->advance(2000);
  check_refused(f.sync(key, "d1", 5, points("x", 1)), 429, "over_quota");
}

namespace {

// Every sync outcome ingest reports, in order.
struct outcome_log {
  std::mutex m;
  std::vector<sync_outcome> xs;
};

outcome_listener::behavior_type
outcome_recorder(outcome_listener::pointer, std::shared_ptr<outcome_log> log) {
  return {
    [log](outcome_atom, const sync_outcome& x) {
      std::lock_guard<std::mutex> guard(log->m);
      log->xs.push_back(x);
    },
  };
}

} // namespace

TEST_CASE("a request of a known device refused before the store is "
          "reported as a failed outcome: undecodable, another device's "
          "key, over quota") {
  tenancy_fixture f;
  auto log = std::make_shared<outcome_log>();
  ingest_config icfg;
  icfg.store = f.store;
  icfg.tenancy = f.tenants;
  icfg.outcomes = f.keep(f.sys->spawn(outcome_recorder, log));
  f.ing = f.keep(f.sys->spawn(ingest, icfg));
  f.run(op("org-create", "acme"));
  auto key = f.add("acme", "d1");
  auto other = f.add("acme", "d2");
  auto seen = [&](size_t n) {
    std::vector<sync_outcome> out;
    CHECK(test::eventually([&] {
      std::lock_guard<std::mutex> guard(log->m);
      out = log->xs;
      return out.size() >= n;
    }, 10s));
    return out;
  };
  auto garbage = test::ask<http_reply>(
    *f.self, f.ing, 10s, sync_atom::value,
    sync_envelope{"not protobuf", "", protobuf_type, "Bearer " + key});
  CHECK(garbage.status == 400);
  check_refused(f.sync(other, "d1", 1, points("cpu", 3)), 403,
                "device_mismatch");
  auto quota = op("quota-set", "acme");
  quota.points_per_second = 10;
  f.run(quota);
  REQUIRE(f.sync(key, "d1", 1, points("cpu", 150)).status == 200);
  check_refused(f.sync(key, "d1", 2, points("mem", 5)), 429, "over_quota");
  // A request without a key names no device the node knows: no outcome.
  check_refused(f.sync("", "d1", 3, points("cpu", 3)), 401, "missing_key");
  auto xs = seen(4);
  REQUIRE(xs.size() == 4);
  CHECK(xs[0].device == "acme/d1");
  CHECK_FALSE(xs[0].accepted);
  CHECK(xs[0].sequence == 0);
  CHECK(xs[1].device == "acme/d2");
  CHECK(xs[1].stream == "metrics");
  CHECK_FALSE(xs[1].accepted);
  CHECK(xs[1].sequence == 0);
  CHECK(xs[2].device == "acme/d1");
  CHECK(xs[2].accepted);
  CHECK(xs[2].sequence == 1);
  CHECK(xs[3].device == "acme/d1");
  CHECK_FALSE(xs[3].accepted);
  CHECK(xs[3].sequence == 0);
  CHECK(xs[3].bytes > 0);
}

TEST_CASE("POST /v2/sync with batches of several devices and orgs under one "
          "key: only the key's device's batches are stored") {
  tenancy_fixture f;
  f.run(op("org-create", "acme"));
  f.run(op("org-create", "globex"));
  auto key = f.add("acme", "d1");
  f.add("acme", "d2");
  f.add("globex", "d1");
  auto port = f.open_endpoint(f.ing, http_limits{});
  REQUIRE(port != 0);
  http_client client("127.0.0.1", port, 10s, 1 << 20);
  auto body = [](const std::string& device, const metric_samples& xs) {
    encode_settings es;
    es.device_id = device;
    es.sequence = 1;
    es.now_ms = clock_start_ms;
    return encode_metrics_request(es, xs);
  };
  auto xs = points("cpu", 3);
  auto bundle = encode_bundle({body("d2", xs), body("globex/d1", xs),
                               body("d1", xs)});
  auto res = client.post("/v2/sync", bundle, {{"Authorization",
                                               "Bearer " + key}});
  REQUIRE(res);
  REQUIRE(res->status == 200);
  auto acks = decode_bundle_response(res->body, 3);
  REQUIRE(acks);
  CHECK((*acks)[0].status == 403);
  CHECK((*acks)[0].error_code == "device_mismatch");
  CHECK((*acks)[1].status == 403);
  CHECK((*acks)[1].error_code == "device_mismatch");
  CHECK((*acks)[2].status == 200);
  CHECK((*acks)[2].last_sequence_ack == 1);
  test::check_same_samples(f.stored("acme/d1"), xs);
  CHECK(f.stored("acme/d2").empty());
  CHECK(f.stored("globex/d1").empty());
  // Without a key every batch is refused as v1 would refuse it.
  res = client.post("/v2/sync", bundle, {});
  REQUIRE(res);
  acks = decode_bundle_response(res->body, 3);
  REQUIRE(acks);
  for (auto& ack : *acks)
    CHECK(ack.status == 401);
}
