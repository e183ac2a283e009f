# Helpers for the demo's check scripts (included by them).

# run(<what> <expected exit status> <command...>): runs the command, fails
# the check unless it exits with the expected status; sets `out` and `err`.
function(run what expect)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE e)
  if(NOT rc STREQUAL "${expect}")
    message(FATAL_ERROR "${what}: exit status ${rc}, expected ${expect}:\n${o}\n${e}")
  endif()
  set(out "${o}" PARENT_SCOPE)
  set(err "${e}" PARENT_SCOPE)
endfunction()

# expect_match(<what> <text> <regex>): fails the check unless text matches.
function(expect_match what text regex)
  if(NOT text MATCHES "${regex}")
    message(FATAL_ERROR "${what}: no match for '${regex}' in:\n${text}")
  endif()
endfunction()
