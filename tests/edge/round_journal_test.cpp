// storage.rounds-file: a commit of samples and log lines is one frame
// appended to <db>-rounds and synced; the file is read back after a crash
// up to its last whole frame, emptied once the cloud acked what it holds,
// and moves into the tables when it grows past its bound or the disk
// refuses it. Hostile bytes end the file, never allocate past a bound.
#include "edge/memory_store.hpp"
#include "edge/round_journal.hpp"
#include "edge/sqlite_store.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <cstring>
#include <unistd.h>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>

#include <doctest/doctest.h>

#include "commit_fixture.hpp"
#include "fault_disk.hpp"
#include "messages/labels.hpp"
#include "messages/types.hpp"
#include "messages/wire.hpp"

using namespace fleetd;

namespace {

constexpr int64_t start_ms = test::commit_start_ms;
using test::round_of;

struct fixture : test::commit_fixture {
  fixture() : commit_fixture("fleetd-rounds") {}

  std::string rounds() {
    return dir.path() + "/fleetd.db-rounds";
  }
  sqlite_store_config config(bool rounds_file = true) {
    auto cfg = base_config();
    cfg.limits.rounds_file = rounds_file;
    return cfg;
  }
  // config() on a fault disk of the test's.
  sqlite_store_config config_on(const std::shared_ptr<test::fault_disk>& d) {
    auto cfg = config();
    cfg.disk = d;
    return cfg;
  }
  int64_t file_size(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    return in ? static_cast<int64_t>(in.tellg()) : -1;
  }
  void append_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out << bytes;
  }
};

journal_metric metric(int64_t id, double v) {
  return journal_metric{id, 7, start_ms + id, bits_of(v)};
}

// The journal of `path` written with `n` frames of one sample each; the
// bytes its frames take (the file goes on in zeros, room ahead).
int64_t write_frames(const std::string& path, int n) {
  auto j = round_journal::open(path, "", "epoch-a");
  REQUIRE_MESSAGE(j, render(j.error()));
  for (int i = 1; i <= n; ++i) {
    j->add(metric(i, i * 1.5));
    REQUIRE_FALSE(j->flush());
  }
  return j->bytes();
}

// A batch of everything unbatched, persisted and acked.
void sync_all(sqlite_store& st, const char* stream, size_t want) {
  auto up = st.fetch(stream, 100000);
  REQUIRE(up);
  auto got = std::string{stream} == "logs" ? up->logs.size()
                                           : up->samples.size();
  REQUIRE(got == want);
  queued_batch b;
  b.stream = stream;
  b.sequence = up->next_sequence;
  b.last_id = up->last_id;
  b.points = static_cast<int64_t>(got);
  b.created_ms = start_ms;
  b.body = "body";
  REQUIRE(st.enqueue(b));
  REQUIRE(st.ack(stream, b.sequence, 0, {}, {}));
}

} // namespace

TEST_CASE("frames are read back exactly, NaN payloads and labels included") {
  fixture f;
  auto nan = double_of(0x7ff8000000000123ULL);
  {
    auto j = round_journal::open(f.rounds(), "", "epoch-a");
    REQUIRE(j);
    j->add(metric(1, nan));
    j->add(metric(2, -0.0));
    j->add(journal_log{1, 5, encode_labels({{"job", "x"}}), "hello"});
    CHECK(j->has_pending());
    REQUIRE_FALSE(j->flush());
    CHECK_FALSE(j->has_pending());
    j->add(metric(3, 1e300));
    REQUIRE_FALSE(j->flush());
    CHECK(j->frames() == 2);
  }
  auto j = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(j);
  CHECK(j->replayed_frames() == 3); // the header and two frames
  REQUIRE(j->metrics().size() == 3);
  CHECK(j->metrics()[0].bits == bits_of(nan));
  CHECK(j->metrics()[1].bits == bits_of(-0.0));
  CHECK(j->metrics()[2].ts_ms == start_ms + 3);
  REQUIRE(j->logs().size() == 1);
  CHECK(decode_labels(j->logs()[0].labels) == label_map{{"job", "x"}});
  CHECK(j->logs()[0].line == "hello");
  CHECK(j->largest_id(false) == 3);
}

