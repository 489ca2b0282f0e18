#include "messages/metrics_codec.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>

#include "messages/error.hpp"

namespace fleetd {

namespace {

// Value column: a mode byte (bits 0-3 mode, bits 4-5 reconstruction, bits
// 6-7 zero), then for the scaled-integer modes a scale byte.
constexpr uint8_t mode_delta = 0;     // integer deltas
constexpr uint8_t mode_dod = 1;       // integer delta-of-delta
constexpr uint8_t mode_xor = 2;       // byte-wise XOR of the double bits
constexpr uint8_t mode_const = 3;     // one scaled integer for all points
constexpr uint8_t mode_const_raw = 4; // one double (8 bytes) for all points
constexpr uint8_t mode_delta_gcd = 5; // deltas divided by a common factor
constexpr uint8_t mode_dod_gcd = 6;   // delta-of-delta divided likewise
constexpr uint8_t mode_plain = 7;     // the integers themselves
constexpr uint8_t mode_for = 8;       // the integers minus their minimum
constexpr uint8_t mode_count = 9;
// Reconstruction of a double from a scaled integer m.
constexpr uint8_t recon_div = 0;    // m / 10^k
constexpr uint8_t recon_mul = 1;    // m * 10^-k
constexpr uint8_t recon_divdiv = 2; // m / 10^a / 10^b
constexpr int max_scale = 15;
constexpr double two63 = 9223372036854775808.0;

const double pow10_table[max_scale + 1] = {
  1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
  1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
const double pow10_neg_table[max_scale + 1] = {
  1e-0, 1e-1, 1e-2,  1e-3,  1e-4,  1e-5,  1e-6,  1e-7,
  1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14, 1e-15};

uint64_t bits_of(double x) {
  uint64_t out;
  std::memcpy(&out, &x, sizeof(out));
  return out;
}

double double_of(uint64_t x) {
  double out;
  std::memcpy(&out, &x, sizeof(out));
  return out;
}

uint64_t zigzag(uint64_t x) {
  // x is an int64 in two's complement carried as uint64.
  return (x << 1) ^ (0 - (x >> 63));
}

uint64_t unzigzag(uint64_t x) {
  return (x >> 1) ^ (0 - (x & 1));
}

void put_varint(std::string& out, uint64_t x) {
  while (x >= 0x80) {
    out.push_back(static_cast<char>((x & 0x7F) | 0x80));
    x >>= 7;
  }
  out.push_back(static_cast<char>(x));
}

size_t varint_size(uint64_t x) {
  size_t n = 1;
  while (x >= 0x80) {
    x >>= 7;
    ++n;
  }
  return n;
}

void put_string(std::string& out, const std::string& s) {
  put_varint(out, s.size());
  out += s;
}


// Column of residuals: first value, then deltas (or delta-of-delta from the
// third on).
std::vector<uint64_t> residuals(const std::vector<uint64_t>& xs, bool dod) {
  std::vector<uint64_t> out;
  if (dod && xs.size() == 0) return out;
  out.reserve(xs.size());
  uint64_t prev = 0;
  uint64_t prev_delta = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    uint64_t delta = xs[i] - prev;
    out.push_back(dod && i >= 2 ? delta - prev_delta : delta);
    prev_delta = delta;
    prev = xs[i];
  }
  return out;
}

uint64_t abs64(uint64_t x) {
  return static_cast<int64_t>(x) < 0 ? 0 - x : x;
}

// Greatest common divisor of residuals 1..n (0 when all are zero).
uint64_t residual_gcd(const std::vector<uint64_t>& r) {
  uint64_t g = 0;
  for (size_t i = 1; i < r.size(); ++i) {
    uint64_t a = abs64(r[i]);
    while (a != 0) {
      uint64_t t = g % a;
      g = a;
      a = t;
    }
  }
  return g;
}

size_t residuals_size(const std::vector<uint64_t>& r, uint64_t g) {
  size_t n = g > 1 ? varint_size(g) : 0;
  for (size_t i = 0; i < r.size(); ++i)
    n += varint_size(zigzag(i > 0 && g > 1
                              ? static_cast<uint64_t>(
                                  static_cast<int64_t>(r[i])
                                  / static_cast<int64_t>(g))
                              : r[i]));
  return n;
}

// A column of unsigned integers (count known to the reader): a selector
// byte, then either byte planes (selector w = 0-8: byte 0 of every integer,
// then byte 1 of every integer, ... up to byte w-1) or Rice codes (selector
// 0x80 | k, k = 0-63: per integer z, q = z >> k as q one bits and a zero bit
// when q < rice_escape, else rice_escape one bits, 6 bits L - 1 and the L
// bits of q (L = bit length of q); then the k low bits of z; bits packed
// least significant first, the last byte padded with zero bits).
constexpr uint64_t rice_escape = 16;
constexpr uint8_t rice_flag = 0x80;

size_t bit_length(uint64_t x) {
  size_t n = 0;
  while (x != 0) {
    ++n;
    x >>= 1;
  }
  return n;
}

size_t rice_bits(const std::vector<uint64_t>& zs, int k) {
  size_t bits = 0;
  for (auto z : zs) {
    uint64_t q = z >> k;
    bits += k + (q < rice_escape ? q + 1 : rice_escape + 6 + bit_length(q));
  }
  return bits;
}

struct bit_writer {
  std::string& out;
  uint64_t acc = 0;
  int n = 0;
  void put(uint64_t x, int bits) { // bits <= 64
    for (int i = 0; i < bits; ++i) {
      acc |= ((x >> i) & 1) << n;
      if (++n == 8) {
        out.push_back(static_cast<char>(acc));
        acc = 0;
        n = 0;
      }
    }
  }
  void flush() {
    if (n > 0) out.push_back(static_cast<char>(acc));
    acc = 0;
    n = 0;
  }
};

void put_column(std::string& out, const std::vector<uint64_t>& zs) {
  uint64_t all = 0;
  for (auto z : zs) all |= z;
  int w = 0;
  while (w < 8 && (all >> (8 * w)) != 0) ++w;
  size_t plane_bytes = zs.size() * w;
  int best_k = -1;
  size_t best = SIZE_MAX;
  if (w > 0) {
    for (int k = 0; k < 64; ++k) {
      if (k > 0 && (all >> (k - 1)) == 0) break;
      auto b = rice_bits(zs, k);
      if (b < best) {
        best = b;
        best_k = k;
      }
    }
  }
  // Rice when it is smaller than the planes; zstd gains little on either
  // for noisy columns, and planes of regular columns compress better.
  if (best_k >= 0 && (best + 7) / 8 < plane_bytes) {
    out.push_back(static_cast<char>(rice_flag | best_k));
    bit_writer bw{out};
    for (auto z : zs) {
      uint64_t q = z >> best_k;
      if (q < rice_escape) {
        bw.put((uint64_t{1} << q) - 1, static_cast<int>(q + 1));
      } else {
        auto len = static_cast<int>(bit_length(q));
        bw.put(~uint64_t{0}, static_cast<int>(rice_escape));
        bw.put(static_cast<uint64_t>(len - 1), 6);
        bw.put(q, len);
      }
      bw.put(z, best_k);
    }
    bw.flush();
    return;
  }
  out.push_back(static_cast<char>(w));
  for (int b = 0; b < w; ++b)
    for (auto z : zs) out.push_back(static_cast<char>((z >> (8 * b)) & 0xFF));
}

// How a scaled integer becomes a double.
struct recon {
  uint8_t kind = recon_div;
  int a = 0; // k for div and mul
  int b = 0; // divdiv only
  uint8_t scale_byte() const {
    return static_cast<uint8_t>(kind == recon_divdiv ? a | (b << 4) : a);
  }
};

// The decoder's reconstruction of a scaled value.
double unscale(int64_t m, const recon& r) {
  auto x = static_cast<double>(m);
  switch (r.kind) {
    case recon_mul: return x * pow10_neg_table[r.a];
    case recon_divdiv: return x / pow10_table[r.a] / pow10_table[r.b];
    default: return x / pow10_table[r.a];
  }
}

bool try_scaled(const std::vector<double>& vals, const recon& r, int k,
                std::vector<uint64_t>& out) {
  out.clear();
  for (double v : vals) {
    double s = v * pow10_table[k];
    if (!(std::fabs(s) < two63)) return false;
    auto m = static_cast<int64_t>(std::llround(s));
    if (bits_of(unscale(m, r)) != bits_of(v)) return false;
    out.push_back(static_cast<uint64_t>(m));
  }
  return true;
}

// Scaled-decimal form of `vals`: the smallest total scale k that
// reproduces every bit; at equal k division, then multiplication, then two
// divisions m / 10^a / 10^(k-a) (smallest a first); or false.
bool scaled_ints(const std::vector<double>& vals, recon& r,
                 std::vector<uint64_t>& out) {
  for (double v : vals)
    if (!std::isfinite(v)) return false;
  for (int k = 0; k <= max_scale; ++k) {
    for (uint8_t kind : {recon_div, recon_mul}) {
      r = recon{kind, k, 0};
      if (try_scaled(vals, r, k, out)) return true;
    }
    // E.g. microseconds printed as float64(us) / 1000 / 1000.
    for (int a = 1; a < k; ++a) {
      r = recon{recon_divdiv, a, k - a};
      if (try_scaled(vals, r, k, out)) return true;
    }
  }
  return false;
}

void put_xor(std::string& out, const std::vector<double>& vals) {
  uint64_t prev = 0;
  for (double v : vals) {
    uint64_t b = bits_of(v);
    uint64_t x = b ^ prev;
    prev = b;
    if (x == 0) {
      out.push_back(0);
      continue;
    }
    int shift = 0;
    while (((x >> (8 * shift)) & 0xFF) == 0) ++shift;
    int top = 7;
    while (((x >> (8 * top)) & 0xFF) == 0) --top;
    int n = top - shift + 1;
    out.push_back(static_cast<char>((shift << 4) | n));
    for (int i = 0; i < n; ++i)
      out.push_back(static_cast<char>((x >> (8 * (shift + i))) & 0xFF));
  }
}

struct reader {
  std::string_view in;
  size_t pos = 0;
  bool ok = true;

