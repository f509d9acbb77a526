#!/usr/bin/env bash
# test_cli.sh - integration tests of the dspipe command: subcommands, exit codes, outputs, signals.
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"

cli_begin test_cli

# ---- basics -----------------------------------------------------------------
expect 0 version -- "$DSPIPE" --version
has out "dspipe 0.1.0" version
expect 0 help -- "$DSPIPE" --help
has out "exit status" help
expect 2 no-args -- "$DSPIPE"
expect 2 bad-option -- "$DSPIPE" --no-such-option x.pipe
expect 2 bad-threads -- "$DSPIPE" --threads 0 x.pipe
has err "--threads 0" bad-threads
expect 2 missing-file -- "$DSPIPE" nowhere.pipe
has err "nowhere.pipe" missing-file

expect 0 plugins -- "$DSPIPE" plugins
has out "test.gen" plugins
has out "sink.jsonl" plugins
expect 0 inspect -- "$DSPIPE" inspect test.fail
has out "every" inspect
has out "Inputs" inspect
expect 2 inspect-unknown -- "$DSPIPE" inspect test.fial
has err "test.fial" inspect-unknown

# ---- validation -------------------------------------------------------------
cat >good.pipe <<'EOF'
# a small pipeline
arg n = 20
arg out = res
g = test.gen count=$n
a = test.noop
s = sink.jsonl path=$out/items.jsonl
g -> a -> s
EOF
expect 0 validate -- "$DSPIPE" validate good.pipe
cat >bad.pipe <<'EOF'
g = test.gen count=10
a = test.nop
g -> a
EOF
expect 2 validate-bad -- "$DSPIPE" validate bad.pipe
has err "bad.pipe:2:5: error" validate-bad
has err "did you mean 'test.noop'" validate-bad
has err "^" validate-bad
expect 2 run-bad -- "$DSPIPE" bad.pipe
expect 2 extra-positional -- "$DSPIPE" validate good.pipe 1 2 3
expect 2 unknown-set -- "$DSPIPE" validate good.pipe --set nn=4
has err "nn" unknown-set

expect 0 graph -- "$DSPIPE" graph good.pipe
has out "digraph" graph
if command -v dot >/dev/null; then
    if dot -Tsvg out >/dev/null 2>&1; then ok; else fail "graph: dot rejects the output"; fi
fi

# ---- running ------------------------------------------------------------------
expect 0 run -- "$DSPIPE" -q good.pipe 50
[ "$(lines res/items.jsonl)" = 50 ] && ok || fail "run: $(lines res/items.jsonl) records, want 50"
expect 0 run-set -- "$DSPIPE" -q good.pipe --set out=res2 -j 1
[ "$(lines res2/items.jsonl)" = 20 ] && ok || fail "run-set: want 20 records"
[ ! -e errors.jsonl ] && ok || fail "a clean run wrote errors.jsonl"
# no temporary files left behind by the atomic sink
[ -z "$(find res res2 -name '.*tmp*')" ] && ok || fail "temporary files left in res/"

cat >fail.pipe <<'EOF'
arg out = fres
g = test.gen count=30
f = test.fail every=10
s = sink.jsonl path=$out/items.jsonl
g -> f -> s
EOF
expect 3 skip-failures -- "$DSPIPE" -q fail.pipe
[ "$(lines fres/items.jsonl)" = 27 ] && ok || fail "skip: want 27 records"
[ "$(lines errors.jsonl)" = 3 ] && ok || fail "skip: want 3 error records"
has errors.jsonl '"node":"f"' errors-record
has errors.jsonl '"item":9' errors-record
has errors.jsonl '"input":"gen:9"' errors-record

expect 1 abort -- "$DSPIPE" -q --on-error abort --errors ab.jsonl fail.pipe --set out=ares
has err "item 9" abort
[ ! -e ares/items.jsonl ] && ok || fail "abort left a partial output"
[ "$(lines ab.jsonl)" = 1 ] && ok || fail "abort: want 1 error record"

# the error log's folder is made when the first failure comes (the run's
# output folder, before any sink has written to it)
expect 3 errors-in-new-folder -- "$DSPIPE" -q --errors newdir/sub/errs.jsonl fail.pipe --set out=nres
[ "$(lines newdir/sub/errs.jsonl)" = 3 ] && ok || fail "errors in a new folder: want 3 records"

cat >opt.pipe <<'EOF'
option on_error = abort
option errors = $pipedir/opt-errors.jsonl
g = test.gen count=30
f = test.fail items=[4]
s = sink.null
g -> f -> s
EOF
expect 1 option-abort -- "$DSPIPE" -q opt.pipe
has opt-errors.jsonl '"item":4' option-errors

expect 2 bad-device -- "$DSPIPE" -q good.pipe --set out=ires -j1 --device tpu
has err "tpu" bad-device
cat >init.pipe <<'EOF'
g = test.gen count=3
f = test.fail in_init=true
s = sink.null
g -> f -> s
EOF
expect 1 init-failure -- "$DSPIPE" -q init.pipe
has err "init.pipe:2" init-failure

# --device: auto always runs; cuda fails with a reason when no GPU is usable
expect 0 device-auto -- "$DSPIPE" -q --device auto good.pipe --set out=dres
if grep -q "running on the CPU" err || [ "$(lines dres/items.jsonl)" = 20 ]; then ok; else
    fail "device-auto"; fi

# --profile prints a table with every node
expect 0 profile -- "$DSPIPE" -q --profile good.pipe --set out=pres
has err "us/call" profile
has err "sink.jsonl" profile

# ---- SIGINT: stop the sources, drain, close the sinks, exit 130 -------------
cat >slow.pipe <<'EOF'
g = test.gen count=100000
d = test.delay ms=1
s = sink.jsonl path=slow/items.jsonl
g -> d -> s
EOF
"$DSPIPE" -q slow.pipe >out 2>err &
pid=$!
sleep 1
kill -INT "$pid"
wait "$pid"
st=$?
[ "$st" = 130 ] && ok || fail "sigint: exit $st, want 130"
n=$(lines slow/items.jsonl 2>/dev/null || echo 0)
if [ "$n" -gt 0 ] && [ "$n" -lt 100000 ]; then ok; else fail "sigint: $n records written"; fi
# the file is whole: every line is a complete JSON object
if python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' slow/items.jsonl 2>/dev/null; then
    ok; else fail "sigint: output has a broken line"; fi

cli_end test_cli
