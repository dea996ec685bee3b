#!/bin/sh
# The logits conformance checker at the NEON dispatch levels: builds the whole
# engine for aarch64 (cmake/aarch64-linux-gnu.cmake: Debian's cross compiler
# and the arm64 builds of the dependencies) and runs the checker on every kit
# model's I2_S file under qemu-user, with BITNET_CPU=neon_dotprod
# and BITNET_CPU=neon. Prints "neon_conformance: PASS" on success.
#
#   tests/kernels/neon_conformance.sh SOURCE_DIR BUILD_DIR KIT_DIR
set -eu
src=$1 out=$2 kit=$3
QEMU=${QEMU_AARCH64:-qemu-aarch64}
cmake -S "$src" -B "$out" -DCMAKE_TOOLCHAIN_FILE="$src/cmake/aarch64-linux-gnu.cmake" \
      -DCMAKE_BUILD_TYPE=Release -DBITNET_CUDA=OFF > "$out.cmake.log" 2>&1 || { cat "$out.cmake.log"; exit 1; }
cmake --build "$out" --target bitnet -j"$(nproc)" > "$out.build.log" 2>&1 || { tail -30 "$out.build.log"; exit 1; }
# qemu finds the arm64 loader and libraries of the multiarch install under /.
run="$QEMU -L / -cpu max $out/bitnet"
status=0
for level in neon_dotprod neon; do
  # The level really runs (an unsupported BITNET_CPU would be ignored).
  used=$(BITNET_CPU=$level $run info -m "$kit/tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf" 2>&1 | sed -n 's/^cpu kernels: *//p')
  [ "$used" = "$level" ] || { echo "BITNET_CPU=$level: bitnet info says '$used'"; status=1; }
  for m in tiny-bitnet tiny-llama-ternary; do
    log=$(BITNET_CPU=$level python3 "$kit/tools/check_logits.py" "$kit/$m" -- \
          $run logits -m "$kit/$m/gguf/$m-i2_s.gguf" --ids {ids} -o {out} 2>&1) || true
    line=$(echo "$log" | grep "conformance:" | tail -1)
    echo "$level $m i2_s: $line"
    case "$line" in *"conformance: PASS"*) ;; *) echo "$log" | tail -20; status=1 ;; esac
  done
done
[ $status = 0 ] && echo "neon_conformance: PASS" || echo "neon_conformance: FAIL"
exit $status
