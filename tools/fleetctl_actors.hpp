#pragma once

#include <string>
#include <vector>

#include "messages/types.hpp"
#include "runtime/actor_counters.hpp"

namespace fleetd {

/// One line of the node process's figures ("rss 14.2 MiB, cpu 3.1 s, ...").
std::string to_text(const process_figures& x);

/// Whether `column` is one `fleetctl actors --sort` takes (empty: start
/// order).
bool is_actor_column(const std::string& column);

/// The columns, for usage texts.
extern const char* actor_columns;

/// The columns in table order ("name" first), for keys that step through
/// them (fleetctl top).
std::vector<std::string> actor_column_names();

/// The actors sorted by `column`: largest first, by name alphabetically,
/// empty or unknown: start order.
std::vector<const actor_stats*> sorted_actors(const node_status& x,
                                              const std::string& column);

/// The table's header line; `marked` (a column) carries v or ^ for the
/// order it is sorted in (^: smallest or A first).
std::string actor_table_header(const std::string& marked = "",
                               bool ascending = false);

/// One actor's line of the table ("-" for figures the runtime lacks).
std::string actor_table_row(const actor_stats& a);

/// `fleetctl actors`: a node header and one row per actor, sorted by
/// `column` (largest first; by name alphabetically), as a table or JSON.
std::string actors_text(const node_status& x, const std::string& column);
std::string actors_json(const node_status& x, const std::string& column);

} // namespace fleetd
