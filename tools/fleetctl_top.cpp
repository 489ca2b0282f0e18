#include "tools/fleetctl_top.hpp"

#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <iostream>
#include <optional>
#include <thread>

#include <caf/scoped_actor.hpp>

#include "messages/error.hpp"
#include "tools/fleetctl_actors.hpp"
#include "tools/fleetctl_top_frame.hpp"

namespace fleetd {

namespace {

volatile sig_atomic_t resized = 0;
volatile sig_atomic_t stop_requested = 0;

void on_winch(int) {
  resized = 1;
}

void on_stop(int) {
  stop_requested = 1;
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
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
    std::optional<node_status> out;
    self->request(node, opt.timeout, status_atom::value)
      .receive([&](node_status& x) { out = std::move(x); },
               [&](const caf::error& err) {
                 error = "lost node " + opt.node + ": " + render(err)
                         + "; reconnecting";
                 node = inspector_actor{};
               });
    if (out)
      error.clear();
    return out;
  }
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
  top_sample s;
  std::optional<node_status> before;
  auto last = std::chrono::steady_clock::now();
  auto take = [&]() -> bool {
    std::string error;
    auto x = a.ask(error);
    auto at = std::chrono::steady_clock::now();
    if (!x) {
      s.error = error;
      return false;
    }
    if (!s.now.node_id.empty() || !s.now.actors.empty()) {
      before = std::move(s.now);
      s.elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       at - last)
                       .count();
    }
    s.now = std::move(*x);
    s.before = before ? &*before : nullptr;
    s.at_ms = wall_ms();
    s.error.clear();
    last = at;
    return true;
  };
  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
    // One frame, its rates from two answers an interval apart.
    if (!take()) {
      std::cerr << "fleetctl: top: " << s.error << std::endl;
      return 1;
    }
    std::this_thread::sleep_for(opt.interval);
    if (!take()) {
      std::cerr << "fleetctl: top: " << s.error << std::endl;
      return 1;
    }
    for (auto& line : top_frame(s, view, 0, 0))
      std::cout << line << "\n";
    return 0;
  }
  if (!take()) {
    std::cerr << "fleetctl: top: " << s.error << std::endl;
    return 1;
  }
  struct sigaction winch{};
  winch.sa_handler = on_winch;
  sigaction(SIGWINCH, &winch, nullptr);
  struct sigaction stop{};
  stop.sa_handler = on_stop;
  for (int sig : {SIGINT, SIGTERM, SIGHUP})
    sigaction(sig, &stop, nullptr);
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
    resized = 0;
    draw(top_frame(s, view, size.first, size.second));
    auto now = std::chrono::steady_clock::now();
    if (now >= next) {
      take();
      next = std::chrono::steady_clock::now()
             + std::chrono::milliseconds{view.interval_ms};
      continue;
    }
    if (stop_requested)
      return 0;
    pollfd in{STDIN_FILENO, POLLIN, 0};
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next
                                                                      - now);
    auto n = poll(&in, 1, static_cast<int>(std::min<int64_t>(wait.count() + 1,
                                                             INT_MAX)));
    if (stop_requested)
      return 0;
    if (n <= 0)
      continue; // a tick, a resize (EINTR) or a signal: redraw
    if (in.revents & (POLLHUP | POLLERR | POLLNVAL))
      return 0;
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
