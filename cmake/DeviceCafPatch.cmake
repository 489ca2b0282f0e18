# cmake -P cmake/DeviceCafPatch.cmake, run in CAF 0.17.6's source tree: the
# one change of Debian's 0.17.6-2.1 to CAF's headers (its installed
# receive_buffer.hpp includes <limits>, which GCC 11 and later need), and
# CAF's forced -fPIC left to the caller (the device binary is not PIE).
set(file libcaf_io/caf/io/network/receive_buffer.hpp)
file(READ ${file} text)
if(NOT text MATCHES "#include <limits>")
  string(REPLACE "#include <cstring>\n" "#include <cstring>\n#include <limits>\n"
    text "${text}")
  file(WRITE ${file} "${text}")
endif()

file(READ CMakeLists.txt text)
string(REPLACE "set(CMAKE_POSITION_INDEPENDENT_CODE ON)" "" text "${text}")
file(WRITE CMakeLists.txt "${text}")
