#!/bin/sh
# bench/ct/run.sh - pipelines/medical_ct.pipe on one 300-slice 512x512 phantom study:
# wall time, per-node times (--profile), the ct operators' stage times (-v) and peak memory.
#
#   sh bench/ct/run.sh [BUILD_DIR] [SEED] [THREADS]
#
# BUILD_DIR (default build/release) holds core/dspipe and the plugins; the study is
# generated once into /tmp/ct_bench/seed_SEED (needs /usr/bin/python3 with pydicom + numpy).
# Targets (issue 6): <= 15 s end to end on 2 threads, peak RSS <= 4x the int16 volume
# (4 x 300 x 512 x 512 x 2 bytes = 629 MB).
set -eu
build=$(cd "${1:-build/release}" && pwd)
seed=${2:-1}
threads=${3:-2}
here=$(cd "$(dirname "$0")/../.." && pwd)
data=/tmp/ct_bench/seed_$seed
[ -f "$data/truth.json" ] || /usr/bin/python3 "$here/examples/ct_phantom/make_phantom.py" "$data" --seed "$seed"
DSPIPE_PLUGIN_PATH="$build/plugins/builtin/.libs:$build/plugins/dicom/.libs:$build/plugins/ct/.libs:$build/encoders/ct/.libs"
export DSPIPE_PLUGIN_PATH
out=$(mktemp -d /tmp/ct_bench_out.XXXXXX)
/usr/bin/time -v "$build/core/dspipe" -v --profile --threads "$threads" \
    "$here/pipelines/medical_ct.pipe" "$data" "$out" 2>"$out.log"
grep -E 'times \(s\)|^node|^files|^studies|^series|^iso|^lungs|^nodules|^classify|^report|^sc |^sr |^dspipe:|Elapsed|Maximum resident' "$out.log"
rm -rf "$out" "$out.log"
