# edgefleet_write_if_changed(<file> <content>): writes <content> to <file> unless the file
# already holds exactly that, so an unchanged generated source keeps its timestamp and does not
# rebuild what includes it. For the embed scripts (updater/migrations/embed.cmake,
# deploy/collector/dashboard/embed.cmake), run with cmake -P.
function(edgefleet_write_if_changed file content)
  if(EXISTS "${file}")
    file(READ "${file}" old)
    if(old STREQUAL content)
      return()
    endif()
  endif()
  file(WRITE "${file}" "${content}")
endfunction()
