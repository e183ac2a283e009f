# Runs PROGRAM with ARGS (arguments separated by '|') and fails unless it exits
# with EXPECT and writes something to stderr.
string(REPLACE "|" ";" args "${ARGS}")
string(REPLACE "|" " " shown "${ARGS}")
execute_process(COMMAND ${PROGRAM} ${args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL "${EXPECT}")
  message(FATAL_ERROR "'${PROGRAM} ${shown}' exited with ${rc}, expected ${EXPECT}\n${out}${err}")
endif()
if(err STREQUAL "")
  message(FATAL_ERROR "'${PROGRAM} ${shown}' printed no message on stderr")
endif()
message(STATUS "exit ${rc} as expected: ${err}")
