// The log file reader on real files: where a file starts, rotation by
// rename and by copytruncate, truncation, deleted and compressed files,
// long lines, multi-line records, the read budget, and positions that move
// only when a look is committed. The actor and the store meet in
// tests/integration/log_tail_kill_test.cpp.
#include "edge/log_tail.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "scratch_dir.hpp"

using namespace fleetd;

namespace {

struct fixture {
  test::scratch_dir dir{"fleetd-tail"};
  log_tail_config cfg;
  std::function<bool(std::string_view)> is_start;
  std::unique_ptr<log_reader> reader;
  int64_t now_ns = 1'700'000'000'000'000'000;

  std::string path(const std::string& name) {
    return dir.path() + "/" + name;
  }
  void append(const std::string& name, const std::string& text) {
    std::ofstream out(path(name), std::ios::binary | std::ios::app);
    out << text;
  }
  void start(source_cursors cursors = {}) {
    auto globs = log_globs(cfg);
    REQUIRE(globs);
    reader = std::make_unique<log_reader>(*globs, cfg, is_start);
    reader->reset(cursors);
  }
  // One look, committed; its lines' text.
  std::vector<std::string> look(tail_round* out = nullptr) {
    auto r = reader->read(now_ns++);
    reader->commit(r);
    std::vector<std::string> lines;
    for (auto& x : r.lines)
      lines.push_back(x.line);
    if (out != nullptr)
      *out = std::move(r);
    return lines;
  }
  // The cursors a store would hold after the looks so far.
  source_cursors cursors(const tail_round& r, int64_t generation) {
    source_cursors out;
    for (auto& [pattern, pos] : r.moved)
      out.push_back({log_reader::key(pattern), generation,
                     encode_position(pos)});
    return out;
  }
};

using lines = std::vector<std::string>;

} // namespace

TEST_CASE("logs.paths entries: job=glob, absolute, each once") {
  log_tail_config cfg;
  cfg.paths = "/var/log/syslog, app=/srv/app/*.log";
  auto gs = log_globs(cfg);
  REQUIRE(gs);
  REQUIRE(gs->size() == 2);
  CHECK((*gs)[0].job == "logs");
  CHECK((*gs)[1].job == "app");
  CHECK((*gs)[1].pattern == "/srv/app/*.log");
  for (auto bad : {"relative.log", "/a.log,/a.log", "=/a.log", "\xff=/x.log"}) {
    CAPTURE(bad);
    cfg.paths = bad;
    CHECK(validate(cfg));
  }
  cfg.paths = "/a.log";
  cfg.multiline_start = "^[0-9]{4}-(";
  CHECK(validate(cfg));
  cfg.multiline_start = "^[0-9]{4}-";
  CHECK_FALSE(validate(cfg));
  cfg.start_at = "middle";
  CHECK(validate(cfg));
  cfg.start_at = "beginning";
  CHECK_FALSE(validate(cfg));
}

TEST_CASE("a cursor value reads back as written; anything else is refused") {
  entry_position p{{1, 0}, {18446744073709551615ull, 123456789}};
  auto back = decode_position(encode_position(p));
  REQUIRE(back);
  REQUIRE(back->size() == 2);
  CHECK((*back)[1].fingerprint == p[1].fingerprint);
  CHECK((*back)[1].offset == p[1].offset);
  CHECK(decode_position("v2"));
  for (auto bad : {"", "v1 - -", "v2 1", "v2 1:", "v2 :1", "v2 1:-5",
                   "v2 1:2x", "v2 99999999999999999999:1"})
    CHECK_FALSE(decode_position(bad));
  // Seeded garbage never decodes to a negative offset or crashes.
  std::mt19937 rng{7};
  for (int i = 0; i < 20000; ++i) {
    std::string s = "v2 ";
    auto n = rng() % 40;
    for (size_t k = 0; k < n; ++k)
      s += "0123456789: -x"[rng() % 14];
    if (auto d = decode_position(s))
      for (auto& f : *d)
        CHECK(f.offset >= 0);
  }
}

