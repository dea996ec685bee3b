#!/usr/bin/env bash
# Builds and runs every test: the Release build (unit, conformance, CLI and
# variant tests), then an AddressSanitizer + UBSan build running the unit
# tests (cmocka programs, which include the hostile-input and corruption
# tests). This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DBITNET_SANITIZE=ON -DBITNET_CUDA=OFF >/dev/null
cmake --build build-asan -j"$(nproc)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -L unit
