#!/usr/bin/env bash
# test_video_cli.sh - a folder of videos with bad files among them through dspipe: the bad ones are recorded in errors.jsonl and skipped, every good one gives its clips.
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"

command -v ffmpeg >/dev/null || { echo "ffmpeg is missing: skipped"; exit 77; }
ff() { ffmpeg -nostdin -v error -y "$@"; }
src() { echo "testsrc=size=$1:rate=$2:duration=$3"; }

cli_begin test_video_cli

# ---- a folder: good videos in four containers, and six bad files ----------------
mkdir -p in/sub
ff -f lavfi -i "$(src 97x61 25 2)" -c:v ffv1 -pix_fmt bgr0 in/a_ffv1.mkv
ff -f lavfi -i "$(src 64x48 24 1)" -c:v mpeg4 in/b_mpeg4.avi
ff -f lavfi -i "$(src 64x48 24 1)" -c:v mjpeg in/sub/c_mjpeg.avi
good=3
if ffmpeg -hide_banner -encoders 2>/dev/null | grep -qw libx264; then
    ff -f lavfi -i "$(src 64x48 30 2)" -c:v libx264 -pix_fmt yuv420p in/d_h264.mp4
    good=$((good + 1))
fi
if ffmpeg -hide_banner -encoders 2>/dev/null | grep -qw libvpx-vp9; then
    ff -f lavfi -i "$(src 64x48 24 1)" -c:v libvpx-vp9 -deadline realtime in/e_vp9.webm
    good=$((good + 1))
fi
cp in/b_mpeg4.avi in/f_really_avi.mp4                     # wrong extension, still a video
good=$((good + 1))
head -c $(( $(stat -c %s in/a_ffv1.mkv) / 2 )) in/a_ffv1.mkv >in/truncated.mkv
: >in/empty.mp4
echo "meeting notes" >in/notes.mp4                        # wrong extension, not a video
ff -f lavfi -i testsrc=size=16x16 -frames:v 1 -f image2 -c:v png in/photo.mp4
ff -f lavfi -i sine=duration=0.5 in/audio.m4a
sed 's/FMP4/QQQQ/g' in/b_mpeg4.avi >in/unknown_codec.avi  # no decoder for its tag
bad=6

cat >clips.pipe <<'PIPE'
# clips.pipe - K frames spread over each video, scaled for a model
arg input
arg out = clips
option on_error = skip
option errors = $out/errors.jsonl

files  = files.list    dir=$input
decode = video.decode  sample=uniform clip_len=8 shorter=32
index  = sink.jsonl    path=$out/index.jsonl max_values=0
files -> decode -> index
PIPE

expect 0 validate -- "$DSPIPE" validate clips.pipe in
expect 3 run-skips-bad-files -- "$DSPIPE" -q clips.pipe in
[ "$(lines clips/index.jsonl)" = "$good" ] && ok ||
    fail "index.jsonl: want $good clips, got $(lines clips/index.jsonl)"
[ "$(lines clips/errors.jsonl)" = "$bad" ] && ok ||
    fail "errors.jsonl: want $bad lines, got $(lines clips/errors.jsonl)"
has clips/errors.jsonl 'truncated.mkv' errors-record
has clips/errors.jsonl 'truncated?' errors-record
has clips/errors.jsonl 'empty.mp4: empty (0 bytes)' errors-record
has clips/errors.jsonl 'notes.mp4: not a video: the content is text' errors-record
has clips/errors.jsonl 'photo.mp4: an image' errors-record
has clips/errors.jsonl 'audio.m4a: no video stream' errors-record
has clips/errors.jsonl 'unknown_codec.avi: unsupported codec' errors-record
has clips/errors.jsonl '"node":"decode"' errors-record
has clips/index.jsonl '"shape":[8,32,50,3]' index-shape
has clips/index.jsonl '"frame_index":[0,7,14,21,28,35,42,49]' index-uniform
has clips/index.jsonl '"name":"f_really_avi.mp4"' index-wrong-extension
has clips/index.jsonl '"container":"avi"' index-container

# ---- sliding windows: several clips per video, as parts of its item -----------------
cat >windows.pipe <<'PIPE'
arg input
files  = files.list    dir=$input
decode = video.decode  sample=every every=2 clip_len=4 stride=3 width=16 height=16
index  = sink.jsonl    path=windows.jsonl max_values=0
files -> decode -> index
PIPE
mkdir -p one && cp in/a_ffv1.mkv one/
expect 0 run-windows -- "$DSPIPE" -q windows.pipe one
[ "$(lines windows.jsonl)" = 8 ] && ok || fail "windows.jsonl: want 8 clips"
has windows.jsonl '"part":7' windows-parts
has windows.jsonl '"clip_index":7' windows-clip-index

# ---- hwaccel=cuda on a machine without a usable GPU: software, said in the log -----
cat >hw.pipe <<'PIPE'
arg input
files  = files.list    dir=$input
decode = video.decode  hwaccel=cuda sample=every every=25
index  = sink.jsonl    path=hw.jsonl max_values=0
files -> decode -> index
PIPE
expect 0 run-hwaccel -- "$DSPIPE" hw.pipe one
if grep -q '"hwaccel":"cuda"' hw.jsonl; then ok; else
    has err 'hwaccel=cuda' hwaccel-log
    has err 'decoding in software' hwaccel-log
    has hw.jsonl '"hwaccel_fallback"' hwaccel-meta
fi

# ---- abort policy: one bad file stops the run and names it ------------------------
mkdir -p bad && cp in/empty.mp4 bad/
expect 1 abort-names-file -- "$DSPIPE" --on-error abort windows.pipe bad
has err 'empty.mp4: empty (0 bytes)' abort-message

cli_end test_video_cli
