# Event sourcing check of the flagship demo: a first run stores its events and
# state; a second run rebuilds the state by replaying the log and must say that
# it matches the saved state, then go on with new orders.
#   cmake -DPROGRAM=<order_service> -DDATA=<folder> -P replay_check.cmake
include(${CMAKE_CURRENT_LIST_DIR}/run_check.cmake)
file(REMOVE_RECURSE "${DATA}")
run("first run" 0 "${PROGRAM}" --orders 20000 --data "${DATA}")
run("second run" 0 "${PROGRAM}" --orders 10000 --data "${DATA}")
expect_match("second run replays the first run's 60000 events" "${out}"
             "replayed 60000 events \\(20000 orders\\)")
expect_match("second run's rebuilt state" "${out}"
             "rebuilt state matches the saved state \\(20000 orders")
# A third run sees both earlier runs.
run("third run" 0 "${PROGRAM}" --orders 1000 --data "${DATA}")
expect_match("third run's rebuilt state" "${out}"
             "rebuilt state matches the saved state \\(30000 orders")
# A changed saved state is detected (exit status 1, "DIFFERS").
file(WRITE "${DATA}/state" "orders 31000\ndigest 1234\n")
run("a wrong saved state" 1 "${PROGRAM}" --orders 10 --data "${DATA}")
expect_match("a wrong saved state is detected" "${out}" "DIFFERS")
# The log stays bounded: a run that would take it past --keep starts over,
# and the next run replays only what that run stored.
run("a run past --keep" 0 "${PROGRAM}" --orders 1000 --keep 20000 --data "${DATA}")
expect_match("a run past --keep starts over" "${out}" "would pass --keep 20000: starting over")
run("the run after starting over" 0 "${PROGRAM}" --orders 10 --keep 20000 --data "${DATA}")
expect_match("the run after starting over" "${out}"
             "rebuilt state matches the saved state \\(1000 orders")
file(REMOVE_RECURSE "${DATA}")
