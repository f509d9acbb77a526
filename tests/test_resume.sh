#!/usr/bin/env bash
# test_resume.sh - the completion journal and --resume: interrupted and killed runs, failed items, bad journals.
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"
PIPES=$TESTS_SRCDIR/pipes

cli_begin test_resume

# ran FILE: how many items test.count saw in the run whose stderr is FILE
ran() { sed -n 's/^\[c@test.count\] \([0-9]*\) packets$/\1/p' "$1"; }

# same_files REF DIR NAME: DIR holds exactly REF's .npy files, byte for byte
same_files() {
    local f bad=0
    for f in "$1"/*.npy; do cmp -s "$f" "$2/${f##*/}" || bad=1; done
    [ "$(ls "$2"/*.npy | wc -l)" = "$(ls "$1"/*.npy | wc -l)" ] || bad=1
    if [ $bad = 0 ]; then ok; else fail "$3: outputs differ from the uninterrupted run"; fi
}

# ---- an uninterrupted run: the reference, and the journal it leaves -----------
# resume_gen.pipe args: out n ms every
expect 0 reference -- "$DSPIPE" -j 2 "$PIPES/resume_gen.pipe" ref 40 0
check reference-ran 40 "$(ran err)"
check reference-files 40 "$(ls ref/*.npy | wc -l)"
check reference-journal 40 "$(complete ref/done.jsonl)"
has ref/done.jsonl '{"key":"g:0","item":0,"time":"' journal-line

# all done: --resume runs nothing
expect 0 all-done -- "$DSPIPE" -j 2 --resume "$PIPES/resume_gen.pipe" ref 40 0
check all-done-ran 0 "$(ran err)"
has err "resume: 40 of 40 items already done (ref/done.jsonl); 0 ran" all-done
has err "0 items in" all-done-summary
has err "0 failed, 40 already done" all-done-summary
check all-done-journal 40 "$(complete ref/done.jsonl)"

# ---- SIGINT midway: what finished is journaled, --resume runs only the rest ----
interrupt INT int/done.jsonl -- "$DSPIPE" -j 2 --queue 2 "$PIPES/resume_gen.pipe" int 40
check sigint-exit 130 $?
done1=$(complete int/done.jsonl)
if [ "$done1" -ge 5 ] && [ "$done1" -lt 40 ]; then ok; else fail "sigint: $done1 journaled"; fi
# drained cleanly: every journaled item has its file, and no other item does
check sigint-files "$done1" "$(ls int/*.npy | wc -l)"
expect 0 sigint-resume -- "$DSPIPE" -j 2 --resume "$PIPES/resume_gen.pipe" int 40 0
check sigint-resume-ran $((40 - done1)) "$(ran err)"
has err "resume: $done1 of 40 items already done (int/done.jsonl); $((40 - done1)) ran" \
    sigint-resume
same_files ref int sigint-resume
check sigint-resume-journal 40 "$(complete int/done.jsonl)"

# ---- SIGKILL midway: no clean-up at all; the journal holds what finished --------
interrupt KILL kill/done.jsonl -- "$DSPIPE" -j 2 "$PIPES/resume_gen.pipe" kill 40
done1=$(complete kill/done.jsonl)
if [ "$done1" -ge 5 ] && [ "$done1" -lt 40 ]; then ok; else fail "sigkill: $done1 journaled"; fi
expect 0 sigkill-resume -- "$DSPIPE" -j 2 --resume "$PIPES/resume_gen.pipe" kill 40 0
check sigkill-resume-ran $((40 - done1)) "$(ran err)"
same_files ref kill sigkill-resume

# ---- failed items are not journaled, and --resume retries them ------------------
expect 3 failing -- "$DSPIPE" -j 2 "$PIPES/resume_gen.pipe" fail 40 0 4
check failing-journal 30 "$(complete fail/done.jsonl)"
hasnt fail/done.jsonl '"g:3"' failed-not-journaled
expect 0 retry -- "$DSPIPE" -j 2 --resume "$PIPES/resume_gen.pipe" fail 40 0 0
check retry-ran 10 "$(ran err)"
same_files ref fail retry
# items that fail again stay out of the journal, and the exit status says so
head -n 20 ref/done.jsonl >again.jsonl
expect 3 fail-again -- "$DSPIPE" -j 2 --journal again.jsonl --resume \
    "$PIPES/resume_gen.pipe" again 40 0 4
check fail-again-ran 15 "$(ran err)"      # items 20-39 less the 5 failures
check fail-again-journal 35 "$(complete again.jsonl)"

