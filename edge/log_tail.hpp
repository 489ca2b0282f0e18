#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

#include "messages/interfaces.hpp"
#include "messages/types.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

/// logs.*: the files fleetd tails (docs/collectors.md, "Log files").
struct log_tail_config {
  /// `[job=]glob` entries, comma separated (logs.paths); empty = off.
  std::string paths;
  /// "end" or "beginning": where a file found at the first round with no
  /// cursor starts; files found later are read from their start.
  std::string start_at = "end";
  std::chrono::milliseconds interval{5000};
  /// Longer lines are cut into pieces of this many bytes (counted).
  int64_t max_line_bytes = 16 * 1024;
  /// Bytes read from all files in one round; the rest waits a round.
  int64_t read_bytes = 1024 * 1024;
  /// Most files (live and rotated) followed per entry.
  int64_t max_files = 256;
  /// ERE: a line that does not match it continues the record before it
  /// (stack traces); empty = every line is a record.
  std::string multiline_start;
  clock_ptr clock;
  storage_actor storage;
  /// Told (store_atom) after each store: the sync actors.
  std::vector<caf::actor> on_stored;
};

class option_set;

/// Declares logs.paths, logs.start-at, logs.interval, logs.max-line-bytes,
/// logs.read-bytes, logs.max-files and logs.multiline-start.
void declare(option_set& opts, log_tail_config& x);

/// bad_config naming the option when `x` cannot work.
caf::error validate(const log_tail_config& x);

/// One `logs.paths` entry.
struct log_glob {
  std::string job;
  std::string pattern;
};

/// The entries of logs.paths; bad_config for a malformed one.
caf::expected<std::vector<log_glob>> log_globs(const log_tail_config& x);

/// Where one file was read up to. A file is known by its fingerprint, a
/// hash of its first line (at most its first 256 bytes): the same under any
/// name, in a copy (copytruncate) and after a restart; a file truncated
/// and written again starts with another line, so it is a new file.
struct file_position {
  uint64_t fingerprint = 0;
  int64_t offset = 0;
};

/// The files of one logs.paths entry (the live ones and their rotations).
using entry_position = std::vector<file_position>;

/// The cursor value of an entry (source_cursor::value) and back; nullopt
/// for text that is no cursor.
std::string encode_position(const entry_position& x);
std::optional<entry_position> decode_position(std::string_view text);

/// What one round of reading found.
struct tail_round {
  log_lines lines;
  /// The entries (by glob) whose files moved, to be stored with the lines.
  std::map<std::string, entry_position> moved;
  int64_t lines_split = 0;
  int64_t truncations = 0;
  /// Files that went away (deleted, compressed) before all was read.
  int64_t files_lost = 0;
  /// Files found under a name other than before (rotated, copied).
  int64_t rotations = 0;
  int64_t read_errors = 0;
  std::vector<std::string> problems;
  /// Followed files not found by this look, by fingerprint: looks missed
  /// in a row. Their positions are kept a while (a file being renamed can
  /// be missed by one look, and one forgotten would be read again whole).
  std::map<uint64_t, int> missed;
};

/// Reads the files of logs.paths from the positions it was given; blocking
/// file I/O, so its actor runs detached. Not thread-safe.
class log_reader {
public:
  /// `is_start` (may be empty): whether a line starts a record
  /// (logs.multiline-start).
  log_reader(std::vector<log_glob> globs, const log_tail_config& cfg,
             std::function<bool(std::string_view)> is_start);
  ~log_reader();

  log_reader(const log_reader&) = delete;
  log_reader& operator=(const log_reader&) = delete;

  /// Forgets every position and takes the ones of these cursors.
  void reset(const source_cursors& cursors);

  /// Reads what was appended since the positions; the positions themselves
  /// do not move until commit(). `now_ns` stamps the lines.
  tail_round read(int64_t now_ns);

  /// The round's lines are stored: its positions become the current ones.
  void commit(const tail_round& r);

  /// The cursor key of a logs.paths entry (its glob).
  static std::string key(const std::string& pattern);

  /// Files followed now, over all entries.
  size_t files() const;

  struct impl;

private:
  std::unique_ptr<impl> impl_;
  std::map<std::string, entry_position> positions_;
};

struct log_tail_state {
  log_tail_config cfg;
  std::unique_ptr<log_reader> reader;
  /// Cursors loaded from storage; a store is in flight.
  bool ready = false;
  bool in_flight = false;
  int64_t generation = 0;
  int64_t rounds = 0, lines_read = 0, lines_stored = 0, lines_split = 0,
          truncations = 0, rotations = 0, files_lost = 0,
          read_errors = 0, store_failures = 0, rounds_skipped = 0;
  int64_t last_ns = 0;
  static inline const char* name = "log_tail";
};

/// Every logs.interval reads the appended lines of logs.paths and stores
/// them with the files' positions in one commit: a restart, a SIGKILL or a
/// rotation neither loses nor repeats a line. Spawn detached.
collector_actor::behavior_type
log_tail(collector_actor::stateful_pointer<log_tail_state> self,
         log_tail_config cfg);

} // namespace fleetd
