#include "edge/log_tail.hpp"

#include "edge/system_collector.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <set>
#include <tuple>
#include <utility>

#include <caf/typed_event_based_actor.hpp>
#include <xxhash.h>

#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"
#include "runtime/page_file.hpp"
#include "runtime/pattern.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

constexpr const char* component = "log_tail";
constexpr const char* paths_key = "logs.paths";
constexpr const char* key_prefix = "log:";

// Most bytes of a file's first line its fingerprint takes.
constexpr int64_t head_bytes = 256;

constexpr auto store_timeout = std::chrono::seconds(30);

// Looks in a row a followed file may be missed before its position is let
// go: a rename between stat and open, or during a directory listing, hides
// a file from one look, and a position let go means it is read again whole.
constexpr int missed_looks = 3;

// Where a piece of at most `max` bytes of `s` may end: not inside a UTF-8
// sequence, unless the piece would be empty.
size_t cut_at(std::string_view s, size_t max) {
  auto n = std::min(max, s.size());
  if (n == s.size())
    return n;
  auto k = n;
  while (k > 0 && n - k < 3
         && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80)
    --k;
  return k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) != 0x80 ? k : n;
}

std::string dir_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

} // namespace

// ---- positions as cursor values -------------------------------------------

std::string encode_position(const entry_position& x) {
  std::string out = "v2";
  for (auto& f : x)
    out += " " + std::to_string(f.fingerprint) + ":" + std::to_string(f.offset);
  return out;
}

std::optional<entry_position> decode_position(std::string_view text) {
  auto fields = split_fields(text);
  if (fields.empty() || fields[0] != "v2")
    return std::nullopt;
  entry_position out;
  for (size_t i = 1; i < fields.size(); ++i) {
    auto f = fields[i];
    auto colon = f.find(':');
    if (colon == std::string_view::npos)
      return std::nullopt;
    file_position p;
    auto num = [](std::string_view s, auto& v) {
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      return ec == std::errc{} && end == s.data() + s.size();
    };
    if (!num(f.substr(0, colon), p.fingerprint)
        || !num(f.substr(colon + 1), p.offset) || p.offset < 0)
      return std::nullopt;
    out.push_back(p);
  }
  return out;
}

// ---- options ---------------------------------------------------------------

void declare(option_set& opts, log_tail_config& x) {
  using namespace std::chrono_literals;
  opts.add(paths_key, x.paths, "",
           "Log files to follow: comma-separated [job=]glob (job defaults to "
           "\"logs\"); each line is stored with labels job and filename. Name "
           "the live files only: rotated ones beside them are found by "
           "fleetd");
  opts.add("logs.start-at", x.start_at, "end",
           "Where a file with no saved position starts when fleetd starts: "
           "end or beginning (files that appear later are read whole)");
  opts.add("logs.interval", x.interval, 5s,
           "Time between looks at the files (each look with new lines is one "
           "commit to flash)",
           10ms);
  opts.add_size("logs.max-line-bytes", x.max_line_bytes, 16 * 1024,
                "Longer lines are cut into pieces of this size (counted as "
                "lines_split)",
                64, 1 << 20);
  opts.add_size("logs.read-bytes", x.read_bytes, 1 << 20,
                "Most bytes read from all files in one look; the rest waits "
                "for the next",
                4096, int64_t{1} << 30);
  opts.add("logs.max-files", x.max_files, 256, "files",
           "Most files (live and rotated) followed per entry; past it the "
           "newest are kept and it is reported",
           1, 100000);
  opts.add("logs.multiline-start", x.multiline_start, "",
           "POSIX extended regular expression: a line that does not match "
           "continues the record before it (e.g. ^[0-9]{4}- for stack "
           "traces); empty: every line is a record");
}

