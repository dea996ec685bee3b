#!/usr/bin/env bash
# Checks the CUDA backend in one call on a GPU machine: builds (unless given
# prebuilt binaries), runs the CUDA kernel tests, the conformance checker with
# --device cuda on every kit model and format, compute-sanitizer memcheck on a
# short generation, and the 2B4T-shaped benchmark. Logs go to $OUT (default
# ./gpu-check-out); a summary is printed last. Exit status 1 if any check fails.
#
# usage: scripts/gpu-check.sh [--prebuilt DIR] [--kit DIR] [--models "m1 m2"] [--no-bench] [--no-sanitizer]
#   --prebuilt DIR  use DIR/{bitnet,test_cuda_kernels,test_cuda_batch,bench_cuda} (and the shared
#                   libraries in DIR/lib, if any) instead of building — for machines
#                   without the build dependencies
#   --kit DIR       the conformance kit (default: .kit if present, else ../shared/conformance)
#   --models LIST   kit models to check (default: every model the kit has)
set -uo pipefail
cd "$(dirname "$0")/.."

BIN="" KIT="" MODELS="" BENCH=1 SANITIZER=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prebuilt) BIN=$2; shift 2 ;;
    --kit) KIT=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --no-bench) BENCH=0; shift ;;
    --no-sanitizer) SANITIZER=0; shift ;;
    *) echo "usage: $0 [--prebuilt DIR] [--kit DIR] [--models LIST] [--no-bench] [--no-sanitizer]" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
[ -z "$KIT" ] && { [ -d .kit ] && KIT=.kit || KIT=../shared/conformance; }
export BITNET_TEST_KIT="$(cd "$KIT" && pwd)"  # the CUDA batch test looks for the kit here
# On compute capability 9.0+ the persistent decode kernel must run (test_decode_layers checks).
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | cut -d. -f1)
[ -n "$cc" ] && [ "$cc" -ge 9 ] 2>/dev/null && export BITNET_TEST_NEED_LAYERS=1
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
status=0

note() { echo "$*" | tee -a "$SUMMARY"; }
# run NAME CMD...: runs CMD with its output in $OUT/NAME.log; records ok/FAIL.
run() {
  local name=$1; shift
  local t0=$SECONDS
  if timeout "${STEP_TIMEOUT:-300}" "$@" > "$OUT/$name.log" 2>&1; then
    note "ok    $name ($((SECONDS - t0)) s)"
  else
    note "FAIL  $name ($((SECONDS - t0)) s): $(tail -3 "$OUT/$name.log" | tr '\n' ' ' | cut -c1-300)"
    status=1
  fi
}

nvidia-smi -L 2>&1 | tee -a "$SUMMARY"
(nvcc --version 2>/dev/null || true) | tail -1 | tee -a "$SUMMARY"

if [ -z "$BIN" ]; then
  BIN=build-gpu
  run build bash -c "cmake -S . -B $BIN -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a &&
                     cmake --build $BIN -j$(nproc) --target bitnet test_cuda_kernels test_cuda_batch bench_cuda"
fi
[ -d "$BIN/lib" ] && export LD_LIBRARY_PATH="$PWD/$BIN/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

run kernels "$BIN/test_cuda_kernels"
# Multi-sequence batches (bitnet_eval_batch) on the GPU against the CPU.
[ -x "$BIN/test_cuda_batch" ] && run batch bash -c "'$BIN/test_cuda_batch' | tee /dev/stderr | grep -q 'cuda batch: PASS'"

# Conformance: every model of the kit, every format present, on the GPU.
if [ -z "$MODELS" ]; then
  MODELS=$(for d in "$KIT"/*/reference; do [ -d "$d" ] && basename "$(dirname "$d")"; done)
fi
for m in $MODELS; do
  for fmt in hf i2_s tq1_0 tq2_0; do
    if [ "$fmt" = hf ]; then path="$KIT/$m"; [ -f "$path/model.safetensors" ] || continue
    else path="$KIT/$m/gguf/$m-$fmt.gguf"; [ -f "$path" ] || continue; fi
    run "conformance-$m-$fmt" bash -c "python3 '$KIT/tools/check_logits.py' '$KIT/$m' -- \
        '$BIN/bitnet' logits -m '$path' --ids {ids} -o {out} --device cuda | tee /dev/stderr | grep -q 'conformance: PASS'"
  done
done

# Greedy generation on the GPU under compute-sanitizer (prompt, then decode steps replayed from a CUDA graph).
first=$(echo $MODELS | cut -d' ' -f1)
gguf="$KIT/$first/gguf/$first-i2_s.gguf"
if [ "$SANITIZER" = 1 ] && [ -f "$gguf" ] && command -v compute-sanitizer > /dev/null; then
  run memcheck compute-sanitizer --tool memcheck --error-exitcode 1 \
      "$BIN/bitnet" run -m "$gguf" -p "Once upon a time" -n 24 --temp 0 --device cuda -v
  [ -x "$BIN/test_cuda_batch" ] && run memcheck-batch compute-sanitizer --tool memcheck --error-exitcode 1 \
      "$BIN/test_cuda_batch"
  run generate-cpu-vs-cuda bash -c "
      a=\$('$BIN/bitnet' run -m '$gguf' -p 'Once upon a time' -n 24 --temp 0 --device cpu 2>/dev/null);
      b=\$('$BIN/bitnet' run -m '$gguf' -p 'Once upon a time' -n 24 --temp 0 --device cuda 2>/dev/null);
      echo \"cpu : \$a\"; echo \"cuda: \$b\"; [ -n \"\$b\" ]"
fi

[ "$BENCH" = 1 ] && run bench "$BIN/bench_cuda"
[ -f "$OUT/bench.log" ] && cat "$OUT/bench.log"
echo "---- summary"
cat "$SUMMARY"
exit $status
