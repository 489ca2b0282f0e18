// fleetd-bench wire: bytes per point of the columnar metrics batch against
// Prometheus remote-write 1.0 and the seed's one-message-per-point encoding,
// on a capture of real metrics.
//
// The capture (plain text or zstd) has one sample per line,
// `series value timestamp_ms`, split at the last two spaces; `series` is
// `name` or `name{label="value",...}` with Prometheus escapes; values are
// Prometheus text-format floats (NaN, +Inf, -Inf, exponents). Samples are
// cut into batches by timestamp window (floor(ts / 5 min) by default), file
// order kept within a batch. Every byte of every encoded batch is counted:
//
// ours:  encode_columnar against a session codec_context carried across the
//        batches (each series' name and labels sent once, in the first batch
//        that uses it; --no-session: names in every batch), zstd at --zstd-level (3, tier 1) per batch. Every
//        batch is decompressed and decoded with a receiver context and must
//        equal the input, doubles bit for bit; otherwise exit 1.
// rw:    Prometheus remote-write 1.0: a WriteRequest (timeseries=1; TimeSeries
//        labels=1 {name=1, value=2}, __name__ first then labels sorted;
//        samples=2 {value=1 double, timestamp=2 int64}) per batch, series in
//        first-appearance order, snappy block-compressed.
// naive: per point one protobuf message {name=1, labels=2 {name=1, value=2},
//        value=3 double, timestamp_ms=4 int64}, length-delimited and
//        concatenated, zstd-3 per batch.
#include "tools/bench/bench_util.hpp"
#include "tools/bench/wire_bench.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>
#include <optional>

#include <snappy.h>
#include <zstd.h>

#include "messages/metrics_codec.hpp"
#include "messages/types.hpp"

