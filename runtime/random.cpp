#include "runtime/random.hpp"

#include <cerrno>
#include <cstdlib>
#include <vector>

#include <sys/random.h>

namespace fleetd {

std::string random_hex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  size_t got = 0;
  while (got < bytes) {
    auto n = getrandom(buf.data() + got, bytes - got, 0);
    if (n < 0 && errno == EINTR)
      continue;
    // getrandom cannot fail on Linux >= 3.17 once the pool is seeded; a key
    // from a weaker source would be worse than stopping.
    if (n < 0)
      std::abort();
    got += static_cast<size_t>(n);
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes * 2);
  for (auto c : buf) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

} // namespace fleetd
