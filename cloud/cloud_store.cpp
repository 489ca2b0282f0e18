#include "cloud/cloud_store.hpp"

#include <chrono>
#include <memory>
#include <utility>

#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/result.hpp"

namespace fleetd {

size_t writer_of(const std::string& device_id, size_t writers) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : device_id)
    h = (h ^ c) * 1099511628211ull;
  return writers > 0 ? static_cast<size_t>(h % writers) : 0;
}

namespace {

// Folds a writer's counters into `into` (the same names, summed).
void add_counters(actor_stats& into, const actor_stats& x) {
  for (auto& [k, v] : x.counters)
    into.counters[k] += v;
}

// The stats of this writer and of every other one, summed.
caf::result<actor_stats>
all_stats(cloud_store_actor::stateful_pointer<cloud_store_state> self) {
  auto mine = self->state.store->stats();
  auto& ws = self->state.writers;
  if (ws.empty())
    return mine;
  auto rp = self->make_response_promise<actor_stats>();
  auto acc = std::make_shared<std::pair<actor_stats, size_t>>(std::move(mine),
                                                               ws.size());
  for (auto& w : ws)
    self->request(w, std::chrono::seconds(10), stats_atom::value)
      .then(
        [rp, acc](const actor_stats& x) mutable {
          add_counters(acc->first, x);
          if (--acc->second == 0)
            rp.deliver(acc->first);
        },
        [rp, acc](caf::error& err) mutable {
          if (acc->second > 0) {
            acc->second = 0;
            rp.deliver(std::move(err));
          }
        });
  return rp;
}

} // namespace

caf::error validate(const std::shared_ptr<cloud_store_backend>& store) {
  if (!store)
    return make_error(ec::bad_config, "cloud_store: no store");
  return caf::none;
}

cloud_store_actor::behavior_type
cloud_store(cloud_store_actor::stateful_pointer<cloud_store_state> self,
            std::shared_ptr<cloud_store_backend> store) {
  if (stop_on_bad_config(self, "cloud_store", validate(store)))
    return cloud_store_actor::behavior_type::make_empty_behavior();
  self->state.store = std::move(store);
  auto more = self->state.store->more_writers();
  if (!more) {
    log_error("cloud_store", "cannot open more writers: ",
              render(more.error()));
    self->quit(more.error());
    return cloud_store_actor::behavior_type::make_empty_behavior();
  }
  // Linked: a writer's death is the store's, which its supervisor restarts.
  for (auto& w : *more)
    self->state.writers.push_back(
      self->spawn<caf::detached + caf::linked>(cloud_store, w));
  // A normal exit does not end linked actors: the writers end with it.
  self->attach_functor([ws = self->state.writers](const caf::error&) {
    for (auto& w : ws)
      caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
  });
  auto& st = *self->state.store;
  return {
    [self, &st](write_atom,
                const ingest_batch& b) -> caf::result<ingest_outcome> {
      auto& ws = self->state.writers;
      if (auto i = writer_of(b.device_id, ws.size() + 1); i > 0)
        return self->delegate(ws[i - 1], write_atom::value, b);
      auto r = st.write(b);
      if (!r) {
        log_warning("cloud_store", "cannot store batch ", b.sequence,
                    " of ", b.device_id, "/", b.stream, ": ",
                    render(r.error()));
        return r.error();
      }
      return *r;
    },
    [&st](devices_atom) -> caf::result<device_infos> {
      return to_result(st.devices());
    },
    [&st](points_atom, const std::string& device) -> caf::result<metric_samples> {
      return to_result(st.points(device));
    },
    [&st](logs_atom, const std::string& device) -> caf::result<log_lines> {
      return to_result(st.logs(device));
    },
    [&st](events_atom,
          const std::string& device) -> caf::result<event_records> {
      return to_result(st.events(device));
    },
    [&st](config_atom, const std::string& device,
          const settings_change& x) -> caf::result<cloud_settings> {
      return to_result(st.set_config(device, x));
    },
    [&st](delivery_atom, const std::string& device,
          int64_t since_ms) -> caf::result<delivery_rows> {
      return to_result(st.delivery(device, since_ms));
    },
    [self](stats_atom) { return all_stats(self); },
  };
}

} // namespace fleetd