namespace fleetd::bench {

const char* wire_summary =
  "columnar metrics batches vs Prometheus remote-write 1.0 (protobuf + "
  "snappy) and\n      one protobuf message per point + zstd-3, on a capture "
  "file; bytes/point, ratio";

std::string wire_usage() {
  return "usage: fleetd-bench wire FILE [--batch-seconds S] [--zstd-level L] "
         "[--no-session]\n"
         "                          [--breakdown]\n\n"
         "Encodes the samples of FILE (one `series value timestamp_ms` per "
         "line, plain\nor zstd-compressed) in batches of S seconds (default "
         "300, tier 1) three ways\nand prints\n"
         "  BENCH wire points=N series=N batches=N bytes_per_point=.. "
         "nosession_bytes_per_point=.. rw_zstd_bytes_per_point=.. "
         "rw_bytes_per_point=..\n"
         "    naive_bytes_per_point=.. rw_ratio=.. rw_zstd_ratio=.. "
         "bytes_per_day_100_series=..\n\n"
         "bytes_per_point: columnar batches (series sent once per session), "
         "zstd at\nlevel L (default 3) per batch; nosession_: the same "
         "columnar encoding with\nevery batch self-contained; rw_: "
         "Prometheus remote-write 1.0 WriteRequest +\nsnappy per batch; "
         "rw_zstd_: the same WriteRequest + zstd at level L (what\nvmagent "
         "sends VictoriaMetrics); naive_: one protobuf message per point + "
         "zstd-3\nper batch. rw_ratio = rw_bytes_per_point / "
         "bytes_per_point, rw_zstd_ratio\nlikewise; "
         "bytes_per_day_100_series =\n"
         "bytes_per_point * 100 * 8640. Every columnar batch is decoded and "
         "compared\nwith its input; a mismatch exits 1. --no-session sends "
         "every series' name and\nlabels in every batch that uses it "
         "(no session series table).\n--breakdown prints to stderr, per metric name, "
         "the columnar bytes (zstd, all\nbatches) saved by leaving that "
         "metric's samples out of the batches.\n";
}

namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedOutputStream;
using google::protobuf::io::StringOutputStream;

struct bench_error {
  std::string what;
};

std::string read_capture(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw bench_error{"cannot open " + path};
  std::string raw((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  bool zst = raw.size() >= 4 && static_cast<uint8_t>(raw[0]) == 0x28
             && static_cast<uint8_t>(raw[1]) == 0xB5
             && static_cast<uint8_t>(raw[2]) == 0x2F
             && static_cast<uint8_t>(raw[3]) == 0xFD;
  if (!zst)
    return raw;
  std::string out;
  auto* ds = ZSTD_createDStream();
  ZSTD_initDStream(ds);
  ZSTD_inBuffer ib{raw.data(), raw.size(), 0};
  std::string chunk(ZSTD_DStreamOutSize(), '\0');
  size_t ret = 1;
  for (;;) {
    ZSTD_outBuffer ob{chunk.data(), chunk.size(), 0};
    ret = ZSTD_decompressStream(ds, &ob, &ib);
    if (ZSTD_isError(ret)) {
      ZSTD_freeDStream(ds);
      throw bench_error{path + ": " + ZSTD_getErrorName(ret)};
    }
    out.append(chunk.data(), ob.pos);
    if (ib.pos == ib.size && (ret == 0 || ob.pos < ob.size))
      break; // done, or truncated: no input left and nothing more came out
  }
  ZSTD_freeDStream(ds);
  if (ret != 0)
    throw bench_error{path + ": truncated zstd frame"};
  return out;
}

double parse_value(const std::string& s) {
  if (s == "NaN" || s == "nan")
    return std::nan("");
  if (s == "+Inf" || s == "Inf" || s == "inf" || s == "+inf")
    return HUGE_VAL;
  if (s == "-Inf" || s == "-inf")
    return -HUGE_VAL;
  // strtod in the "C" locale (fleetd-bench never calls setlocale).
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0')
    throw bench_error{"bad value '" + s + "'"};
  return v;
}

// `name` or `name{k="v",...}` (escapes \\, \", \n in values).
void parse_series(const std::string& s, metric_sample& out) {
  auto brace = s.find('{');
  if (brace == std::string::npos) {
    out.name = s;
    return;
  }
  out.name = s.substr(0, brace);
  size_t i = brace + 1;
  auto fail = [&] { throw bench_error{"bad series '" + s + "'"}; };
  for (;;) {
    while (i < s.size() && (s[i] == ' ' || s[i] == ','))
      ++i;
    if (i >= s.size())
      fail();
    if (s[i] == '}')
      break;
    auto eq = s.find('=', i);
    if (eq == std::string::npos || eq + 1 >= s.size() || s[eq + 1] != '"')
      fail();
    std::string key = s.substr(i, eq - i);
    while (!key.empty() && key.back() == ' ')
      key.pop_back();
    std::string val;
    i = eq + 2;
    for (;;) {
      if (i >= s.size())
        fail();
      char c = s[i++];
      if (c == '"')
        break;
      if (c == '\\') {
        if (i >= s.size())
          fail();
        char e = s[i++];
        val.push_back(e == 'n' ? '\n' : e);
      } else {
        val.push_back(c);
      }
    }
    out.labels[key] = val;
  }
}

metric_samples parse_capture(const std::string& text) {
  metric_samples out;
  size_t pos = 0;
  size_t lineno = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos)
      nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++lineno;
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (line.empty() || line[0] == '#')
      continue;
    try {
      auto sp2 = line.rfind(' ');
      if (sp2 == std::string::npos || sp2 == 0)
        throw bench_error{"expected `series value timestamp_ms`"};
      auto sp1 = line.rfind(' ', sp2 - 1);
      if (sp1 == std::string::npos)
        throw bench_error{"expected `series value timestamp_ms`"};
      metric_sample s;
      parse_series(line.substr(0, sp1), s);
      s.value = parse_value(line.substr(sp1 + 1, sp2 - sp1 - 1));
      auto ts = line.substr(sp2 + 1);
      char* end = nullptr;
      errno = 0;
      s.timestamp_ms = std::strtoll(ts.c_str(), &end, 10);
      if (ts.empty() || *end != '\0' || errno != 0)
        throw bench_error{"bad timestamp '" + ts + "'"};
      out.push_back(std::move(s));
    } catch (const bench_error& e) {
      throw bench_error{"line " + std::to_string(lineno) + ": " + e.what};
    }
  }
  return out;
}

std::string zstd(const std::string& in, int level) {
  std::string out(ZSTD_compressBound(in.size()), '\0');
  auto n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), level);
  if (ZSTD_isError(n))
    throw bench_error{std::string("zstd: ") + ZSTD_getErrorName(n)};
  out.resize(n);
  return out;
}

