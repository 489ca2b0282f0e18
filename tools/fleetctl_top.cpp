#include "tools/fleetctl_top.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include <caf/scoped_actor.hpp>

#include "messages/error.hpp"
#include "runtime/options.hpp"
#include "tools/fleetctl_actors.hpp"
#include "tools/fleetctl_top_frame.hpp"
#include "tools/fleetctl_watch.hpp"

namespace fleetd {

namespace {

volatile sig_atomic_t stop_requested = 0;
// Any thread may take a signal (CAF's too): a byte here wakes the main
// thread's poll() wherever it landed.
int signal_pipe[2] = {-1, -1};

void wake_main() {
  char one = 1;
  if (::write(signal_pipe[1], &one, 1) < 0) {
    // Full: the main thread is woken already.
  }
}

void on_winch(int) {
  wake_main();
}

void on_stop(int) {
  stop_requested = 1;
  wake_main();
}

// Empties a non-blocking pipe whose bytes only say "wake up".
void drain(int fd) {
  char buf[64];
  while (::read(fd, buf, sizeof(buf)) > 0)
    ;
}

void write_all(const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    auto n = ::write(STDOUT_FILENO, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    done += static_cast<size_t>(n);
  }
}

/// Raw keys on the alternate screen while it lives; the terminal as it was
/// after, however top ends (q, Ctrl-C, SIGTERM, an error).
class raw_terminal {
public:
  raw_terminal() {
    if (tcgetattr(STDIN_FILENO, &saved_) != 0)
      return;
    auto raw = saved_;
    // ISIG off: Ctrl-C arrives as a key, so the screen is restored first.
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | ISIG | IEXTEN);
    raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) != 0)
      return;
    active_ = true;
    write_all("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J");
  }

  ~raw_terminal() {
    if (!active_)
      return;
    write_all("\x1b[0m\x1b[?25h\x1b[?1049l");
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_);
  }

  bool active() const {
    return active_;
  }

private:
  termios saved_{};
  bool active_ = false;
};

/// The window's rows and columns; 24x80 when the terminal does not say.
std::pair<int, int> window_size() {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0
      && ws.ws_col > 0)
    return {ws.ws_row, ws.ws_col};
  return {24, 80};
}

/// The node's answer, or why there is none; reconnects a lost node.
struct asker {
  caf::actor_system& sys;
  inspector_actor node;
  const top_options& opt;

  std::optional<node_status> ask(std::string& error) {
    if (!node) {
      auto again = connect_console(sys, opt.host, opt.port, opt.tls);
      if (!again) {
        error = "cannot reach node " + opt.node + ": " + render(again.error());
        return std::nullopt;
      }
      node = std::move(*again);
    }
    caf::scoped_actor self{sys};
    auto x = ask_node<node_status>(self, node, opt.timeout,
                                   status_atom::value);
    if (!x) {
      error = "lost node " + opt.node + ": " + render(x.error())
              + "; reconnecting";
      node = inspector_actor{};
      return std::nullopt;
    }
    return std::move(*x);
  }
};

/// The answers so far as the frame wants them: the newest, the one before
/// and the time between.
struct samples {
  top_sample frame;
  std::optional<node_status> before;
  std::chrono::steady_clock::time_point last;

  /// A new answer (or why there is none); whether there was one.
  bool add(std::optional<node_status> x, const std::string& error,
           std::chrono::steady_clock::time_point at) {
    if (!x) {
      frame.error = error;
      return false;
    }
    if (!frame.now.node_id.empty() || !frame.now.actors.empty()) {
      before = std::move(frame.now);
      frame.elapsed_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(at - last)
          .count();
    }
    frame.now = std::move(*x);
    frame.before = before ? &*before : nullptr;
    frame.at_ms = now_ms();
    frame.error.clear();
    last = at;
    return true;
  }
};

/// Asks the node on a thread of its own, so keys work while an answer is
/// slow or the node is gone; says "answer ready" through a pipe poll() sees.
class poller {
public:
  struct answer {
    std::optional<node_status> status;
    std::string error;
    std::chrono::steady_clock::time_point at;
  };

