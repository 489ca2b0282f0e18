# Flags of the device build (FLEETD_DEVICE_BUILD): size over speed, code no
# caller reaches dropped at link time, and every dependency Debian ships as a
# static archive linked in, so that only the parts fleetd calls are installed.
# CAF ships as shared libraries only (no .a in libcaf-dev): DeviceCaf.cmake
# builds Debian's CAF source as static archives for this build alone.
set(CMAKE_BUILD_TYPE MinSizeRel CACHE STRING "" FORCE)
set(CMAKE_INTERPROCEDURAL_OPTIMIZATION ON)
# Debian's static archives are not built position-independent.
set(CMAKE_POSITION_INDEPENDENT_CODE OFF)
add_compile_options(-Os -ffunction-sections -fdata-sections)
add_link_options(-no-pie -Wl,--gc-sections -Wl,--as-needed -s)
# Archives first: SQLite, zstd, xxhash, mbedTLS and protobuf-lite link static.
set(CMAKE_FIND_LIBRARY_SUFFIXES .a .so)
set(Protobuf_USE_STATIC_LIBS ON)
# The wire messages are generated for protobuf's lite runtime (no
# descriptors, no reflection): see messages/CMakeLists.txt.
set(FLEETD_PROTO_LITE ON)
