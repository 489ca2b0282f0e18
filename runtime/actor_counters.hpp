#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "messages/types.hpp"

namespace fleetd {

/// Steady nanoseconds; the default time source of actor_counters.
int64_t steady_ns();

/// The same clock at tick resolution (a few ms), several times cheaper:
/// what the idle time is stamped with.
int64_t coarse_ns();

/// One incarnation's mailbox and what it took in hand. An actor with a
/// thread of its own (it may block in a handler) has its senders count what
/// they put in and counts each message it takes, so a stuck one's depth
/// shows; the others (they never block) count down in the actor alone and
/// publish, with a look at their own mailbox (only the actor's thread may),
/// on every timed message, every request or answer (the inspector's stats
/// ask is one) and at exit: counting each message where a reader sees it
/// cost ~1.5 % of an empty handler's throughput, senders counting ~2 %.
struct mailbox_gauge {
  explicit mailbox_gauge(bool count_in) : counts_in(count_in) {
    // nop
  }

  /// Whether senders count `in`.
  const bool counts_in;
  /// Messages put in (counts_in only).
  std::atomic<uint64_t> in{0};
  /// Messages taken in hand by this incarnation (the one in its handler
  /// too), as last published.
  std::atomic<uint64_t> handled{0};
  /// Messages waiting when the actor last looked (not counts_in).
  std::atomic<uint64_t> waiting{0};

  /// Messages waiting now: exact when senders count, else as the actor saw
  /// at its last look.
  uint64_t estimate() const noexcept {
    if (!counts_in)
      return waiting.load(std::memory_order_acquire);
    // Out before in: a message counted out was counted in before.
    auto out = handled.load(std::memory_order_acquire);
    auto put = in.load(std::memory_order_acquire);
    return put > out ? put - out : 0;
  }
};

struct actor_counters;

/// The measured actors of one registry by actor id, so an error answer is
/// counted on the actor that gave it. Ids are never reused: no unbinding.
class actor_directory {
public:
  void bind(uint64_t id, const std::shared_ptr<actor_counters>& c);

  /// The counters of actor `id`, if it is one of the registry's.
  std::shared_ptr<actor_counters> find(uint64_t id);

private:
  std::mutex mtx_;
  std::unordered_map<uint64_t, std::weak_ptr<actor_counters>> by_id_;
};

/// One actor's figures as the runtime measures them (runtime/counted.hpp).
/// Written by the actor's own thread (one writer: plain relaxed stores),
/// read from any thread without a lock.
struct actor_counters {
  /// Log2 microsecond buckets: 0 is < 1 µs, k is [2^(k-1), 2^k) µs.
  static constexpr size_t buckets = 32;

  /// Injectable for tests; steady nanoseconds. `clock` times messages (and
  /// stamps the last timed one), `stamp` is the readers' now.
  int64_t (*clock)() = steady_ns;
  int64_t (*stamp)() = coarse_ns;
  /// One message in this many is timed (a clock read costs as much as
  /// CAF's handling of an empty message); 1 times every one.
  uint32_t sample_every = 128;

  /// Timed messages (the histogram's total).
  std::atomic<uint64_t> timed{0};
  std::atomic<uint64_t> errors{0};
  /// Incarnations spawned under this name: restarts = spawns - 1.
  std::atomic<uint64_t> spawns{0};
  /// When the running incarnation started (`stamp`).
  std::atomic<int64_t> started_ns{0};
  /// When the last timed message was done; 0 before the first.
  std::atomic<int64_t> last_ns{0};
  std::array<std::atomic<uint64_t>, buckets> time{};
  /// Shared by the registry's counters (outlives the registry while any
  /// actor still runs).
  std::shared_ptr<actor_directory> directory;

  /// Counts one message handled from `begin_ns` until now (a timed one).
  void timed_since(int64_t begin_ns) noexcept;

  /// A new incarnation starts under this name: its mailbox is the one read
  /// (`count_in`: see mailbox_gauge).
  std::shared_ptr<mailbox_gauge> begin_incarnation(bool count_in);

  /// Incarnation `g` ended; `why` is empty after an orderly stop, else the
  /// failure counted as an error.
  void end_incarnation(const mailbox_gauge* g, const std::string& why);

  /// Messages waiting in the running incarnation's mailbox as it last looked
  /// (mailbox_gauge::estimate; 0 when none runs).
  int64_t mailbox() const;

  /// Messages handled by every incarnation so far.
  uint64_t handled() const;

  /// Counts an error and keeps its text (rare: takes a lock).
  void failed(const std::string& what);

  std::string last_error() const;

private:
  mutable std::mutex mtx_;
  std::string last_error_;
  std::shared_ptr<mailbox_gauge> current_;
  /// Handled by the incarnations before the current one.
  uint64_t handled_before_ = 0;
};

/// Bucket index of a duration in nanoseconds.
size_t time_bucket(int64_t ns) noexcept;

/// Upper bound in µs of the bucket holding the q-quantile (0 < q < 1) of
/// `c`'s handling times; 0 when nothing was handled.
int64_t time_quantile_us(const actor_counters& c, double q);

/// The counters of a node's actors by name; an actor restarted under the
/// same name keeps counting in the same place.
class stats_registry {
public:
  /// The counters of `name`, made on first use.
  std::shared_ptr<actor_counters> slot(const std::string& name);

  /// Actor `id` answers for `name` (a supervisor's relay): error answers
  /// from it count on `name`.
  void alias(uint64_t id, const std::string& name);

  /// What `name`'s counters say now (measured false when it has none); the
  /// rate counts since the previous read of the same name, and the idle time
  /// is exact to within the time between two reads (untimed messages are not
  /// stamped: a clock read per message or per run costs ~3 %).
  /// `probes`: the messages the reader itself sent `name` since its previous
  /// read (the inspector's stats ask), discounted from the rate and idle time.
  actor_runtime read(const std::string& name, uint64_t probes = 0);

private:
  struct entry {
    std::shared_ptr<actor_counters> counters;
    uint64_t prev_handled = 0;
    int64_t prev_ns = 0;
    /// The latest the last message is known to have come: its timed stamp,
    /// or the previous read when messages were handled since.
    int64_t last_ns = 0;
  };
  std::mutex mtx_;
  std::map<std::string, entry> entries_;
  std::shared_ptr<actor_directory> directory_
    = std::make_shared<actor_directory>();
};

/// RSS, CPU time, threads, descriptors and sockets of this process, from
/// `proc_self` (normally /proc/self).
process_figures read_process_figures(const std::string& proc_self
                                     = "/proc/self");

class json_object;

/// Adds the runtime's figures of one actor to `out` (flat, as the web
/// console lists them beside the actor's name and state).
void add_fields(json_object& out, const actor_runtime& x);

/// The runtime's figures of one actor as a JSON object.
std::string to_json(const actor_runtime& x);

/// The node process's figures as a JSON object.
std::string to_json(const process_figures& x);

} // namespace fleetd
