#pragma once

// CONTRACT_CASE(name, fn): one contract case per backend, "embedded: name"
// and "postgresql: name", running `fn` through the including file's
// run_embedded(fn) and run_pg(fn). The PostgreSQL ones run alone (ctest
// entry <test>.pg, fleetd_test's ALONE) so that their skip hides nothing.

#include <doctest/doctest.h>

#define CONTRACT_CASE(name, fn)                                              \
  TEST_CASE("embedded: " name) {                                             \
    run_embedded(fn);                                                        \
  }                                                                          \
  TEST_CASE("postgresql: " name) {                                           \
    run_pg(fn);                                                              \
  }
