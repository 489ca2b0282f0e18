#pragma once

#include <caf/atom.hpp>

namespace fleetd {

// Every atom of the project, at most 10 characters each (CAF 0.17).
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using store_atom = caf::atom_constant<caf::atom("store")>;
using fetch_atom = caf::atom_constant<caf::atom("fetch")>;
using enqueue_atom = caf::atom_constant<caf::atom("enqueue")>;
using pending_atom = caf::atom_constant<caf::atom("pending")>;
using ack_atom = caf::atom_constant<caf::atom("ack")>;
using sync_atom = caf::atom_constant<caf::atom("sync")>;
using write_atom = caf::atom_constant<caf::atom("write")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using devices_atom = caf::atom_constant<caf::atom("devices")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
/// The storage actor's own timer: commit what storage.commit-interval holds.
using commit_atom = caf::atom_constant<caf::atom("commit")>;
using event_atom = caf::atom_constant<caf::atom("event")>;
using debug_atom = caf::atom_constant<caf::atom("debug")>;
using points_atom = caf::atom_constant<caf::atom("points")>;
using permit_atom = caf::atom_constant<caf::atom("permit")>;
using report_atom = caf::atom_constant<caf::atom("report")>;
using link_atom = caf::atom_constant<caf::atom("link")>;
using session_atom = caf::atom_constant<caf::atom("session")>;
using discard_atom = caf::atom_constant<caf::atom("discard")>;
using config_atom = caf::atom_constant<caf::atom("config")>;
using capabilities_atom = caf::atom_constant<caf::atom("caps")>;
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using logs_atom = caf::atom_constant<caf::atom("logs")>;
/// A log source's read cursors (source_cursor).
using cursor_atom = caf::atom_constant<caf::atom("cursor")>;
using events_atom = caf::atom_constant<caf::atom("events")>;
using health_atom = caf::atom_constant<caf::atom("health")>;
using auth_atom = caf::atom_constant<caf::atom("auth")>;
using enroll_atom = caf::atom_constant<caf::atom("enroll")>;
using quota_atom = caf::atom_constant<caf::atom("quota")>;
using tenancy_atom = caf::atom_constant<caf::atom("tenancy")>;
using restart_atom = caf::atom_constant<caf::atom("restart")>;
using relay_atom = caf::atom_constant<caf::atom("relay")>;
using api_auth_atom = caf::atom_constant<caf::atom("apiauth")>;
using query_atom = caf::atom_constant<caf::atom("query")>;
using rollout_atom = caf::atom_constant<caf::atom("rollout")>;
/// A sync request's outcome, for the rollout's health figures.
using outcome_atom = caf::atom_constant<caf::atom("outcome")>;
/// Delivery accounting: per device, stream and hour (delivery_rows).
using delivery_atom = caf::atom_constant<caf::atom("delivery")>;
/// Records refused before storage (stream, why, count), declared as drops.
using refused_atom = caf::atom_constant<caf::atom("refused")>;

} // namespace fleetd