TEST_CASE("start-at: end skips what a file held before fleetd, beginning "
          "reads it; a file that appears later is read whole") {
  for (auto start_at : {"end", "beginning"}) {
    CAPTURE(start_at);
    fixture f;
    f.cfg.paths = f.dir.path() + "/*.log";
    f.cfg.start_at = start_at;
    f.append("a.log", "old 1\nold 2\n");
    f.start();
    auto first = f.look();
    CHECK(first == (std::string(start_at) == "end" ? lines{}
                                                   : lines{"old 1", "old 2"}));
    f.append("a.log", "new 1\n");
    f.append("b.log", "b 1\nb 2\n");
    CHECK(f.look() == lines{"new 1", "b 1", "b 2"});
    CHECK(f.look().empty());
  }
}

TEST_CASE("labels: job from the entry, filename the live path, also for "
          "the rest of a rotated file") {
  fixture f;
  f.cfg.paths = "web=" + f.path("app.log");
  f.append("app.log", "one\n");
  f.cfg.start_at = "beginning";
  f.start();
  tail_round r;
  f.look(&r);
  REQUIRE(r.lines.size() == 1);
  CHECK(r.lines[0].labels == label_map{{"filename", f.path("app.log")},
                                       {"job", "web"}});
  f.append("app.log", "two\n");
  REQUIRE(::rename(f.path("app.log").c_str(), f.path("app.log.1").c_str())
          == 0);
  f.append("app.log", "three\n");
  f.look(&r);
  REQUIRE(r.lines.size() == 2);
  CHECK(r.lines[0].line == "two");
  CHECK(r.lines[0].labels.at("filename") == f.path("app.log"));
  CHECK(r.rotations == 1);
}

TEST_CASE("rename rotations, several between looks and while fleetd is "
          "down: every line once, oldest file first") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.append("app.log", "1\n");
  f.start();
  tail_round r;
  CHECK(f.look(&r) == lines{"1"});
  auto saved = f.cursors(r, 1);
  f.append("app.log", "2\n");
  ::rename(f.path("app.log").c_str(), f.path("app.log.1").c_str());
  f.append("app.log", "3\n");
  ::rename(f.path("app.log").c_str(), f.path("app.log.2").c_str());
  f.append("app.log", "4\n");
  // Another reader from the stored positions: fleetd after a restart.
  f.start(saved);
  CHECK(f.look() == lines{"2", "3", "4"});
  CHECK(f.look().empty());
}

TEST_CASE("copytruncate: the rest is read from the copy, then the file "
          "from its start") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.append("app.log", "a\nb\n");
  f.start();
  CHECK(f.look() == lines{"a", "b"});
  f.append("app.log", "c\n");
  f.append("app.log.1", "a\nb\nc\n"); // the copy
  REQUIRE(::truncate(f.path("app.log").c_str(), 0) == 0);
  f.append("app.log", "d\n");
  CHECK(f.look() == lines{"c", "d"});
}

TEST_CASE("truncation in place: counted, the new lines read from the "
          "start") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.append("app.log", "first line\n");
  f.start();
  CHECK(f.look() == lines{"first line"});
  REQUIRE(::truncate(f.path("app.log").c_str(), 0) == 0);
  f.append("app.log", "again\n");
  tail_round r;
  CHECK(f.look(&r) == lines{"again"});
  CHECK(r.truncations == 1);
}

TEST_CASE("a deleted file is read to its end through its descriptor, then "
          "let go; one compressed while fleetd was down is skipped") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.append("app.log", "x\n");
  f.start();
  CHECK(f.look() == lines{"x"});
  f.append("app.log", "y\n");
  REQUIRE(::unlink(f.path("app.log").c_str()) == 0);
  CHECK(f.look() == lines{"y"});
  f.look();
  CHECK(f.reader->files() == 0);
  // A rotation compressed before it was read, fleetd down meanwhile (no
  // descriptor reaches it): gone, and said so.
  f.append("app.log", "p\n");
  tail_round r;
  CHECK(f.look(&r) == lines{"p"});
  auto saved = f.cursors(r, 1);
  f.append("app.log", "q\n");
  REQUIRE(::rename(f.path("app.log").c_str(), f.path("app.log.1.gz").c_str())
          == 0);
  f.append("app.log", "r\n");
  f.start(saved);
  // The restarted reader never saw the file's size: the loss is the file.
  CHECK(f.look(&r) == lines{"r"});
  // Kept three looks (a rename may hide a file from one), then let go.
  CHECK(f.reader->files() == 2);
  f.look();
  f.look();
  CHECK(f.reader->files() == 1);
}

