#pragma once

// The readers and checks of the data stack tests (data_stack_test,
// data_stack_fault_test): what a device collected against what
// VictoriaMetrics, ClickHouse and the Loki stand-in hold, record by record.

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ch_fixture.hpp"
#include "support/loki_standin.hpp"
#include "vm_fixture.hpp"

namespace fleetd::test {

/// A series: metric name and canonical labels (as ClickHouse stores them).
using series_key = std::pair<std::string, std::string>;
using sample = std::pair<int64_t, double>;
using samples_by_series = std::map<series_key, std::vector<sample>>;

/// Which device of which org a reader looks at.
struct stack_device {
  std::string org;
  std::string device;
};

/// The device's points, from its file, by series, sorted by time.
samples_by_series device_samples(const std::string& device_db);

size_t total(const samples_by_series& xs);

/// The fields of `text` cut at each `sep`; the last one even when empty.
std::vector<std::string> split(const std::string& text, char sep);

/// VictoriaMetrics' export of the device's series once it holds `samples`
/// (vm_export), org and device labels checked on every series.
samples_by_series vm_samples(vm_server& vm, const stack_device& who,
                             size_t samples);

/// ClickHouse's raw rows of the device; without FINAL a doubled insert
/// shows, with FINAL only what survives ReplacingMergeTree's deduplication.
samples_by_series ch_samples(ch_server& ch, const stack_device& who,
                             bool final = false);

/// Checks `got` == `want` series by series, naming each difference.
void check_same(const samples_by_series& got, const samples_by_series& want,
                const char* backend);

/// True once the node (console `console`) has written something through
/// each of `sinks` and none lags.
bool sinks_drained(uint16_t console,
                   const std::vector<std::string>& sinks = {
                     "sink_victoria", "sink_clickhouse", "sink_loki",
                     "sink_fleet"});

/// Hourly sum, count, min and max by (metric, labels, hour's start in s).
struct rollup {
  double sum = 0;
  uint64_t count = 0;
  double min = 0;
  double max = 0;
};
using rollups = std::map<std::tuple<std::string, std::string, int64_t>, rollup>;

/// The hourly rollups of `xs`, NaN and infinities left out.
rollups expected_rollups(const samples_by_series& xs);

/// `got` == the rollups of `want` (sums to rounding: summed in another
/// order); returns how many it compared.
size_t check_rollups(rollups got, const samples_by_series& want);

/// VictoriaMetrics: every sample once, with its org and device, none
/// dropped (vm_rows_invalid_total, vm_rows_ignored_total).
void check_vm(vm_server& vm, const stack_device& who,
              const samples_by_series& want);

/// ClickHouse: raw rows once (FINAL when `final`: a replay after a crash may
/// leave rows for the merge to fold), hourly rollups exact; returns how
/// many rollups it compared.
size_t check_ch(ch_server& ch, const stack_device& who,
                const samples_by_series& want, bool final = false);

/// Loki: the device's lines (from its file), once, in its one stream of the
/// org's tenant; returns how many.
size_t check_loki(const loki_standin& loki, const stack_device& who,
                  const std::string& device_db);

} // namespace fleetd::test
