#!/usr/bin/env bash
# test_action_cli.sh - pipelines/action_recognition.pipe with the shipped action_tiny model: the labels of freshly made clips, bad files recorded in errors.jsonl, exit 3.
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"

command -v ffmpeg >/dev/null || { echo "ffmpeg is missing: skipped"; exit 77; }
python3 -c "import numpy" 2>/dev/null || { echo "python3 with numpy is missing: skipped"; exit 77; }
"$DSPIPE" inspect video.decode >/dev/null 2>&1 || { echo "video.decode is not built (no FFmpeg): skipped"; exit 77; }
top="$TESTS_SRCDIR/.."

cli_begin test_action_cli

# one clip of each class, in every codec make_clips.py rotates through
python3 "$top/examples/action_tiny/make_clips.py" videos --per-class 1 --seed 11 --labels labels.csv >/dev/null ||
    { fail "make_clips.py failed"; cli_end test_action_cli; exit 1; }
good=$(($(lines labels.csv) - 1))
first=$(sed -n 2p labels.csv | cut -d, -f1)
mkdir -p videos/bad
: >videos/bad/empty.mp4
echo "not a video at all" >videos/bad/notes.mp4
head -c 1500 "videos/$first" >videos/bad/truncated.${first##*.}
# a whole file with text over its middle
sz=$(wc -c <"videos/$first")
cp "videos/$first" videos/bad/corrupt.${first##*.}
yes "garbage" | head -c $((sz / 2)) | dd of=videos/bad/corrupt.${first##*.} bs=1 seek=$((sz / 4)) conv=notrunc status=none

expect 3 run -- "$DSPIPE" -q "$top/pipelines/action_recognition.pipe" videos res

# every good clip labelled as make_clips.py drew it
[ "$(lines res/predictions.jsonl)" = "$good" ] && ok ||
    fail "want $good predictions, got $(lines res/predictions.jsonl)"
[ "$(lines res/predictions.csv)" = $((good + 1)) ] && ok || fail "want $good csv rows + header"
has res/predictions.csv 'path,label,score,topk' csv-header
tail -n +2 labels.csv | tr -d '\r' | while IFS=, read -r path label; do
    row=$(grep -F "videos/$path," res/predictions.csv | tr -d '\r')
    got=$(echo "$row" | cut -d, -f2)
    [ "$got" = "$label" ] || echo "$path: labelled '$got', is '$label'"
done >mislabelled
[ -s mislabelled ] && fail "labels differ: $(cat mislabelled)" || ok
has res/predictions.jsonl '"topk":[{"label":' topk
[ "$(grep -o '"label":' res/predictions.jsonl | wc -l)" = $((good * 4)) ] && ok ||
    fail "want label + 3 topk labels per video"

# the four bad files: one errors.jsonl line each, naming the file and the reason
[ "$(lines res/errors.jsonl)" = 4 ] && ok || fail "want 4 errors, got $(lines res/errors.jsonl)"
has res/errors.jsonl 'empty.mp4: empty (0 bytes): not a video' empty
has res/errors.jsonl 'notes.mp4: not a video: the content is text' text
has res/errors.jsonl 'truncated.' truncated
has res/errors.jsonl 'corrupt.' corrupt
hasnt res/predictions.csv 'bad/' no-bad-predictions

cli_end test_action_cli