# ---- no journal yet: everything runs, and it says so ----------------------------
expect 0 no-journal -- "$DSPIPE" -j 2 --resume "$PIPES/resume_gen.pipe" fresh 40 0
has err "resume: no journal at fresh/done.jsonl; running every item" no-journal
check no-journal-ran 40 "$(ran err)"
# a run without --resume starts a fresh journal
expect 0 fresh -- "$DSPIPE" -j 2 "$PIPES/resume_gen.pipe" fresh 5 0
check fresh-journal 5 "$(complete fresh/done.jsonl)"

# ---- a journal of another pipeline: its keys just do not match ------------------
sed 's/"key":"g:/"key":"other:/' ref/done.jsonl >other.jsonl
expect 0 other-pipeline -- "$DSPIPE" -j 2 --journal other.jsonl --resume \
    "$PIPES/resume_gen.pipe" other 40 0
check other-pipeline-ran 40 "$(ran err)"
check other-pipeline-appended 80 "$(complete other.jsonl)"

# ---- a killed run's incomplete last line is cut off and its item runs again -----
head -n 39 ref/done.jsonl >cut.jsonl
tail -n 1 ref/done.jsonl | head -c 20 >>cut.jsonl
expect 0 truncated -- "$DSPIPE" -j 2 --journal cut.jsonl --resume "$PIPES/resume_gen.pipe" cut 40 0
has err "cut.jsonl:40: the last line is incomplete" truncated
check truncated-ran 1 "$(ran err)"
check truncated-lines 40 "$(lines cut.jsonl)"
check truncated-complete 40 "$(complete cut.jsonl)"

# ---- a malformed line elsewhere is an error naming file:line; nothing runs -------
sed '3s/.*/{"key": 3}/' ref/done.jsonl >bad.jsonl
expect 1 malformed -- "$DSPIPE" --journal bad.jsonl --resume "$PIPES/resume_gen.pipe" bad 40 0
has err 'bad.jsonl:3: not a journal line (no string "key")' malformed
if [ -e bad/0.npy ]; then fail "malformed: items ran"; else ok; fi
sed '7s/.*/{"key":/' ref/done.jsonl >bad.jsonl
expect 1 not-json -- "$DSPIPE" --journal bad.jsonl --resume "$PIPES/resume_gen.pipe" bad 40 0
has err "bad.jsonl:7: not a journal line" not-json

# ---- a source keyed by path: files.list over a folder, option journal ------------
"$DSPIPE" -q "$PIPES/resume_gen.pipe" in 30 0 >out 2>err
expect 0 files-reference -- "$DSPIPE" -j 2 "$PIPES/resume_files.pipe" "$WORK/in" fref 0
interrupt INT files/journal.jsonl -- "$DSPIPE" -j 2 --queue 2 "$PIPES/resume_files.pipe" \
    "$WORK/in" files
done1=$(complete files/journal.jsonl)
has files/journal.jsonl "{\"key\":\"$WORK/in/" files-key-is-path
expect 0 files-resume -- "$DSPIPE" -j 2 --resume "$PIPES/resume_files.pipe" "$WORK/in" files 0
check files-resume-ran $((30 - done1)) "$(ran err)"
same_files fref files files-resume
if [ -e files/done.jsonl ]; then fail "files: journal not where option journal put it"; else ok; fi

# ---- pipelines that cannot resume say which node and why; exit 2 ----------------
cat >gather.pipe <<'PIPE'
g = test.gen count=5
s = sink.json path=gather/items.json
g -> s
PIPE
expect 2 gather -- "$DSPIPE" --resume gather.pipe
has err "cannot resume: node 's' (sink.json, gather.pipe:2) gathers items" gather
if [ -e gather/items.json ]; then fail "gather: it ran"; else ok; fi
expect 0 gather-no-resume -- "$DSPIPE" gather.pipe
if [ -e done.jsonl ]; then fail "gather: a journal was written"; else ok; fi
cat >two.pipe <<'PIPE'
a = test.gen count=5
b = test.gen count=5
ca = test.count
cb = test.count
a -> ca
b -> cb
PIPE
expect 2 two-sources -- "$DSPIPE" --resume two.pipe
has err "two sources, 'a' and 'b'" two-sources

expect 0 inspect-gather -- "$DSPIPE" inspect sink.json
has out "gather (no --resume)" inspect-gather
expect 0 inspect-resumable -- "$DSPIPE" inspect sink.jsonl
hasnt out "gather" inspect-resumable
expect 0 inspect-per-item -- "$DSPIPE" inspect tensor.write
hasnt out "gather" inspect-per-item

expect 0 help -- "$DSPIPE" --help
has out "--resume" help
has out "--journal FILE" help

cli_end test_resume
