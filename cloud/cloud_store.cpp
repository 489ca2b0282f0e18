#include "cloud/cloud_store.hpp"

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/result.hpp"

namespace fleetd {

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
  auto& st = *self->state.store;
  return {
    [&st](write_atom, const ingest_batch& b) -> caf::result<ingest_outcome> {
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
    [&st](stats_atom) { return st.stats(); },
  };
}

} // namespace fleetd
