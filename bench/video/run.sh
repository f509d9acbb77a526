#!/bin/sh
# run.sh - video clips/s end to end (decode + preprocess + model): dspipe against PyTorch + PyAV, 2 threads each, interleaved.
#
# usage: bench/video/run.sh BUILD_DIR [ROUNDS] [NUM_CLIPS]
#   (a non-ASan build; ROUNDS default 5; NUM_CLIPS clips per video, default 2)
#
# Models (random init, exported once by export_models.py into $DSPIPE_CACHE/bench-video, default
# ~/.cache/dspipe/bench-video): torchvision's r3d_18 (16 frames at 112 x 112) and a
# VideoMAE-small-shaped VideoMAEForVideoClassification (16 frames at 224 x 224). Videos: four
# H.264 clips made once with the ffmpeg CLI (noise on moving test patterns, 640x480 and 320x240,
# 4-5 s). Each round, for each model, runs one process of each side, the order alternating
# between rounds:
#   dspipe   bench/video/classify.pipe (files.list -> video.decode sample=uniform clip_len=16
#            num_clips=NUM_CLIPS width=height=SIZE threads=2 -> video.classify -> sink.null),
#            --threads 2, DSPIPE_OPS_THREADS=2 OPENBLAS_NUM_THREADS=2; plus the same command on
#            an empty folder (process start, plugins and model load: the fixed cost)
#   pytorch  bench_torch.py: PyAV decode, the same frame indices, libswscale bilinear resize,
#            normalise, one batch, model forward; torch.set_num_threads(2), OMP_NUM_THREADS=2
# and prints its wall time, CPU seconds, peak RSS and the load average before it. The summary
# gives medians over the rounds: clips/s of the whole command (model load and Python imports
# included) and clips/s with the fixed cost excluded (dspipe: wall - empty-folder wall;
# PyTorch: its own timer from decode to logits), and the ratios; CPU seconds per clip the same
# two ways (less sensitive to other processes than wall time).
set -e
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR [ROUNDS] [NUM_CLIPS]}" && pwd)
rounds=${2:-5}
num_clips=${3:-2}
src=$(cd "$here/../.." && pwd)
cache=${DSPIPE_CACHE:-$HOME/.cache/dspipe}/bench-video
python3 -c 'import av, torch, torchvision, transformers' 2>/dev/null ||
    { echo "run.sh: needs python3 with av (PyAV), torch, torchvision and transformers" >&2; exit 1; }
[ -x "$build/core/dspipe" ] || { echo "run.sh: no $build/core/dspipe: build dspipe first" >&2; exit 1; }

if [ ! -f "$cache/videomae_small/model.safetensors" ] || [ ! -f "$cache/r3d_18/model.safetensors" ]; then
    echo "# exporting the models into $cache"
    python3 "$here/export_models.py" "$cache" >/dev/null 2>&1
fi
videos=$cache/videos
if [ ! -f "$videos/v4_320_rotate.mp4" ]; then
    echo "# making the videos in $videos"
    mkdir -p "$videos.tmp"
    enc="-c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -an"
    ff() { out=$1; shift; ffmpeg -nostdin -v error -y -f lavfi "$@" $enc "$videos.tmp/$out"; }
    ff v1_640_testsrc2.mp4 -i "testsrc2=size=640x480:rate=30:duration=4,noise=alls=12:allf=t+u:all_seed=1"
    ff v2_640_mandelbrot.mp4 -i "mandelbrot=size=640x480:rate=25,noise=alls=12:allf=t+u:all_seed=1" -t 4
    ff v3_320_life.mp4 -i "life=size=320x240:rate=30:seed=1:mold=10:ratio=0.2:death_color=#C83232:life_color=#00ff00,noise=alls=12:allf=t+u:all_seed=1" -t 5
    ff v4_320_rotate.mp4 -i "testsrc2=size=320x240:rate=30:duration=5,rotate=a=0.4*t,noise=alls=12:allf=t+u:all_seed=1"
    rm -rf "$videos" && mv "$videos.tmp" "$videos"
fi

