#include "heap_count.hpp"

#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {

std::atomic<int64_t> live_bytes{0};
std::atomic<int64_t> peak_bytes{0};

} // namespace

// Heap bytes in use, and the most since the peak was reset: what a hostile
// input made the process hold at once, not just its largest block.
void* operator new(size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr)
    throw std::bad_alloc{};
  auto now = live_bytes += static_cast<int64_t>(malloc_usable_size(p));
  auto seen = peak_bytes.load(std::memory_order_relaxed);
  while (now > seen && !peak_bytes.compare_exchange_weak(seen, now)) {
  }
  return p;
}
// GCC sees new/delete pairs inlined into malloc/free and warns wrongly.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept {
  if (p != nullptr)
    live_bytes -= static_cast<int64_t>(malloc_usable_size(p));
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  operator delete(p);
}
#pragma GCC diagnostic pop

namespace fleetd::test {

int64_t heap_live() {
  return live_bytes.load();
}

int64_t heap_peak() {
  return peak_bytes.load();
}

int64_t heap_reset_peak() {
  auto now = live_bytes.load();
  peak_bytes = now;
  return now;
}

} // namespace fleetd::test
