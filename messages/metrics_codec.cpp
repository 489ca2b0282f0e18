#include "messages/metrics_codec.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <tuple>
#include <type_traits>

#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/varint.hpp"

#include <xxhash.h>

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
constexpr uint8_t mode_ref = 9;       // deltas minus an earlier slot's
constexpr uint8_t mode_ref_gcd = 10;  // the same divided by a common factor
constexpr uint8_t mode_count = 11;
// Reconstruction of a double from a scaled integer m.
constexpr uint8_t recon_div = 0;    // m / 10^k
constexpr uint8_t recon_mul = 1;    // m * 10^-k
constexpr uint8_t recon_divdiv = 2; // m / 10^a / 10^b
constexpr int max_scale = 15;
// Longest series definition (name and labels) a batch may carry.
constexpr size_t max_definition_bytes = 65536;
constexpr double two63 = 9223372036854775808.0;

const double pow10_table[max_scale + 1] = {
  1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
  1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
const double pow10_neg_table[max_scale + 1] = {
  1e-0, 1e-1, 1e-2,  1e-3,  1e-4,  1e-5,  1e-6,  1e-7,
  1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14, 1e-15};

void put_u64(std::string& out, uint64_t x) { // little endian
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(x >> (8 * i)));
}

void put_string(std::string& out, const std::string& s) {
  put_varint(out, s.size());
  out += s;
}

