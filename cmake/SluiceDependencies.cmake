# Finds what the sluice target needs: threads and moodycamel concurrentqueue.
# System first (Debian's libconcurrentqueue-dev has headers only, at
# <concurrentqueue/concurrentqueue.h>; upstream installs a CMake package),
# FetchContent as the fallback. sluice/detail/queue.hpp hides the path.
include(GNUInstallDirs)
find_package(Threads REQUIRED)

set(SLUICE_QUEUE_TARGET "")
set(SLUICE_QUEUE_KIND "")
find_package(concurrentqueue CONFIG QUIET)
if(TARGET concurrentqueue::concurrentqueue)
  set(SLUICE_QUEUE_TARGET concurrentqueue::concurrentqueue)
  set(SLUICE_QUEUE_KIND package)
else()
  find_path(SLUICE_CONCURRENTQUEUE_INCLUDE_DIR concurrentqueue/concurrentqueue.h)
  if(SLUICE_CONCURRENTQUEUE_INCLUDE_DIR)
    add_library(sluice_concurrentqueue INTERFACE)
    target_include_directories(sluice_concurrentqueue SYSTEM INTERFACE
      $<BUILD_INTERFACE:${SLUICE_CONCURRENTQUEUE_INCLUDE_DIR}>)
    set(SLUICE_QUEUE_TARGET $<BUILD_INTERFACE:sluice_concurrentqueue>)
    set(SLUICE_QUEUE_KIND system)
  else()
    include(FetchContent)
    message(STATUS "sluice: concurrentqueue not found on the system, fetching it")
    FetchContent_Declare(concurrentqueue
      GIT_REPOSITORY https://github.com/cameron314/concurrentqueue.git
      GIT_TAG v1.0.4)
    FetchContent_MakeAvailable(concurrentqueue)
    set(SLUICE_QUEUE_TARGET $<BUILD_INTERFACE:concurrentqueue>)
    set(SLUICE_QUEUE_KIND fetched)
  endif()
endif()
message(STATUS "sluice: concurrentqueue from ${SLUICE_QUEUE_KIND}")

# {fmt}: only the JSON-lines sink (sluice/storage/json_sink.hpp), the
# sluice-log tool, the examples and the tests use it; the core never does.
function(sluice_find_fmt)
  if(TARGET fmt::fmt)
    return()
  endif()
  find_package(fmt CONFIG QUIET)
  if(NOT TARGET fmt::fmt)
    include(FetchContent)
    message(STATUS "sluice: fmt not found on the system, fetching it")
    FetchContent_Declare(fmt GIT_REPOSITORY https://github.com/fmtlib/fmt.git GIT_TAG 9.1.0)
    FetchContent_MakeAvailable(fmt)
  endif()
endfunction()
