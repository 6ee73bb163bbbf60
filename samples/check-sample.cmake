# Runs a sample and checks its standard output, line by line, against the regular expressions in
# an .expect file; the sample must exit with status 0. Used as a CTest test:
#   cmake -DPROGRAM=<exe> -DEXPECT=<file> -P check-sample.cmake
execute_process(COMMAND ${PROGRAM} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
                TIMEOUT 50)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}\nstdout:\n${out}\nstderr:\n${err}")
endif()
file(STRINGS ${EXPECT} patterns)
string(REPLACE "\n" ";" lines "${out}")
list(LENGTH patterns npatterns)
list(LENGTH lines nlines)
if(NOT npatterns EQUAL nlines)
  message(FATAL_ERROR "expected ${npatterns} lines, got ${nlines}:\n${out}\nstderr:\n${err}")
endif()
math(EXPR last "${npatterns} - 1")
foreach(i RANGE ${last})
  list(GET patterns ${i} pattern)
  list(GET lines ${i} line)
  if(NOT line MATCHES "${pattern}")
    message(FATAL_ERROR "line ${i}: '${line}' does not match '${pattern}'\nstdout:\n${out}")
  endif()
endforeach()
message(STATUS "${PROGRAM}: output as expected")
