#!/usr/bin/env bash
# test.sh - everything CI checks: build, unit and integration tests, ASan/UBSan, distcheck, the out-of-tree plugin example.
#
#   bash scripts/test.sh            # as root on Debian 12 (installs missing packages)
#
# Build directories live under build/test/ (ignored by git); the source tree
# itself only gets the autotools files. Stops at the first failing step and
# says which one it was. Environment: JOBS (default: nproc),
# SKIP_ASAN=1 / SKIP_DISTCHECK=1 to leave out the slow steps locally.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=$ROOT/build/test
JOBS=${JOBS:-$(nproc)}
STEP="starting"
STEP_T0=$SECONDS
SUMMARY=()

step() {
    [ "$STEP" = starting ] || SUMMARY+=("$STEP $((SECONDS - STEP_T0))s")
    STEP=$1
    STEP_T0=$SECONDS
    printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$STEP"
}

on_error() {
    echo >&2
    echo "test.sh: FAILED at step: $STEP (after $((SECONDS - STEP_T0))s; total ${SECONDS}s)" >&2
}
trap on_error ERR

# Print the logs of failed tests (automake's test-suite.log holds exactly those).
show_test_logs() {
    local log
    while IFS= read -r log; do
        echo "---------------- $log ----------------" >&2
        cat "$log" >&2
    done < <(find "$1" -name test-suite.log 2>/dev/null)
    return 1
}

configure_in() {    # DIR [configure args...]
    local dir=$1
    shift
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && "$ROOT/configure" "$@" >configure.out 2>&1) ||
        { cat "$dir/configure.out" >&2; return 1; }
    sed -n '/configured$/,/ASan/p' "$dir/configure.out"
}

cd "$ROOT"

step "install dependencies"
bash scripts/install-deps.sh

step "autoreconf"
mkdir -p m4                         # not in git; aclocal wants it to exist
autoreconf -fi

step "configure and build (build/test/default)"
configure_in "$B/default"
make -C "$B/default" -j"$JOBS" >/dev/null

step "make check"
make -C "$B/default" -j"$JOBS" check || show_test_logs "$B/default"

if [ "${SKIP_ASAN:-0}" != 1 ]; then
    # CUDA is left out here: its module is not instrumented and slow to compile.
    step "ASan/UBSan build and make check (build/test/asan)"
    configure_in "$B/asan" --enable-asan --without-cuda
    make -C "$B/asan" -j"$JOBS" >/dev/null
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        make -C "$B/asan" -j"$JOBS" check || show_test_logs "$B/asan"
fi

if [ "${SKIP_DISTCHECK:-0}" != 1 ]; then
    step "make distcheck"
    make -C "$B/default" -j"$JOBS" distcheck ||
        show_test_logs "$B/default/dspipe-"*"/_build"
fi

step "example plugin against a staged install (make install DESTDIR)"
STAGE=$B/stage
PREFIX=$(sed -n 's/^prefix=//p' "$B/default/dspipe.pc")
rm -rf "$STAGE" "$B/example"
make -C "$B/default" install DESTDIR="$STAGE" >"$B/stage-install.log" 2>&1 ||
    { cat "$B/stage-install.log" >&2; false; }
mkdir -p "$B/example"
cp examples/custom_op/stats_op.c "$B/example/"
(
    cd "$B/example"
    export PKG_CONFIG_SYSROOT_DIR=$STAGE
    export PKG_CONFIG_PATH=$STAGE$PREFIX/lib/pkgconfig
    echo "pkg-config --cflags --libs dspipe: $(pkg-config --cflags --libs dspipe)"
    # the documented line, with warnings as errors: the example must stay clean
    cc -Wall -Wextra -Werror -shared -fPIC stats_op.c \
        $(pkg-config --cflags --libs dspipe) -o stats_op.so

    # the staged dspipe, its library and its plugins only
    export LD_LIBRARY_PATH=$STAGE$PREFIX/lib
    export DSPIPE_NO_DEFAULT_PLUGINS=1
    export DSPIPE_PLUGIN_PATH=$STAGE$PREFIX/lib/dspipe/plugins
    dspipe=$STAGE$PREFIX/bin/dspipe
    "$dspipe" -q "$ROOT/pipelines/sample_tensors.pipe" samples 5 1000
    "$dspipe" -q --plugin-path . "$ROOT/examples/custom_op/stats.pipe" samples out
    line=$(grep '"name":"sample_3.npy"' out/stats.jsonl)
    echo "$line"
    mean=$(printf '%s\n' "$line" | sed -n 's/.*"stats":{"x":{.*"mean":\([^,}]*\).*/\1/p')
    count=$(printf '%s\n' "$line" | sed -n 's/.*"stats":{"x":{.*"count":\([^,}]*\).*/\1/p')
    if [ "$mean" != "3.0" ] || [ "$count" != "1000" ]; then
        echo "expected mean 3.0 and count 1000 for sample_3.npy, got mean '$mean' count '$count'" >&2
        exit 1
    fi
    echo "stats.summary: sample_3.npy has mean $mean over $count elements, as generated"
)

step "done"
trap - ERR
echo
joined=$(printf '%s; ' "${SUMMARY[@]}")
echo "test.sh: PASSED in ${SECONDS}s (${joined%; })"
