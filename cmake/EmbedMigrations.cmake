# cmake -DDIR=<cloud/migrations> -DOUT=<file.cpp> -P EmbedMigrations.cmake
# Writes the migration files NNNN_name.sql of DIR, in version order, into
# OUT as fleetd::detail::builtin_migration_texts (cloud/pg_migrate.hpp).
# Versions must run 1..n without a gap.
file(GLOB files ${DIR}/*.sql)
list(SORT files)
set(delim "fleetd_sql")
set(body "")
set(expected 1)
foreach(f IN LISTS files)
  get_filename_component(name ${f} NAME_WE)
  if(NOT name MATCHES "^([0-9][0-9][0-9][0-9])_[a-z0-9_]+$")
    message(FATAL_ERROR "${f}: migration files are named NNNN_name.sql")
  endif()
  math(EXPR version "${CMAKE_MATCH_1}")
  if(NOT version EQUAL expected)
    message(FATAL_ERROR "${f}: version ${version}, expected ${expected}")
  endif()
  file(READ ${f} sql)
  string(FIND "${sql}" ")${delim}\"" clash)
  if(NOT clash EQUAL -1)
    message(FATAL_ERROR "${f} contains the embedding delimiter )${delim}\"")
  endif()
  string(APPEND body "  {${version}, \"${name}\", R\"${delim}(${sql})${delim}\"},\n")
  math(EXPR expected "${expected} + 1")
endforeach()
math(EXPR count "${expected} - 1")
if(count EQUAL 0)
  message(FATAL_ERROR "${DIR} holds no migration")
endif()
set(text "// Generated from cloud/migrations by cmake/EmbedMigrations.cmake.
#include \"cloud/pg_migrate.hpp\"

namespace fleetd::detail {

const migration_text builtin_migration_texts[] = {
${body}};

const int builtin_migration_count = ${count};

} // namespace fleetd::detail
")
include(${CMAKE_CURRENT_LIST_DIR}/WriteIfChanged.cmake)
write_if_changed(${OUT} "${text}")