  size_t left() const { return in.size() - pos; }

  uint8_t byte() {
    if (pos >= in.size()) {
      ok = false;
      return 0;
    }
    return static_cast<uint8_t>(in[pos++]);
  }

  uint64_t varint() {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = byte();
      if (!ok) return 0;
      if (shift == 63 && b > 1) {
        ok = false;
        return 0;
      }
      x |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return x;
    }
    ok = false;
    return 0;
  }

  // A count of items that each take at least one more byte.
  uint64_t count() {
    uint64_t n = varint();
    if (ok && n > left()) ok = false;
    return ok ? n : 0;
  }

  std::string str() {
    uint64_t n = count();
    if (!ok) return {};
    std::string s(in.substr(pos, n));
    pos += n;
    return s;
  }
};


struct bit_reader {
  reader& r;
  uint64_t acc = 0;
  int n = 0;
  bool get(int bits, uint64_t& x) { // bits <= 64
    x = 0;
    for (int i = 0; i < bits; ++i) {
      if (n == 0) {
        acc = r.byte();
        if (!r.ok) return false;
        n = 8;
      }
      x |= (acc & 1) << i;
      acc >>= 1;
      --n;
    }
    return true;
  }
};

bool get_column(reader& r, size_t n, std::vector<uint64_t>& zs) {
  zs.assign(n, 0);
  uint8_t sel = r.byte();
  if (!r.ok) return false;
  if (sel & rice_flag) {
    int k = sel & 0x7F;
    if (k > 63) return false;
    // Every integer takes at least one bit.
    if (n > r.left() * 8) return false;
    bit_reader br{r};
    for (auto& z : zs) {
      uint64_t q = 0;
      uint64_t bit = 1;
      while (q < rice_escape) {
        if (!br.get(1, bit)) return false;
        if (bit == 0) break;
        ++q;
      }
      if (q == rice_escape) {
        uint64_t len = 0;
        if (!br.get(6, len) || !br.get(static_cast<int>(len + 1), q))
          return false;
      }
      uint64_t low = 0;
      if (!br.get(k, low)) return false;
      z = (q << k) | low;
    }
    return br.acc == 0; // padding bits are zero
  }
  uint8_t w = sel;
  if (w > 8) return false;
  if (n != 0 && w > r.left() / n) return false;
  for (int b = 0; b < w; ++b)
    for (size_t i = 0; i < n; ++i)
      zs[i] |= static_cast<uint64_t>(r.byte()) << (8 * b);
  return r.ok;
}

struct batch_plan {
  // Slots: the batch's series in encoding order.
  std::vector<series_key> slot_keys;
  // For each sample, its slot.
  std::vector<uint32_t> sample_slot;
  // Series not yet in the context, in first-appearance order.
  std::vector<series_key> new_series;
};

batch_plan plan(const metric_samples& samples, const codec_context& ctx) {
  batch_plan p;
  std::map<series_key, uint32_t> first_seen; // key -> id in appearance order
  std::vector<const metric_sample*> firsts;
  std::vector<uint32_t> ids;
  ids.reserve(samples.size());
  for (auto& s : samples) {
    series_key key{s.name, s.labels};
    auto it = first_seen.find(key);
    if (it == first_seen.end()) {
      it = first_seen.emplace(key, static_cast<uint32_t>(firsts.size())).first;
      firsts.push_back(&s);
      if (ctx.find(key) < 0) p.new_series.push_back(key);
    }
    ids.push_back(it->second);
  }
  // Slot order: a series first seen right after another one sampled at the
  // same instant goes right after it, so scrapes in exposition order come out
  // in slot order (the canonical order needs no explicit order column).
  // A singly linked list over series ids keeps every insertion O(1).
  constexpr uint32_t none = UINT32_MAX;
  uint32_t head = none;
  std::vector<uint32_t> next(firsts.size(), none);
  std::vector<bool> placed(firsts.size(), false);
  for (size_t i = 0; i < samples.size(); ++i) {
    auto id = ids[i];
    if (placed[id])
      continue;
    placed[id] = true;
    if (i > 0 && samples[i - 1].timestamp_ms == samples[i].timestamp_ms) {
      next[id] = next[ids[i - 1]];
      next[ids[i - 1]] = id;
    } else { // first of its instant
      next[id] = head;
      head = id;
    }
  }
  std::vector<uint32_t> order;
  order.reserve(firsts.size());
  for (auto id = head; id != none; id = next[id])
    order.push_back(id);
  std::vector<uint32_t> slot_of(order.size());
  for (size_t k = 0; k < order.size(); ++k) slot_of[order[k]] = k;
  p.slot_keys.resize(order.size());
  for (size_t k = 0; k < order.size(); ++k) {
    auto* s = firsts[order[k]];
    p.slot_keys[k] = series_key{s->name, s->labels};
  }
  p.sample_slot.reserve(samples.size());
  for (auto id : ids) p.sample_slot.push_back(slot_of[id]);
  return p;
}

// The canonical order: by timestamp, then slot, then position in the slot.
std::vector<uint32_t>
canonical_order(const std::vector<std::vector<int64_t>>& slot_ts) {
  std::vector<std::tuple<int64_t, uint32_t, uint32_t>> pts;
  for (uint32_t s = 0; s < slot_ts.size(); ++s)
    for (uint32_t k = 0; k < slot_ts[s].size(); ++k)
      pts.emplace_back(slot_ts[s][k], s, k);
  std::sort(pts.begin(), pts.end());
  std::vector<uint32_t> out;
  out.reserve(pts.size());
  for (auto& t : pts) out.push_back(std::get<1>(t));
  return out;
}

caf::error bad(const char* what) {
  return make_error(ec::decode_failed, std::string("columnar batch: ") + what);
}

} // namespace

