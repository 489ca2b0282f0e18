#include "messages/journal_codec.hpp"

#include <cstring>

#include "fleetd/v1/journal.pb.h"
#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/wire.hpp"

namespace fleetd {

namespace {

namespace pb = fleetd::v1;

// Journal rows are written once and read by every sink: a fast level.
constexpr int journal_zstd_level = 1;

template <class Field>
void put_labels(const label_map& xs, Field* out) {
  for (auto& [k, v] : xs) {
    auto* l = out->Add();
    l->set_key(k);
    l->set_value(v);
  }
}

template <class Field>
label_map get_labels(const Field& xs) {
  label_map out;
  for (auto& l : xs)
    out[l.key()] = l.value();
  return out;
}

uint64_t bits_of(double x) {
  uint64_t out;
  std::memcpy(&out, &x, sizeof out);
  return out;
}

double double_of(uint64_t x) {
  double out;
  std::memcpy(&out, &x, sizeof out);
  return out;
}

void put_records(const journal_entry& x, pb::JournalEntry& m) {
  for (auto& s : x.samples) {
    auto* o = m.add_samples();
    o->set_name(s.name);
    put_labels(s.labels, o->mutable_labels());
    o->set_timestamp_ms(s.timestamp_ms);
    o->set_value_bits(bits_of(s.value));
  }
  for (auto& l : x.logs) {
    auto* o = m.add_logs();
    put_labels(l.labels, o->mutable_labels());
    o->set_timestamp_ns(l.timestamp_ns);
    o->set_line(l.line);
  }
  for (auto& e : x.events) {
    auto* o = m.add_events();
    o->set_timestamp_ms(e.timestamp_ms);
    o->set_kind(e.kind);
    o->set_message(e.message);
    put_labels(e.attributes, o->mutable_attributes());
  }
}

void get_records(const pb::JournalEntry& m, journal_entry& x) {
  x.samples.reserve(m.samples_size());
  for (auto& s : m.samples())
    x.samples.push_back(metric_sample{s.name(), get_labels(s.labels()),
                                      s.timestamp_ms(),
                                      double_of(s.value_bits())});
  for (auto& l : m.logs())
    x.logs.push_back(log_line{get_labels(l.labels()), l.timestamp_ns(),
                              l.line()});
  for (auto& e : m.events())
    x.events.push_back(event_record{e.timestamp_ms(), e.kind(), e.message(),
                                    get_labels(e.attributes())});
}

} // namespace

std::string encode_journal_entry(const journal_entry& x) {
  pb::JournalEntry m;
  m.set_version(journal_format_version);
  m.set_org(x.org);
  m.set_device(x.device);
  m.set_stream(x.stream);
  m.set_epoch(x.epoch);
  m.set_sequence(x.sequence);
  m.set_received_ms(x.received_ms);
  put_records(x, m);
  return zstd_compress(m.SerializeAsString(), journal_zstd_level);
}

caf::expected<journal_entry> decode_journal_entry(std::string_view row,
                                                  uint64_t max_bytes) {
  if (!is_zstd(row))
    return make_error(ec::decode_failed, "journal row is not a zstd frame");
  decode_budget budget{max_bytes};
  std::string plain;
  if (auto err = zstd_decompress(row, plain, budget))
    return err;
  // Parsed records take about as much again as their encoding.
  if (auto err = budget.charge(plain.size(), "journal entry"))
    return err;
  pb::JournalEntry m;
  if (!m.ParseFromString(plain))
    return make_error(ec::decode_failed, "journal row is not a JournalEntry");
  if (m.version() == 0 || m.version() > journal_format_version)
    return make_error(ec::decode_failed,
                      "journal row of unknown format version "
                        + std::to_string(m.version()));
  journal_entry x;
  x.org = m.org();
  x.device = m.device();
  x.stream = m.stream();
  x.epoch = m.epoch();
  x.sequence = m.sequence();
  x.received_ms = m.received_ms();
  get_records(m, x);
  return x;
}

} // namespace fleetd