TEST_CASE("a torn or garbled tail ends the file at the last whole frame") {
  fixture f;
  auto whole = write_frames(f.rounds(), 3);
  REQUIRE(f.file_size(f.rounds()) > whole);
  // What a power cut leaves: the last frame cut short, or bytes after the
  // frames where the zeros ahead were.
  auto write_at_end = [&](const std::string& bytes) {
    std::fstream io(f.rounds(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(whole);
    io << bytes;
  };
  SUBCASE("cut short") {
    ::truncate(f.rounds().c_str(), whole - 3);
  }
  SUBCASE("garbage after it") {
    write_at_end(std::string(100, '\x5a'));
  }
  SUBCASE("garbage after the zeros ahead") {
    f.append_bytes(f.rounds(), std::string(100, '\x5a'));
  }
  SUBCASE("a length claiming 4 GiB") {
    write_at_end(std::string("\xff\xff\xff\xff\0\0\0\0", 8));
  }
  SUBCASE("a whole frame whose records inflate to 100 MiB") {
    // Right length and CRC: only the decoder's budget stops it.
    auto payload = "Z" + zstd_compress(std::string(100 << 20, '\0'), 19);
    REQUIRE(payload.size() < 100000);
    std::string frame;
    for (uint32_t x : {static_cast<uint32_t>(payload.size()), crc32(payload)})
      for (int i = 0; i < 4; ++i)
        frame += static_cast<char>((x >> (8 * i)) & 0xFF);
    write_at_end(frame + payload);
  }
  int64_t size = 0;
  {
    auto j = round_journal::open(f.rounds(), "", "epoch-a");
    REQUIRE(j);
    CHECK(j->torn_bytes() > 0);
    CHECK(j->metrics().size() >= 2);
    CHECK(j->metrics().size() <= 3);
    size = j->bytes();
  }
  // The cut is made on disk: a second open finds nothing torn.
  auto again = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(again);
  CHECK(again->torn_bytes() == 0);
  CHECK(again->bytes() == size);
}

TEST_CASE("a frame that would straddle a page starts the next one; the file "
          "grows ahead in zeros and reads back clean") {
  fixture f;
  int64_t end = 0;
  {
    auto j = round_journal::open(f.rounds(), "", "epoch-a");
    REQUIRE(j);
    std::mt19937 rng{7};
    for (int i = 1; i <= 60; ++i) {
      // Frames of ~0.3-1.5 KiB: incompressible values.
      for (int k = 0; k < 20 + static_cast<int>(rng() % 80); ++k)
        j->add(journal_metric{i * 1000 + k, 7, start_ms + i,
                              static_cast<uint64_t>(rng()) << 32 | rng()});
      REQUIRE_FALSE(j->flush());
    }
    end = j->bytes();
    CHECK(f.file_size(f.rounds()) % (64 * 1024) == 0);
    CHECK(f.file_size(f.rounds()) > end);
  }
  // The file as written: length-prefixed frames, zeros up to a page.
  std::ifstream in(f.rounds(), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  int64_t pos = 0, frames = 0, padded = 0;
  while (pos + 8 <= end) {
    uint32_t len = 0;
    std::memcpy(&len, bytes.data() + pos, 4); // little-endian, as on x86
    if (len == 0) {
      pos = (pos / 4096 + 1) * 4096;
      ++padded;
      continue;
    }
    CHECK_MESSAGE(pos / 4096 == (pos + 8 + len - 1) / 4096,
                  "frame at " << pos << " of " << len << " bytes straddles");
    pos += 8 + len;
    ++frames;
  }
  CHECK(pos == end);
  CHECK(frames == 61); // the header's and 60 rounds'
  CHECK(padded > 2); // the case was exercised
  auto again = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(again);
  CHECK(again->torn_bytes() == 0);
  CHECK(again->bytes() == end);
  CHECK(again->replayed_frames() == 61);
  CHECK(again->metrics().size() > 60 * 20);
  // The zeros ahead stay: reopening does not cut the file.
  CHECK(f.file_size(f.rounds()) % (64 * 1024) == 0);
}

// write_bytes of /proc/self/io: what this process had written to disk.
int64_t written_bytes() {
  std::ifstream in("/proc/self/io");
  std::string key;
  int64_t n = -1;
  while (in >> key) {
    if (key == "write_bytes:") {
      in >> n;
      break;
    }
  }
  return n;
}

TEST_CASE("each round writes its page whole; around the page cache it costs "
          "exactly that page") {
  fixture f;
  auto j = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(j);
  std::mt19937 rng{3};
  auto round = [&](int i) {
    // ~1 KiB a frame: three or four share a page.
    for (int k = 0; k < 60; ++k)
      j->add(journal_metric{i * 100 + k, 7, start_ms + i,
                            static_cast<uint64_t>(rng()) << 32 | rng()});
    REQUIRE_FALSE(j->flush());
  };
  round(0); // the header, and the file's first room ahead
  auto before = written_bytes();
  constexpr int rounds = 40;
  for (int i = 1; i <= rounds; ++i)
    round(i);
  auto after = written_bytes();
  auto again = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(again);
  CHECK(again->torn_bytes() == 0);
  CHECK(again->metrics().size() == (rounds + 1) * 60);
  if (before < 0 || !j->direct()) {
    MESSAGE("no O_DIRECT on this file system (or no /proc/self/io): "
            "the page-cost check is skipped");
    return;
  }
  CHECK(after - before == rounds * 4096);
}

TEST_CASE("an ack costs no write of its own: it goes to disk with the next "
          "synced frame; lost before that, its batch is pending again") {
  fixture f;
  auto j = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(j);
  for (int k = 0; k < 60; ++k)
    j->add(journal_metric{k, 7, start_ms, static_cast<uint64_t>(k)});
  REQUIRE_FALSE(j->flush());
  queued_batch b{"metrics", 1, 59, 60, start_ms, 0, "body 1"};
  REQUIRE_FALSE(j->append(b));
  auto before = written_bytes();
  REQUIRE_FALSE(j->append(journal_ack{"metrics", 1, 0, {}, {}}));
  auto after_ack = written_bytes();
  // A crash now: the ack never reached the file, the batch did.
  {
    auto crashed = round_journal::open(f.rounds(), "", "epoch-a");
    REQUIRE(crashed);
    REQUIRE(crashed->ops().size() == 1);
    CHECK(crashed->ops()[0].kind == 'B');
    CHECK(crashed->torn_bytes() == 0);
  }
  // The next synced frame carries it.
  j->add(journal_metric{60, 7, start_ms + 10000, 1});
  REQUIRE_FALSE(j->flush());
  auto after_round = written_bytes();
  auto again = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(again);
  REQUIRE(again->ops().size() == 2);
  CHECK(again->ops()[1].kind == 'A');
  CHECK(again->ops()[1].ack.sequence == 1);
  CHECK(again->metrics().size() == 61);
  // And sync_unwritten (a clean stop) writes one held back.
  REQUIRE_FALSE(j->append(journal_ack{"metrics", 2, 0, {}, {}}));
  REQUIRE_FALSE(j->sync_unwritten());
  auto last = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(last);
  REQUIRE(last->ops().size() == 3);
  CHECK(last->ops()[2].ack.sequence == 2);
  if (before < 0 || !j->direct()) {
    MESSAGE("no O_DIRECT on this file system (or no /proc/self/io): "
            "the write-cost check is skipped");
    return;
  }
  CHECK(after_ack == before);
  CHECK(after_round - after_ack == 4096);
}

TEST_CASE("a frame that ends 1 to 8 bytes short of a page: the next one "
          "starts the next page and reads back") {
  fixture f;
  std::mt19937 rng{11};
  // Incompressible lines, so a frame's size is its line's plus a fixed part.
  auto line = [&](int64_t n) {
    std::string s(static_cast<size_t>(n), '\0');
    for (auto& c : s)
      c = static_cast<char>(rng());
    return s;
  };
  auto j = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(j);
  int64_t id = 0;
  auto add = [&](int64_t n) {
    // Small ids and one time keep the fixed part fixed.
    j->add(journal_log{++id % 40 + 1, 1, "", line(n)});
    REQUIRE_FALSE(j->flush());
  };
  add(200);
  auto before = j->bytes();
  add(200);
  auto fixed = j->bytes() - before - 200;
  REQUIRE(fixed > 8);
  int64_t lines = 2;
  for (int64_t k = 1; k <= 8; ++k) {
    CAPTURE(k);
    // Fill the page up to k bytes short of its end.
    for (;;) {
      auto room = 4096 - j->bytes() % 4096;
      auto n = room - k - fixed;
      if (n >= 128) {
        add(n);
        ++lines;
        break;
      }
      add(300); // does not fit: moves on to the next page
      ++lines;
    }
    REQUIRE(4096 - j->bytes() % 4096 == k);
    add(300);
    ++lines;
  }
  auto end = j->bytes();
  auto again = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(again);
  CHECK(again->torn_bytes() == 0);
  CHECK(again->bytes() == end);
  CHECK(static_cast<int64_t>(again->logs().size()) == lines);
}

TEST_CASE("a flipped byte in the middle ends the file there") {
  fixture f;
  auto whole = write_frames(f.rounds(), 4);
  {
    std::fstream io(f.rounds(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(whole / 2);
    io.put('\x00');
    io.seekp(whole / 2 + 1);
    io.put('\x7f');
  }
  auto j = round_journal::open(f.rounds(), "", "epoch-a");
  REQUIRE(j);
  CHECK(j->metrics().size() < 4);
  CHECK(j->torn_bytes() > 0);
}

TEST_CASE("a file of another epoch is refused, and the store sets it aside") {
  fixture f;
  write_frames(f.rounds(), 2);
  auto j = round_journal::open(f.rounds(), "", "epoch-b");
  REQUIRE_FALSE(j);
  CHECK(j.error() == ec::storage_corrupt);
  auto st = sqlite_store::open(f.config());
  REQUIRE(st);
  CHECK(st->stats().counters["rounds_file_points"] == 0);
  bool aside = false;
  for (auto& name : f.dir.entries())
    aside = aside || name.find("-rounds.orphan-") != std::string::npos;
  CHECK(aside);
}

TEST_CASE("the store keeps samples and lines in the file, not the tables, "
          "until the cloud acks them") {
  fixture f;
  auto st = sqlite_store::open(f.config());
  REQUIRE(st);
  REQUIRE(st->store(round_of(50, start_ms)));
  REQUIRE(st->store_logs({log_line{{{"job", "t"}}, start_ms * 1000000, "l"}}));
  CHECK(f.rows_on_disk("metrics") == 0);
  CHECK(f.rows_on_disk("logs") == 0);
  CHECK(f.file_size(f.rounds()) > 0);
  auto c = st->stats().counters;
  CHECK(c["metrics_rows"] == 50);
  CHECK(c["unbatched_points"] == 50);
  CHECK(c["unbatched_logs"] == 1);
  sync_all(*st, "metrics", 50);
  CHECK(st->stats().counters["unbatched_points"] == 0);
  CHECK(st->stats().counters["rounds_file_points"] == 0);
  sync_all(*st, "logs", 1);
  CHECK(st->stats().counters["rounds_file_logs"] == 0);
  // The batches and acks are frames too; the tables take them at the fold.
  CHECK(f.rows_on_disk("stream_state") == 0);
  REQUIRE(st->debug("clean"));
  CHECK(f.file_size(f.rounds()) == 0);
  CHECK(f.rows_on_disk("stream_state") == 2);
  CHECK(f.rows_on_disk("sync_queue") == 0);
}

TEST_CASE("a batch persisted and an ack live in the file: after a restart "
          "the batch is pending with the same bytes, an acked one is gone") {
  fixture f;
  queued_batch b1;
  {
    auto st = sqlite_store::open(f.config());
    REQUIRE(st);
    REQUIRE(st->store(round_of(10, start_ms)));
    sync_all(*st, "metrics", 10);
    REQUIRE(st->store(round_of(10, start_ms + 10000)));
    auto up = st->fetch("metrics", 100);
    REQUIRE(up);
    b1.stream = "metrics";
    b1.sequence = up->next_sequence;
    b1.last_id = up->last_id;
    b1.points = 10;
    b1.created_ms = start_ms;
    b1.body = std::string("\x00\x01 exact bytes", 14);
    REQUIRE(st->enqueue(b1));
    REQUIRE(st->store(round_of(10, start_ms + 20000)));
  } // a crash keeps what was synced: here every frame was
  auto st = sqlite_store::open(f.config());
  REQUIRE(st);
  auto q = st->pending("metrics", 10);
  REQUIRE(q);
  REQUIRE(q->size() == 1);
  CHECK((*q)[0].sequence == b1.sequence);
  CHECK((*q)[0].body == b1.body);
  auto up = st->fetch("metrics", 100);
  REQUIRE(up);
  CHECK(up->next_sequence == b1.sequence + 1);
  CHECK(up->samples.size() == 10);
  CHECK(up->samples.front().timestamp_ms == start_ms + 20000);
}

TEST_CASE("power cuts during rounds, batches and acks: every answered batch "
          "is pending or acked, every answered sample is somewhere, no "
          "sequence is given twice") {
  std::mt19937_64 rng{20261207};
  for (int run = 0; run < 60; ++run) {
    fixture f;
    auto disk = test::fault_disk::make();
    auto cfg = f.config_on(disk);
    // A small cap: the file is folded into the tables every few dozen rounds.
    cfg.limits.max_bytes = 1000 * 1000;
    auto cut_at = static_cast<int64_t>(rng() % 400) + 1;
    CAPTURE(cut_at);
    int64_t stored = 0, acked_points = 0, max_seq = 0;
    std::map<int64_t, int64_t> unacked; // sequence -> points
    {
      auto st = sqlite_store::open(cfg);
      REQUIRE(st);
      disk->cut_power_after_writes(cut_at);
      for (int round = 0; round < 300 && !disk->power_cut(); ++round) {
        if (auto n = st->store(round_of(100, start_ms + round * 10000)))
          stored += *n;
        if (round % 3 != 2)
          continue;
        auto up = st->fetch("metrics", 1000);
        if (!up || up->samples.empty())
          continue;
        queued_batch b{"metrics", up->next_sequence, up->last_id,
                       static_cast<int64_t>(up->samples.size()), start_ms, 0,
                       "body " + std::to_string(up->next_sequence)};
        if (!st->enqueue(b))
          continue;
        max_seq = b.sequence;
        unacked[b.sequence] = b.points;
        // An ack covers every sequence up to its own.
        if (rng() % 2 == 0 && st->ack("metrics", b.sequence, 0, {}, {}))
          for (auto i = unacked.begin(); i != unacked.end();) {
            acked_points += i->second;
            i = unacked.erase(i);
          }
      }
      REQUIRE(disk->power_cut());
    }
    disk->revive();
    auto st = sqlite_store::open(cfg);
    REQUIRE_MESSAGE(st, render(st.error()));
    auto q = st->pending("metrics", 1000);
    REQUIRE(q);
    int64_t pending_points = 0;
    std::set<int64_t> pending_seqs;
    for (auto& b : *q) {
      pending_points += b.points;
      pending_seqs.insert(b.sequence);
      CHECK(b.body == "body " + std::to_string(b.sequence));
    }
    for (auto& [seq, points] : unacked) {
      CAPTURE(seq);
      CHECK(pending_seqs.count(seq) == 1);
    }
    auto up = st->fetch("metrics", 100000);
    REQUIRE(up);
    CHECK(up->next_sequence > max_seq);
    // Acks may be lost (their batch is pending again), records never.
    CHECK(static_cast<int64_t>(up->samples.size()) + pending_points
            + acked_points
          >= stored);
  }
}

TEST_CASE("after a restart the file's records come back, ids go on above "
          "them, and acked ones stay gone") {
  fixture f;
  {
    auto st = sqlite_store::open(f.config());
    REQUIRE(st);
    REQUIRE(st->store(round_of(10, start_ms)));
    sync_all(*st, "metrics", 10);
    REQUIRE(st->store(round_of(10, start_ms + 10000)));
    REQUIRE(st->store(round_of(10, start_ms + 20000)));
  }
  auto st = sqlite_store::open(f.config());
  REQUIRE(st);
  auto up = st->fetch("metrics", 1000);
  REQUIRE(up);
  REQUIRE(up->samples.size() == 20);
  CHECK(up->samples.front().timestamp_ms == start_ms + 10000);
  auto last = up->last_id;
  REQUIRE(st->store(round_of(5, start_ms + 30000)));
  up = st->fetch("metrics", 1000);
  REQUIRE(up);
  CHECK(up->samples.size() == 25);
  CHECK(up->last_id == last + 5);
}

TEST_CASE("a group is one frame") {
  fixture f;
  auto st = sqlite_store::open(f.config());
  REQUIRE(st);
  REQUIRE(st->begin_group());
  REQUIRE(st->store(round_of(40, start_ms)));
  REQUIRE(st->store(round_of(60, start_ms)));
  REQUIRE(st->store_logs({log_line{{{"job", "t"}}, start_ms * 1000000, "l"}}));
  // Nothing written before the group ends: each store is answered after it.
  CHECK(f.file_size(f.rounds()) == 0);
  REQUIRE_FALSE(st->end_group());
  auto c = st->stats().counters;
  CHECK(c["rounds_file_frames"] == 1);
  CHECK(c["rounds_file_points"] == 100);
  CHECK(c["rounds_file_logs"] == 1);
}

TEST_CASE("past its bound the file moves into the tables, and a fetch still "
          "gives every record once in order") {
  fixture f;
  auto cfg = f.config();
  cfg.limits.max_bytes = 1000 * 1000; // a small WAL bound: the file's too
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  int64_t stored = 0;
  for (int round = 0; round < 120; ++round) {
    metric_samples xs;
    for (int i = 0; i < 100; ++i)
      xs.push_back(metric_sample{"m", {{"i", std::to_string(i)}},
                                 start_ms + round, 1.0 / (round * 100 + i + 1)});
    REQUIRE(st->store(xs));
    stored += 100;
  }
  CHECK(f.rows_on_disk("metrics") > 0);
  // At most the bound plus the one frame that passed it.
  CHECK(st->stats().counters["rounds_file_bytes"] <= st->wal_bound() + 4096);
  auto up = st->fetch("metrics", 100000);
  REQUIRE(up);
  REQUIRE(static_cast<int64_t>(up->samples.size()) == stored);
  for (size_t k = 0; k < up->samples.size(); ++k)
    CHECK(up->samples[k].value == 1.0 / (k + 1));
}

TEST_CASE("a disk that refuses the file: the records go into the tables, or "
          "are counted as rejected") {
  fixture f;
  auto disk = test::fault_disk::make();
  auto cfg = f.config_on(disk);
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  REQUIRE(st->store(round_of(10, start_ms)));
  disk->fail_syncs(true);
  auto n = st->store(round_of(10, start_ms + 10000));
  disk->fail_syncs(false);
  // SQLite's sync fails as well: the ten are refused and counted.
  auto d = st->drops();
  auto rejected = d[drop_kind::metrics_rejected];
  CHECK((n ? rejected == 0 : rejected == 10));
  REQUIRE(st->store(round_of(10, start_ms + 20000)));
  auto up = st->fetch("metrics", 1000);
  REQUIRE(up);
  CHECK(static_cast<int64_t>(up->samples.size()) == 20 + (n ? 10 : 0));
  for (size_t k = 1; k < up->samples.size(); ++k)
    CHECK(up->samples[k - 1].timestamp_ms <= up->samples[k].timestamp_ms);
}

TEST_CASE("switched off, a file left by an earlier start moves into the "
          "tables once") {
  fixture f;
  {
    auto st = sqlite_store::open(f.config());
    REQUIRE(st);
    REQUIRE(st->store(round_of(30, start_ms)));
  }
  auto cfg = f.config();
  cfg.limits.rounds_file = false;
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  CHECK(f.rows_on_disk("metrics") == 30);
  CHECK(f.file_size(f.rounds()) == -1);
  REQUIRE(st->store(round_of(30, start_ms + 10000)));
  auto up = st->fetch("metrics", 1000);
  REQUIRE(up);
  CHECK(up->samples.size() == 60);
}

TEST_CASE("an event is a synced frame: it survives a power cut before any "
          "fold, once") {
  fixture f;
  auto disk = test::fault_disk::make();
  auto cfg = f.config_on(disk);
  {
    auto st = sqlite_store::open(cfg);
    REQUIRE(st);
    REQUIRE(st->store(round_of(5, start_ms)));
    REQUIRE_FALSE(st->record_event("mark", "one"));
    REQUIRE_FALSE(st->record_event("mark", "two"));
    // Not in the tables' file: only the rounds file holds them yet.
    CHECK(f.rows_on_disk("events") == 0);
    disk->cut_power(); // the close cannot commit them
  }
  disk->revive();
  for (int open = 0; open < 2; ++open) {
    CAPTURE(open);
    auto st = sqlite_store::open(cfg);
    REQUIRE(st);
    auto up = st->fetch("events", 10);
    REQUIRE(up);
    // Taken again at every open, never doubled.
    REQUIRE(up->events.size() == 2);
    CHECK(up->events[0].message == "one");
    CHECK(up->events[1].message == "two");
  }
}

TEST_CASE("a folded file's acked records stay on the device until "
          "storage.retention, and go first when the cap wants room") {
  fixture f;
  auto cfg = f.config();
  cfg.limits.retention_ms = 3600 * 1000;
  auto kept_files = [&] {
    std::vector<std::string> out;
    for (auto& e : std::filesystem::directory_iterator(f.dir.path())) {
      auto name = e.path().filename().string();
      if (name.rfind("fleetd.db-rounds.", 0) == 0)
        out.push_back(name);
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  {
    auto st = sqlite_store::open(cfg);
    REQUIRE(st);
    REQUIRE(st->store(round_of(10, start_ms)));
    REQUIRE(st->store_logs({log_line{{{"job", "t"}}, start_ms * 1000000, "a"},
                            log_line{{{"job", "t"}}, start_ms * 1000000, "b"}}));
    sync_all(*st, "metrics", 10);
    sync_all(*st, "logs", 2);
    REQUIRE(st->store(round_of(10, start_ms + 10000))); // not acked
    f.clk->advance(10000);
    REQUIRE(st->debug("clean")); // folds the file
    auto c = st->stats().counters;
    CHECK(c["kept_rounds_files"] == 1);
    CHECK(c["kept_rounds_bytes"] > 0);
    CHECK(c["rounds_file_bytes"] == 0);
    // The unacked round moved into the tables, to be sent.
    auto up = st->fetch("metrics", 100);
    REQUIRE(up);
    CHECK(up->samples.size() == 10);
  }
  auto files = kept_files();
  REQUIRE(files.size() == 1);
  CHECK(files[0] == "fleetd.db-rounds." + std::to_string(start_ms + 10000)
                      + ".10.2");
  // A fold's next file a crash left before it took the name is no kept one.
  f.append_bytes(f.rounds() + ".new", std::string(100, 'x'));
  // A restart finds it; past the retention it goes, counted as synced drops.
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  CHECK(st->stats().counters["kept_rounds_files"] == 1);
  CHECK(f.file_size(f.rounds() + ".new") == -1);
  {
    // As written: every record of it reads back, the acked ones too.
    auto j = round_journal::open(f.dir.path() + "/" + files[0], "",
                                 st->epoch());
    REQUIRE(j);
    CHECK(j->metrics().size() == 20);
    CHECK(j->logs().size() == 2);
    CHECK(j->torn_bytes() == 0);
  }
  auto before = st->drops();
  f.clk->advance(3600 * 1000 + 60000);
  REQUIRE(st->enforce_limits());
  CHECK(kept_files().empty());
  auto after = st->drops();
  CHECK(after["metrics_synced"] - before["metrics_synced"] == 10);
  CHECK(after["logs_synced"] - before["logs_synced"] == 2);

  // The cap: a kept file goes before any row of the tables.
  REQUIRE(st->store(round_of(10, start_ms + 3700 * 1000)));
  sync_all(*st, "metrics", 10); // the unacked round aged out
  REQUIRE(st->debug("clean"));
  REQUIRE(kept_files().size() == 1);
  auto rows = st->stats().counters["metrics_rows"];
  auto lim = st->limits();
  lim.max_bytes = st->used_bytes() - 1;
  st->set_limits(lim);
  REQUIRE(st->enforce_limits());
  CHECK(kept_files().empty());
  CHECK(st->stats().counters["metrics_rows"] == rows);
}


namespace {

log_lines one_line(const std::string& text) {
  return {log_line{{{"job", "t"}}, start_ms * 1000000, text}};
}

// The cursor of `key` the store gives back; empty when it has none.
std::string cursor_of(sqlite_store& st, const std::string& key) {
  auto cs = st.cursors();
  REQUIRE(cs);
  for (auto& c : *cs)
    if (c.key == key)
      return std::to_string(c.generation) + " " + c.value;
  return "";
}

} // namespace

TEST_CASE("a source cursor lives in the lines' frame: read back after a "
          "crash, moved into the tables at the fold, the newest kept") {
  for (bool rounds_file : {true, false}) {
    CAPTURE(rounds_file);
    fixture f;
    auto cfg = f.config(rounds_file);
    {
      auto st = sqlite_store::open(cfg);
      REQUIRE(st);
      REQUIRE(st->store_logs(one_line("a"), {{"log:/x", 1, "v2 1:2"}}));
      REQUIRE(st->store_logs(one_line("b"), {{"log:/x", 2, "v2 1:4"},
                                             {"log:/y", 2, "v2"}}));
      // An older generation never replaces a newer one.
      REQUIRE(st->store_logs({}, {{"log:/x", 1, "v2 1:0"}}));
      CHECK(cursor_of(*st, "log:/x") == "2 v2 1:4");
      CHECK(rounds_file == (f.rows_on_disk("source_cursors") == 0));
    } // a crash: what was answered is on disk
    auto st = sqlite_store::open(cfg);
    REQUIRE(st);
    CHECK(cursor_of(*st, "log:/x") == "2 v2 1:4");
    CHECK(cursor_of(*st, "log:/y") == "2 v2");
    CHECK(cursor_of(*st, "log:/z") == "");
    // The lines came back with them, once.
    auto up = st->fetch("logs", 10);
    REQUIRE(up);
    REQUIRE(up->logs.size() == 2);
    CHECK(up->logs[1].line == "b");
    // Acked and folded: the file empties, the tables keep the cursors.
    sync_all(*st, "logs", 2);
    REQUIRE(st->debug("clean"));
    CHECK(f.rows_on_disk("source_cursors") == 2);
    REQUIRE(st->store_logs(one_line("c"), {{"log:/x", 3, "v2 1:6"}}));
    CHECK(cursor_of(*st, "log:/x") == "3 v2 1:6");
  }
}

TEST_CASE("a power cut at any write: a cursor and the lines before it are "
          "both kept or both gone, in either store mode") {
  std::mt19937_64 rng{20261208};
  for (int run = 0; run < 80; ++run) {
    CAPTURE(run);
    fixture f;
    auto disk = test::fault_disk::make();
    auto cfg = f.config_on(disk);
    cfg.limits.rounds_file = run % 2 == 0;
    int answered = 0;
    {
      auto st = sqlite_store::open(cfg);
      REQUIRE(st);
      disk->cut_power_after_writes(
        std::uniform_int_distribution<int64_t>(1, 40)(rng));
      for (int i = 1; i <= 30 && !disk->power_cut(); ++i) {
        auto n = st->store_logs(one_line("l" + std::to_string(i)),
                                {{"log:/x", i, "v2 1:" + std::to_string(i)}});
        if (n)
          answered = i;
      }
    }
    disk->revive();
    auto st = sqlite_store::open(cfg);
    REQUIRE(st);
    auto up = st->fetch("logs", 100);
    REQUIRE(up);
    auto lines = static_cast<int>(up->logs.size());
    CHECK(lines >= answered);
    // The cursor says exactly how many lines were kept.
    CHECK(cursor_of(*st, "log:/x")
          == (lines == 0 ? std::string()
                         : std::to_string(lines) + " v2 1:"
                             + std::to_string(lines)));
  }
}

namespace {

// Every unbatched record of `stream`, batch after batch of at most
// `max_bytes` (record_bytes): each batch whole records, `full` while more
// wait; the values (samples) or lines (logs) in the order fetched.
std::vector<std::string> drain_bounded(store_backend& st, const char* stream,
                                       int64_t max_bytes, int64_t& batches) {
  std::vector<std::string> got;
  bool was_full = true;
  for (batches = 0;; ++batches) {
    auto up = st.fetch(stream, 100000, max_bytes);
    REQUIRE(up);
    // Every batch but the last says more records wait.
    CHECK((was_full || up->size() == 0));
    was_full = up->full;
    if (up->size() == 0) {
      CHECK_FALSE(up->full);
      return got;
    }
    int64_t bytes = 0;
    for (auto& x : up->samples) {
      bytes += record_bytes(x);
      got.push_back(std::to_string(x.value));
    }
    for (auto& x : up->logs) {
      bytes += record_bytes(x);
      got.push_back(x.line);
    }
    // Past the bound only with the one record a batch always takes.
    CHECK((bytes <= max_bytes || up->size() == 1));
    queued_batch b;
    b.stream = stream;
    b.sequence = up->next_sequence;
    b.last_id = up->last_id;
    b.points = static_cast<int64_t>(up->size());
    b.created_ms = start_ms;
    b.body = "body";
    REQUIRE(st.enqueue(b));
    REQUIRE(st.ack(stream, b.sequence, 0, {}, {}));
  }
}

} // namespace

TEST_CASE("a batch stops at its byte bound on a whole record, from the "
          "tables and from the rounds file; batch after batch gives every "
          "record once in order") {
  for (bool rounds_file : {true, false}) {
    CAPTURE(rounds_file);
    fixture f;
    auto cfg = f.config(rounds_file);
    auto st = sqlite_store::open(cfg);
    REQUIRE(st);
    std::vector<std::string> values;
    std::vector<std::string> lines;
    for (int round = 0; round < 150; ++round) {
      metric_samples xs;
      for (int i = 0; i < 100; ++i) {
        auto v = round * 100 + i + 1.0;
        xs.push_back(metric_sample{"m", {{"i", std::to_string(i)}},
                                   start_ms + round, v});
        values.push_back(std::to_string(v));
      }
      REQUIRE(st->store(xs));
      log_lines ls;
      // Lines of 1 to 5000 bytes; every 20th longer than the bound.
      for (int i = 0; i < 5; ++i) {
        auto n = static_cast<size_t>((round * 5 + i) % 20 == 0
                                       ? 9000
                                       : 1 + (round * 977 + i * 131) % 5000);
        std::string text(n, static_cast<char>('a' + (round + i) % 26));
        text += std::to_string(round * 5 + i);
        ls.push_back(log_line{{{"job", "t"}}, start_ms * 1000000 + round, text});
        lines.push_back(text);
      }
      REQUIRE(st->store_logs(ls, {}));
    }
    int64_t batches = 0;
    CHECK(drain_bounded(*st, "metrics", 64 << 10, batches) == values);
    // 15000 samples of ~130 bytes in 64 KiB batches.
    CHECK(batches >= 30);
    CHECK(drain_bounded(*st, "logs", 8 << 10, batches) == lines);
    CHECK(batches >= 150);
  }
}

TEST_CASE("the memory store stops a batch at its byte bound too") {
  memory_limits lim;
  lim.max_points = 0;
  memory_store st(lim, std::make_shared<manual_clock>(start_ms));
  std::vector<std::string> values;
  metric_samples xs;
  for (int i = 0; i < 2000; ++i) {
    xs.push_back(metric_sample{"m", {{"i", std::to_string(i % 7)}}, start_ms,
                               i + 1.0});
    values.push_back(std::to_string(i + 1.0));
  }
  REQUIRE(st.store(xs));
  int64_t batches = 0;
  CHECK(drain_bounded(st, "metrics", 16 << 10, batches) == values);
  CHECK(batches >= 10);
}