int64_t codec_context::find(const series_key& key) const {
  auto i = index.find(key);
  return i == index.end() ? -1 : static_cast<int64_t>(i->second);
}

uint32_t codec_context::add(series_key key) {
  auto id = static_cast<uint32_t>(series.size());
  index.emplace(key, id);
  series.push_back(std::move(key));
  return id;
}

void codec_context::clear() {
  series.clear();
  index.clear();
}

void commit_columnar(codec_context& ctx, const metric_samples& samples) {
  for (auto& s : samples) {
    series_key key{s.name, s.labels};
    if (ctx.find(key) < 0) ctx.add(std::move(key));
  }
}

std::string encode_columnar(const metric_samples& samples,
                            const codec_context& ctx) {
  auto p = plan(samples, ctx);
  std::string out;
  out.push_back(static_cast<char>(columnar_format_version));
  put_varint(out, ctx.series.size());
  // New series definitions; they take indices ctx.series.size() + i.
  put_varint(out, p.new_series.size());
  std::map<series_key, uint32_t> new_index;
  for (auto& key : p.new_series) {
    new_index.emplace(key, static_cast<uint32_t>(ctx.series.size()
                                                 + new_index.size()));
    put_string(out, key.first);
    put_varint(out, key.second.size());
    for (auto& kv : key.second) {
      put_string(out, kv.first);
      put_string(out, kv.second);
    }
  }
  // Slots: session index of each, as zigzag delta from the previous slot's.
  size_t nslots = p.slot_keys.size();
  put_varint(out, nslots);
  uint64_t prev_idx = 0;
  for (auto& key : p.slot_keys) {
    auto i = ctx.find(key);
    uint64_t idx = i >= 0 ? static_cast<uint64_t>(i) : new_index.at(key);
    put_varint(out, zigzag(idx - prev_idx));
    prev_idx = idx;
  }
  // Per-slot columns.
  std::vector<std::vector<int64_t>> slot_ts(nslots);
  std::vector<std::vector<double>> slot_vals(nslots);
  for (size_t i = 0; i < samples.size(); ++i) {
    auto s = p.sample_slot[i];
    slot_ts[s].push_back(samples[i].timestamp_ms);
    slot_vals[s].push_back(samples[i].value);
  }
  // Timestamp groups: slots with identical timestamp columns share one.
  std::map<std::vector<int64_t>, uint32_t> group_of;
  std::vector<const std::vector<int64_t>*> groups;
  std::vector<uint32_t> slot_group(nslots);
  for (size_t s = 0; s < nslots; ++s) {
    auto it = group_of.find(slot_ts[s]);
    if (it == group_of.end()) {
      it = group_of.emplace(slot_ts[s], static_cast<uint32_t>(groups.size()))
             .first;
      groups.push_back(&it->first);
    }
    slot_group[s] = it->second;
  }
  put_varint(out, groups.size());
  uint64_t prev_first = 0;
  for (auto* g : groups) {
    put_varint(out, g->size());
    // First timestamp relative to the previous group's first, then the
    // first delta, then delta-of-delta.
    auto first = static_cast<uint64_t>(g->front());
    put_varint(out, zigzag(first - prev_first));
    if (g->size() > 1) {
      auto ts = [&](size_t i) { return static_cast<uint64_t>((*g)[i]); };
      uint64_t delta = ts(1) - ts(0);
      put_varint(out, zigzag(delta));
      std::vector<uint64_t> zs;
      for (size_t i = 2; i < g->size(); ++i) {
        uint64_t d = ts(i) - ts(i - 1);
        zs.push_back(zigzag(d - delta));
        delta = d;
      }
      put_column(out, zs);
    }
    prev_first = first;
  }
  for (size_t s = 0; s < nslots; ++s) put_varint(out, slot_group[s]);
  // Order column.
  auto canon = canonical_order(slot_ts);
  if (canon == p.sample_slot) {
    out.push_back(0);
  } else {
    out.push_back(1);
    for (auto s : p.sample_slot) put_varint(out, s);
  }
  // Value columns.
  std::vector<uint64_t> ints;
  for (size_t s = 0; s < nslots; ++s) {
    recon rc;
    auto& vs = slot_vals[s];
    bool constant = true;
    for (auto v : vs)
      constant = constant && bits_of(v) == bits_of(vs.front());
    auto head = [&](uint8_t mode) {
      out.push_back(static_cast<char>(mode | (rc.kind << 4)));
      out.push_back(static_cast<char>(rc.scale_byte()));
    };
    if (scaled_ints(vs, rc, ints)) {
      if (constant) {
        head(mode_const);
        put_varint(out, zigzag(ints.front()));
        continue;
      }
      auto rd = residuals(ints, false);
      auto rdd = residuals(ints, true);
      auto gd = residual_gcd(rd);
      auto gdd = residual_gcd(rdd);
      size_t cd = residuals_size(rd, gd);
      size_t cdd = residuals_size(rdd, gdd);
      size_t cp = residuals_size(ints, 1);
      uint64_t lo = ints.front();
      for (auto m : ints)
        if (static_cast<int64_t>(m) < static_cast<int64_t>(lo)) lo = m;
      std::vector<uint64_t> offs;
      offs.reserve(ints.size());
      size_t cf = varint_size(zigzag(lo));
      for (auto m : ints) {
        offs.push_back(m - lo);
        cf += varint_size(m - lo);
      }
      if (cf < cp && cf <= cd && cf <= cdd) {
        head(mode_for);
        put_varint(out, zigzag(lo));
        put_column(out, offs);
        continue;
      }
      uint8_t mode;
      const std::vector<uint64_t>* r;
      uint64_t g = 1;
      if (cp <= cd && cp <= cdd) {
        mode = mode_plain;
        r = &ints;
      } else if (cdd < cd) {
        mode = gdd > 1 ? mode_dod_gcd : mode_dod;
        r = &rdd;
        g = gdd;
      } else {
        mode = gd > 1 ? mode_delta_gcd : mode_delta;
        r = &rd;
        g = gd;
      }
      head(mode);
      if (g > 1)
        put_varint(out, g);
      put_varint(out, zigzag(r->front()));
      std::vector<uint64_t> zs;
      zs.reserve(r->size());
      for (size_t i = 1; i < r->size(); ++i)
        zs.push_back(zigzag(g > 1 ? static_cast<uint64_t>(
                                      static_cast<int64_t>((*r)[i])
                                      / static_cast<int64_t>(g))
                                  : (*r)[i]));
      put_column(out, zs);
    } else if (constant) {
      out.push_back(static_cast<char>(mode_const_raw));
      uint64_t b = bits_of(vs.front());
      for (int i = 0; i < 8; ++i)
        out.push_back(static_cast<char>((b >> (8 * i)) & 0xFF));
    } else {
      out.push_back(static_cast<char>(mode_xor));
      put_xor(out, vs);
    }
  }
  return out;
}