  explicit poller(asker a) : asker_(std::move(a)) {
    if (pipe2(pipe_, O_NONBLOCK | O_CLOEXEC) != 0)
      return;
    thread_ = std::thread{[this] { run(); }};
  }

  ~poller() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable())
      thread_.join();
    for (int fd : pipe_)
      if (fd >= 0)
        close(fd);
  }

  bool started() const {
    return thread_.joinable();
  }

  /// Readable when an answer is ready.
  int fd() const {
    return pipe_[0];
  }

  /// Asks once more (after the ask on its way, if one is).
  void ask() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      wanted_ = true;
    }
    cv_.notify_one();
  }

  /// How long the ask on its way has been waiting; 0 when none is.
  std::chrono::milliseconds waiting() {
    std::lock_guard<std::mutex> guard{mtx_};
    if (!asking_)
      return std::chrono::milliseconds{0};
    return std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - asked_at_);
  }

  /// The latest answer once fd() is readable; none when it was taken.
  std::optional<answer> take() {
    drain(pipe_[0]);
    std::lock_guard<std::mutex> guard{mtx_};
    std::optional<answer> out;
    out.swap(ready_);
    return out;
  }

private:
  void run() {
    std::unique_lock<std::mutex> lock{mtx_};
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || wanted_; });
      if (stop_)
        return;
      wanted_ = false;
      asking_ = true;
      asked_at_ = std::chrono::steady_clock::now();
      lock.unlock();
      answer a;
      a.status = asker_.ask(a.error);
      a.at = std::chrono::steady_clock::now();
      lock.lock();
      asking_ = false;
      ready_ = std::move(a);
      char one = 1;
      if (::write(pipe_[1], &one, 1) < 0) {
        // A full pipe already says an answer is ready.
      }
    }
  }

  asker asker_;
  int pipe_[2] = {-1, -1};
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool wanted_ = false;
  bool asking_ = false;
  std::chrono::steady_clock::time_point asked_at_;
  std::optional<answer> ready_;
  std::thread thread_;
};

/// What a key does to the view; false for quit.
bool apply_key(const std::string& key, top_view& view) {
  auto columns = actor_column_names();
  auto at = std::find(columns.begin(), columns.end(), view.sort)
            - columns.begin();
  auto n = static_cast<long>(columns.size());
  if (key == "q" || key == "Q" || key == "\x03")
    return false;
  if (key == "r" || key == "R")
    view.reverse = !view.reverse;
  else if (key == "<" || key == "," || key == "\x1b[D")
    view.sort = columns[static_cast<size_t>((at + n - 1) % n)];
  else if (key == ">" || key == "." || key == "\x1b[C")
    view.sort = columns[static_cast<size_t>((at + 1) % n)];
  else if (key.size() == 1 && key[0] >= '1' && key[0] - '1' < n)
    view.sort = columns[static_cast<size_t>(key[0] - '1')];
  else if (key == "+" || key == "=")
    view.interval_ms = std::min<int64_t>(view.interval_ms * 2, 60'000);
  else if (key == "-" || key == "_")
    view.interval_ms = std::max<int64_t>(view.interval_ms / 2, 100);
  return true;
}

/// The keys in what one read returned: an escape sequence (arrows) is one
/// key, every other byte one.
std::vector<std::string> keys_in(const char* buf, size_t n) {
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    if (buf[i] == '\x1b' && i + 2 < n && buf[i + 1] == '[') {
      out.emplace_back(buf + i, 3);
      i += 2;
    } else {
      out.emplace_back(1, buf[i]);
    }
  }
  return out;
}

void draw(const std::vector<std::string>& lines) {
  std::string out = "\x1b[H";
  for (size_t i = 0; i < lines.size(); ++i) {
    // Reverse video marks the table's header (line 5) as htop does.
    bool header = i == 4;
    out += (header ? "\x1b[7m" : "") + lines[i] + (header ? "\x1b[0m" : "")
           + "\x1b[K" + (i + 1 < lines.size() ? "\r\n" : "");
  }
  out += "\x1b[J";
  write_all(out);
}

} // namespace