caf::expected<std::vector<log_glob>> log_globs(const log_tail_config& x) {
  std::vector<log_glob> out;
  std::set<std::string> seen;
  for (auto item : split_list(x.paths, ',')) {
    if (item.empty())
      continue;
    log_glob g;
    g.job = "logs";
    g.pattern = std::string(item);
    auto eq = item.find('=');
    auto slash = item.find('/');
    if (eq != std::string_view::npos && eq < slash) {
      g.job = std::string(trim(item.substr(0, eq)));
      g.pattern = std::string(trim(item.substr(eq + 1)));
      if (g.job.empty() || bad_text_at(g.job) != std::string::npos)
        return bad_config(std::string(paths_key) + ": bad job name in '"
                          + std::string(item) + "'");
    }
    if (g.pattern.empty() || g.pattern[0] != '/')
      return bad_config(std::string(paths_key) + ": '" + std::string(item)
                        + "' is no absolute path");
    if (!seen.insert(g.pattern).second)
      return bad_config(std::string(paths_key) + ": '" + g.pattern
                        + "' is given twice");
    out.push_back(std::move(g));
  }
  return out;
}

caf::error validate(const log_tail_config& x) {
  if (x.start_at != "end" && x.start_at != "beginning")
    return bad_config("logs.start-at: must be end or beginning, not '"
                      + x.start_at + "'");
  if (x.max_line_bytes <= 0 || x.read_bytes < x.max_line_bytes)
    return bad_config("logs.read-bytes: must be at least logs.max-line-bytes");
  if (auto gs = log_globs(x); !gs)
    return gs.error();
  if (!x.multiline_start.empty())
    if (auto why = pattern_error(x.multiline_start); !why.empty())
      return bad_config("logs.multiline-start: " + why);
  return caf::none;
}

// ---- the reader ------------------------------------------------------------

namespace {

// Rotations compressed in place are not text: never read.
bool compressed_name(std::string_view name) {
  for (std::string_view ext : {".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip",
                               ".Z"})
    if (name.size() > ext.size()
        && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
      return true;
  return false;
}

bool has_wildcard(const std::string& pattern) {
  return pattern.find_first_of("*?[") != std::string::npos;
}

using file_id = std::pair<uint64_t, uint64_t>;

// The path of a file reached only through its descriptor.
constexpr const char* descriptor_path = "(descriptor)";

// A file that may hold lines of an entry this look.
struct candidate {
  std::string path;
  // The live path it belongs to (the filename label).
  std::string label;
  bool live = false;
  file_id id;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t fingerprint = 0;
  int fd = -1;
};

} // namespace

struct log_reader::impl {
  std::vector<log_glob> globs;
  int64_t max_line_bytes;
  int64_t read_bytes;
  size_t max_files;
  bool from_start;
  std::function<bool(std::string_view)> is_start;
  // Entries with no cursor at the start: logs.start-at applies to their
  // files at the first look (until a look is committed).
  std::set<std::string> fresh;
  // Open descriptors by file: a file renamed out of sight or deleted is
  // still read to its end through one.
  std::map<file_id, int> fds;
  // Fingerprints by file, and the size and mtime they were taken at: an
  // unchanged file (a rotation) is not read again to be told apart.
  struct print {
    int64_t size = 0;
    int64_t mtime_ns = 0;
    uint64_t fingerprint = 0;
  };
  std::map<file_id, print> prints;
  // The path each followed file was last seen under: another one means it
  // was rotated (renamed or copied).
  std::map<uint64_t, std::string> paths;
  // The live path each followed file was last seen under (its label).
  std::map<uint64_t, std::string> labels;
  // The size of each file at the last look (not persisted): a record
  // waiting for its next line goes out after a look that found no growth.
  std::map<uint64_t, int64_t> seen_size;
  // Followed files the last committed look missed (tail_round::missed).
  std::map<uint64_t, int> missed;
  bool warned_max_files = false;

  ~impl() {
    for (auto& [id, fd] : fds)
      ::close(fd);
  }

  int open_fd(const std::string& path, const file_id& id) {
    if (auto i = fds.find(id); i != fds.end())
      return i->second;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return -1;
    struct stat st {};
    // Renamed between stat and open: not the file meant.
    if (::fstat(fd, &st) != 0
        || file_id{static_cast<uint64_t>(st.st_dev),
                   static_cast<uint64_t>(st.st_ino)} != id) {
      ::close(fd);
      return -1;
    }
    fds[id] = fd;
    return fd;
  }

