# CAF for the device build: Debian ships CAF as shared libraries only (4.4 MB
# installed), so the device build compiles the same 0.17.6 release as Debian's
# libcaf-dev, core and io only, into static archives sized like the rest of
# the device build. The source is Debian's own orig tarball, fetched once
# into build-device/ and checked against the SHA-256 that Debian's
# actor-framework_0.17.6-2.1.dsc records. The normal build never gets here.
include(ExternalProject)

set(FLEETD_CAF_VERSION 0.17.6)
set(FLEETD_CAF_URL "http://deb.debian.org/debian/pool/main/a/actor-framework/actor-framework_${FLEETD_CAF_VERSION}.orig.tar.gz"
  CACHE STRING "Debian's orig tarball of CAF that the device build compiles")
set(FLEETD_CAF_SHA256
  e2bf5bd243f08bb7d8adde197cfe3e6d71314ed3378fe0692f8932f4c3b3928c)

# The same CAF release on both builds, or they would not behave the same.
find_file(FLEETD_CAF_CONFIG_HPP caf/config.hpp REQUIRED)
file(STRINGS ${FLEETD_CAF_CONFIG_HPP} _caf_version_line
  REGEX "^#define CAF_VERSION [0-9]+")
string(REGEX MATCH "[0-9]+$" _caf_version "${_caf_version_line}")
string(REPLACE "." ";" _caf_parts ${FLEETD_CAF_VERSION})
list(GET _caf_parts 0 _maj)
list(GET _caf_parts 1 _min)
list(GET _caf_parts 2 _pat)
math(EXPR _caf_want "${_maj} * 10000 + ${_min} * 100 + ${_pat}")
if(NOT _caf_version EQUAL _caf_want)
  message(FATAL_ERROR "the device build compiles CAF ${FLEETD_CAF_VERSION} "
    "but ${FLEETD_CAF_CONFIG_HPP} is CAF ${_caf_version}: update "
    "cmake/DeviceCaf.cmake to libcaf-dev's version")
endif()

set(_caf_prefix ${CMAKE_BINARY_DIR}/caf)
# Debian builds CAF without NDEBUG (CMAKE_BUILD_TYPE None: CAF would pick
# RelWithDebInfo for an empty one) and at the default log level QUIET: same
# here, so only code size changes, not behaviour.
ExternalProject_Add(caf_device
  URL ${FLEETD_CAF_URL}
  URL_HASH SHA256=${FLEETD_CAF_SHA256}
  DOWNLOAD_DIR ${CMAKE_BINARY_DIR}/downloads
  DOWNLOAD_EXTRACT_TIMESTAMP OFF
  PATCH_COMMAND ${CMAKE_COMMAND} -P ${CMAKE_CURRENT_LIST_DIR}/DeviceCafPatch.cmake
  PREFIX ${_caf_prefix}
  INSTALL_DIR ${_caf_prefix}/install
  CMAKE_ARGS
    -DCMAKE_INSTALL_PREFIX=<INSTALL_DIR>
    -DCMAKE_INSTALL_LIBDIR=lib
    -DCMAKE_BUILD_TYPE=None
    -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
    -DCMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER}
    "-DCMAKE_CXX_FLAGS=-Os -ffunction-sections -fdata-sections -flto -fno-fat-lto-objects"
    -DCMAKE_AR=${CMAKE_CXX_COMPILER_AR}
    -DCMAKE_RANLIB=${CMAKE_CXX_COMPILER_RANLIB}
    -DCMAKE_POSITION_INDEPENDENT_CODE=OFF
    -DCAF_BUILD_STATIC_ONLY=ON
    -DCAF_LOG_LEVEL=QUIET
    -DCAF_NO_OPENSSL=ON -DCAF_NO_OPENCL=ON -DCAF_NO_PYTHON=ON
    -DCAF_NO_EXAMPLES=ON -DCAF_NO_TOOLS=ON -DCAF_NO_UNIT_TESTS=ON
    -DCAF_NO_SUMMARY=ON -DCAF_NO_COMPILER_CHECK=ON
  BUILD_BYPRODUCTS
    ${_caf_prefix}/install/lib/libcaf_core_static.a
    ${_caf_prefix}/install/lib/libcaf_io_static.a)

# The imported targets of Dependencies.cmake, pointing at this build; the
# include directory must exist when CMake generates, before CAF installs.
set(_caf_include ${_caf_prefix}/install/include)
file(MAKE_DIRECTORY ${_caf_include})
foreach(comp core io)
  add_library(CAF::${comp} STATIC IMPORTED)
  set_target_properties(CAF::${comp} PROPERTIES
    IMPORTED_LOCATION ${_caf_prefix}/install/lib/libcaf_${comp}_static.a
    INTERFACE_INCLUDE_DIRECTORIES ${_caf_include})
  add_dependencies(CAF::${comp} caf_device)
endforeach()
set_property(TARGET CAF::io APPEND PROPERTY INTERFACE_LINK_LIBRARIES CAF::core)
set_property(TARGET CAF::core APPEND PROPERTY INTERFACE_LINK_LIBRARIES
  Threads::Threads)