std::string unzstd(const std::string& in) {
  auto size = ZSTD_getFrameContentSize(in.data(), in.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
    throw bench_error{"zstd: no content size"};
  std::string out(size, '\0');
  auto n = ZSTD_decompress(out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(n) || n != size)
    throw bench_error{"zstd: decompress failed"};
  return out;
}

constexpr auto length_delimited = WireFormatLite::WIRETYPE_LENGTH_DELIMITED;

void put_bytes_field(CodedOutputStream& out, int field, const std::string& s) {
  out.WriteTag(WireFormatLite::MakeTag(field, length_delimited));
  out.WriteVarint32(static_cast<uint32_t>(s.size()));
  out.WriteString(s);
}

std::string label_msg(const std::string& name, const std::string& value) {
  std::string buf;
  {
    StringOutputStream sos(&buf);
    CodedOutputStream out(&sos);
    put_bytes_field(out, 1, name);
    put_bytes_field(out, 2, value);
  }
  return buf;
}

// Prometheus remote-write 1.0 WriteRequest, uncompressed.
std::string remote_write_request(const metric_samples& batch) {
  std::map<std::pair<std::string, label_map>, size_t> index;
  std::vector<std::vector<const metric_sample*>> series;
  for (auto& s : batch) {
    auto key = std::make_pair(s.name, s.labels);
    auto it = index.find(key);
    if (it == index.end()) {
      it = index.emplace(std::move(key), series.size()).first;
      series.emplace_back();
    }
    series[it->second].push_back(&s);
  }
  std::string req;
  {
    StringOutputStream sos(&req);
    CodedOutputStream out(&sos);
    for (auto& points : series) {
      std::string ts_msg;
      {
        StringOutputStream tsos(&ts_msg);
        CodedOutputStream ts(&tsos);
        auto& first = *points.front();
        put_bytes_field(ts, 1, label_msg("__name__", first.name));
        for (auto& kv : first.labels) // label_map is sorted by name
          put_bytes_field(ts, 1, label_msg(kv.first, kv.second));
        for (auto* p : points) {
          std::string sm;
          {
            StringOutputStream ssos(&sm);
            CodedOutputStream s(&ssos);
            s.WriteTag(WireFormatLite::MakeTag(
              1, WireFormatLite::WIRETYPE_FIXED64));
            s.WriteLittleEndian64(WireFormatLite::EncodeDouble(p->value));
            s.WriteTag(WireFormatLite::MakeTag(
              2, WireFormatLite::WIRETYPE_VARINT));
            s.WriteVarint64(static_cast<uint64_t>(p->timestamp_ms));
          }
          put_bytes_field(ts, 2, sm);
        }
      }
      put_bytes_field(out, 1, ts_msg);
    }
  }
  return req;
}

// Remote-write as Prometheus sends it: snappy.
std::string snappy_of(const std::string& req) {
  std::string compressed;
  snappy::Compress(req.data(), req.size(), &compressed);
  return compressed;
}

// One protobuf message per point, length-delimited, zstd-3.
std::string naive(const metric_samples& batch) {
  std::string buf;
  {
    StringOutputStream sos(&buf);
    CodedOutputStream out(&sos);
    for (auto& p : batch) {
      std::string msg;
      {
        StringOutputStream msos(&msg);
        CodedOutputStream m(&msos);
        put_bytes_field(m, 1, p.name);
        for (auto& kv : p.labels)
          put_bytes_field(m, 2, label_msg(kv.first, kv.second));
        m.WriteTag(WireFormatLite::MakeTag(3, WireFormatLite::WIRETYPE_FIXED64));
        m.WriteLittleEndian64(WireFormatLite::EncodeDouble(p.value));
        m.WriteTag(WireFormatLite::MakeTag(4, WireFormatLite::WIRETYPE_VARINT));
        m.WriteVarint64(static_cast<uint64_t>(p.timestamp_ms));
      }
      out.WriteVarint32(static_cast<uint32_t>(msg.size()));
      out.WriteString(msg);
    }
  }
  return zstd(buf, 3);
}

// --breakdown: per metric name, the zstd bytes `batch` (`full` of them,
// encoded against `ctx`) loses when that metric's samples are left out.
void add_breakdown(const metric_samples& batch, const codec_context& ctx,
                   int level, size_t full,
                   std::map<std::string, size_t>& family_points,
                   std::map<std::string, long long>& family_bytes) {
  std::set<std::string> names;
  for (auto& s : batch) {
    names.insert(s.name);
    ++family_points[s.name];
  }
  for (auto& name : names) {
    metric_samples rest;
    for (auto& s : batch)
      if (s.name != name)
        rest.push_back(s);
    family_bytes[name] +=
      static_cast<long long>(full)
      - static_cast<long long>(zstd(encode_columnar(rest, ctx), level).size());
  }
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0)))
    --q;
  return q;
}


