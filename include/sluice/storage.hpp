// sluice — umbrella header for storage: codecs, sinks (file log, memory
// ring), the recorder, reading, repair, replay and checkpoints. The JSON-lines
// sink needs {fmt} and has its own header: sluice/storage/json_sink.hpp.
#pragma once

#include "sluice.hpp"
#include "storage/codec.hpp"
#include "storage/crc32c.hpp"
#include "storage/error.hpp"
#include "storage/file_log.hpp"
#include "storage/format.hpp"
#include "storage/io.hpp"
#include "storage/log_reader.hpp"
#include "storage/memory_sink.hpp"
#include "storage/recorder.hpp"
#include "storage/repair.hpp"
#include "storage/replay.hpp"
#include "storage/sink.hpp"
