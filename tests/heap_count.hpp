#pragma once

// Heap accounting for tests that bound what hostile input makes a decoder
// hold: linking fleetd_heap_count replaces the program's operator new and
// delete with ones that count every block's usable size.

#include <cstdint>

namespace fleetd::test {

/// Heap bytes in use now.
int64_t heap_live();

/// The most in use at once since the last heap_reset_peak.
int64_t heap_peak();

/// Starts a new peak from what is in use now; returns that.
int64_t heap_reset_peak();

} // namespace fleetd::test