TEST_CASE("compressed rotations and old ones are never read; at a fresh "
          "start the rotations beside a file are history") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.append("app.log.1", "archived\n");
  f.append("app.log.2.gz", "\x1f\x8b binary\n");
  f.append("app.log", "live\n");
  f.start();
  CHECK(f.look() == lines{"live"});
  f.append("app.log.3.gz", "\x1f\x8b more\n");
  CHECK(f.look().empty());
}

TEST_CASE("a line longer than logs.max-line-bytes is cut into pieces, not "
          "inside a UTF-8 character; a line without its newline waits") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.cfg.max_line_bytes = 64;
  f.start();
  std::string euro = "\xE2\x82\xAC"; // three bytes
  std::string long_line;
  while (long_line.size() < 150)
    long_line += euro;
  f.append("app.log", long_line + "\nhalf");
  tail_round r;
  auto got = f.look(&r);
  REQUIRE(got.size() == 3);
  CHECK(got[0].size() == 63);
  CHECK(got[0] + got[1] + got[2] == long_line);
  CHECK(r.lines_split == 2);
  f.append("app.log", " done\n");
  CHECK(f.look() == lines{"half done"});
}

TEST_CASE("multi-line records: continuation lines join the record before "
          "them; the last record goes out after a quiet look") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.is_start = [](std::string_view line) {
    return !line.empty() && line[0] != ' ';
  };
  f.start();
  f.append("app.log", "ERROR boom\n  at a()\n  at b()\nINFO next\n");
  CHECK(f.look() == lines{"ERROR boom\n  at a()\n  at b()"});
  f.append("app.log", "  at c()\n");
  // Still growing: the record waits; quiet: it goes.
  CHECK(f.look().empty());
  CHECK(f.look() == lines{"INFO next\n  at c()"});
}

TEST_CASE("positions move only with commit: an uncommitted look is read "
          "again; the read budget leaves the rest for the next look") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.cfg.read_bytes = 8;
  f.cfg.max_line_bytes = 8;
  f.start();
  f.append("app.log", "aaa\nbbb\nccc\n");
  auto r = f.reader->read(f.now_ns);
  REQUIRE(r.lines.size() == 2);
  // Not committed (the store failed): the same lines again.
  auto again = f.reader->read(f.now_ns);
  REQUIRE(again.lines.size() == 2);
  f.reader->commit(again);
  CHECK(f.look() == lines{"ccc"});
}

TEST_CASE("more rotations beside the file than a directory listing's first "
          "64: a copytruncate's copy and renames while down are all read") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.start();
  // 100 copytruncates, each with a line fleetd saw only in the copy.
  for (int k = 1; k <= 100; ++k) {
    auto seen = std::to_string(k) + " seen";
    f.append("app.log", seen + "\n");
    REQUIRE(f.look() == lines{seen});
    auto rest = std::to_string(k) + " only in the copy";
    f.append("app.log", rest + "\n");
    f.append("app.log." + std::to_string(k), seen + "\n" + rest + "\n");
    REQUIRE(::truncate(f.path("app.log").c_str(), 0) == 0);
    CAPTURE(k);
    REQUIRE(f.look() == lines{rest});
  }
  // 100 renames while fleetd is down: read from the stored positions.
  tail_round r;
  f.append("app.log", "before the stop\n");
  REQUIRE(f.look(&r) == lines{"before the stop"});
  auto saved = f.cursors(r, 1);
  lines want;
  for (int k = 101; k <= 200; ++k) {
    want.push_back(std::to_string(k));
    f.append("app.log", want.back() + "\n");
    REQUIRE(::rename(f.path("app.log").c_str(),
                     f.path("app.log." + std::to_string(k)).c_str())
            == 0);
  }
  f.start(saved);
  CHECK(f.look() == want);
  CHECK(f.look().empty());
}

TEST_CASE("past logs.max-files the newest rotations are followed, and it is "
          "reported") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.cfg.max_files = 4;
  f.start();
  CHECK(f.look().empty());
  // Old rotations, already history: their mtimes are long past.
  for (int k = 1; k <= 20; ++k) {
    auto name = "app.log.old" + std::to_string(k);
    f.append(name, "old " + std::to_string(k) + "\n");
    struct timespec times[2] = {{1000 + k, 0}, {1000 + k, 0}};
    REQUIRE(::utimensat(AT_FDCWD, f.path(name).c_str(), times, 0) == 0);
  }
  f.append("app.log.new", "new\n");
  tail_round r;
  auto got = f.look(&r);
  // The newest four: the new rotation and old 20, 19, 18, oldest first.
  CHECK(got == lines{"old 18", "old 19", "old 20", "new"});
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].find("21 files") != std::string::npos);
  CHECK(r.problems[0].find("following 4 (logs.max-files)") != std::string::npos);
}

