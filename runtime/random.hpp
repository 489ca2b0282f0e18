#pragma once

#include <cstddef>
#include <string>

namespace fleetd {

/// `bytes` bytes from the kernel's CSPRNG (getrandom), as lower-case hex
/// (2 * bytes characters): epochs, device keys, enrollment tokens.
std::string random_hex(size_t bytes);

} // namespace fleetd