  // The fingerprint of an open file: a hash of its first line with its
  // newline (or of its first 256 bytes); nullopt until it has one.
  std::optional<uint64_t> fingerprint(const candidate& c) {
    if (auto i = prints.find(c.id); i != prints.end()
                                    && i->second.size == c.size
                                    && i->second.mtime_ns == c.mtime_ns)
      return i->second.fingerprint;
    auto fp = head_print(c);
    if (fp)
      prints[c.id] = {c.size, c.mtime_ns, *fp};
    return fp;
  }

  // The fingerprint as the file holds it now, not remembered.
  static std::optional<uint64_t> head_print(const candidate& c) {
    auto head = read_at(c.fd, 0, head_bytes, c.path);
    if (!head)
      return std::nullopt;
    auto nl = head->find('\n');
    if (nl == std::string::npos && static_cast<int64_t>(head->size()) < head_bytes)
      return std::nullopt;
    auto n = nl == std::string::npos ? head->size() : nl + 1;
    return XXH3_64bits(head->data(), n);
  }

  // Whether `c` starts with another line than when it was known: truncated
  // and written again (copytruncate) around a read, whose bytes may then
  // mix the old file's and the new one's. Forgets the stale fingerprint.
  bool changed_under(const candidate& c) {
    if (head_print(c) == c.fingerprint)
      return false;
    prints.erase(c.id);
    return true;
  }

  // Files in `path`'s directory whose names start with its name (app.log.1,
  // app.log-20261207), compressed ones left out: the newest `keep` by
  // mtime. Every name is looked at (an arbitrary cut loses the rotation
  // being written); at most 2 * keep are held at once. `left_out` counts
  // the older ones past `keep`.
  std::vector<std::string> siblings(const std::string& path, size_t keep,
                                    size_t& left_out) {
    std::vector<std::pair<int64_t, std::string>> found;
    auto dir = dir_of(path);
    auto base = base_of(path);
    auto newest_first = [](auto& a, auto& b) { return a.first > b.first; };
    std::unique_ptr<DIR, int (*)(DIR*)> d{::opendir(dir.c_str()), ::closedir};
    if (!d)
      return {};
    while (auto* e = ::readdir(d.get())) {
      std::string_view name = e->d_name;
      if (name.size() <= base.size() || name.compare(0, base.size(), base) != 0
          || compressed_name(name))
        continue;
      auto p = dir + "/" + std::string(name);
      struct stat st {};
      if (::stat(p.c_str(), &st) != 0)
        continue;
      found.emplace_back(static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000
                           + st.st_mtim.tv_nsec,
                         std::move(p));
      if (found.size() >= 2 * keep) {
        std::nth_element(found.begin(), found.begin() + keep - 1, found.end(),
                         newest_first);
        left_out += found.size() - keep;
        found.resize(keep);
      }
    }
    if (found.size() > keep) {
      std::nth_element(found.begin(), found.begin() + keep - 1, found.end(),
                       newest_first);
      left_out += found.size() - keep;
      found.resize(keep);
    }
    std::vector<std::string> out;
    for (auto& [mtime, p] : found)
      out.push_back(std::move(p));
    return out;
  }

  // The live paths of entry `g` now: what its glob matches (a plain path
  // counts even while it is absent: its rotations are beside it).
  std::vector<std::string> live_paths(const log_glob& g, tail_round& r) {
    std::vector<std::string> out;
    if (!has_wildcard(g.pattern)) {
      out.push_back(g.pattern);
      return out;
    }
    glob_t gl{};
    auto rc = ::glob(g.pattern.c_str(), GLOB_ERR | GLOB_NOSORT, nullptr, &gl);
    if (rc != 0 && rc != GLOB_NOMATCH) {
      ++r.read_errors;
      r.problems.push_back(g.pattern + ": cannot be listed");
    }
    for (size_t i = 0; rc == 0 && i < gl.gl_pathc; ++i)
      out.emplace_back(gl.gl_pathv[i]);
    ::globfree(&gl);
    std::sort(out.begin(), out.end());
    return out;
  }