caf::expected<uint64_t> columnar_base(std::string_view bytes) {
  reader r{bytes};
  if (r.byte() != columnar_format_version || !r.ok)
    return bad("unknown version");
  uint64_t base = r.varint();
  if (!r.ok) return bad("truncated header");
  return base;
}

caf::expected<metric_samples> decode_columnar(std::string_view bytes,
                                              codec_context& ctx) {
  reader r{bytes};
  if (r.byte() != columnar_format_version || !r.ok)
    return bad("unknown version");
  uint64_t base = r.varint();
  if (!r.ok) return bad("truncated header");
  if (base != ctx.series.size())
    return bad("session series table out of sync");
  uint64_t nnew = r.count();
  if (!r.ok) return bad("truncated series count");
  std::vector<series_key> fresh;
  fresh.reserve(nnew);
  std::map<series_key, uint32_t> fresh_index;
  for (uint64_t i = 0; i < nnew; ++i) {
    series_key key;
    key.first = r.str();
    uint64_t nl = r.count();
    for (uint64_t j = 0; r.ok && j < nl; ++j) {
      auto k = r.str();
      auto v = r.str();
      if (!key.second.emplace(std::move(k), std::move(v)).second)
        return bad("duplicate label");
    }
    if (!r.ok) return bad("truncated series definition");
    if (ctx.find(key) >= 0 || fresh_index.count(key) != 0)
      return bad("series defined twice");
    fresh_index.emplace(key, static_cast<uint32_t>(fresh.size()));
    fresh.push_back(std::move(key));
  }
  uint64_t total_series = ctx.series.size() + fresh.size();
  auto key_at = [&](uint64_t idx) -> const series_key& {
    return idx < ctx.series.size() ? ctx.series[idx]
                                   : fresh[idx - ctx.series.size()];
  };
  uint64_t nslots = r.count();
  if (!r.ok) return bad("truncated slot count");
  std::vector<uint64_t> slot_idx(nslots);
  std::vector<bool> used(total_series, false);
  uint64_t prev_idx = 0;
  for (auto& idx : slot_idx) {
    idx = prev_idx + unzigzag(r.varint());
    if (!r.ok) return bad("truncated slots");
    if (idx >= total_series) return bad("series index out of range");
    if (used[idx]) return bad("series used twice");
    used[idx] = true;
    prev_idx = idx;
  }
  uint64_t ngroups = r.count();
  if (!r.ok) return bad("truncated group count");
  std::vector<std::vector<int64_t>> groups(ngroups);
  uint64_t prev_first = 0;
  std::vector<uint64_t> ints;
  uint64_t group_points = 0;
  for (auto& g : groups) {
    uint64_t n = r.varint();
    if (!r.ok || n == 0 || n > ctx.max_points - group_points)
      return bad("bad group size");
    group_points += n;
    uint64_t first = prev_first + unzigzag(r.varint());
    if (!r.ok) return bad("truncated timestamps");
    g.reserve(n);
    g.push_back(static_cast<int64_t>(first));
    if (n > 1) {
      uint64_t delta = unzigzag(r.varint());
      if (!r.ok || !get_column(r, n - 2, ints))
        return bad("truncated timestamps");
      uint64_t t = first + delta;
      g.push_back(static_cast<int64_t>(t));
      for (auto z : ints) {
        delta += unzigzag(z);
        t += delta;
        g.push_back(static_cast<int64_t>(t));
      }
    }
    prev_first = first;
  }
  std::vector<uint32_t> slot_group(nslots);
  uint64_t total_points = 0;
  for (auto& sg : slot_group) {
    uint64_t gid = r.varint();
    if (!r.ok || gid >= ngroups) return bad("bad group reference");
    sg = static_cast<uint32_t>(gid);
    total_points += groups[gid].size();
  }
  // Constant columns make points nearly free, so the count is capped.
  if (total_points > ctx.max_points) return bad("too many points");
  std::vector<uint32_t> order;
  uint8_t order_flag = r.byte();
  if (!r.ok) return bad("truncated order");
  if (order_flag == 0) {
    std::vector<std::vector<int64_t>> slot_ts(nslots);
    for (size_t s = 0; s < nslots; ++s) slot_ts[s] = groups[slot_group[s]];
    order = canonical_order(slot_ts);
  } else if (order_flag == 1) {
    if (total_points > r.left()) return bad("truncated order");
    std::vector<uint64_t> seen(nslots, 0);
    order.reserve(total_points);
    for (uint64_t i = 0; i < total_points; ++i) {
      uint64_t s = r.varint();
      if (!r.ok || s >= nslots) return bad("bad order column");
      if (++seen[s] > groups[slot_group[s]].size())
        return bad("bad order column");
      order.push_back(static_cast<uint32_t>(s));
    }
  } else {
    return bad("unknown order flag");
  }
  std::vector<std::vector<double>> vals(nslots);
  for (size_t s = 0; s < nslots; ++s) {
    size_t n = groups[slot_group[s]].size();
    uint8_t kind = r.byte();
    if (!r.ok) return bad("truncated values");
    uint8_t mode = kind & 0x0F;
    recon rc;
    rc.kind = static_cast<uint8_t>(kind >> 4);
    if (mode >= mode_count || rc.kind > recon_divdiv)
      return bad("unknown value kind");
    if (mode == mode_xor || mode == mode_const_raw) {
      if (rc.kind != 0) return bad("unknown value kind");
    } else {
      uint8_t sb = r.byte();
      if (!r.ok) return bad("truncated values");
      if (rc.kind == recon_divdiv) {
        rc.a = sb & 0x0F;
        rc.b = sb >> 4;
      } else if (sb > max_scale) {
        return bad("bad scale");
      } else {
        rc.a = sb;
      }
    }
    auto& out = vals[s];
    out.reserve(n);
    if (mode == mode_delta || mode == mode_dod || mode == mode_delta_gcd
        || mode == mode_dod_gcd || mode == mode_plain) {
      uint64_t g = 1;
      if (mode == mode_delta_gcd || mode == mode_dod_gcd) {
        g = r.varint();
        if (!r.ok || g < 2) return bad("bad common factor");
      }
      bool dod = mode == mode_dod || mode == mode_dod_gcd;
      uint64_t first = unzigzag(r.varint());
      if (!r.ok || !get_column(r, n - 1, ints)) return bad("truncated values");
      uint64_t prev = first;
      uint64_t prev_delta = first;
      out.push_back(unscale(static_cast<int64_t>(first), rc));
      for (size_t i = 1; i < n; ++i) {
        uint64_t z = unzigzag(ints[i - 1]) * g;
        if (mode == mode_plain) {
          prev = z;
        } else {
          uint64_t delta = (dod && i >= 2) ? prev_delta + z : z;
          prev += delta;
          prev_delta = delta;
        }
        out.push_back(unscale(static_cast<int64_t>(prev), rc));
      }
    } else if (mode == mode_const) {
      uint64_t m = unzigzag(r.varint());
      if (!r.ok) return bad("truncated values");
      out.assign(n, unscale(static_cast<int64_t>(m), rc));
    } else if (mode == mode_for) {
      uint64_t lo = unzigzag(r.varint());
      if (!r.ok || !get_column(r, n, ints)) return bad("truncated values");
      for (auto z : ints)
        out.push_back(unscale(static_cast<int64_t>(lo + z), rc));
    } else if (mode == mode_const_raw) {
      uint64_t b = 0;
      for (int j = 0; j < 8; ++j)
        b |= static_cast<uint64_t>(r.byte()) << (8 * j);
      if (!r.ok) return bad("truncated values");
      out.assign(n, double_of(b));
    } else if (mode == mode_xor) {
      uint64_t prev = 0;
      for (size_t i = 0; i < n; ++i) {
        uint8_t c = r.byte();
        if (!r.ok) return bad("truncated values");
        if (c != 0) {
          int shift = c >> 4;
          int len = c & 0x0F;
          if (len == 0 || shift + len > 8) return bad("bad xor control");
          uint64_t x = 0;
          for (int j = 0; j < len; ++j)
            x |= static_cast<uint64_t>(r.byte()) << (8 * (shift + j));
          if (!r.ok) return bad("truncated values");
          prev ^= x;
        }
        out.push_back(double_of(prev));
      }
    } else {
      return bad("unknown value kind");
    }
  }
  if (r.pos != bytes.size()) return bad("trailing bytes");
  metric_samples result;
  result.reserve(order.size());
  std::vector<size_t> next(nslots, 0);
  for (auto s : order) {
    auto k = next[s]++;
    auto& key = key_at(slot_idx[s]);
    metric_sample m;
    m.name = key.first;
    m.labels = key.second;
    m.timestamp_ms = groups[slot_group[s]][k];
    m.value = vals[s][k];
    result.push_back(std::move(m));
  }
  if (order_flag == 1) {
    for (size_t s = 0; s < nslots; ++s)
      if (next[s] != groups[slot_group[s]].size())
        return bad("bad order column");
  }
  for (auto& key : fresh) ctx.add(std::move(key));
  return result;
}

} // namespace fleetd
