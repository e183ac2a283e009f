#!/usr/bin/env bash
# Builds the dev preset (debug, warnings as errors) and runs the whole test
# suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
sluice_need $sluice_test_packages
cmake --workflow --preset dev
