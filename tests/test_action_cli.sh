#!/usr/bin/env bash
# test_action_cli.sh - pipelines/action_recognition.pipe and action_segments.pipe with the shipped action_tiny model: the labels of freshly made clips, bad files recorded in errors.jsonl (exit 3), a contact-sheet PNG per good video with sheets=true, two clips a video averaged, a left-then-rotate video cut into two segments, --resume after a SIGKILL.
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
[ ! -e res/sheets ] && ok || fail "sheets written although sheets=false (the default)"

# ---- contact sheets: one PNG per good video, named by its path below the input folder ---------
mkdir -p sheetvids/a sheetvids/b
cp "videos/$first" sheetvids/a/
cp "videos/$(sed -n 3p labels.csv | cut -d, -f1)" "sheetvids/b/${first##*/}"
cp videos/bad/corrupt.${first##*.} sheetvids/
expect 3 sheets -- "$DSPIPE" -q "$top/pipelines/action_recognition.pipe" sheetvids sheetres --set sheets=true
stem=${first##*/}
stem=${stem%.*}
[ "$(cd sheetres/sheets && find . -type f | sort | tr '\n' ' ')" = "./a/$stem.png ./b/$stem.png " ] && ok ||
    fail "sheets: want a/$stem.png and b/$stem.png, got: $(cd sheetres/sheets && find . -type f)"
[ "$(lines sheetres/errors.jsonl)" = 1 ] && ok || fail "sheets: want 1 error (the corrupt file)"
[ "$(lines sheetres/predictions.csv)" = 3 ] && ok || fail "sheets: want 2 csv rows + header"
# 8 thumbnails of 128 x 128, 4 a row, 2 px apart, under 4 text lines of 16 px: 522 x 326 RGB
for f in sheetres/sheets/a/$stem.png sheetres/sheets/b/$stem.png; do
    python3 -c '
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
assert (w, h, depth, colour) == (522, 326, 8, 2), (w, h, depth, colour)
' "$f" && ok || fail "sheets: $f is not a 522 x 326 RGB PNG"
done
cmp -s sheetres/sheets/a/$stem.png sheetres/sheets/b/$stem.png && fail "sheets: two videos, one picture" || ok

# --set clips=2: two clips a video, one averaged record each (the bad files still fail)
expect 3 run -- "$DSPIPE" -q "$top/pipelines/action_recognition.pipe" videos res2 --set clips=2
[ "$(lines res2/predictions.jsonl)" = "$good" ] && ok ||
    fail "clips=2: want $good predictions, got $(lines res2/predictions.jsonl)"
[ "$(grep -c '"clips":2,' res2/predictions.jsonl)" = "$good" ] && ok || fail "clips=2: meta clips"
[ "$(lines res2/errors.jsonl)" = 4 ] && ok || fail "clips=2: want 4 errors, got $(lines res2/errors.jsonl)"

# ---- --resume: SIGKILL once the first video is journaled, then go on ------------------
# batch=1: in a batch, a video's scores depend in their last digits on its batch mates,
# which a resumed run changes. Items 0-3 are the bad files; they fail, so the first journal
# line comes with a good clip.
expect 3 resume-reference -- "$DSPIPE" -q "$top/pipelines/action_recognition.pipe" videos ref1 \
    --set batch=1
"$DSPIPE" -q "$top/pipelines/action_recognition.pipe" videos kill --set batch=1 >/dev/null 2>&1 &
pid=$!
until [ -s kill/done.jsonl ] || ! kill -0 "$pid" 2>/dev/null; do :; done
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
if [ -e kill/predictions.jsonl ] || [ -e kill/predictions.csv ]; then
    fail "resume: the run ended before it was killed"; else ok; fi
done1=$(complete kill/done.jsonl)
expect 3 resume -- "$DSPIPE" --resume "$top/pipelines/action_recognition.pipe" videos kill \
    --set batch=1
has err "resume: $done1 of $((good + 4)) items already done (kill/done.jsonl)" resume-message
cmp -s ref1/predictions.jsonl kill/predictions.jsonl && ok ||
    fail "resume: predictions.jsonl differs from the uninterrupted run's"
cmp -s ref1/predictions.csv kill/predictions.csv && ok ||
    fail "resume: predictions.csv differs from the uninterrupted run's"
# the bad files failed again: the side files stay for another --resume
[ -e kill/predictions.jsonl.part ] && ok || fail "resume: the side file was removed"

# ---- action_segments.pipe: a clip moving left, then one rotating, as one 4 s video ----------
clip() { tr -d '\r' <labels.csv | grep ",$1\$" | cut -d, -f1; }
mkdir -p seg
ffmpeg -nostdin -v error -i "videos/$(clip left)" -i "videos/$(clip rotate)" \
    -filter_complex '[0:v][1:v]concat=n=2:v=1' -c:v ffv1 seg/left_rotate.mkv
# back-to-back windows of 8 frames, every 3rd: exactly the two clips
expect 0 segments -- "$DSPIPE" -q "$top/pipelines/action_segments.pipe" seg segout --set stride=8
[ "$(lines segout/windows.csv)" = 3 ] && ok || fail "segments: want 2 windows + header"
has segout/segments.jsonl '"num_segments":2' two-segments
has segout/segments.jsonl '"segments":[{"end_s":1.833,"label":"left","score":' first-segment
has segout/segments.jsonl '"label":"rotate","score":' second-segment
has segout/segments.jsonl '"start_s":2.0,"windows":1}]' second-segment-start
# nothing in it gathers across videos: it resumes, and a finished run stays as it is
cp -r segout segdone
expect 0 segments-resume -- "$DSPIPE" --resume "$top/pipelines/action_segments.pipe" seg segdone \
    --set stride=8
has err "resume: 1 of 1 item already done" segments-resume
cmp -s segout/segments.jsonl segdone/segments.jsonl && cmp -s segout/windows.csv segdone/windows.csv &&
    ok || fail "segments-resume: the outputs changed"
# overlapping windows (the default stride 4): the video still starts left and ends rotating
expect 0 segments-overlap -- "$DSPIPE" -q "$top/pipelines/action_segments.pipe" seg segover
[ "$(lines segover/windows.csv)" = 4 ] && ok || fail "segments-overlap: want 3 windows + header"
has segover/segments.jsonl '"segments":[{"end_s":1.833,"label":"left",' overlap-first
grep -q '"label":"rotate","score":[0-9.e-]*,"start_s":[0-9.]*,"windows":[0-9]*}\]' segover/segments.jsonl &&
    ok || fail "segments-overlap: the last segment is not rotate: $(cat segover/segments.jsonl)"

# windows that were not classified: each video fails with what to put first
cat >noclf.pipe <<'PIPE'
files  = files.list      dir=seg
decode = video.decode    sample=every every=3 clip_len=8 width=16 height=16
tag    = meta.set        json="{\"run\": 1}"
merge  = video.segments
sink   = sink.jsonl      path=noclf/segments.jsonl
files -> decode -> tag -> merge -> sink
PIPE
expect 3 not-classified -- "$DSPIPE" -q noclf.pipe --errors noclf/errors.jsonl
has noclf/errors.jsonl 'window 0 has no meta label and score: put video.classify before video.segments' not-classified-message

cli_end test_action_cli
