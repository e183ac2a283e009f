# Event sourcing check of the flagship demo: a first run stores its events and
# state; a second run rebuilds the state by replaying the log and must say that
# it matches the saved state, then go on with new orders.
#   cmake -DPROGRAM=<order_service> -DDATA=<folder> -P replay_check.cmake
file(REMOVE_RECURSE "${DATA}")
execute_process(COMMAND "${PROGRAM}" --orders 20000 --data "${DATA}"
                RESULT_VARIABLE rc1 OUTPUT_VARIABLE out1 ERROR_VARIABLE err1)
if(NOT rc1 EQUAL 0)
  message(FATAL_ERROR "first run failed (${rc1}):\n${out1}\n${err1}")
endif()
execute_process(COMMAND "${PROGRAM}" --orders 10000 --data "${DATA}"
                RESULT_VARIABLE rc2 OUTPUT_VARIABLE out2 ERROR_VARIABLE err2)
if(NOT rc2 EQUAL 0)
  message(FATAL_ERROR "second run failed (${rc2}):\n${out2}\n${err2}")
endif()
if(NOT out2 MATCHES "replayed 60000 events \\(20000 orders\\)")
  message(FATAL_ERROR "second run did not replay the first run's 60000 events:\n${out2}")
endif()
if(NOT out2 MATCHES "rebuilt state matches the saved state \\(20000 orders")
  message(FATAL_ERROR "second run's rebuilt state does not match:\n${out2}")
endif()
# A third run sees both earlier runs.
execute_process(COMMAND "${PROGRAM}" --orders 1000 --data "${DATA}"
                RESULT_VARIABLE rc3 OUTPUT_VARIABLE out3 ERROR_VARIABLE err3)
if(NOT rc3 EQUAL 0 OR NOT out3 MATCHES "rebuilt state matches the saved state \\(30000 orders")
  message(FATAL_ERROR "third run (${rc3}):\n${out3}\n${err3}")
endif()
# A changed saved state is detected (exit status 1, "DIFFERS").
file(WRITE "${DATA}/state" "orders 31000\ndigest 1234\n")
execute_process(COMMAND "${PROGRAM}" --orders 10 --data "${DATA}"
                RESULT_VARIABLE rc4 OUTPUT_VARIABLE out4 ERROR_VARIABLE err4)
if(NOT rc4 EQUAL 1 OR NOT out4 MATCHES "DIFFERS")
  message(FATAL_ERROR "a wrong saved state was not detected (${rc4}):\n${out4}\n${err4}")
endif()
file(REMOVE_RECURSE "${DATA}")
