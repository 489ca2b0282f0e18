#include "tools/fleetctl_watch.hpp"

#include <ctime>
#include <iostream>
#include <thread>

#include "messages/error.hpp"
#include "runtime/options.hpp"

namespace fleetd {

std::string clock_text(int64_t unix_ms) {
  std::time_t t = unix_ms / 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  char out[16];
  strftime(out, sizeof(out), "%H:%M:%S", &tm);
  return out;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

int repeat(caf::actor_system& sys, inspector_actor node,
           const repeat_options& opt, const console_show& show) {
  caf::scoped_actor self{sys};
  int64_t printed = 0;
  bool lost = false;
  for (int64_t tick = 0; opt.count == 0 || printed < opt.count; ++tick) {
    if (tick > 0)
      std::this_thread::sleep_for(opt.interval);
    if (!node) {
      auto again = connect_console(sys, opt.host, opt.port, opt.tls);
      if (!again)
        continue;
      node = std::move(*again);
      std::cerr << "fleetctl: " << opt.command << ": reconnected to "
                << opt.node << std::endl;
    }
    auto out = show(self, node);
    if (!out) {
      if (!lost)
        std::cerr << "fleetctl: " << opt.command << ": lost node " << opt.node
                  << ": " << render(out.error()) << "; reconnecting every "
                  << to_duration_text(opt.interval) << std::endl;
      lost = true;
      node = inspector_actor{};
      continue;
    }
    lost = false;
    if (opt.separate)
      std::cout << "--- " << clock_text(now_ms()) << "\n";
    std::cout << *out << std::flush;
    ++printed;
  }
  return 0;
}

} // namespace fleetd
