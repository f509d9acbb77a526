# cli_lib.sh - what the shell tests of the dspipe command share: a scratch directory, counters and checks. Sourced, not run.
#
#   . "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"
#   cli_begin NAME          # a fresh work directory (removed on exit), cd into it
#   expect 0 name -- CMD... # run CMD (stdout in ./out, stderr in ./err), check its status
#   has FILE TEXT NAME      # FILE contains TEXT; hasnt: it does not
#   check NAME WANT GOT     # GOT is WANT; wait_lines FILE N: a journal has N lines
#   interrupt SIG JOURNAL -- CMD...  # CMD in the background, SIG once 5 items are done
#   cli_end NAME            # print the counts, exit 1 if anything failed

DSPIPE=${DSPIPE_BIN:?run through make check}
passed=0
failed=0

cli_begin() {
    WORK=$(mktemp -d "/tmp/dsp_$1.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    cd "$WORK" || exit 1
}

ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# expect STATUS NAME -- CMD...: run CMD, keep stdout/stderr in out/err
expect() {
    local want=$1 name=$2
    shift 3
    "$@" >out 2>err </dev/null
    local got=$?
    if [ "$got" -eq "$want" ]; then ok; else
        fail "$name: exit $got, want $want"; sed 's/^/    /' err >&2; fi
}

# has FILE TEXT NAME: FILE contains TEXT
has() {
    if grep -qF -- "$2" "$1"; then ok; else
        fail "$3: '$2' not in $1"; sed 's/^/    /' "$1" >&2; fi
}

# hasnt FILE TEXT NAME: FILE does not contain TEXT
hasnt() {
    if grep -qF -- "$2" "$1"; then
        fail "$3: '$2' in $1"; sed 's/^/    /' "$1" >&2; else ok; fi
}

lines() { wc -l <"$1" | tr -d ' '; }

# check NAME WANT GOT: GOT (a number, a word) is WANT
check() {
    if [ "$3" = "$2" ]; then ok; else fail "$1: got '$3', want '$2'"; fi
}

# complete FILE: the number of complete lines of a JSON-lines file (a
# completion journal), 0 when it does not exist
complete() { grep -c '^{.*}$' "$1" 2>/dev/null || echo 0; }

# wait_lines FILE N: until FILE has N complete lines (at most 60 s)
wait_lines() {
    local i
    for i in $(seq 600); do
        [ "$(complete "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# interrupt SIG JOURNAL -- CMD...: run CMD in the background (stdout in ./out,
# stderr in ./err) and send it SIG once JOURNAL lists 5 items; the status is
# CMD's exit status
interrupt() {
    local sig=$1 journal=$2 pid
    shift 3
    "$@" >out 2>err </dev/null &
    pid=$!
    wait_lines "$journal" 5 || fail "$journal: no progress"
    kill -"$sig" "$pid"
    wait "$pid" 2>/dev/null
}

cli_end() {
    echo "$1: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
