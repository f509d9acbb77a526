#!/usr/bin/env bash
# test_resume_sinks.sh - sink.jsonl and csv.write under --resume: side files, killed and interrupted runs, failed items, corrupt side files.
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"
PIPE=$TESTS_SRCDIR/pipes/resume_sinks.pipe

cli_begin test_resume_sinks

# same NAME DIR: DIR's outputs are the reference's, byte for byte, and no
# side file is left
same() {
    if cmp -s ref/items.jsonl "$2/items.jsonl" && cmp -s ref/items.csv "$2/items.csv"; then
        ok; else fail "$1: outputs differ from the uninterrupted run"; fi
    if [ -e "$2/items.jsonl.part" ] || [ -e "$2/items.csv.part" ]; then
        fail "$1: a side file is left after a complete run"; else ok; fi
}

# killed DIR: run the pipe into DIR, SIGKILL it once 5 items are journaled
killed() { interrupt KILL "$1/done.jsonl" -- "$DSPIPE" -j 2 "$PIPE" "$1"; }

# ---- the reference: an uninterrupted run ---------------------------------------
# resume_sinks.pipe args: out n ms every
expect 0 reference -- "$DSPIPE" -j 2 "$PIPE" ref 30 0
check reference-records 60 "$(lines ref/items.jsonl)"
check reference-rows 61 "$(lines ref/items.csv)"
check reference-unique 60 "$(sort -u ref/items.jsonl | wc -l)"
has ref/items.csv "source,v" reference-header
if [ -e ref/items.jsonl.part ]; then fail "reference: side file left"; else ok; fi

# ---- SIGKILL midway: no final file, the side files hold what was written --------
killed kill
done1=$(complete kill/done.jsonl)
if [ "$done1" -ge 5 ] && [ "$done1" -lt 30 ]; then ok; else fail "sigkill: $done1 journaled"; fi
if [ -e kill/items.jsonl ] || [ -e kill/items.csv ] || ls -A kill | grep -q tmp; then
    fail "sigkill: a final or temporary file exists: $(ls -A kill)"; else ok; fi
if [ "$(complete kill/items.jsonl.part)" -gt $((2 * done1)) ]; then ok; else
    fail "sigkill: the side file holds fewer records than the journaled items have"; fi
expect 0 sigkill-resume -- "$DSPIPE" -j 2 --resume "$PIPE" kill 30 0
has err "resume: $done1 of 30 items already done (kill/done.jsonl)" sigkill-resume
has err "kill/items.jsonl.part: $((2 * done1)) records of finished items kept" sigkill-kept
same sigkill-resume kill

# ---- records written but not journaled are dropped: no duplicates ---------------
killed drop
head -n 3 drop/done.jsonl >drop/cut && mv drop/cut drop/done.jsonl
expect 0 drop-resume -- "$DSPIPE" -j 2 --resume "$PIPE" drop 30 0
has err "drop/items.csv.part: 6 records of finished items kept" drop-kept
hasnt err "kept, 0 of items that run again dropped" drop-dropped
same drop-resume drop

# ---- SIGINT: a partial output is committed, the side file stays -----------------
interrupt INT int/done.jsonl -- "$DSPIPE" -j 2 --queue 2 "$PIPE" int 30
check sigint-exit 130 $?
done1=$(complete int/done.jsonl)
check sigint-partial $((2 * done1)) "$(lines int/items.jsonl)"
if [ -e int/items.jsonl.part ]; then ok; else fail "sigint: the side file was removed"; fi
expect 0 sigint-resume -- "$DSPIPE" -j 2 --resume "$PIPE" int 30 0
same sigint-resume int

# ---- failed items: kept out, retried by --resume, put back in item order ---------
expect 3 failing -- "$DSPIPE" -j 2 "$PIPE" fail 30 0 4
check failing-records 46 "$(lines fail/items.jsonl)"
if [ -e fail/items.csv.part ]; then ok; else fail "failing: the side file was removed"; fi
expect 0 retry -- "$DSPIPE" -j 2 --resume "$PIPE" fail 30 0 0
has err "resume: 23 of 30 items already done" retry
same retry fail

# ---- a killed run's incomplete last side-file line is left out -------------------
killed cut
head -c 25 ref/items.jsonl >>cut/items.jsonl.part
expect 0 cut-resume -- "$DSPIPE" -j 2 --resume "$PIPE" cut 30 0
has err "the last line is incomplete (the run that wrote it was killed); left out" cut-warned
same cut-resume cut

# ---- a corrupt line in the middle: an error naming file:line, nothing runs -------
killed bad
sed -i '3s/.*/{"item": 1, "text"/' bad/items.jsonl.part
expect 1 corrupt -- "$DSPIPE" -j 2 --resume "$PIPE" bad 30 0
has err "bad/items.jsonl.part:3: not a side-file record" corrupt
if [ -e bad/items.jsonl ]; then fail "corrupt: an output was written"; else ok; fi
sed -i '1s/.*/{"op":"sink.json"}/' bad/items.jsonl.part
expect 1 not-a-side-file -- "$DSPIPE" -j 2 --resume "$PIPE" bad 30 0
has err "bad/items.jsonl.part:1: not the side file of a sink.jsonl" not-a-side-file

# ---- --resume after a complete run leaves the outputs as they are ----------------
cp -r ref done
expect 0 all-done -- "$DSPIPE" -j 2 --resume "$PIPE" done 30 0
has err "done/items.jsonl was completed by an earlier run; it is left as it is" all-done
same all-done done
# ... and new items cannot be slipped into it: they fail, the output stays
expect 3 all-done-more -- "$DSPIPE" -j 2 --resume "$PIPE" done 32 0
has done/errors.jsonl "was completed by an earlier run" all-done-more
same all-done-more done

# ---- a fresh run over a killed run's side files starts them afresh --------------
killed fresh
expect 0 fresh -- "$DSPIPE" -j 2 "$PIPE" fresh 30 0
same fresh fresh

# ---- no journal: the records go straight to the output --------------------------
expect 0 no-journal -- "$DSPIPE" -j 2 --errors /dev/null "$PIPE" nj 30 0
same no-journal nj

cli_end test_resume_sinks