  // Every file that may hold lines of `g`: its live files, their rotations
  // beside them, and files followed before that only a descriptor still
  // reaches (renamed elsewhere, deleted). One per fingerprint: the longest.
  std::vector<candidate> candidates(const log_glob& g,
                                    const entry_position& known,
                                    tail_round& r, int passes = 4) {
    std::vector<candidate> all;
    bool cut = false;
    std::set<file_id> seen;
    auto add = [&](const std::string& path, const std::string& label,
                   bool live, const struct stat& st) {
      if (!S_ISREG(st.st_mode))
        return;
      candidate c;
      c.id = {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
      if (!seen.insert(c.id).second)
        return;
      c.path = path;
      c.label = label;
      c.live = live;
      c.size = st.st_size;
      c.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000
                   + st.st_mtim.tv_nsec;
      all.push_back(std::move(c));
    };
    auto stat_of = [](const std::string& path) {
      std::optional<struct stat> out;
      if (struct stat st {}; ::stat(path.c_str(), &st) == 0)
        out = st;
      return out;
    };
    auto same = [](const std::optional<struct stat>& a,
                   const std::optional<struct stat>& b) {
      // The same file, not cut shorter (copytruncate) in between.
      return a.has_value() == b.has_value()
             && (!a || (a->st_dev == b->st_dev && a->st_ino == b->st_ino
                        && b->st_size >= a->st_size));
    };
    size_t left_out = 0;
    for (auto& p : live_paths(g, r)) {
      // The rotations, then the live file as it is after them: one
      // rotated during the listing would be in neither, and the file
      // after it read first. So the listing is taken again (a few times)
      // until the live file stayed the same over it.
      std::vector<std::string> rotations;
      std::optional<struct stat> live;
      size_t missed = 0;
      for (int attempt = 0; attempt < 4; ++attempt) {
        auto before = stat_of(p);
        missed = 0;
        rotations = siblings(p, max_files, missed);
        live = stat_of(p);
        if (same(before, live))
          break;
      }
      left_out += missed;
      for (auto& s : rotations)
        if (auto st = stat_of(s))
          add(s, p, false, *st);
      if (live)
        add(p, p, true, *live);
    }
    std::set<uint64_t> wanted;
    for (auto& f : known)
      wanted.insert(f.fingerprint);
    // Followed files out of sight: through their descriptors.
    for (auto& [id, fd] : fds) {
      if (seen.count(id) > 0)
        continue;
      auto pi = prints.find(id);
      if (pi == prints.end() || wanted.count(pi->second.fingerprint) == 0)
        continue;
      struct stat st {};
      if (::fstat(fd, &st) != 0)
        continue;
      candidate c;
      c.id = id;
      c.path = descriptor_path;
      auto li = labels.find(pi->second.fingerprint);
      c.label = li != labels.end() ? li->second : g.pattern;
      c.size = st.st_size;
      c.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000
                   + st.st_mtim.tv_nsec;
      c.fd = fd;
      seen.insert(id);
      all.push_back(std::move(c));
    }
    if (all.size() + left_out > max_files) {
      if (!warned_max_files)
        r.problems.push_back(std::to_string(all.size() + left_out)
                             + " files for "
                             + g.pattern + "; following "
                             + std::to_string(max_files)
                             + " (logs.max-files)");
      warned_max_files = true;
      // The newest are the ones being written.
      std::sort(all.begin(), all.end(), [](auto& a, auto& b) {
        return a.mtime_ns > b.mtime_ns;
      });
      all.resize(std::min(all.size(), max_files));
    }
    std::map<uint64_t, candidate> by_print;
    for (auto& c : all) {
      if (c.fd < 0)
        c.fd = open_fd(c.path, c.id);
      if (c.fd < 0)
        continue;
      auto before = prints.find(c.id);
      auto old = before != prints.end() ? std::optional<uint64_t>(
                                            before->second.fingerprint)
                                        : std::nullopt;
      auto fp = fingerprint(c);
      if (!fp)
        continue;
      // The same file starting with another line: truncated in place,
      // or copied first (copytruncate), maybe after the listing.
      if (old && *old != *fp) {
        cut = true;
        if (wanted.count(*old) > 0)
          ++r.truncations;
      }
      c.fingerprint = *fp;
      auto [i, fresh_print] = by_print.emplace(*fp, c);
      // A copy (copytruncate) and its original: the longer has it all.
      if (!fresh_print && c.size > i->second.size)
        i->second = c;
    }
    // A copy made before the cut may have missed the listing: again.
    if (cut && passes > 1)
      return candidates(g, known, r, passes - 1);
    std::vector<candidate> out;
    for (auto& [fp, c] : by_print)
      out.push_back(std::move(c));
    // Older files first: a rotation's rest before the new file's lines.
    // The live file is always the newest: its time, taken a moment before
    // a rotation, can be older than the rotation's. Ties: app.log.9 older
    // than app.log.10.
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) {
      auto key = [](const candidate& c) {
        return std::make_tuple(c.live, c.mtime_ns, c.path.size(),
                               std::cref(c.path));
      };
      return key(a) < key(b);
    });
    return out;
  }
};

