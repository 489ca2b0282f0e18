#pragma once

#include <string>

namespace fleetd::test {

/// Marks the running test case as not run, for `reason` (e.g. "cannot mount
/// tmpfs: needs root"); the case returns right after (`return skip(...);`).
/// The test binary then prints "SKIPPED: <case>: <reason>" and exits 77,
/// which ctest reports as skipped (SKIP_RETURN_CODE, set by fleetd_test).
/// A case that may skip runs in a ctest entry of its own (fleetd_test's
/// ALONE): the binary fails when a skip would hide other cases' results.
void skip(const std::string& reason);

} // namespace fleetd::test
