#!/usr/bin/env bash
# Builds the release preset and runs the flagship demo (an order service).
# Extra arguments go to the demo, e.g. ./scripts/demo.sh --orders 100000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
sluice_need $sluice_core_packages
cmake --preset release -DSLUICE_BUILD_TESTS=OFF >/dev/null
cmake --build build/release --target order_service
exec ./build/release/examples/order_service "$@"