struct wire_options {
  std::string path;
  int64_t batch_seconds = 300;
  int level = 3;
  bool session = true;
  bool breakdown = false;
};

// The options; nullopt (after saying why) when they cannot run.
std::optional<wire_options> parse_wire_options(
  const std::vector<std::string>& args) {
  wire_options o;
  for (size_t i = 0; i < args.size(); ++i) {
    auto& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) {
        std::cerr << "fleetd-bench wire: " << a << " needs a value\n";
        std::exit(2);
      }
      return args[++i];
    };
    if (a == "--batch-seconds") {
      o.batch_seconds = std::atoll(value().c_str());
    } else if (a == "--no-session") {
      o.session = false;
    } else if (a == "--breakdown") {
      o.breakdown = true;
    } else if (a == "--zstd-level") {
      o.level = std::atoi(value().c_str());
    } else if (!a.empty() && a[0] == '-') {
      std::cerr << "fleetd-bench wire: unknown option " << a << "\n"
                << wire_usage();
      return std::nullopt;
    } else if (o.path.empty()) {
      o.path = a;
    } else {
      std::cerr << "fleetd-bench wire: one FILE only\n" << wire_usage();
      return std::nullopt;
    }
  }
  if (o.path.empty() || o.batch_seconds <= 0 || o.level < 1 || o.level > 22) {
    std::cerr << wire_usage();
    return std::nullopt;
  }
  return o;
}

// Bytes of every encoding of the same batches, all in one run.
struct wire_totals {
  size_t ours = 0;       // columnar, session, zstd at the level
  size_t no_session = 0; // columnar, every batch self-contained, same zstd
  size_t rw = 0;         // remote-write 1.0 + snappy
  size_t rw_zstd = 0;    // the same WriteRequest + zstd at the level
  size_t naive = 0;      // one protobuf per point + zstd-3
  size_t batches = 0;
  std::map<std::string, size_t> family_points;
  std::map<std::string, long long> family_bytes;
};

