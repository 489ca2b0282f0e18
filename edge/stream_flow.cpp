#include "edge/stream_flow.hpp"

#include <sstream>

#include "edge/store_backend.hpp"

namespace fleetd {

void count_flow(flow_counts& x, const std::string& epoch,
                const std::string& stream, int64_t collected, int64_t stored) {
  if (x.epoch != epoch)
    x = flow_counts{epoch, {}};
  auto& s = x.streams[stream];
  s.collected += collected;
  s.stored += stored;
}

std::string encode_flow(const flow_counts& x) {
  std::ostringstream out;
  out << x.epoch << '\n';
  for (auto& [stream, s] : x.streams)
    out << stream << ' ' << s.collected << ' ' << s.stored << '\n';
  return out.str();
}

flow_counts decode_flow(const std::string& text) {
  std::istringstream in(text);
  flow_counts out;
  if (!std::getline(in, out.epoch) || out.epoch.empty())
    return {};
  // One stream a line, exactly "name collected stored".
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string stream, rest;
    stream_flow s;
    if (!(fields >> stream >> s.collected >> s.stored) || (fields >> rest))
      return {};
    // Only the streams a store keeps, never negative or stored > collected.
    if (check_stream(stream) || s.collected < 0 || s.stored < 0
        || s.stored > s.collected)
      return {};
    out.streams[stream] = s;
  }
  return out;
}

} // namespace fleetd
