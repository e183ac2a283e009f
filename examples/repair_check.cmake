# The flagship demo on a log damaged in the middle: the writer refuses it and
# says to repair it; `sluice-log repair` keeps every valid record; the demo
# then runs, says how many events the log is missing, and fails (exit status
# 1): its rebuilt state lacks them (a missing order_placed leaves the digest
# unchanged, so the digest alone would not tell).
#   cmake -DPROGRAM=<order_service> -DTOOL=<sluice-log> -DDATA=<folder> -P repair_check.cmake
include(${CMAKE_CURRENT_LIST_DIR}/run_check.cmake)
file(REMOVE_RECURSE "${DATA}")
run("first run" 0 "${PROGRAM}" --orders 20000 --data "${DATA}")
# Change one byte in the middle of the first segment (a bit flip on disk).
set(segment "${DATA}/log/00000000000000000000.slog")
set(at 300000)
file(READ "${segment}" old OFFSET ${at} LIMIT 1 HEX)
if(old STREQUAL "")
  message(FATAL_ERROR "${segment} is shorter than ${at} bytes")
endif()
if(old STREQUAL "ff")
  set(new "\\001")
else()
  set(new "\\377")
endif()
run("changing a byte" 0 sh -c
    "printf '${new}' | dd of='${segment}' bs=1 seek=${at} conv=notrunc status=none")
file(READ "${segment}" now OFFSET ${at} LIMIT 1 HEX)
if(now STREQUAL old)
  message(FATAL_ERROR "byte ${at} of ${segment} did not change")
endif()
run("the run on the damaged log" 3 "${PROGRAM}" --orders 10 --data "${DATA}")
expect_match("a log damaged in the middle is refused" "${err}" "not a torn tail; repair the log")
run("sluice-log repair" 0 "${TOOL}" repair "${DATA}/log")
expect_match("sluice-log repair" "${out}" "result: +repaired")
run("the run on the repaired log" 1 "${PROGRAM}" --orders 10 --data "${DATA}")
expect_match("the run on the repaired log" "${out}" "the log is missing [1-9][0-9]* events?")
file(REMOVE_RECURSE "${DATA}")
