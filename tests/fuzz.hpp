#pragma once

// Seeded mutation of text inputs for the parsers' fuzz cases: each case
// runs fuzz_iterations() mutants of its own seed input and checks what the
// parser promises about every one.

#include <random>
#include <string>
#include <string_view>

namespace fleetd::test {

/// FLEETD_FUZZ_ITERATIONS from the environment (run long by hand), or
/// `fallback` (ctest's short budget).
long fuzz_iterations(long fallback);

/// `text` after 1-8 random edits: a byte replaced by any byte, a byte of
/// `alphabet` (the format's own characters) inserted, a run of up to 6
/// deleted, a run of up to 40 copied elsewhere.
std::string mutate(std::string text, std::string_view alphabet,
                   std::mt19937_64& rng);

} // namespace fleetd::test
