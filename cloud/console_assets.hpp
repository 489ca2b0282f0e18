#pragma once

#include <cstddef>

namespace fleetd {

/// One file of cloud/console/, built into the binary by
/// cmake/EmbedFiles.cmake (no file to find, no CDN, at run time).
struct console_asset {
  const char* name;
  const unsigned char* data;
  size_t size;
};

extern const console_asset console_assets[];
extern const size_t console_asset_count;

} // namespace fleetd