// A series as sent: name, label count, then label names and values.
std::string definition(const series_key& key) {
  std::string def;
  put_string(def, key.first);
  put_varint(def, key.second.size());
  for (auto& kv : key.second) {
    put_string(def, kv.first);
    put_string(def, kv.second);
  }
  return def;
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

// How put_column codes `zs`: byte planes of w bytes, or Rice codes with
// parameter k (k >= 0) when they take fewer bytes; `bytes` of the body.
struct column_shape {
  int w = 0;
  int k = -1;
  size_t bytes = 0;
};

column_shape shape_of(const std::vector<uint64_t>& zs) {
  column_shape out;
  uint64_t all = 0;
  for (auto z : zs) all |= z;
  while (out.w < 8 && (all >> (8 * out.w)) != 0) ++out.w;
  out.bytes = zs.size() * static_cast<size_t>(out.w);
  size_t best = SIZE_MAX;
  int best_k = -1;
  for (int k = 0; out.w > 0 && k < 64; ++k) {
    if (k > 0 && (all >> (k - 1)) == 0) break;
    auto bits = rice_bits(zs, k);
    if (bits < best) {
      best = bits;
      best_k = k;
    }
  }
  // Rice when it is smaller than the planes; zstd gains little on either
  // for noisy columns, and planes of regular columns compress better.
  if (best_k >= 0 && (best + 7) / 8 < out.bytes) {
    out.k = best_k;
    out.bytes = (best + 7) / 8;
  }
  return out;
}

// Bits put_column takes for `zs` (before zstd), selector included.
size_t column_bits(const std::vector<uint64_t>& zs) {
  return (shape_of(zs).bytes + 1) * 8;
}

// The selector goes to `sel`, the integers to `body` (may be the same).
// Each column's Rice codes are padded to a byte: zstd then still finds
// the repeats of sparse columns.
void put_column(std::string& sel, std::string& body,
                const std::vector<uint64_t>& zs) {
  auto shape = shape_of(zs);
  if (shape.k >= 0) {
    sel.push_back(static_cast<char>(rice_flag | shape.k));
    bit_writer bw{body};
    for (auto z : zs) {
      uint64_t q = z >> shape.k;
      if (q < rice_escape) {
        bw.put((uint64_t{1} << q) - 1, static_cast<int>(q + 1));
      } else {
        auto len = static_cast<int>(bit_length(q));
        bw.put(~uint64_t{0}, static_cast<int>(rice_escape));
        bw.put(static_cast<uint64_t>(len - 1), 6);
        bw.put(q, len);
      }
      bw.put(z, shape.k);
    }
    bw.flush();
    return;
  }
  sel.push_back(static_cast<char>(shape.w));
  for (int b = 0; b < shape.w; ++b)
    for (auto z : zs) body.push_back(static_cast<char>((z >> (8 * b)) & 0xFF));
}

void put_column(std::string& out, const std::vector<uint64_t>& zs) {
  put_column(out, out, zs);
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

void put_xor(std::string& out, const std::vector<double>& vals,
             uint64_t prev) {
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

// Bytes put_xor takes for `vals` after `prev`.
size_t xor_bytes(const std::vector<double>& vals, double prev) {
  std::string out;
  put_xor(out, vals, bits_of(prev));
  return out.size();
}

struct reader : varint_reader {
  uint8_t byte() {
    if (pos >= in.size()) {
      ok = false;
      return 0;
    }
    return static_cast<uint8_t>(in[pos++]);
  }

  uint64_t u64() { // little endian
    uint64_t x = 0;
    for (int i = 0; i < 8; ++i) x |= static_cast<uint64_t>(byte()) << (8 * i);
    return ok ? x : 0;
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

// Reads what put_column wrote: the selector from `sr`, the rest from `r`.
bool get_column(reader& sr, reader& r, size_t n, std::vector<uint64_t>& zs,
                uint8_t sel_mask = 0) {
  // Counts are checked against the bytes present before anything is sized;
  // only a zero-width column (n zeros, no body) is bounded by the caller.
  uint8_t sel = sr.byte() ^ sel_mask;
  if (!sr.ok) return false;
  if (sel & rice_flag) {
    int k = sel & 0x7F;
    if (k > 63) return false;
    // Every integer takes at least one bit.
    if (n > r.left() * 8) return false;
    zs.assign(n, 0);
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
  zs.assign(n, 0);
  for (int b = 0; b < w; ++b)
    for (size_t i = 0; i < n; ++i)
      zs[i] |= static_cast<uint64_t>(r.byte()) << (8 * b);
  return r.ok;
}

bool get_column(reader& r, size_t n, std::vector<uint64_t>& zs) {
  return get_column(r, r, n, zs);
}

// Kind bit 6: the column continues the series' history (the values the
// session's earlier batches ended with) instead of starting afresh.
constexpr uint8_t continues = 0x40;

// The history's values (oldest first) as scaled integers under `r`; false
// when one of them does not come back exactly.
bool history_ints(const codec_context::history& h, const recon& r,
                  std::vector<uint64_t>& out) {
  std::vector<double> vs;
  for (int i = h.count - 1; i >= 0; --i) vs.push_back(h.last[i]);
  return try_scaled(vs, r, r.kind == recon_divdiv ? r.a + r.b : r.a, out);
}

// Residuals of `ints` continuing `prev` (the history, oldest first): deltas,
// or deltas minus the previous delta (the history's last delta, 0 when it
// holds one value).
std::vector<uint64_t> continued(const std::vector<uint64_t>& prev,
                                const std::vector<uint64_t>& ints, bool dod) {
  uint64_t last = prev.back();
  uint64_t delta = prev.size() > 1 ? prev[1] - prev[0] : 0;
  std::vector<uint64_t> out;
  out.reserve(ints.size());
  for (auto m : ints) {
    uint64_t d = m - last;
    out.push_back(dod ? d - delta : d);
    delta = d;
    last = m;
  }
  return out;
}

uint64_t gcd_of(const std::vector<uint64_t>& r, size_t from) {
  uint64_t g = 0;
  for (size_t i = from; i < r.size(); ++i) {
    uint64_t a = abs64(r[i]);
    while (a != 0) {
      uint64_t t = g % a;
      g = a;
      a = t;
    }
  }
  return g;
}

uint64_t divided(uint64_t r, uint64_t g) {
  return g > 1 ? static_cast<uint64_t>(static_cast<int64_t>(r)
                                       / static_cast<int64_t>(g))
               : r;
}

// What later slots of a batch may predict from: the slot's deltas as
// scaled integers (delta[0] from the history's last value when the column
// continues it, else 0). Only columns of scaled integers have them.
struct slot_deltas {
  bool usable = false;
  uint32_t group = 0;
  std::vector<uint64_t> delta;
};

void set_deltas(slot_deltas& sd, const std::vector<uint64_t>& ints,
                const uint64_t* last) {
  sd.usable = true;
  sd.delta.resize(ints.size());
  for (size_t i = 0; i < ints.size(); ++i)
    sd.delta[i] = i > 0 ? ints[i] - ints[i - 1]
                        : (last != nullptr ? ints[0] - *last : 0);
}

// Earlier slots of the same group to predict deltas `d` from (residual
// d[i] - sign * delta[i] for i >= from): the few whose residuals look
// smallest (zigzag bit lengths), as distance back and sign.
struct reference {
  uint64_t back = 0;
  bool negative = false;
  size_t bits = SIZE_MAX;
};

std::vector<reference> references(const std::vector<uint64_t>& d,
                                  size_t from,
                                  const std::vector<slot_deltas>& done,
                                  uint32_t group) {
  constexpr size_t keep = 4;
  std::vector<reference> best;
  // Related series sit close in exposition order; a window keeps the
  // search linear in the batch's series.
  constexpr size_t window = 256;
  for (size_t j = done.size() > window ? done.size() - window : 0;
       j < done.size(); ++j) {
    auto& ref = done[j];
    if (!ref.usable || ref.group != group || ref.delta.size() != d.size())
      continue;
    for (bool neg : {false, true}) {
      size_t limit = best.size() < keep ? SIZE_MAX : best.back().bits;
      size_t bits = 0;
      for (size_t i = from; i < d.size() && bits < limit; ++i) {
        uint64_t e = neg ? d[i] + ref.delta[i] : d[i] - ref.delta[i];
        bits += bit_length(zigzag(e)) + 1;
      }
      if (bits >= limit) continue;
      reference r{done.size() - j, neg, bits};
      auto at = std::upper_bound(best.begin(), best.end(), r,
                                 [](const reference& x, const reference& y) {
                                   return x.bits < y.bits;
                                 });
      best.insert(at, r);
      if (best.size() > keep) best.pop_back();
    }
  }
  return best;
}

// The value section as separate streams, so that zstd sees the slots'
// kind bytes, scales, parameters and column selectors side by side rather
// than between noisy column bodies.
struct value_streams {
  std::string kinds;     // one per slot
  std::string scales;    // one per slot whose kind has a scale byte
  std::string params;    // varints and 8-byte constants, in slot order
  std::string selectors; // one per column
  std::string bodies;    // column bodies and XOR bytes
};

// One encoding of a column of scaled integers, costed in bits before zstd.
struct candidate {
  uint8_t mode = mode_plain;
  bool cont = false;
  std::string params;
  std::vector<uint64_t> zs;
  size_t cost = SIZE_MAX;
};

// Residuals r[from..] divided by their common factor, as a candidate.
candidate residual_candidate(uint8_t mode, uint8_t gcd_mode, bool cont,
                             const std::vector<uint64_t>& r, size_t from,
                             std::string prefix) {
  candidate c;
  c.cont = cont;
  auto g = gcd_of(r, from);
  c.mode = g > 1 ? gcd_mode : mode;
  c.params = std::move(prefix);
  if (g > 1) put_varint(c.params, g);
  if (from == 1) put_varint(c.params, zigzag(r.front()));
  for (size_t i = from; i < r.size(); ++i)
    c.zs.push_back(zigzag(divided(r[i], g)));
  return c;
}

// A column's scaled integers, alone (`ints` under `rc`) and, when the
// history scales with them (`rcont`), continuing it (`cints` after `cprev`
// under `crc`).
struct scaled_column {
  recon rc;
  std::vector<uint64_t> ints;
  bool rcont = false;
  recon crc;
  std::vector<uint64_t> cprev;
  std::vector<uint64_t> cints;
};

// The cheapest of every encoding the column allows: plain, offset, delta
// and delta-of-delta with their common factor, the continued forms, and
// references to the earlier slots whose residuals look smallest.
candidate cheapest(const scaled_column& c, const codec_context::history* h,
                   const std::vector<slot_deltas>& done, uint32_t group) {
  candidate best;
  auto consider = [&](candidate x) {
    x.cost = x.params.size() * 8 + column_bits(x.zs);
    // The series' last kind again is sent as a zero byte, nearly free.
    auto kind = x.mode | (x.cont ? continues : 0)
                | ((x.cont ? c.crc : c.rc).kind << 4);
    if (h != nullptr && kind == h->kind) x.cost -= std::min<size_t>(x.cost, 8);
    if (x.cost < best.cost) best = std::move(x);
  };
  auto& ints = c.ints;
  {
    candidate x;
    x.mode = mode_plain;
    put_varint(x.params, zigzag(ints.front()));
    for (size_t i = 1; i < ints.size(); ++i) x.zs.push_back(zigzag(ints[i]));
    consider(std::move(x));
  }
  {
    uint64_t lo = ints.front();
    for (auto m : ints)
      if (static_cast<int64_t>(m) < static_cast<int64_t>(lo)) lo = m;
    candidate x;
    x.mode = mode_for;
    put_varint(x.params, zigzag(lo));
    for (auto m : ints) x.zs.push_back(m - lo);
    consider(std::move(x));
  }
  auto rd = residuals(ints, false);
  consider(residual_candidate(mode_delta, mode_delta_gcd, false, rd, 1, {}));
  consider(residual_candidate(mode_dod, mode_dod_gcd, false,
                              residuals(ints, true), 1, {}));
  std::vector<uint64_t> d = c.rcont ? continued(c.cprev, c.cints, false) : rd;
  if (c.rcont) {
    consider(residual_candidate(mode_delta, mode_delta_gcd, true, d, 0, {}));
    consider(residual_candidate(mode_dod, mode_dod_gcd, true,
                                continued(c.cprev, c.cints, true), 0, {}));
  }
  // Predicting the deltas from an earlier slot's (e.g. free and available
  // bytes of one filesystem, or in and out octets).
  size_t from = c.rcont ? 0 : 1;
  for (auto& ref : references(d, from, done, group)) {
    auto& rdel = done[done.size() - ref.back].delta;
    std::vector<uint64_t> e(d.size());
    e[0] = d[0]; // the first value when not continued
    for (size_t i = from; i < d.size(); ++i)
      e[i] = ref.negative ? d[i] + rdel[i] : d[i] - rdel[i];
    std::string prefix;
    put_varint(prefix, (ref.back << 1) | (ref.negative ? 1 : 0));
    consider(residual_candidate(mode_ref, mode_ref_gcd, c.rcont, e, from,
                                std::move(prefix)));
  }
  return best;
}

// To continue the history: its values and this batch's as scaled integers
// at a scale that fits both (cprev oldest first, cints).
void scale_with_history(const std::vector<double>& vs,
                        const codec_context::history& h, scaled_column& c) {
  std::vector<double> all;
  for (int i = h.count - 1; i >= 0; --i) all.push_back(h.last[i]);
  all.insert(all.end(), vs.begin(), vs.end());
  c.rcont = scaled_ints(all, c.crc, c.cints);
  if (c.rcont) {
    c.cprev.assign(c.cints.begin(), c.cints.begin() + h.count);
    c.cints.erase(c.cints.begin(), c.cints.begin() + h.count);
  }
}

// One slot's value column (kind byte, scale byte, body); `h` is the
// series' history in the session, or null; `done` holds the deltas of the
// batch's earlier slots and gets this slot's.
void put_values(value_streams& st, const std::vector<double>& vs,
                const codec_context::history* h, uint32_t group,
                std::vector<slot_deltas>& done) {
  slot_deltas mine;
  mine.group = group;
  bool constant = true;
  for (auto v : vs) constant = constant && bits_of(v) == bits_of(vs.front());
  bool has_history = h != nullptr && h->count > 0;
  if (constant && has_history && bits_of(vs.front()) == bits_of(h->last[0])) {
    st.kinds.push_back(static_cast<char>(mode_const | continues));
    done.push_back(std::move(mine));
    return;
  }
  scaled_column c;
  // A round's one value per series (a 10 s sync) is constant too: it
  // still continues the history, usually far smaller than the value.
  if (has_history)
    scale_with_history(vs, *h, c);
  if (!scaled_ints(vs, c.rc, c.ints)) {
    if (constant && (!has_history || xor_bytes(vs, h->last[0]) > 8)) {
      st.kinds.push_back(static_cast<char>(mode_const_raw));
      uint64_t b = bits_of(vs.front());
      for (int i = 0; i < 8; ++i)
        st.params.push_back(static_cast<char>((b >> (8 * i)) & 0xFF));
    } else {
      st.kinds.push_back(
        static_cast<char>(mode_xor | (has_history ? continues : 0)));
      put_xor(st.bodies, vs, has_history ? bits_of(h->last[0]) : 0);
    }
    done.push_back(std::move(mine));
    return;
  }
  auto head = [&](uint8_t mode, const recon& r, bool cont) {
    st.kinds.push_back(
      static_cast<char>(mode | (cont ? continues : 0) | (r.kind << 4)));
    st.scales.push_back(static_cast<char>(r.scale_byte()));
  };
  std::string single;
  put_varint(single, zigzag(c.ints.front()));
  auto best = c.rcont || !constant ? cheapest(c, h, done, group) : candidate{};
  if (constant && single.size() * 8 <= best.cost) {
    head(mode_const, c.rc, false);
    st.params += single;
    set_deltas(mine, c.ints, nullptr);
    done.push_back(std::move(mine));
    return;
  }
  head(best.mode, best.cont ? c.crc : c.rc, best.cont);
  st.params += best.params;
  put_column(st.selectors, st.bodies, best.zs);
  set_deltas(mine, best.cont ? c.cints : c.ints,
             best.cont ? &c.cprev.back() : nullptr);
  done.push_back(std::move(mine));
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
  auto def = definition(key);
  series_digest = XXH3_64bits_withSeed(def.data(), def.size(), series_digest);
  auto id = static_cast<uint32_t>(series.size());
  index.emplace(key, id);
  series.push_back(std::move(key));
  state.emplace_back();
  return id;
}

void codec_context::push(uint32_t idx, double value) {
  auto& h = state[idx];
  h.last[1] = h.last[0];
  h.last[0] = value;
  if (h.count < 2) ++h.count;
}

void codec_context::clear() {
  series.clear();
  index.clear();
  state.clear();
  series_digest = 0;
}

std::string codec_context::save_history() const {
  return save_history(state);
}

std::string codec_context::save_history(const std::vector<history>& state) {
  std::string out;
  out.reserve(state.size() * 20);
  for (auto& h : state) {
    out.push_back(static_cast<char>(h.count));
    for (int i = 0; i < h.count; ++i) put_u64(out, bits_of(h.last[i]));
    out.push_back(static_cast<char>(h.kind));
    out.push_back(static_cast<char>(h.scale));
    out.push_back(static_cast<char>(h.selector));
  }
  return out;
}

caf::error codec_context::load_history(std::string_view bytes) {
  reader r{{bytes}};
  std::vector<history> xs(series.size());
  for (auto& h : xs) {
    h.count = r.byte();
    if (h.count > 2) r.ok = false;
    for (int i = 0; r.ok && i < h.count; ++i) h.last[i] = double_of(r.u64());
    h.kind = r.byte();
    h.scale = r.byte();
    h.selector = r.byte();
  }
  if (!r.ok || r.pos != bytes.size())
    return make_error(ec::decode_failed,
                      "series history does not match the series table");
  state = std::move(xs);
  return caf::none;
}

uint64_t codec_context::digest() const {
  auto h = save_history();
  return XXH3_64bits_withSeed(h.data(), h.size(), series_digest);
}

caf::error commit_columnar(codec_context& ctx, const metric_samples& samples) {
  // What the receiver's context becomes: decoding is the one definition.
  if (auto xs = decode_columnar(encode_columnar(samples, ctx), ctx); !xs)
    return xs.error();
  return caf::none;
}

namespace {

// New series definitions, front coded against the previous one: neighbours
// share most of name and labels (node_cpu_seconds_total{cpu="0",mode=...}).
// Returns their session indices (ctx.series.size() + i).
std::map<series_key, uint32_t> put_definitions(std::string& out,
                                               const batch_plan& p,
                                               const codec_context& ctx) {
  put_varint(out, p.new_series.size());
  std::map<series_key, uint32_t> new_index;
  std::string prev_def;
  for (auto& key : p.new_series) {
    new_index.emplace(key, static_cast<uint32_t>(ctx.series.size()
                                                 + new_index.size()));
    auto def = definition(key);
    size_t shared = 0;
    while (shared < def.size() && shared < prev_def.size()
           && def[shared] == prev_def[shared])
      ++shared;
    put_varint(out, shared);
    put_string(out, def.substr(shared));
    prev_def = std::move(def);
  }
  return new_index;
}

// Timestamp groups (slots with identical timestamp columns share one): the
// groups, then each slot's group number.
void put_groups(std::string& out,
                const std::vector<std::vector<int64_t>>& slot_ts,
                std::vector<uint32_t>& slot_group) {
  std::map<std::vector<int64_t>, uint32_t> group_of;
  std::vector<const std::vector<int64_t>*> groups;
  slot_group.resize(slot_ts.size());
  for (size_t s = 0; s < slot_ts.size(); ++s) {
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
  for (auto g : slot_group) put_varint(out, g);
}

// The value columns in the five streams, each slot's bytes XOR its series'
// last ones.
void put_value_section(std::string& out, const batch_plan& p,
                       const codec_context& ctx,
                       const std::vector<std::vector<double>>& slot_vals,
                       const std::vector<uint32_t>& slot_group) {
  std::vector<slot_deltas> done;
  done.reserve(slot_vals.size());
  value_streams st;
  for (size_t s = 0; s < slot_vals.size(); ++s) {
    auto i = ctx.find(p.slot_keys[s]);
    auto* h = i >= 0 ? &ctx.state[i] : nullptr;
    size_t nscales = st.scales.size();
    size_t nselectors = st.selectors.size();
    put_values(st, slot_vals[s], h, slot_group[s], done);
    if (h != nullptr) { // sent relative to the series' last column
      st.kinds.back() = static_cast<char>(st.kinds.back() ^ h->kind);
      if (st.scales.size() > nscales)
        st.scales.back() = static_cast<char>(st.scales.back() ^ h->scale);
      if (st.selectors.size() > nselectors)
        st.selectors.back() =
          static_cast<char>(st.selectors.back() ^ h->selector);
    }
  }
  for (auto* x : {&st.kinds, &st.scales, &st.params, &st.selectors,
                  &st.bodies})
    put_string(out, *x);
}

} // namespace

std::string encode_columnar(const metric_samples& samples,
                            const codec_context& ctx) {
  auto p = plan(samples, ctx);
  std::string out;
  out.push_back(static_cast<char>(columnar_format_version));
  put_varint(out, ctx.series.size());
  put_u64(out, ctx.digest());
  auto new_index = put_definitions(out, p, ctx);
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
  std::vector<std::vector<int64_t>> slot_ts(nslots);
  std::vector<std::vector<double>> slot_vals(nslots);
  for (size_t i = 0; i < samples.size(); ++i) {
    auto s = p.sample_slot[i];
    slot_ts[s].push_back(samples[i].timestamp_ms);
    slot_vals[s].push_back(samples[i].value);
  }
  std::vector<uint32_t> slot_group;
  put_groups(out, slot_ts, slot_group);
  // Order column.
  if (canonical_order(slot_ts) == p.sample_slot) {
    out.push_back(0);
  } else {
    out.push_back(1);
    for (auto s : p.sample_slot) put_varint(out, s);
  }
  put_value_section(out, p, ctx, slot_vals, slot_group);
  return out;
}

bool identical(const metric_samples& a, const metric_samples& b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].labels != b[i].labels
        || a[i].timestamp_ms != b[i].timestamp_ms
        || bits_of(a[i].value) != bits_of(b[i].value))
      return false;
  return true;
}

caf::expected<uint64_t> columnar_base(std::string_view bytes) {
  reader r{{bytes}};
  if (r.byte() != columnar_format_version || !r.ok)
    return bad("unknown version");
  uint64_t base = r.varint();
  if (!r.ok) return bad("truncated header");
  return base;
}

namespace {

// Each slot's kind, scale and selector bytes (when it has them), for the
// series' history once the batch decodes.
struct last_bytes {
  uint8_t kind = 0;
  int scale = -1;
  int selector = -1;
};

// One column being read: its slot, points, mode and what it continues.
struct column {
  size_t slot = 0;
  size_t n = 0;
  uint8_t mode = 0;
  recon rc;
  const codec_context::history* h = nullptr;
  const codec_context::history* mask = nullptr;
  // The history as scaled integers (columns that continue it).
  std::vector<uint64_t> prev;
};

// Reads one columnar batch section by section (docs/wire-format.md), each
// over a bounds-checked reader; `commit` changes the session only once every
// section has been read without error.
class columnar_decoder {
public:
  columnar_decoder(std::string_view bytes, codec_context& ctx,
                   decode_budget& budget)
    : bytes_(bytes), r_{bytes}, ctx_(ctx), budget_(budget) {}

  /// The points as samples (Indexed false) or indexed_points (true).
  template <bool Indexed>
  auto run() -> caf::expected<
    std::conditional_t<Indexed, indexed_points, metric_samples>> {
    for (auto step : {&columnar_decoder::read_header,
                      &columnar_decoder::read_definitions,
                      &columnar_decoder::read_slots,
                      &columnar_decoder::read_groups,
                      &columnar_decoder::read_group_refs,
                      &columnar_decoder::read_order,
                      &columnar_decoder::read_values})
      if (auto err = (this->*step)())
        return err;
    std::conditional_t<Indexed, indexed_points, metric_samples> out;
    out.reserve(order_.size());
    auto err = each_point([&](size_t s, size_t k) {
      auto ts = groups_[slot_group_[s]][k];
      if constexpr (Indexed) {
        out.push_back({static_cast<uint32_t>(slot_idx_[s]), ts, vals_[s][k]});
      } else {
        auto& key = key_at(slot_idx_[s]);
        out.push_back({key.first, key.second, ts, vals_[s][k]});
      }
    });
    if (err)
      return err;
    commit();
    return out;
  }

private:
  caf::error read_header();
  caf::error read_definitions();
  caf::error read_definition(std::string_view def);
  caf::error read_slots();
  caf::error read_groups();
  caf::error read_group_refs();
  caf::error read_order();
  caf::error read_values();
  caf::error read_column(size_t s);
  caf::error read_column_kind(column& c, slot_deltas& mine);
  caf::error read_scale(column& c);
  caf::error read_single(column& c);
  caf::error read_ref(column& c, slot_deltas& mine);
  caf::error read_deltas(column& c);
  caf::error read_xor(column& c);
  // Calls f(slot, k) for the k-th point of each slot, in sample order.
  template <class F>
  caf::error each_point(F f);
  void commit();

  const series_key& key_at(uint64_t idx) const {
    return idx < ctx_.series.size() ? ctx_.series[idx]
                                    : fresh_[idx - ctx_.series.size()];
  }

  std::string_view bytes_;
  reader r_;
  codec_context& ctx_;
  decode_budget& budget_;
  std::vector<series_key> fresh_;
  std::map<series_key, uint32_t> fresh_index_;
  std::vector<uint64_t> slot_idx_;
  std::vector<std::vector<int64_t>> groups_;
  std::vector<uint32_t> slot_group_;
  uint64_t total_points_ = 0;
  uint8_t order_flag_ = 0;
  std::vector<uint32_t> order_;
  std::vector<std::vector<double>> vals_;
  std::vector<slot_deltas> done_;
  std::vector<last_bytes> slot_bytes_;
  // The five value streams (value_streams): kinds, scales, params,
  // selectors, bodies.
  reader kr_, sr_, pr_, cr_, br_;
  // Scratch: a column's residuals and scaled integers.
  std::vector<uint64_t> ints_, ms_;
};

caf::error columnar_decoder::read_header() {
  if (r_.byte() != columnar_format_version || !r_.ok)
    return bad("unknown version");
  uint64_t base = r_.varint();
  if (!r_.ok) return bad("truncated header");
  uint64_t digest = r_.u64();
  if (!r_.ok) return bad("truncated header");
  if (base != ctx_.series.size() || digest != ctx_.digest())
    return make_error(ec::session_out_of_sync,
                      "columnar batch: encoded against a session of "
                        + std::to_string(base)
                        + " series, the receiver holds "
                        + std::to_string(ctx_.series.size())
                        + (base == ctx_.series.size() ? " with other history"
                                                      : ""));
  return caf::none;
}

caf::error columnar_decoder::read_definitions() {
  uint64_t nnew = r_.count();
  if (!r_.ok) return bad("truncated series count");
  // Every series a batch defines takes a point, and front coding makes
  // long definitions nearly free on the wire: both are capped.
  if (nnew > ctx_.max_points) return bad("too many series");
  std::string def;
  for (uint64_t i = 0; i < nnew; ++i) {
    uint64_t shared = r_.varint();
    if (!r_.ok || shared > def.size()) return bad("bad series definition");
    auto suffix = r_.str();
    if (!r_.ok) return bad("truncated series definition");
    if (shared + suffix.size() > max_definition_bytes)
      return bad("series definitions too long");
    if (auto err = budget_.charge(shared + suffix.size(),
                                  "columnar batch: series definitions too long"))
      return err;
    def.resize(shared);
    def += suffix;
    if (auto err = read_definition(def))
      return err;
  }
  return caf::none;
}

caf::error columnar_decoder::read_definition(std::string_view def) {
  reader dr{def};
  series_key key;
  key.first = dr.str();
  uint64_t nl = dr.count();
  for (uint64_t j = 0; dr.ok && j < nl; ++j) {
    auto k = dr.str();
    auto v = dr.str();
    if (!key.second.emplace(std::move(k), std::move(v)).second)
      return bad("duplicate label");
  }
  if (!dr.ok || dr.pos != def.size()) return bad("bad series definition");
  // Same rule as protobuf batches (wire.cpp): both stores hold only text.
  if (auto err = check_text(key.first, "columnar series name"))
    return err;
  if (auto err = check_labels(key.second, "columnar series"))
    return err;
  if (ctx_.find(key) >= 0 || fresh_index_.count(key) != 0)
    return bad("series defined twice");
  fresh_index_.emplace(key, static_cast<uint32_t>(fresh_.size()));
  fresh_.push_back(std::move(key));
  return caf::none;
}

caf::error columnar_decoder::read_slots() {
  uint64_t total_series = ctx_.series.size() + fresh_.size();
  uint64_t nslots = r_.count();
  if (!r_.ok) return bad("truncated slot count");
  if (nslots > ctx_.max_points) return bad("too many points");
  slot_idx_.resize(nslots);
  std::vector<bool> used(total_series, false);
  uint64_t prev_idx = 0;
  for (auto& idx : slot_idx_) {
    idx = prev_idx + unzigzag(r_.varint());
    if (!r_.ok) return bad("truncated slots");
    if (idx >= total_series) return bad("series index out of range");
    if (used[idx]) return bad("series used twice");
    used[idx] = true;
    prev_idx = idx;
  }
  return caf::none;
}

caf::error columnar_decoder::read_groups() {
  uint64_t ngroups = r_.count();
  if (!r_.ok) return bad("truncated group count");
  if (auto err = budget_.charge(ngroups * sizeof(groups_[0]),
                                "columnar batch: too many groups"))
    return err;
  groups_.resize(ngroups);
  uint64_t prev_first = 0;
  uint64_t group_points = 0;
  for (auto& g : groups_) {
    uint64_t n = r_.varint();
    if (!r_.ok || n == 0 || n > ctx_.max_points - group_points)
      return bad("bad group size");
    group_points += n;
    uint64_t first = prev_first + unzigzag(r_.varint());
    if (!r_.ok) return bad("truncated timestamps");
    // Constant intervals make timestamps nearly free on the wire; the
    // scratch column (ints_) never outgrows the group charged here.
    if (auto err = budget_.charge(n * sizeof(int64_t),
                                  "columnar batch: timestamps too many"))
      return err;
    g.reserve(n);
    g.push_back(static_cast<int64_t>(first));
    if (n > 1) {
      uint64_t delta = unzigzag(r_.varint());
      if (!r_.ok || !get_column(r_, n - 2, ints_))
        return bad("truncated timestamps");
      uint64_t t = first + delta;
      g.push_back(static_cast<int64_t>(t));
      for (auto z : ints_) {
        delta += unzigzag(z);
        t += delta;
        g.push_back(static_cast<int64_t>(t));
      }
    }
    prev_first = first;
  }
  return caf::none;
}

caf::error columnar_decoder::read_group_refs() {
  auto nslots = slot_idx_.size();
  slot_group_.resize(nslots);
  for (auto& sg : slot_group_) {
    uint64_t gid = r_.varint();
    if (!r_.ok || gid >= groups_.size()) return bad("bad group reference");
    sg = static_cast<uint32_t>(gid);
    total_points_ += groups_[gid].size();
  }
  // Constant columns make points nearly free, so the count is capped, and
  // so is what the samples take decoded (each carries its series).
  if (total_points_ > ctx_.max_points) return bad("too many points");
  // Per point while decoding: the order, the values, and canonical_order's
  // copy of the timestamps with its sort tuples.
  constexpr uint64_t scratch = sizeof(uint32_t) + sizeof(double)
                               + sizeof(int64_t)
                               + sizeof(std::tuple<int64_t, uint32_t, uint32_t>);
  if (auto err = budget_.charge(total_points_ * scratch,
                                "columnar batch: decoded batch too large"))
    return err;
  for (size_t s = 0; s < nslots; ++s) {
    auto& key = key_at(slot_idx_[s]);
    auto size = record_bytes(sizeof(metric_sample), key.first, key.second);
    if (auto err = budget_.charge(size * groups_[slot_group_[s]].size(),
                                  "columnar batch: decoded batch too large"))
      return err;
  }
  return caf::none;
}

caf::error columnar_decoder::read_order() {
  auto nslots = slot_idx_.size();
  order_flag_ = r_.byte();
  if (!r_.ok) return bad("truncated order");
  if (order_flag_ == 0) {
    std::vector<std::vector<int64_t>> slot_ts(nslots);
    for (size_t s = 0; s < nslots; ++s) slot_ts[s] = groups_[slot_group_[s]];
    order_ = canonical_order(slot_ts);
    return caf::none;
  }
  if (order_flag_ != 1) return bad("unknown order flag");
  if (total_points_ > r_.left()) return bad("truncated order");
  std::vector<uint64_t> seen(nslots, 0);
  order_.reserve(total_points_);
  for (uint64_t i = 0; i < total_points_; ++i) {
    uint64_t s = r_.varint();
    if (!r_.ok || s >= nslots) return bad("bad order column");
    if (++seen[s] > groups_[slot_group_[s]].size())
      return bad("bad order column");
    order_.push_back(static_cast<uint32_t>(s));
  }
  return caf::none;
}

caf::error columnar_decoder::read_values() {
  auto nslots = slot_idx_.size();
  reader* streams[] = {&kr_, &sr_, &pr_, &cr_, &br_};
  for (auto* x : streams) {
    uint64_t len = r_.count();
    if (!r_.ok) return bad("truncated value streams");
    *x = reader{{r_.in.substr(r_.pos, len)}};
    r_.pos += len;
  }
  vals_.resize(nslots);
  done_.reserve(nslots);
  slot_bytes_.resize(nslots);
  for (size_t s = 0; s < nslots; ++s)
    if (auto err = read_column(s))
      return err;
  for (auto* x : streams)
    if (x->pos != x->in.size()) return bad("trailing bytes in value streams");
  if (r_.pos != bytes_.size()) return bad("trailing bytes");
  return caf::none;
}

// Kind byte (and scale byte): which mode, reconstruction and history.
caf::error columnar_decoder::read_column_kind(column& c, slot_deltas& mine) {
  static const codec_context::history none;
  auto idx = slot_idx_[c.slot];
  // Kind, scale and selector come XOR the series' last ones.
  c.mask = idx < ctx_.series.size() ? &ctx_.state[idx] : &none;
  uint8_t kind = kr_.byte() ^ c.mask->kind;
  if (!kr_.ok) return bad("truncated values");
  slot_bytes_[c.slot].kind = kind;
  if (kind & continues) {
    if (idx >= ctx_.series.size() || ctx_.state[idx].count == 0)
      return bad("column continues a series without history");
    c.h = &ctx_.state[idx];
    kind &= static_cast<uint8_t>(~continues);
  }
  c.mode = kind & 0x0F;
  c.rc.kind = static_cast<uint8_t>(kind >> 4);
  mine.group = slot_group_[c.slot];
  if (c.mode >= mode_count || c.rc.kind > recon_divdiv)
    return bad("unknown value kind");
  return caf::none;
}

caf::error columnar_decoder::read_column(size_t s) {
  column c;
  c.slot = s;
  c.n = groups_[slot_group_[s]].size();
  slot_deltas mine;
  size_t sel_at = cr_.pos;
  if (auto err = read_column_kind(c, mine))
    return err;
  auto& out = vals_[s];
  out.reserve(c.n);
  if (c.h != nullptr && c.mode == mode_const) {
    if (c.rc.kind != 0) return bad("unknown value kind");
    out.assign(c.n, c.h->last[0]);
    done_.push_back(std::move(mine));
    return caf::none;
  }
  if (c.h != nullptr && (c.mode == mode_const_raw || c.mode == mode_plain
                         || c.mode == mode_for))
    return bad("unknown value kind");
  if (auto err = read_scale(c))
    return err;
  if (c.h != nullptr && c.mode != mode_xor && !history_ints(*c.h, c.rc, c.prev))
    return bad("history does not fit the column's scale");
  ms_.clear();
  caf::error err;
  switch (c.mode) {
    case mode_ref:
    case mode_ref_gcd:
      err = read_ref(c, mine);
      break;
    case mode_delta:
    case mode_dod:
    case mode_delta_gcd:
    case mode_dod_gcd:
    case mode_plain:
      err = read_deltas(c);
      break;
    case mode_const:
    case mode_for:
    case mode_const_raw:
      err = read_single(c);
      break;
    case mode_xor:
      err = read_xor(c);
      break;
    default:
      return bad("unknown value kind");
  }
  if (err)
    return err;
  if (c.mode != mode_xor && c.mode != mode_const_raw) {
    for (auto m : ms_) out.push_back(unscale(static_cast<int64_t>(m), c.rc));
    set_deltas(mine, ms_, c.h != nullptr ? &c.prev.back() : nullptr);
  }
  if (cr_.pos > sel_at)
    slot_bytes_[s].selector
      = static_cast<uint8_t>(cr_.in[sel_at]) ^ c.mask->selector;
  done_.push_back(std::move(mine));
  return caf::none;
}

// The scale byte of the scaled-integer modes (none for XOR and raw).
caf::error columnar_decoder::read_scale(column& c) {
  if (c.mode == mode_xor || c.mode == mode_const_raw) {
    if (c.rc.kind != 0) return bad("unknown value kind");
    return caf::none;
  }
  uint8_t sb = sr_.byte() ^ c.mask->scale;
  if (!sr_.ok) return bad("truncated values");
  slot_bytes_[c.slot].scale = sb;
  if (c.rc.kind == recon_divdiv) {
    c.rc.a = sb & 0x0F;
    c.rc.b = sb >> 4;
    if (c.rc.a + c.rc.b > max_scale) return bad("bad scale");
  } else if (sb > max_scale) {
    return bad("bad scale");
  } else {
    c.rc.a = sb;
  }
  return caf::none;
}

// One value for the whole column (modes 3, 4), or its minimum plus
// residuals (mode 8).
caf::error columnar_decoder::read_single(column& c) {
  if (c.mode == mode_const) {
    uint64_t m = unzigzag(pr_.varint());
    if (!pr_.ok) return bad("truncated values");
    ms_.assign(c.n, m);
  } else if (c.mode == mode_for) {
    uint64_t lo = unzigzag(pr_.varint());
    if (!pr_.ok || !get_column(cr_, br_, c.n, ints_, c.mask->selector))
      return bad("truncated values");
    for (auto z : ints_) ms_.push_back(lo + z);
  } else {
    uint64_t b = 0;
    for (int j = 0; j < 8; ++j)
      b |= static_cast<uint64_t>(pr_.byte()) << (8 * j);
    if (!pr_.ok) return bad("truncated values");
    vals_[c.slot].assign(c.n, double_of(b));
  }
  return caf::none;
}

// Deltas minus an earlier slot's of the same group (modes 9, 10).
caf::error columnar_decoder::read_ref(column& c, slot_deltas& mine) {
  uint64_t ref = pr_.varint();
  uint64_t back = ref >> 1;
  if (!pr_.ok || back == 0 || back > done_.size())
    return bad("bad reference");
  auto& rs = done_[done_.size() - back];
  if (!rs.usable || rs.group != mine.group)
    return bad("bad reference");
  bool neg = (ref & 1) != 0;
  uint64_t g = 1;
  if (c.mode == mode_ref_gcd) {
    g = pr_.varint();
    if (!pr_.ok || g < 2) return bad("bad common factor");
  }
  size_t from = c.h != nullptr ? 0 : 1;
  uint64_t last = 0;
  if (c.h != nullptr) {
    last = c.prev.back();
  } else {
    last = unzigzag(pr_.varint());
    if (!pr_.ok) return bad("truncated values");
    ms_.push_back(last);
  }
  if (!get_column(cr_, br_, c.n - from, ints_, c.mask->selector))
    return bad("truncated values");
  for (size_t i = from; i < c.n; ++i) {
    uint64_t dr = rs.delta[i];
    last += unzigzag(ints_[i - from]) * g + (neg ? 0 - dr : dr);
    ms_.push_back(last);
  }
  return caf::none;
}

// Deltas, delta-of-deltas (each maybe over a common factor) or the plain
// integers (modes 0, 1, 5, 6, 7).
caf::error columnar_decoder::read_deltas(column& c) {
  uint64_t g = 1;
  if (c.mode == mode_delta_gcd || c.mode == mode_dod_gcd) {
    g = pr_.varint();
    if (!pr_.ok || g < 2) return bad("bad common factor");
  }
  bool dod = c.mode == mode_dod || c.mode == mode_dod_gcd;
  if (c.h != nullptr) {
    // Residuals of all n values, from the history's last value (and last
    // delta).
    if (!get_column(cr_, br_, c.n, ints_, c.mask->selector))
      return bad("truncated values");
    uint64_t last = c.prev.back();
    uint64_t delta = c.prev.size() > 1 ? c.prev[1] - c.prev[0] : 0;
    for (auto z : ints_) {
      uint64_t x = unzigzag(z) * g;
      uint64_t d = dod ? delta + x : x;
      last += d;
      delta = d;
      ms_.push_back(last);
    }
    return caf::none;
  }
  uint64_t first = unzigzag(pr_.varint());
  if (!pr_.ok || !get_column(cr_, br_, c.n - 1, ints_, c.mask->selector))
    return bad("truncated values");
  uint64_t cur = first;
  uint64_t prev_delta = first;
  ms_.push_back(first);
  for (size_t i = 1; i < c.n; ++i) {
    uint64_t z = unzigzag(ints_[i - 1]) * g;
    if (c.mode == mode_plain) {
      cur = z;
    } else {
      uint64_t delta = (dod && i >= 2) ? prev_delta + z : z;
      cur += delta;
      prev_delta = delta;
    }
    ms_.push_back(cur);
  }
  return caf::none;
}

// Byte-wise XOR of the double bits (mode 2), from the history's last value.
caf::error columnar_decoder::read_xor(column& c) {
  auto& out = vals_[c.slot];
  uint64_t bits = c.h != nullptr ? bits_of(c.h->last[0]) : 0;
  for (size_t i = 0; i < c.n; ++i) {
    uint8_t ctl = br_.byte();
    if (!br_.ok) return bad("truncated values");
    if (ctl != 0) {
      int shift = ctl >> 4;
      int len = ctl & 0x0F;
      if (len == 0 || shift + len > 8) return bad("bad xor control");
      uint64_t x = 0;
      for (int j = 0; j < len; ++j)
        x |= static_cast<uint64_t>(br_.byte()) << (8 * (shift + j));
      if (!br_.ok) return bad("truncated values");
      bits ^= x;
    }
    out.push_back(double_of(bits));
  }
  return caf::none;
}

template <class F>
caf::error columnar_decoder::each_point(F f) {
  auto nslots = slot_idx_.size();
  std::vector<size_t> next(nslots, 0);
  for (auto s : order_)
    f(s, next[s]++);
  if (order_flag_ == 1) {
    for (size_t s = 0; s < nslots; ++s)
      if (next[s] != groups_[slot_group_[s]].size())
        return bad("bad order column");
  }
  return caf::none;
}

void columnar_decoder::commit() {
  auto nslots = slot_idx_.size();
  for (auto& key : fresh_) ctx_.add(std::move(key));
  for (size_t s = 0; s < nslots; ++s) // the history keeps the last two
    for (size_t k = vals_[s].size() > 2 ? vals_[s].size() - 2 : 0;
         k < vals_[s].size(); ++k)
      ctx_.push(static_cast<uint32_t>(slot_idx_[s]), vals_[s][k]);
  for (size_t s = 0; s < nslots; ++s) {
    auto& h = ctx_.state[slot_idx_[s]];
    h.kind = slot_bytes_[s].kind;
    if (slot_bytes_[s].scale >= 0)
      h.scale = static_cast<uint8_t>(slot_bytes_[s].scale);
    if (slot_bytes_[s].selector >= 0)
      h.selector = static_cast<uint8_t>(slot_bytes_[s].selector);
  }
}

} // namespace

caf::expected<metric_samples> decode_columnar(std::string_view bytes,
                                              codec_context& ctx,
                                              decode_budget& budget) {
  return columnar_decoder{bytes, ctx, budget}.run<false>();
}

caf::expected<metric_samples> decode_columnar(std::string_view bytes,
                                              codec_context& ctx) {
  decode_budget budget{ctx.max_decoded_bytes};
  return decode_columnar(bytes, ctx, budget);
}

caf::expected<indexed_points> decode_columnar_indexed(std::string_view bytes,
                                                      codec_context& ctx,
                                                      decode_budget& budget) {
  // Charged as for samples: one limit, whichever output the caller takes.
  return columnar_decoder{bytes, ctx, budget}.run<true>();
}

caf::error apply_delta(codec_context& ctx, codec_delta d) {
  auto base = d.reset ? 0 : ctx.series.size();
  if (d.base != base || d.state.size() != d.base + d.added.size())
    return make_error(ec::decode_failed,
                      "series delta does not fit the session");
  if (d.reset)
    ctx.clear();
  for (auto& key : d.added)
    ctx.add(std::move(key));
  ctx.state = std::move(d.state);
  return caf::none;
}

caf::expected<codec_delta> decode_delta(std::string_view bytes,
                                        codec_context& ctx,
                                        const metric_samples* expect) {
  // Decoded in place and put back: a copy of the context costs as much as
  // the session itself (every series' name and labels, twice).
  auto base = ctx.series.size();
  auto state = ctx.state;
  auto digest = ctx.series_digest;
  decode_budget budget{ctx.max_decoded_bytes};
  auto xs = decode_columnar_indexed(bytes, ctx, budget);
  if (!xs)
    return xs.error();
  bool same = true;
  if (expect != nullptr) {
    same = xs->size() == expect->size();
    for (size_t i = 0; same && i < xs->size(); ++i) {
      auto& p = (*xs)[i];
      auto& s = (*expect)[i];
      auto& key = ctx.series[p.series];
      same = key.first == s.name && key.second == s.labels
             && p.timestamp_ms == s.timestamp_ms
             && bits_of(p.value) == bits_of(s.value);
    }
  }
  codec_delta d;
  d.reset = base == 0;
  d.base = base;
  for (size_t i = base; i < ctx.series.size(); ++i) {
    ctx.index.erase(ctx.series[i]);
    d.added.push_back(std::move(ctx.series[i]));
  }
  ctx.series.resize(base);
  d.state = std::move(ctx.state);
  ctx.state = std::move(state);
  ctx.series_digest = digest;
  if (!same)
    return make_error(ec::decode_failed,
                      "columnar batch decodes to other samples");
  return d;
}

} // namespace fleetd