work=$(mktemp -d /tmp/dsp_bench_video.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/empty"
export DSPIPE_NO_DEFAULT_PLUGINS=1
export DSPIPE_PLUGIN_PATH="$build/plugins/builtin/.libs:$build/plugins/video/.libs:$build/encoders/video/.libs"
nvid=$(ls "$videos"/*.mp4 | wc -l)
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# $nvid videos ($(du -sh "$videos" | cut -f1)), $num_clips clips each, $rounds rounds, 2 threads each side;" \
     "torch $(python3 -c 'import torch; print(torch.__version__)'), PyAV $(python3 -c 'import av; print(av.__version__)')"

dspipe_run() {  # label model size input_dir
    OPENBLAS_NUM_THREADS=2 DSPIPE_OPS_THREADS=2 python3 "$here/measure.py" "$1" -- \
        "$build/core/dspipe" -q --threads 2 --errors /dev/null "$here/classify.pipe" \
        --set input="$4" --set model="$cache/$2" --set size="$3" --set num_clips="$num_clips" --set threads=2
}
torch_run() {  # label model size
    OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 python3 "$here/measure.py" "$1" -- \
        python3 "$here/bench_torch.py" "$cache/$2" "$num_clips" 16 "$3" 2 "$videos"/*.mp4
}
for r in $(seq 1 "$rounds"); do
    for m in "r3d_18 112" "videomae_small 224"; do
        set -- $m
        if [ $((r % 2)) -eq 1 ]; then
            dspipe_run "dspipe $1" "$1" "$2" "$videos" | tee -a "$work/rows.jsonl"
            dspipe_run "dspipe-empty $1" "$1" "$2" "$work/empty" | tee -a "$work/rows.jsonl"
            torch_run "pytorch $1" "$1" "$2" | tee -a "$work/rows.jsonl"
        else
            torch_run "pytorch $1" "$1" "$2" | tee -a "$work/rows.jsonl"
            dspipe_run "dspipe-empty $1" "$1" "$2" "$work/empty" | tee -a "$work/rows.jsonl"
            dspipe_run "dspipe $1" "$1" "$2" "$videos" | tee -a "$work/rows.jsonl"
        fi
    done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/rows.jsonl" "$((nvid * num_clips))" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
clips = int(sys.argv[2])
med = statistics.median
for model in ("r3d_18", "videomae_small"):
    get = lambda side: [x for x in rows if x["label"] == f"{side} {model}"]
    d, e, t = get("dspipe"), get("dspipe-empty"), get("pytorch")
    d_e2e = med(clips / x["wall_s"] for x in d)
    t_e2e = med(clips / x["wall_s"] for x in t)
    d_run = med(clips / (x["wall_s"] - y["wall_s"]) for x, y in zip(d, e))
    t_run = med(clips / x["run_s"] for x in t)
    print(f"{model}: {clips} clips a run, {len(d)} rounds")
    print(f"  end to end (whole command): dspipe {d_e2e:6.2f} clips/s, pytorch {t_e2e:6.2f} clips/s,"
          f" ratio {d_e2e / t_e2e:.2f}x")
    print(f"  load excluded:              dspipe {d_run:6.2f} clips/s, pytorch {t_run:6.2f} clips/s,"
          f" ratio {d_run / t_run:.2f}x")
    print(f"  fixed cost (median s): dspipe {med(x['wall_s'] for x in e):.2f} (empty folder);"
          f" pytorch imports {med(x['import_s'] for x in t):.2f} + model load {med(x['load_s'] for x in t):.2f}")
    print(f"  CPU s per clip, load excluded (median): dspipe {med((x['cpu_s'] - y['cpu_s']) / clips for x, y in zip(d, e)):.2f},"
          f" pytorch {med(x['run_cpu_s'] / clips for x in t):.2f}")
    print(f"  CPU s per run (median): dspipe {med(x['cpu_s'] for x in d):.1f}, pytorch {med(x['cpu_s'] for x in t):.1f};"
          f" peak RSS (max): dspipe {max(x['peak_rss_mb'] for x in d):.0f} MB,"
          f" pytorch {max(x['peak_rss_mb'] for x in t):.0f} MB")
PY