// Encodes one batch every way; false (after saying why) when ours does not
// round-trip.
bool add_batch(const wire_options& o, const metric_samples& batch,
               codec_context& sender, codec_context& receiver,
               wire_totals& t) {
  auto raw = encode_columnar(batch, sender);
  auto wire = zstd(raw, o.level);
  if (o.breakdown)
    add_breakdown(batch, sender, o.level, wire.size(), t.family_points,
                  t.family_bytes);
  // The sender's session advances as the receiver's does: by decoding.
  if (o.session && !decode_columnar(raw, sender)) {
    std::cerr << "fleetd-bench wire: batch " << t.batches
              << " does not decode on the sender" << std::endl;
    return false;
  }
  t.ours += wire.size();
  if (!o.session)
    receiver.clear();
  auto decoded = decode_columnar(unzstd(wire), receiver);
  if (!decoded || !identical(*decoded, batch)) {
    std::cerr << "fleetd-bench wire: batch " << t.batches
              << " does not round-trip" << std::endl;
    return false;
  }
  t.no_session += zstd(encode_columnar(batch, codec_context{}), o.level).size();
  auto req = remote_write_request(batch);
  t.rw += snappy_of(req).size();
  t.rw_zstd += zstd(req, o.level).size();
  t.naive += naive(batch).size();
  std::cerr << "batch " << t.batches << ": points=" << batch.size()
            << " raw=" << raw.size() << " ours=" << wire.size()
            << " rw=" << t.rw << " naive=" << t.naive << "\n";
  ++t.batches;
  return true;
}

void print_breakdown(const wire_totals& t) {
  std::vector<std::pair<long long, std::string>> rows;
  long long sum = 0;
  for (auto& [name, bytes] : t.family_bytes) {
    rows.emplace_back(bytes, name);
    sum += bytes;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::cerr << "breakdown (bytes without the metric, all batches; sum " << sum
            << " of " << t.ours << "):\n";
  for (auto& [bytes, name] : rows)
    std::cerr << "  " << std::setw(7) << bytes << " " << std::setw(6)
              << t.family_points.at(name) << " pts "
              << format(static_cast<double>(bytes)
                          / static_cast<double>(t.family_points.at(name)),
                        3)
              << " B/pt " << name << "\n";
}

} // namespace

int run_wire_bench(const std::vector<std::string>& args) {
  auto o = parse_wire_options(args);
  if (!o)
    return 2;
  try {
    auto samples = parse_capture(read_capture(o->path));
    if (samples.empty())
      throw bench_error{o->path + ": no samples"};
    std::map<int64_t, metric_samples> batches;
    std::set<std::pair<std::string, label_map>> all_series;
    for (auto& s : samples) {
      all_series.emplace(s.name, s.labels);
      batches[floor_div(s.timestamp_ms, o->batch_seconds * 1000)].push_back(s);
    }
    codec_context sender;
    codec_context receiver;
    wire_totals t;
    for (auto& [window, batch] : batches)
      if (!add_batch(*o, batch, sender, receiver, t))
        return 1;
    if (o->breakdown)
      print_breakdown(t);
    auto per_point = [&](size_t bytes) {
      return static_cast<double>(bytes) / static_cast<double>(samples.size());
    };
    double bpp = per_point(t.ours);
    std::cout << "BENCH wire points=" << samples.size()
              << " series=" << all_series.size() << " batches=" << t.batches
              << " bytes_per_point=" << format(bpp, 3)
              << " nosession_bytes_per_point=" << format(per_point(t.no_session), 3)
              << " rw_bytes_per_point=" << format(per_point(t.rw), 3)
              << " rw_zstd_bytes_per_point=" << format(per_point(t.rw_zstd), 3)
              << " naive_bytes_per_point=" << format(per_point(t.naive), 3)
              << " rw_ratio=" << format(per_point(t.rw) / bpp, 2)
              << " rw_zstd_ratio=" << format(per_point(t.rw_zstd) / bpp, 2)
              << " bytes_per_day_100_series=" << format(bpp * 100 * 8640, 0)
              << std::endl;
    return 0;
  } catch (const bench_error& e) {
    std::cerr << "fleetd-bench wire: " << e.what << std::endl;
    return 1;
  }
}

} // namespace fleetd::bench
