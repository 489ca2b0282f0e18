// The node's malloc settings: what glibc does with a freed large block.
#include "runtime/node.hpp"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include <doctest/doctest.h>

#include "skip.hpp"

using namespace fleetd;

namespace {

// Bytes of blocks mmapped apart from the heap while `bytes` is held.
size_t mmapped_while_holding(size_t bytes) {
  auto* p = static_cast<char*>(std::malloc(bytes));
  REQUIRE(p != nullptr);
  std::memset(p, 1, bytes);
  auto out = mallinfo2().hblkhd;
  std::free(p);
  return out;
}

} // namespace

TEST_CASE("fix_malloc_thresholds: a block over the threshold is mmapped even "
          "after a bigger one was freed") {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr)
    return test::skip("MALLOC_MMAP_THRESHOLD_ is set: it wins");
  fix_malloc_thresholds(128 * 1024);
  // Freeing a 1 MiB block raised glibc's own threshold past 512 KiB, so a
  // batch's 512 KiB buffer stayed in the heap after it was freed.
  auto before = mallinfo2().hblkhd;
  mmapped_while_holding(1 << 20);
  CHECK(mmapped_while_holding(512 * 1024) >= before + 512 * 1024);
}
