# Every dependency comes from a Debian package; CAF 0.17.6 ships no CMake
# config, so its imported targets are made here.
find_package(Threads REQUIRED)
if(FLEETD_DEVICE_BUILD)
  include(cmake/DeviceCaf.cmake)
else()
  find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
  foreach(comp core io openssl)
    find_library(CAF_${comp}_LIBRARY caf_${comp} REQUIRED)
    add_library(CAF::${comp} SHARED IMPORTED)
    set_target_properties(CAF::${comp} PROPERTIES
      IMPORTED_LOCATION ${CAF_${comp}_LIBRARY}
      INTERFACE_INCLUDE_DIRECTORIES ${CAF_INCLUDE_DIR})
  endforeach()
  set_property(TARGET CAF::io APPEND PROPERTY INTERFACE_LINK_LIBRARIES CAF::core)
  set_property(TARGET CAF::openssl APPEND PROPERTY INTERFACE_LINK_LIBRARIES CAF::io)
endif()

find_package(SQLite3 REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(Protobuf REQUIRED)
find_package(zstd CONFIG REQUIRED)
find_package(PostgreSQL REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(doctest CONFIG REQUIRED)

find_library(FLEETD_XXHASH xxhash REQUIRED)
if(TARGET zstd::libzstd_shared AND NOT FLEETD_DEVICE_BUILD)
  set(FLEETD_ZSTD zstd::libzstd_shared)
else()
  set(FLEETD_ZSTD zstd::libzstd_static)
endif()