namespace {

// One file's new bytes turned into records.
struct file_read {
  tail_round& round;
  const label_map& labels;
  int64_t max_line;
  const std::function<bool(std::string_view)>& is_start;
  int64_t now_ns;
  // A record joined from several lines, waiting for the next start line.
  std::string pending;
  int64_t pending_from = -1;

  void emit(std::string_view text) {
    while (static_cast<int64_t>(text.size()) > max_line) {
      auto n = cut_at(text, static_cast<size_t>(max_line));
      push(text.substr(0, n));
      ++round.lines_split;
      text.remove_prefix(n);
    }
    push(text);
  }

  void push(std::string_view text) {
    // An empty line carries nothing a log store keeps.
    if (text.empty())
      return;
    round.lines.push_back(log_line{labels, now_ns, std::string(text)});
  }

  void flush_pending() {
    if (pending_from >= 0)
      emit(pending);
    pending.clear();
    pending_from = -1;
  }

  // A complete line starting at file offset `at`.
  void line(std::string_view text, int64_t at) {
    if (!text.empty() && text.back() == '\r')
      text.remove_suffix(1);
    if (!is_start) {
      emit(text);
      return;
    }
    if (pending_from < 0 || is_start(text)) {
      flush_pending();
      pending_from = at;
      pending.assign(text);
      return;
    }
    // A continuation: kept to the line limit, the rest cut off and counted.
    if (static_cast<int64_t>(pending.size()) < max_line) {
      pending += '\n';
      pending.append(text);
      if (static_cast<int64_t>(pending.size()) > max_line) {
        pending.resize(cut_at(pending, static_cast<size_t>(max_line)));
        ++round.lines_split;
      }
    } else {
      ++round.lines_split;
    }
  }
};

// Reads the bytes of `c` after `offset` into `rd` (at most `budget`) and
// returns the offset after the records made. `last`: the file gets no more
// lines (a rotation, a deleted file), so a final line without its newline
// goes out once a look finds it quiet. `quiet`: no growth since the last
// look, and all of it read.
std::optional<int64_t> read_file(const candidate& c, int64_t offset,
                                 file_read& rd, int64_t& budget, bool last,
                                 bool quiet_before, bool& shrank) {
  auto end = std::min<int64_t>(c.size, offset + budget);
  std::string buf;
  if (end > offset) {
    auto got = read_at(c.fd, offset, end - offset, c.path);
    if (!got)
      return std::nullopt;
    buf = std::move(*got);
  }
  // Shorter than it was a moment ago: truncated since (copytruncate).
  shrank = static_cast<int64_t>(buf.size()) < end - offset;
  budget -= static_cast<int64_t>(buf.size());
  std::string_view rest{buf};
  int64_t at = offset;
  for (;;) {
    auto nl = rest.find('\n');
    if (nl == std::string_view::npos)
      break;
    rd.line(rest.substr(0, nl), at);
    at += static_cast<int64_t>(nl) + 1;
    rest.remove_prefix(nl + 1);
  }
  // A line without its newline: a piece goes out once it is too long, the
  // whole of it once the file is done; otherwise it waits.
  while (static_cast<int64_t>(rest.size()) >= rd.max_line) {
    auto n = cut_at(rest, static_cast<size_t>(rd.max_line));
    rd.flush_pending();
    rd.emit(rest.substr(0, n));
    ++rd.round.lines_split;
    at += static_cast<int64_t>(n);
    rest.remove_prefix(n);
  }
  bool quiet = quiet_before && end == c.size;
  if (last && quiet && !rest.empty()) {
    rd.line(rest, at);
    at += static_cast<int64_t>(rest.size());
  }
  // A record waiting for its next line goes out after a quiet look; until
  // then the position stays before it and its bytes are read again.
  if (rd.pending_from >= 0) {
    if (quiet) {
      rd.flush_pending();
    } else {
      at = rd.pending_from;
      rd.pending.clear();
      rd.pending_from = -1;
    }
  }
  return at;
}

} // namespace