int run_top(caf::actor_system& sys, inspector_actor node,
            const top_options& opt) {
  top_view view;
  view.sort = opt.sort.empty() ? "rate" : opt.sort;
  view.interval_ms = opt.interval.count();
  asker a{sys, std::move(node), opt};
  samples s;
  auto take = [&] {
    std::string error;
    auto x = a.ask(error);
    return s.add(std::move(x), error, std::chrono::steady_clock::now());
  };
  if (!take()) {
    std::cerr << "fleetctl: top: " << s.frame.error << std::endl;
    return 1;
  }
  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
    // One frame, its rates from two answers an interval apart.
    std::this_thread::sleep_for(opt.interval);
    if (!take()) {
      std::cerr << "fleetctl: top: " << s.frame.error << std::endl;
      return 1;
    }
    for (auto& line : top_frame(s.frame, view, 0, 0))
      std::cout << line << "\n";
    return 0;
  }
  if (pipe2(signal_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
    std::cerr << "fleetctl: top: cannot make a pipe" << std::endl;
    return 1;
  }
  struct sigaction winch{};
  winch.sa_handler = on_winch;
  sigaction(SIGWINCH, &winch, nullptr);
  struct sigaction stop{};
  stop.sa_handler = on_stop;
  for (int sig : {SIGINT, SIGTERM, SIGHUP})
    sigaction(sig, &stop, nullptr);
  // Declared before the terminal: on the way out the screen comes back
  // first, then an ask in flight is waited for.
  poller p{std::move(a)};
  if (!p.started()) {
    std::cerr << "fleetctl: top: cannot make a pipe" << std::endl;
    return 1;
  }
  raw_terminal term;
  if (!term.active()) {
    std::cerr << "fleetctl: top: cannot put the terminal in raw mode"
              << std::endl;
    return 1;
  }
  auto next = std::chrono::steady_clock::now()
              + std::chrono::milliseconds{view.interval_ms};
  for (;;) {
    auto size = window_size();
    // A node slow to answer is said before --timeout gives up on it.
    auto waited = p.waiting();
    if (waited > std::max(opt.interval, std::chrono::milliseconds{1000})) {
      auto frame = s.frame;
      if (frame.error.empty())
        frame.error = "no answer for " + std::to_string(waited.count() / 1000)
                      + " s (--timeout " + to_duration_text(opt.timeout)
                      + ")";
      draw(top_frame(frame, view, size.first, size.second));
    } else {
      draw(top_frame(s.frame, view, size.first, size.second));
    }
    if (stop_requested)
      return 0;
    auto now = std::chrono::steady_clock::now();
    if (now >= next) {
      p.ask();
      next = now + std::chrono::milliseconds{view.interval_ms};
    }
    pollfd fds[3] = {{STDIN_FILENO, POLLIN, 0},
                     {p.fd(), POLLIN, 0},
                     {signal_pipe[0], POLLIN, 0}};
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next
                                                                      - now);
    auto n = poll(fds, 3, static_cast<int>(std::min<int64_t>(wait.count() + 1,
                                                             INT_MAX)));
    if (stop_requested)
      return 0;
    if (fds[2].revents & POLLIN)
      drain(signal_pipe[0]);
    if (n <= 0)
      continue; // a tick or EINTR: redraw
    if (fds[1].revents & POLLIN)
      if (auto answer = p.take())
        s.add(std::move(answer->status), answer->error, answer->at);
    if (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL))
      return 0;
    if (!(fds[0].revents & POLLIN))
      continue;
    char buf[64];
    auto got = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (got <= 0)
      return 0;
    auto interval = view.interval_ms;
    for (auto& key : keys_in(buf, static_cast<size_t>(got)))
      if (!apply_key(key, view))
        return 0;
    if (view.interval_ms != interval)
      next = std::chrono::steady_clock::now()
             + std::chrono::milliseconds{view.interval_ms};
  }
}

} // namespace fleetd
