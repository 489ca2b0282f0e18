#pragma once

// A throwaway VictoriaMetrics per test case (tools/vm_server): a real
// server from Debian's victoria-metrics package, never a mock.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tools/vm_server/vm_server.hpp"

namespace fleetd::test {

using fleetd::vm_server;

/// A fresh server; nullptr with `why` when it cannot run here (the case
/// skips). A server that should start and does not fails the case.
std::unique_ptr<vm_server> start_vm(std::string& why);

/// One series of an /api/v1/export answer.
struct vm_series {
  /// The "metric" object as VictoriaMetrics wrote it.
  std::string labels_json;
  std::vector<double> values;
  std::vector<int64_t> timestamps;
};

/// Flushes, then exports the series matching `selector`, again until they
/// hold at least `samples` samples or 10 s passed (VictoriaMetrics answers
/// 204, and even /internal/force_flush, before every row is searchable:
/// ~600 ms measured); 0 reads once. More than `samples` returns at once, so
/// a duplicate shows. A failed check when the server does not answer.
std::vector<vm_series> vm_export(vm_server& vm, const std::string& selector,
                                 size_t samples);

/// vm_rows_invalid_total + vm_rows_ignored_total: rows VictoriaMetrics
/// answered 204 for and dropped.
double vm_dropped_rows(vm_server& vm);

} // namespace fleetd::test
