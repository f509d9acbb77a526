#!/usr/bin/env bash
# demo.sh - quick start: install deps, build and install dspipe, build the example plugin, run it, then the headline demo (lung nodules on a synthetic chest CT) and action labels for generated clips.
#
#   bash scripts/demo.sh            # as root on Debian 12 (make install goes to /usr/local)
#
# Re-runnable: every step overwrites its own output. Nothing is written in
# the source tree except the autotools files (configure, Makefile.in, ...),
# which .gitignore lists, and build/demo/.
#
# Environment: JOBS (default: nproc), COUNT and SIZE (sample data: number of
# files, elements per file; default 8 and 100000).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build/demo             # build/ is in .gitignore
JOBS=${JOBS:-$(nproc)}
COUNT=${COUNT:-8}
SIZE=${SIZE:-100000}
STEP="starting"

say() { printf '\n==> %s\n' "$*"; STEP=$*; }
trap 'echo >&2; echo "demo.sh: FAILED during: $STEP" >&2' ERR

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

say "installing build dependencies"
bash "$ROOT/scripts/install-deps.sh"

say "generating the build system (autoreconf -fi)"
cd "$ROOT"
mkdir -p m4                         # not in git; aclocal wants it to exist
autoreconf -fi

say "configuring in $BUILD/dspipe"
mkdir -p "$BUILD/dspipe"
cd "$BUILD/dspipe"
"$ROOT/configure" >configure.out 2>&1 || { cat configure.out; false; }
sed -n '/configured$/,/ASan/p' configure.out    # the summary of what was found

say "building (make -j$JOBS)"
make -j"$JOBS" >build.log 2>&1 || { tail -n 40 build.log; false; }

say "installing to /usr/local (make install, ldconfig)"
"${SUDO[@]}" make install >install.log 2>&1 || { cat install.log; false; }
"${SUDO[@]}" ldconfig
echo "installed: $(command -v dspipe) - $(dspipe --version)"

say "building the example plugin examples/custom_op against the installed dspipe"
mkdir -p "$BUILD/custom_op"
cd "$BUILD/custom_op"
cp "$ROOT/examples/custom_op/stats_op.c" .
echo "cc -shared -fPIC stats_op.c \$(pkg-config --cflags --libs dspipe) -o stats_op.so"
cc -shared -fPIC stats_op.c $(pkg-config --cflags --libs dspipe) -o stats_op.so
dspipe --plugin-path "$BUILD/custom_op" inspect stats.summary | sed -n '1,2p'

say "generating $COUNT sample tensors with dspipe (pipelines/sample_tensors.pipe)"
rm -rf "$BUILD/samples"
dspipe -q "$ROOT/pipelines/sample_tensors.pipe" "$BUILD/samples" "$COUNT" "$SIZE"
ls "$BUILD/samples" | head -n 4
echo "... ($(ls "$BUILD/samples" | wc -l) files)"

say "running examples/custom_op/stats.pipe on them"
rm -rf "$BUILD/stats"
dspipe --plugin-path "$BUILD/custom_op" "$ROOT/examples/custom_op/stats.pipe" \
    "$BUILD/samples" "$BUILD/stats"

say "first lines of $BUILD/stats/stats.jsonl"
head -n 3 "$BUILD/stats/stats.jsonl"

say "the headline demo: a synthetic chest CT (examples/ct_phantom) through pipelines/medical_ct.pipe"
rm -rf "$BUILD/ct_study" "$BUILD/ct_report"
# Debian's python3 has python3-pydicom and python3-numpy (install-deps.sh)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
"$PY" "$ROOT/examples/ct_phantom/make_phantom.py" "$BUILD/ct_study" --seed 1
dspipe "$ROOT/pipelines/medical_ct.pipe" "$BUILD/ct_study" "$BUILD/ct_report"
echo "truth (what the phantom drew):"
"$PY" - "$BUILD/ct_study/truth.json" <<'PYEOF'
import json, sys
for n in json.load(open(sys.argv[1]))["nodules"]:
    print("  %-12s %5.1f mm at (%.1f, %.1f, %.1f) mm" % (n["kind"], n["diameter_mm"], *n["center_mm"]))
PYEOF

say "action recognition: 40 synthetic motion clips (examples/action_tiny) through pipelines/action_recognition.pipe"
rm -rf "$BUILD/clips" "$BUILD/actions"
"$PY" "$ROOT/examples/action_tiny/make_clips.py" "$BUILD/clips" --per-class 5 --seed 7 \
    --labels "$BUILD/clips.csv" | tail -n 1
dspipe "$ROOT/pipelines/action_recognition.pipe" "$BUILD/clips" "$BUILD/actions" --set sheets=true
head -n 4 "$BUILD/actions/predictions.csv"
# the clips' true labels against dspipe's (both files name clips relative to / inside clips/)
"$PY" - "$BUILD/clips.csv" "$BUILD/actions/predictions.csv" <<'PYEOF'
import csv, os, sys
truth = {os.path.basename(r["path"]): r["label"] for r in csv.DictReader(open(sys.argv[1]))}
pred = {os.path.basename(r["path"]): r["label"] for r in csv.DictReader(open(sys.argv[2]))}
right = sum(pred.get(k) == v for k, v in truth.items())
print("action labels: %d of %d clips right" % (right, len(truth)))
PYEOF

cat <<EOF

Done.
  dspipe              $(command -v dspipe) (plugins in /usr/local/lib/dspipe/plugins)
  example plugin      $BUILD/custom_op/stats_op.so
  sample data         $BUILD/samples/
  statistics          $BUILD/stats/stats.jsonl
  chest CT study      $BUILD/ct_study/ (DICOM, truth.json)
  CT findings         $BUILD/ct_report/ (findings.json, key images)
  action clips        $BUILD/clips/ (labels in $BUILD/clips.csv)
  action labels       $BUILD/actions/ (predictions.jsonl, predictions.csv, sheets/*/*.png)
Try:
  dspipe plugins
  dspipe --plugin-path $BUILD/custom_op inspect stats.summary
  dspipe --plugin-path $BUILD/custom_op --profile $ROOT/examples/custom_op/stats.pipe $BUILD/samples $BUILD/stats
Next: docs/plugins.md (write your own operator), docs/cli.md, docs/architecture.md.
EOF
