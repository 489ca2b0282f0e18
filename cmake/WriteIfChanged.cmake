# write_if_changed(FILE TEXT): writes TEXT to FILE unless it holds it
# already; unchanged text keeps the file's time, so nothing recompiles.
function(write_if_changed file text)
  if(EXISTS ${file})
    file(READ ${file} old)
    if(old STREQUAL text)
      return()
    endif()
  endif()
  file(WRITE ${file} "${text}")
endfunction()
