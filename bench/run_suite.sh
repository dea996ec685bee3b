#!/bin/sh
# The standard benchmark suite in one go: the conformance kit's tiny model,
# a synthetic 1M-parameter model (the size the seed latency targets name),
# the bundled model (models/bitnet-tinystories-i2_s.gguf) and a 2B4T-shaped
# model made with `bitnet gen-model 2b4t` (1.2 GB, written once into the work
# folder and reused). Prints a Markdown section per model, with the command
# line, machine and commit, ready for docs/PERFORMANCE.md.
#
#   bench/run_suite.sh [--bitnet PATH] [--work DIR] [--check | --save] [--quick]
#
#   --bitnet PATH  the bitnet binary (default: build/bitnet)
#   --work DIR     results and the generated model (default: /tmp/bitnet-bench-suite)
#   --check        compare each model with bench/baselines/MACHINE/NAME.json;
#                  the exit status is 3 when any regressed
#   --save         store the results there as the new baselines
#                  (every result is also kept as WORK/NAME.json)
#   --quick        fewer tokens and repetitions (a smoke run, not for the docs)
#   --tolerance T  for --check (default 25% for the small models, whose speed on
#                  a shared 2-vCPU box moves by that much from minute to minute,
#                  and 10% for the 2B4T-shaped one)
# Environment: BITNET_MACHINE names the machine class (default: CORESc-ISA,
# e.g. 2c-avx2); BITNET_BASELINES replaces bench/baselines/MACHINE;
# BITNET_2B4T uses an existing 2B4T-shaped GGUF file.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bitnet=$root/build/bitnet
work=/tmp/bitnet-bench-suite
mode=run
quick=0
tolerance=""
while [ $# -gt 0 ]; do
    case $1 in
        --bitnet) bitnet=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        --check) mode=check; shift ;;
        --save) mode=save; shift ;;
        --quick) quick=1; shift ;;
        --tolerance) tolerance=$2; shift 2 ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run_suite.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -x "$bitnet" ] || { echo "run_suite.sh: no bitnet binary at $bitnet (use --bitnet)" >&2; exit 2; }
mkdir -p "$work"

isa=generic
grep -q avx2 /proc/cpuinfo 2>/dev/null && isa=avx2
grep -q avx512_vnni /proc/cpuinfo 2>/dev/null && isa=avx512vnni
grep -q asimddp /proc/cpuinfo 2>/dev/null && isa=neon-dotprod
machine=${BITNET_MACHINE:-$(nproc)c-$isa}
baselines=${BITNET_BASELINES:-$root/bench/baselines/$machine}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit (with uncommitted changes)"; fi

status=0

# bench_model NAME MODEL TOLERANCE ARGS...: one model's section; sets status on a regression.
bench_model() {
    name=$1 model=$2 tol=$3
    shift 3
    extra=""
    if [ $mode = check ]; then
        if [ -f "$baselines/$name.json" ]; then extra="--baseline $baselines/$name.json --tolerance ${tolerance:-$tol}"
        else echo "run_suite.sh: no baseline $baselines/$name.json; measuring only" >&2; fi
    fi
    echo
    echo "### $name"
    echo
    # The load average says whether other work shared the machine.
    echo "\`bitnet bench -m $(basename "$model") $*\` — machine: $cpu, $(nproc) cores, $isa, $mem, load average $(cut -d' ' -f1 /proc/loadavg) at the start; commit $commit; $(date -u +%Y-%m-%d)"
    echo
    rc=0
    # shellcheck disable=SC2086 # $extra is an option and its value
    "$bitnet" bench -m "$model" "$@" -q --save-baseline "$work/$name.json" $extra || rc=$?
    if [ $mode = save ] && [ $rc = 0 ]; then
        mkdir -p "$baselines"
        cp "$work/$name.json" "$baselines/$name.json"
        echo "run_suite.sh: saved $baselines/$name.json" >&2
    fi
    case $rc in
        0) ;;
        3) status=3 ;;
        130) echo "run_suite.sh: interrupted" >&2; exit 130 ;;
        *) echo "run_suite.sh: bench failed on $model (exit status $rc)" >&2; [ $status -ne 0 ] || status=1 ;;
    esac
}

if [ $quick = 1 ]; then
    small="-p 32 -n 32 -t 1,2 -r 2"
    large="-p 16 -n 8 -t 2 -r 1"
else
    small="-p 128,512 -n 128 -t 1,2 -r 5"
    large="-p 128,512 -n 128 -t 1,2 -r 3"
fi

echo "## End-to-end benchmarks ($machine)"

kit=$root/../shared/conformance/tiny-bitnet/gguf/tiny-bitnet-i2_s.gguf
if [ -f "$kit" ]; then
    # shellcheck disable=SC2086
    bench_model kit-tiny-bitnet "$kit" 25% $small
else
    echo "run_suite.sh: skipping the kit model: $kit is missing" >&2
fi

# The seed targets (< 1 ms/token, p95 < 2 ms, p99 < 5 ms, base footprint
# < 50 MB) are stated for a model of about 1M parameters.
one_m=$work/synthetic-1m-i2_s.gguf
[ -f "$one_m" ] || "$bitnet" gen-model custom "$one_m" --embd 128 --ff 384 --heads 2 --kv-heads 1 --layers 4 \
    --vocab 1024 --name synthetic-1m --quiet
# shellcheck disable=SC2086
bench_model synthetic-1m "$one_m" 25% $small

bundled=$root/models/bitnet-tinystories-i2_s.gguf
if [ -f "$bundled" ]; then
    # shellcheck disable=SC2086
    bench_model bitnet-tinystories "$bundled" 25% $small
    text=$root/../shared/data/tinystories/tinystories_val_hf_prefix.txt
    if [ -f "$text" ]; then
        echo
        echo "Perplexity: \`bitnet perplexity -m $(basename "$bundled") -f $(basename "$text") --ctx 256 --chunks 40\`"
        echo
        "$bitnet" perplexity -m "$bundled" -f "$text" --ctx 256 --chunks 40 -q | sed 's/^/    /'
    fi
else
    echo "run_suite.sh: skipping the bundled model: $bundled does not exist yet" >&2
fi

big=${BITNET_2B4T:-$work/2b4t-i2_s.gguf}
if [ ! -f "$big" ]; then
    echo "run_suite.sh: writing the 2B4T-shaped model to $big (1.2 GB, once)" >&2
    "$bitnet" gen-model 2b4t "$big" --quiet
fi
# shellcheck disable=SC2086
bench_model 2b4t-shaped "$big" 10% $large
if [ $quick = 0 ]; then
    echo
    echo "Where the time goes: \`bitnet bench -m $(basename "$big") -p 128 -n 32 -t 2 -r 1 --profile --no-probe\`"
    echo
    "$bitnet" bench -m "$big" -p 128 -n 32 -t 2 -r 1 --profile --no-probe -q | sed -n '/^profile of/,$p'
fi

exit $status
