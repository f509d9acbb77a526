#!/usr/bin/env bash
# test_video_classify_cli.sh - video.decode -> video.classify through dspipe: a label per clip from a VideoMAE and a torchvision fixture, a wrong clip size recorded per clip in errors.jsonl.
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"

command -v ffmpeg >/dev/null || { echo "ffmpeg is missing: skipped"; exit 77; }
"$DSPIPE" inspect video.decode >/dev/null 2>&1 || { echo "video.decode is not built (no FFmpeg): skipped"; exit 77; }
ff() { ffmpeg -nostdin -v error -y "$@"; }
models="$TESTS_SRCDIR/data/video_encoder"

cli_begin test_video_classify_cli

mkdir -p in
ff -f lavfi -i "testsrc=size=64x48:rate=25:duration=2" -c:v mpeg4 in/a.avi
ff -f lavfi -i "mandelbrot=size=48x64:rate=25" -t 1 -c:v mpeg4 in/b.avi

cat >classify.pipe <<'PIPE'
# two clips of each video, classified
arg input
arg model
arg size = 32
arg out = labels
option on_error = skip
option errors = $out/errors.jsonl

files  = files.list      dir=$input
decode = video.decode    sample=uniform clip_len=4 num_clips=2 width=$size height=$size
clf    = video.classify  model=$model top_k=2
sink   = sink.jsonl      path=$out/labels.jsonl max_values=0
files -> decode -> clf -> sink
PIPE

# ---- VideoMAE: 4 frames of 32 x 32 ------------------------------------------------
expect 0 videomae -- "$DSPIPE" -q classify.pipe in --set model="$models/videomae_mean"
[ "$(lines labels/labels.jsonl)" = 4 ] && ok || fail "videomae: want 4 clips, got $(lines labels/labels.jsonl)"
[ "$(grep -c '"label":"\(archery\|baking cookies\|cartwheeling\|dancing ballet\|eating cake\)"' labels/labels.jsonl)" = 4 ] &&
    ok || fail "videomae: every clip needs a label of the model's id2label"
has labels/labels.jsonl '"topk":[{"label":' videomae-topk
has labels/labels.jsonl '"logits"' videomae-logits
hasnt labels/labels.jsonl '"frames"' videomae-clip-dropped
[ "$(grep -o '"score":' labels/labels.jsonl | wc -l)" = 12 ] && ok ||
    fail "videomae: want score + 2 topk scores per clip"

# ---- r2plus1d_18 takes any clip size ----------------------------------------------
expect 0 r2plus1d -- "$DSPIPE" -q classify.pipe in --set model="$models/r2plus1d_18" --set size=40 --set out=r21d
[ "$(lines r21d/labels.jsonl)" = 4 ] && ok || fail "r2plus1d: want 4 clips"
has r21d/labels.jsonl '"clip_index":1' r2plus1d-clip-meta

# ---- clips of the wrong size for VideoMAE: each recorded, the run goes on -------------
expect 3 wrong-size -- "$DSPIPE" -q classify.pipe in --set model="$models/videomae_mean" --set size=40 --set out=bad
[ "$(lines bad/errors.jsonl)" -ge 1 ] && ok || fail "wrong-size: want errors.jsonl lines"
has bad/errors.jsonl "takes 4 frames of 32 x 32 (video.decode clip_len=4 width=32 height=32)" wrong-size-message
has bad/errors.jsonl '"node":"clf"' wrong-size-node

# ---- a folder that is not a model: refused before any video is read -------------------
expect 1 not-a-model -- "$DSPIPE" -q classify.pipe in --set model="$TESTS_SRCDIR/data/text_encoder/bert_odd"
has err "model_type 'bert' is not a video classifier" not-a-model-message

cli_end test_video_classify_cli
