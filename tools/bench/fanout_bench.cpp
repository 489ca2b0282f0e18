#include "tools/bench/fanout_bench.hpp"

#include <chrono>
#include <ctime>
#include <iostream>
#include <sstream>

#include "cloud/vm_sink.hpp"
#include "messages/error.hpp"
#include "tools/bench/bench_util.hpp"
#include "tools/vm_server/vm_server.hpp"

namespace fleetd::bench {

const char* fanout_summary
  = "journal entries through the VictoriaMetrics sink into a throwaway "
    "VictoriaMetrics,\n      against the same lines POSTed raw to its "
    "import (ratio)";

namespace {

using clock_type = std::chrono::steady_clock;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// The entries of devices [first, last) for time window `window`: each
// device's S series (node_exporter-like names and labels) x K scrapes.
journal_entries make_entries(const fanout_options& opt, int64_t first,
                             int64_t last, int64_t t0) {
  static const char* names[] = {"node_cpu_seconds_total",
                                "node_memory_MemAvailable_bytes",
                                "node_network_receive_bytes_total",
                                "node_disk_read_bytes_total",
                                "node_filesystem_avail_bytes"};
  journal_entries out;
  for (int64_t d = first; d < last; ++d) {
    journal_entry e;
    e.id = d + 1;
    e.org = "org" + std::to_string(d % opt.orgs);
    e.device = "device-" + std::to_string(d);
    e.samples.reserve(opt.series * opt.scrapes);
    for (int64_t k = 0; k < opt.scrapes; ++k)
      for (int64_t s = 0; s < opt.series; ++s)
        e.samples.push_back(
          metric_sample{names[s % 5],
                        {{"instance", "edge"}, {"idx", std::to_string(s)}},
                        t0 + k * 10'000,
                        static_cast<double>(d * 7 + s * 13 + k) * 0.25});
    out.push_back(std::move(e));
  }
  return out;
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

// Wall time and CPU (this process: the sink's threads; and the server) of
// an arm's timed parts only.
struct arm_timer {
  pid_t server = 0;
  double seconds = 0;
  double cpu_s = 0;
  template <class F>
  void time(F&& f) {
    auto c0 = process_cpu_seconds() + cpu_seconds_of(server);
    auto t0 = clock_type::now();
    f();
    seconds += std::chrono::duration<double>(clock_type::now() - t0).count();
    cpu_s += process_cpu_seconds() + cpu_seconds_of(server) - c0;
  }
};

// One pass of every device through the sink; the entries are made outside
// the timed part (the journal's work, not the sink's).
arm_timer sink_pass(const fanout_options& opt, vm_sink& sink, pid_t server,
                    int64_t t0) {
  arm_timer timer{server};
  for (int64_t d = 0; d < opt.devices; d += opt.entries_per_write) {
    auto entries = make_entries(
      opt, d, std::min(opt.devices, d + opt.entries_per_write), t0);
    timer.time([&] {
      if (auto err = sink.write(entries))
        fail("vm_sink: " + render(err));
    });
  }
  return timer;
}

// The same samples rendered before the clock starts, one body per write.
arm_timer raw_pass(const fanout_options& opt, vm_server& vm, int64_t t0) {
  vm_sink_config limits;
  arm_timer timer{vm.pid()};
  std::string body;
  for (int64_t d = 0; d < opt.devices; d += opt.entries_per_write) {
    auto entries = make_entries(
      opt, d, std::min(opt.devices, d + opt.entries_per_write), t0);
    body.clear();
    for (auto& e : entries)
      for (auto& s : e.samples)
        body += *vm_line(e.org, e.device, s, limits);
    timer.time([&] {
      if (auto err = vm.post("/api/v1/import/prometheus", body))
        fail("raw import: " + render(err));
    });
  }
  return timer;
}

// Series with a sample in the 5 minutes before `at_ms` (every series has
// one in the last pass): an exact count, unlike /api/v1/series/count.
int64_t stored_series(vm_server& vm, int64_t at_ms) {
  if (auto err = vm.flush())
    fail("force_flush: " + render(err));
  // count({device_id!=""}), URL-encoded.
  auto body = vm.get("/api/v1/query?query=count(%7Bdevice_id%21%3D%22%22%7D)"
                     "&time="
                     + std::to_string(at_ms / 1000));
  if (!body)
    fail("count query: " + render(body.error()));
  auto at = body->find("\"value\":[");
  auto quote = at == std::string::npos ? at : body->find(",\"", at);
  if (quote == std::string::npos)
    fail("count query: " + body->substr(0, 300));
  return std::stoll(body->substr(quote + 2));
}

fanout_result run_checked(const fanout_options& opt) {
  fanout_result r;
  vm_server::failure failed;
  auto vm = vm_server::start(failed);
  if (!vm) {
    r.skipped = failed.skip;
    r.error = failed.why;
    return r;
  }
  vm_sink_config cfg;
  cfg.url = vm->url();
  cfg.max_request_bytes = opt.max_request_bytes;
  auto sink = make_vm_sink(cfg);
  if (!sink)
    fail(render(sink.error()));
  r.points_per_round = opt.devices * opt.series * opt.scrapes;
  r.series = opt.devices * opt.series;
  // Distinct timestamps per pass, all inside the server's 1-day retention.
  auto window = opt.scrapes * 10'000;
  auto base = now_ms() - 6 * 3'600'000;
  // Warm-up: every series created once, so neither arm pays for that.
  sink_pass(opt, **sink, vm->pid(), base);
  for (int64_t round = 0; round < opt.rounds; ++round) {
    auto t_sink = base + (2 * round + 1) * window;
    auto t_raw = base + (2 * round + 2) * window;
    arm_timer sink_t, raw_t;
    if (round % 2 == 0) {
      sink_t = sink_pass(opt, **sink, vm->pid(), t_sink);
      raw_t = raw_pass(opt, *vm, t_raw);
    } else {
      raw_t = raw_pass(opt, *vm, t_raw);
      sink_t = sink_pass(opt, **sink, vm->pid(), t_sink);
    }
    r.sink_rounds.push_back(r.points_per_round / sink_t.seconds);
    r.raw_rounds.push_back(r.points_per_round / raw_t.seconds);
    r.sink_cpu_rounds.push_back(sink_t.cpu_s * 1e6 / r.points_per_round);
    r.raw_cpu_rounds.push_back(raw_t.cpu_s * 1e6 / r.points_per_round);
    if (opt.progress)
      std::cerr << "fanout round " << round + 1 << ": sink "
                << format(r.sink_rounds.back(), 0) << " points/s, raw "
                << format(r.raw_rounds.back(), 0) << " points/s; CPU "
                << format(r.sink_cpu_rounds.back(), 3) << " vs "
                << format(r.raw_cpu_rounds.back(), 3) << " us/point"
                << std::endl;
  }
  r.points_per_s = median(r.sink_rounds);
  r.vm_import_points_per_s = median(r.raw_rounds);
  // Each round's arms ran back to back: their ratio drifts less with the
  // machine's load than the ratio of the two medians.
  std::vector<double> ratios;
  for (size_t i = 0; i < r.sink_rounds.size(); ++i)
    ratios.push_back(r.sink_rounds[i] / r.raw_rounds[i]);
  r.ratio = median(ratios);
  r.sink_cpu_us_per_point = median(r.sink_cpu_rounds);
  r.raw_cpu_us_per_point = median(r.raw_cpu_rounds);
  r.sink_requests = (*sink)->stats().requests;
  r.stored_series = stored_series(*vm, base + (2 * opt.rounds + 1) * window);
  auto invalid = vm->metric("vm_rows_invalid_total");
  auto ignored = vm->metric("vm_rows_ignored_total");
  if (!invalid || !ignored)
    fail("/metrics: no vm_rows_invalid_total or vm_rows_ignored_total");
  r.dropped_rows = *invalid + *ignored;
  if (r.dropped_rows != 0 || r.stored_series != r.series
      || !(*sink)->stats().refused.empty())
    fail("VictoriaMetrics dropped rows (" + format(r.dropped_rows, 0)
         + ") or holds " + std::to_string(r.stored_series) + " series, not "
         + std::to_string(r.series));
  return r;
}

std::string parse_args(const std::vector<std::string>& args,
                       fanout_options& opt) {
  arg_cursor cur(args);
  while (cur.next()) {
    auto arg = cur.name();
    std::string value;
    int64_t n = 0;
    if (!cur.value(value) || !parse_int(value, n) || n < 1)
      return arg + ": wants a positive whole number";
    if (arg == "--devices")
      opt.devices = n;
    else if (arg == "--series")
      opt.series = n;
    else if (arg == "--scrapes")
      opt.scrapes = n;
    else if (arg == "--orgs")
      opt.orgs = n;
    else if (arg == "--entries-per-write")
      opt.entries_per_write = n;
    else if (arg == "--rounds")
      opt.rounds = n;
    else if (arg == "--max-request-bytes")
      opt.max_request_bytes = std::max<int64_t>(n, 1 << 20);
    else
      return "unknown option " + arg;
  }
  return {};
}

} // namespace

fanout_result run_fanout(const fanout_options& opt) {
  try {
    return run_checked(opt);
  } catch (const bench_failure& f) {
    fanout_result r;
    r.error = f.what;
    return r;
  }
}

std::string fanout_line(const fanout_options& opt, const fanout_result& r) {
  std::ostringstream out;
  out << "BENCH fanout points_per_s=" << format(r.points_per_s, 0)
      << " vm_import_points_per_s=" << format(r.vm_import_points_per_s, 0)
      << " ratio=" << format(r.ratio, 3) << " rounds=" << opt.rounds
      << " devices=" << opt.devices << " series=" << r.series
      << " points_per_round=" << r.points_per_round
      << " entries_per_write=" << opt.entries_per_write
      << " max_request_bytes=" << opt.max_request_bytes
      << " sink_requests=" << r.sink_requests
      << " dropped_rows=" << format(r.dropped_rows, 0)
      << " sink_cpu_us_per_point=" << format(r.sink_cpu_us_per_point, 3)
      << " vm_import_cpu_us_per_point=" << format(r.raw_cpu_us_per_point, 3)
      << " cpu_ratio="
      << format(r.raw_cpu_us_per_point / r.sink_cpu_us_per_point, 3);
  return out.str();
}

std::string fanout_usage() {
  return "usage: fleetd-bench fanout [--devices N] [--series S] [--scrapes K] "
         "[--orgs O]\n"
         "                           [--entries-per-write E] [--rounds R] "
         "[--max-request-bytes B]\n\n"
         "Starts a throwaway VictoriaMetrics (tools/vm_server: Debian's "
         "victoria-metrics,\n127.0.0.1, dedup 1ms), makes journal entries "
         "of N devices (O orgs) with S series\nx K scrapes each, and writes "
         "them E entries at a time through cloud/vm_sink\n(Prometheus text, "
         "org_id/device_id labels, B-byte requests on one keep-alive\n"
         "connection). The baseline POSTs the same lines, rendered before "
         "the clock\nstarts, raw to /api/v1/import/prometheus, one body per "
         "E entries. A warm-up\npass creates every series first; then R "
         "rounds alternate which arm goes\nfirst, each with fresh "
         "timestamps. Fails unless VictoriaMetrics dropped nothing\n"
         "(vm_rows_invalid_total, vm_rows_ignored_total) and holds N*S "
         "series. Prints\n"
         "  BENCH fanout points_per_s=... vm_import_points_per_s=... "
         "ratio=... (medians)\n";
}

int run_fanout_bench(const std::vector<std::string>& args) {
  fanout_options opt;
  if (auto err = parse_args(args, opt); !err.empty()) {
    std::cerr << "fleetd-bench fanout: " << err << "\n" << fanout_usage();
    return 2;
  }
  auto r = run_fanout(opt);
  if (!r.error.empty()) {
    std::cerr << "fleetd-bench fanout: " << r.error << std::endl;
    return r.skipped ? 77 : 1;
  }
  std::cout << fanout_line(opt, r) << std::endl;
  return 0;
}

} // namespace fleetd::bench
