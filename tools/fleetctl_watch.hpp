#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>

#include "messages/interfaces.hpp"
#include "runtime/console_client.hpp"

namespace fleetd {

/// A console command that asks the node once: the whole lines to print, or
/// why it could not ask. Every such command gets --json, --watch, --count.
using console_show = std::function<caf::expected<std::string>(
  caf::scoped_actor&, const inspector_actor&)>;

/// How `--watch` repeats a console_show.
struct repeat_options {
  /// The command's name, for stderr ("fleetctl: NAME: lost node ...").
  std::string command;
  /// HOST:PORT as given, and its parts (to reconnect).
  std::string node;
  std::string host;
  uint16_t port = 0;
  console_client_config tls;
  std::chrono::milliseconds interval{1000};
  /// Stop after this many answers printed; 0: until interrupted.
  int64_t count = 0;
  /// Text output: a "--- HH:MM:SS" line before each answer.
  bool separate = false;
};

/// Runs `show` every interval until `count` answers are printed (or
/// forever). A lost node is said once on stderr, then reconnected every
/// interval; stdout gets only answers. The exit code.
int repeat(caf::actor_system& sys, inspector_actor node,
           const repeat_options& opt, const console_show& show);

/// The node's one answer of type T to `xs`, or the error.
template <class T, class... Ts>
caf::expected<T> ask_node(caf::scoped_actor& self, const inspector_actor& node,
                          std::chrono::milliseconds timeout, Ts&&... xs) {
  std::optional<T> out;
  caf::error err;
  self->request(node, timeout, std::forward<Ts>(xs)...)
    .receive([&](T& x) { out = std::move(x); },
             [&](caf::error& e) { err = std::move(e); });
  if (out)
    return std::move(*out);
  return err;
}

/// Local wall-clock time of day of a Unix time in ms, "HH:MM:SS".
std::string clock_text(int64_t unix_ms);

/// The local wall clock, Unix ms.
int64_t now_ms();

} // namespace fleetd
