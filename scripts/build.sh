#!/usr/bin/env bash
# Builds bitnet.c (Release) into build/: installs missing Debian packages first.
# Extra arguments go to cmake's configure step (e.g. -DBITNET_CUDA=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)"