TEST_CASE("a followed file one look misses (renamed out of sight and back) "
          "keeps its position: not read again; let go after three looks") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.append("app.log", "1\n2\n");
  f.start();
  tail_round r;
  REQUIRE(f.look(&r) == lines{"1", "2"});
  ::rename(f.path("app.log").c_str(), f.path("app.log.1").c_str());
  f.append("app.log", "3\n");
  REQUIRE(f.look(&r) == lines{"3"});
  // A restart: no descriptors; a look while app.log.1 is being moved.
  auto saved = f.cursors(r, 1);
  f.start(saved);
  auto aside = f.dir.path() + "/aside";
  ::rename(f.path("app.log.1").c_str(), aside.c_str());
  CHECK(f.look(&r).empty());
  CHECK(r.missed.size() == 1);
  CHECK(r.moved.empty()); // its position still stored
  ::rename(aside.c_str(), f.path("app.log.2").c_str());
  CHECK(f.look(&r).empty());
  CHECK(r.missed.empty());
  // Gone for good while fleetd is down: let go after three looks.
  f.start(saved); // what the store holds: no look moved since
  ::rename(f.path("app.log.2").c_str(), aside.c_str());
  CHECK(f.look().empty());
  CHECK(f.look().empty());
  CHECK(f.reader->files() == 2);
  CHECK(f.look().empty());
  CHECK(f.reader->files() == 1); // app.log's only
  // Back after that, it is a file never seen: read whole (documented).
  ::rename(aside.c_str(), f.path("app.log.2").c_str());
  CHECK(f.look() == lines{"1", "2"});
}

TEST_CASE("a file truncated and written again to the same size in the same "
          "clock tick (its remembered fingerprint stale) is read from its "
          "start, never from the old position") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.append("app.log", "first\nsecond"); // the last line waits for its \n
  f.start();
  REQUIRE(f.look() == lines{"first"});
  struct stat st {};
  REQUIRE(::stat(f.path("app.log").c_str(), &st) == 0);
  // Size and time alike: only the bytes tell the two files apart (the
  // same as a copytruncate under a read).
  REQUIRE(::truncate(f.path("app.log").c_str(), 0) == 0);
  f.append("app.log", "new1\nnew22\nX");
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, f.path("app.log").c_str(), times, 0) == 0);
  // Not "w22" (the new file read from the old position).
  CHECK(f.look().empty());
  CHECK(f.look() == lines{"new1", "new22"});
  CHECK(f.look().empty());
}

TEST_CASE("a copytruncate's copy is read before the live file, even when "
          "its time is later (a coarse clock tick behind a fine one)") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.append("app.log", "1\n");
  f.start();
  REQUIRE(f.look() == lines{"1"});
  f.append("app.log.1", "1\n2\n"); // the copy, with a line not read yet
  REQUIRE(::truncate(f.path("app.log").c_str(), 0) == 0);
  f.append("app.log", "3\n");
  struct timespec live[2] = {{2000, 0}, {2000, 0}};
  struct timespec copy[2] = {{2000, 1000000}, {2000, 1000000}};
  REQUIRE(::utimensat(AT_FDCWD, f.path("app.log").c_str(), live, 0) == 0);
  REQUIRE(::utimensat(AT_FDCWD, f.path("app.log.1").c_str(), copy, 0) == 0);
  CHECK(f.look() == lines{"2", "3"});
}

TEST_CASE("a copy seen while still being written, its original already "
          "emptied, does not move the position back") {
  fixture f;
  f.cfg.paths = f.path("app.log");
  f.cfg.start_at = "beginning";
  f.append("app.log", "1\n2\n");
  f.start();
  REQUIRE(f.look() == lines{"1", "2"});
  f.append("app.log", "3\n");
  f.append("app.log.1", "1\n"); // the copy, a third of it written
  REQUIRE(::truncate(f.path("app.log").c_str(), 0) == 0);
  CHECK(f.look().empty());
  f.append("app.log.1", "2\n3\n");
  CHECK(f.look() == lines{"3"}); // not 2 again
}