log_reader::log_reader(std::vector<log_glob> globs, const log_tail_config& cfg,
                       std::function<bool(std::string_view)> is_start)
  : impl_(std::make_unique<impl>()) {
  impl_->globs = std::move(globs);
  impl_->max_line_bytes = cfg.max_line_bytes;
  impl_->read_bytes = cfg.read_bytes;
  impl_->max_files = static_cast<size_t>(cfg.max_files);
  impl_->from_start = cfg.start_at == "beginning";
  impl_->is_start = std::move(is_start);
}

log_reader::~log_reader() = default;

std::string log_reader::key(const std::string& pattern) {
  return key_prefix + pattern;
}

size_t log_reader::files() const {
  size_t n = 0;
  for (auto& [k, v] : positions_)
    n += v.size();
  return n;
}

void log_reader::reset(const source_cursors& cursors) {
  positions_.clear();
  for (auto& [id, fd] : impl_->fds)
    ::close(fd);
  impl_->fds.clear();
  impl_->prints.clear();
  impl_->seen_size.clear();
  impl_->missed.clear();
  for (auto& c : cursors) {
    if (c.key.compare(0, std::strlen(key_prefix), key_prefix) != 0)
      continue;
    auto pos = decode_position(c.value);
    if (!pos) {
      log_warning(component, "cursor of ", c.key, " is unreadable; ignored");
      continue;
    }
    positions_[c.key.substr(std::strlen(key_prefix))] = *pos;
  }
  impl_->fresh.clear();
  for (auto& g : impl_->globs)
    if (positions_.count(g.pattern) == 0)
      impl_->fresh.insert(g.pattern);
}

