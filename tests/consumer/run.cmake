# Builds and runs tests/consumer against sluice: MODE=install (find_package on
# an installed copy) or MODE=subdirectory (add_subdirectory).
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(args -S ${SOURCE}/tests/consumer -B ${WORK}/build -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX})
if(MODE STREQUAL "install")
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD} --prefix ${WORK}/prefix
                  RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "install failed: ${rc}")
  endif()
  list(APPEND args -DCMAKE_PREFIX_PATH=${WORK}/prefix)
else()
  list(APPEND args -DSLUICE_SOURCE_DIR=${SOURCE})
endif()
foreach(step "${CMAKE_COMMAND};${args}" "${CMAKE_COMMAND};--build;${WORK}/build"
             "${WORK}/build/consumer")
  execute_process(COMMAND ${step} RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "step failed (${rc}): ${step}")
  endif()
endforeach()
message(STATUS "consumer (${MODE}) built and ran")
