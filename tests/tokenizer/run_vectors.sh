#!/bin/sh
# Tokenizer conformance through the CLI: runs the kit's check_tokenizer.py on
# `bitnet tokenize` for each tokenizer file, and a tokenize -> detokenize
# round trip of TinyStories text.
#
# usage: run_vectors.sh BUILD_DIR_OR_BITNET_BINARY [SHARED_DIR] [WHICH...]
#   WHICH: llama3-json llama3-tiktoken llama2-json llama2-model roundtrip
#          (default: llama3-json llama2-json llama2-model roundtrip)
# Prints "tokenizer vectors: PASS" (or FAIL) as its last line; exit status 0
# only when every check passed.
set -u
bin=${1:?usage: run_vectors.sh BUILD_DIR_OR_BITNET_BINARY [SHARED_DIR] [WHICH...]}
[ -d "$bin" ] && bin="$bin/bitnet"
here=$(cd "$(dirname "$0")" && pwd)
shared=${2:-$here/../../../shared}
[ $# -ge 2 ] && shift 2 || shift $#
which=${*:-llama3-json llama2-json llama2-model roundtrip}
kit=$shared/conformance
toks=$shared/data/tokenizers
py=${PYTHON:-python3}
status=0

check() { # VECTORS TOKENIZER_FILE
    "$py" "$kit/tools/check_tokenizer.py" "$kit/tokenizer-vectors/$1" -- \
        "$bin" tokenize --tokenizer "$2" --no-bos --file '{text}' | tail -n 11
    # the checker's own exit status is lost in the pipe: read its summary
}

for w in $which; do
    case $w in
    llama3-json) out=$(check llama3-vectors.json "$toks/llama3/tokenizer.json") ;;
    llama3-tiktoken) out=$(check llama3-vectors.json "$toks/llama3/tokenizer.model") ;;
    llama2-json) out=$(check llama2-vectors.json "$toks/llama2/tokenizer.json") ;;
    llama2-model) out=$(check llama2-vectors.json "$toks/llama2/tokenizer.model") ;;
    roundtrip)
        tmp=$(mktemp -d)
        out="roundtrip: PASS"
        for tk in "$toks/llama3/tokenizer.json" "$toks/llama2/tokenizer.model"; do
            for f in "$shared/data/tinystories/tinystories_sample_cs336.txt" \
                     "$shared/data/tinystories/tinystories_val_hf_prefix.txt"; do
                "$bin" tokenize --tokenizer "$tk" --file "$f" > "$tmp/ids" &&
                    "$bin" detokenize --tokenizer "$tk" < "$tmp/ids" > "$tmp/text" &&
                    cmp -s "$f" "$tmp/text" || out="roundtrip: FAIL ($tk, $f)"
            done
        done
        rm -rf "$tmp"
        ;;
    *) echo "run_vectors.sh: unknown check '$w'" >&2; exit 2 ;;
    esac
    echo "$out"
    case $(echo "$out" | tail -n 1) in
    *PASS*) ;;
    *) status=1 ;;
    esac
done
[ $status -eq 0 ] && echo "tokenizer vectors: PASS" || echo "tokenizer vectors: FAIL"
exit $status
