# cli_lib.sh - what the shell tests of the dspipe command share: a scratch directory, counters and checks. Sourced, not run.
#
#   . "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"
#   cli_begin NAME          # a fresh work directory (removed on exit), cd into it
#   expect 0 name -- CMD... # run CMD (stdout in ./out, stderr in ./err), check its status
#   has FILE TEXT NAME      # FILE contains TEXT; hasnt: it does not
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

cli_end() {
    echo "$1: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
