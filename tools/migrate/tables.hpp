#pragma once

// What fleetd-migrate copies: every table of cloud.db and tenancy.db, as
// the PostgreSQL schema (cloud/migrations/0001_init.sql) keeps it.

#include <cstdint>
#include <string>
#include <vector>

namespace fleetd::migration {

/// One target column: how to read it from SQLite and, for --verify, how
/// to print it on the PostgreSQL side in the same canonical text.
enum class col { text, integer, blob, boolean, device_id, day, value, series };

struct column {
  const char* source; // SQLite expression
  col kind;
};

struct table_spec {
  const char* target;  // PostgreSQL table
  const char* db;      // "cloud" or "tenancy"
  const char* source;  // SQLite table
  const char* order;   // SQLite ORDER BY: rowid or the primary key
  bool rowid;          // checkpoint by rowid (else by rows done)
  const char* columns; // PostgreSQL column list for COPY
  const char* canon;   // PostgreSQL SELECT list giving the canonical row
  std::vector<column> cols;
};

const std::vector<table_spec>& tables();

} // namespace fleetd::migration