tail_round log_reader::read(int64_t now_ns) {
  tail_round r;
  auto& m = *impl_;
  int64_t budget = m.read_bytes;
  for (auto& g : m.globs) {
    auto& known = positions_[g.pattern];
    bool fresh = m.fresh.count(g.pattern) > 0;
    std::map<uint64_t, int64_t> offsets;
    for (auto& f : known)
      offsets[f.fingerprint] = f.offset;
    entry_position next;
    std::set<uint64_t> let_go;
    for (auto& c : m.candidates(g, known, r)) {
      auto i = offsets.find(c.fingerprint);
      int64_t offset = 0;
      if (i != offsets.end()) {
        offset = i->second;
        auto pi = m.paths.find(c.fingerprint);
        if (pi != m.paths.end() && pi->second != c.path)
          ++r.rotations;
      } else if (fresh && (!c.live || !m.from_start)) {
        // Before fleetd: a live file starts as logs.start-at says, the
        // rotations beside it are history, not read.
        offset = c.size;
      }
      m.labels[c.fingerprint] = c.label;
      m.paths[c.fingerprint] = c.path;
      // Shorter than read (a copy still being written, or cut short):
      // nothing of it is new, and the position stays where it is.
      auto seen = m.seen_size.find(c.fingerprint);
      bool quiet = seen != m.seen_size.end() && seen->second == c.size;
      m.seen_size[c.fingerprint] = c.size;
      if (budget > 0 && offset < c.size) {
        label_map labels{{"filename", c.label}, {"job", g.job}};
        file_read rd{r, labels, m.max_line_bytes, m.is_start, now_ns, {}, -1};
        auto lines_before = r.lines.size();
        auto split_before = r.lines_split;
        bool shrank = false;
        auto at = read_file(c, offset, rd, budget, !c.live, quiet, shrank);
        if (!at) {
          ++r.read_errors;
          r.problems.push_back(c.path + ": read failed: "
                               + std::strerror(errno));
        } else if (shrank || m.changed_under(c)) {
          // Maybe not this file's bytes, and a copy of it not listed: the
          // next look reads the copy from the position, then this file.
          r.lines.erase(r.lines.begin() + static_cast<ptrdiff_t>(lines_before),
                        r.lines.end());
          r.lines_split = split_before;
        } else {
          offset = *at;
        }
      }
      // A file only a descriptor reaches (deleted) is let go once read.
      bool gone = c.path == descriptor_path && offset >= c.size && quiet;
      if (!gone)
        next.push_back(file_position{c.fingerprint, offset});
      else
        let_go.insert(c.fingerprint);
    }
    // Files followed before and not found: kept a few looks (hidden by a
    // rename), then let go. Gone before all was read?
    auto found = next.size();
    for (auto& f : known) {
      bool still = std::any_of(next.begin(), next.begin() + found,
                               [&](auto& n) {
                                 return n.fingerprint == f.fingerprint;
                               });
      if (still || let_go.count(f.fingerprint) > 0)
        continue;
      auto mi = m.missed.find(f.fingerprint);
      auto looks = (mi != m.missed.end() ? mi->second : 0) + 1;
      if (looks < missed_looks) {
        r.missed[f.fingerprint] = looks;
        next.push_back(f);
        continue;
      }
      auto seen = m.seen_size.find(f.fingerprint);
      if (seen != m.seen_size.end() && seen->second > f.offset) {
        ++r.files_lost;
        r.problems.push_back(g.pattern + ": a file went away with "
                             + std::to_string(seen->second - f.offset)
                             + " bytes unread (deleted or compressed)");
      }
    }
    std::sort(next.begin(), next.end(), [](auto& a, auto& b) {
      return a.fingerprint < b.fingerprint;
    });
    auto sorted = known;
    std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) {
      return a.fingerprint < b.fingerprint;
    });
    if (fresh || encode_position(next) != encode_position(sorted))
      r.moved[g.pattern] = std::move(next);
  }
  return r;
}

void log_reader::commit(const tail_round& r) {
  auto& m = *impl_;
  m.missed = r.missed;
  for (auto& [pattern, pos] : r.moved) {
    positions_[pattern] = pos;
    m.fresh.erase(pattern);
  }
  // What no position names any more is let go.
  std::set<uint64_t> used;
  for (auto& [pattern, pos] : positions_)
    for (auto& f : pos)
      used.insert(f.fingerprint);
  for (auto i = m.fds.begin(); i != m.fds.end();) {
    auto p = m.prints.find(i->first);
    if (p == m.prints.end() || used.count(p->second.fingerprint) == 0) {
      ::close(i->second);
      if (p != m.prints.end())
        m.prints.erase(p);
      i = m.fds.erase(i);
    } else {
      ++i;
    }
  }
  for (auto* names : {&m.labels, &m.paths})
    for (auto i = names->begin(); i != names->end();)
      i = used.count(i->first) ? std::next(i) : names->erase(i);
  for (auto i = m.seen_size.begin(); i != m.seen_size.end();)
    i = used.count(i->first) ? std::next(i) : m.seen_size.erase(i);
}

// ---- the actor -------------------------------------------------------------

