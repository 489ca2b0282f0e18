# cmake -DDIR=<cloud/console> -DOUT=<file.cpp> -P EmbedFiles.cmake
# Writes every file of DIR (not its subdirectories), sorted by name, into
# OUT as fleetd::console_assets (cloud/console_assets.hpp): byte arrays, so
# the binary serves them without a file to find or a CDN.
file(GLOB files ${DIR}/*)
list(SORT files)
set(arrays "")
set(table "")
set(i 0)
foreach(f IN LISTS files)
  if(IS_DIRECTORY ${f})
    continue()
  endif()
  get_filename_component(name ${f} NAME)
  if(NOT name MATCHES "^[a-z0-9][a-z0-9._-]*$")
    message(FATAL_ERROR "${f}: console files are named [a-z0-9._-]")
  endif()
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND arrays "const unsigned char file${i}[] = {${bytes}};\n")
  string(APPEND table "  {\"${name}\", file${i}, sizeof(file${i})},\n")
  math(EXPR i "${i} + 1")
endforeach()
if(i EQUAL 0)
  message(FATAL_ERROR "${DIR} holds no file")
endif()
file(RELATIVE_PATH source ${CMAKE_CURRENT_LIST_DIR}/.. ${DIR})
set(text "// Generated from ${source} by cmake/EmbedFiles.cmake.
#include \"cloud/console_assets.hpp\"

namespace fleetd {

namespace {
${arrays}
} // namespace

const console_asset console_assets[] = {
${table}};

const size_t console_asset_count = ${i};

} // namespace fleetd
")
include(${CMAKE_CURRENT_LIST_DIR}/WriteIfChanged.cmake)
write_if_changed(${OUT} "${text}")
