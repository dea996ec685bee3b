#!/bin/sh
# Builds the CPU kernel and thread-pool tests for aarch64 with Debian's cross compiler and runs
# it under qemu-user, twice: with a CPU model that has the dot-product
# extension (every level runs) and with one that has not (dispatch must fall
# back to plain NEON, and BITNET_CPU=neon_dotprod must be refused).
#
#   tests/kernels/neon_cross.sh [BUILD_DIR]
# Needs gcc-aarch64-linux-gnu and qemu-user (apt-get install them). Prints
# "neon_cross: PASS" on success; exits non-zero on failure.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$src/build-neon-cross}
mkdir -p "$out"
CC=${AARCH64_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU_AARCH64:-qemu-aarch64}
# Where qemu finds the arm64 loader and libc: the cross toolchain's sysroot,
# unless the arm64 multiarch libraries are installed (deps.sh --test does, for
# neon_conformance.sh): then the loader under / must be used, because the
# sysroot's loader would pick up the multiarch libc of another build and hang.
if [ -z "${AARCH64_SYSROOT:-}" ] && [ -e /lib/aarch64-linux-gnu/libc.so.6 ]; then SYSROOT=/
else SYSROOT=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}; fi
flags="-std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I$src/include -I$src/src -I$src/tests/kernels/cross"
k=$src/src/kernels/cpu
for f in kernels_ref cpu_kernels kernels_neon; do
    $CC $flags -c "$k/$f.c" -o "$out/$f.o"
done
$CC $flags -march=armv8.2-a+dotprod -c "$k/kernels_neon_dotprod.c" -o "$out/kernels_neon_dotprod.o"
$CC $flags -c "$src/src/format/ggml_types.c" -o "$out/ggml_types.o"
$CC $flags -c "$src/tests/kernels/test_cpu_kernels.c" -o "$out/test_cpu_kernels.o"
$CC -o "$out/test_cpu_kernels" "$out"/*.o -lm
$CC $flags -o "$out/test_threadpool" "$src/tests/kernels/test_threadpool.c" "$k/threadpool.c" -lpthread

# max: every feature qemu emulates, dot product included; cortex-a57: ARMv8.0, no dot product.
log=$("$QEMU" -L "$SYSROOT" -cpu max "$out/test_cpu_kernels" 2>&1) || { echo "$log"; echo "neon_cross: FAIL (max)"; exit 1; }
echo "$log"
echo "$log" | grep -q "kernel levels: scalar neon neon_dotprod$" || { echo "neon_cross: FAIL (dot product level not run)"; exit 1; }
log=$("$QEMU" -L "$SYSROOT" -cpu cortex-a57 "$out/test_cpu_kernels" 2>&1) || { echo "$log"; echo "neon_cross: FAIL (cortex-a57)"; exit 1; }
echo "$log"
echo "$log" | grep -q "kernel levels: scalar neon neon_dotprod(unsupported here)$" || { echo "neon_cross: FAIL (dispatch without dot product)"; exit 1; }
log=$("$QEMU" -L "$SYSROOT" "$out/test_threadpool" 2>&1) || { echo "$log"; echo "neon_cross: FAIL (thread pool)"; exit 1; }
echo "$log"
echo "neon_cross: PASS"