namespace {

using tail_ptr = collector_actor::stateful_pointer<log_tail_state>;

void load_cursors(tail_ptr self);

void schedule(tail_ptr self) {
  auto& cfg = self->state.cfg;
  self->delayed_send(self,
                     cfg.clock->real(next_round_in(cfg.clock->now_ms(),
                                                   cfg.interval)),
                     tick_atom::value);
}

void read_round(tail_ptr self) {
  auto& st = self->state;
  auto now_ns = st.cfg.clock->now_ms() * 1'000'000;
  auto r = std::make_shared<tail_round>(st.reader->read(now_ns));
  ++st.rounds;
  st.lines_split += r->lines_split;
  st.truncations += r->truncations;
  st.rotations += r->rotations;
  st.files_lost += r->files_lost;
  st.read_errors += r->read_errors;
  for (auto& p : r->problems)
    log_warning_limited(component, "file", p);
  if (r->lines.empty() && r->moved.empty()) {
    // Nothing to store: what the look learnt (files missed) holds at once.
    st.reader->commit(*r);
    return;
  }
  // Lines of one look keep their order in time too.
  for (auto& x : r->lines)
    x.timestamp_ns = st.last_ns = std::max(x.timestamp_ns, st.last_ns + 1);
  st.lines_read += static_cast<int64_t>(r->lines.size());
  source_cursors cursors;
  ++st.generation;
  for (auto& [path, pos] : r->moved)
    cursors.push_back(source_cursor{log_reader::key(path), st.generation,
                                    encode_position(pos)});
  st.in_flight = true;
  self
    ->request(st.cfg.storage, store_timeout, store_atom::value, r->lines,
              std::move(cursors))
    .then(
      [self, r](int64_t n) {
        auto& st = self->state;
        st.in_flight = false;
        st.lines_stored += n;
        st.reader->commit(*r);
        for (auto& x : st.cfg.on_stored)
          caf::anon_send(x, store_atom::value);
      },
      [self](caf::error& err) {
        auto& st = self->state;
        st.in_flight = false;
        ++st.store_failures;
        log_warning_limited(component, "store",
                            "storing log lines failed: ", render(err),
                            "; reading again from the stored positions");
        // The store may still have kept them (a timeout): its cursors say.
        st.ready = false;
        load_cursors(self);
      });
}

void load_cursors(tail_ptr self) {
  self->request(self->state.cfg.storage, store_timeout, cursor_atom::value)
    .then(
      [self](const source_cursors& cs) {
        auto& st = self->state;
        st.reader->reset(cs);
        for (auto& c : cs)
          st.generation = std::max(st.generation, c.generation);
        st.ready = true;
      },
      [self](caf::error& err) {
        log_warning_limited(component, "cursors",
                            "cannot read the files' positions: ", render(err),
                            "; trying again next round");
      });
}

} // namespace

collector_actor::behavior_type
log_tail(collector_actor::stateful_pointer<log_tail_state> self,
         log_tail_config cfg) {
  if (stop_on_bad_config(self, component, validate(cfg)))
    return collector_actor::behavior_type::make_empty_behavior();
  if (!cfg.clock)
    cfg.clock = make_system_clock();
  auto globs = log_globs(cfg);
  std::function<bool(std::string_view)> is_start;
  if (!cfg.multiline_start.empty()) {
    auto re = std::make_shared<pattern>(cfg.multiline_start);
    is_start = [re](std::string_view line) {
      return re->matches(std::string(line));
    };
  }
  self->state.cfg = std::move(cfg);
  self->state.reader = std::make_unique<log_reader>(std::move(*globs),
                                                    self->state.cfg, is_start);
  load_cursors(self);
  schedule(self);
  return {
    [self](tick_atom) {
      auto& st = self->state;
      auto own_tick = self->current_sender() == self->ctrl();
      if (!st.ready) {
        ++st.rounds_skipped;
        if (own_tick)
          load_cursors(self);
      } else if (st.in_flight) {
        ++st.rounds_skipped;
      } else {
        read_round(self);
      }
      if (own_tick)
        schedule(self);
    },
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = "log_tail";
      out.state = st.ready ? "following" : "loading positions";
      out.counters = {{"rounds", st.rounds},
                      {"files", static_cast<int64_t>(st.reader->files())},
                      {"lines_read", st.lines_read},
                      {"lines_stored", st.lines_stored},
                      {"lines_split", st.lines_split},
                      {"rotations", st.rotations},
                      {"files_lost", st.files_lost},
                      {"truncations", st.truncations},
                      {"read_errors", st.read_errors},
                      {"store_failures", st.store_failures},
                      {"rounds_skipped", st.rounds_skipped}};
      return out;
    },
  };
}

} // namespace fleetd
