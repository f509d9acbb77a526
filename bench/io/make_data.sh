#!/bin/sh
# make_data.sh - the inputs of bench/io, made once into a cache folder: CT series (native, RLE, JPEG lossless), noisy moving video clips, photo-like images.
#
# usage: bench/io/make_data.sh CACHE_DIR
#   CACHE_DIR/ct/IM0001.dcm ...      300 slices 512 x 512, 16-bit, explicit VR LE (make_phantom.py)
#   CACHE_DIR/ct_rle/, ct_jpegll/    the same series through DCMTK's dcmcrle and dcmcjpeg
#                                    (JPEG lossless, process 14 SV1)
#   CACHE_DIR/video/*.mp4            testsrc2 / mandelbrot (moving) + temporal noise, yuv420p:
#                                    H.264 and HEVC 1280x720 10 s, H.264 1920x1080 5 s, 30 fps
#   CACHE_DIR/images/                make_images.py: JPEG q90 1920x1080 and 4000x3000,
#                                    PNG 8-bit RGB 1920x1080, PNG 16-bit gray 2048x2048
# Each part is skipped when its folder is complete (a .done file), so an interrupted run
# starts that part again. Needs /usr/bin/python3 with pydicom + numpy (Debian), python3 with
# numpy + Pillow, the ffmpeg CLI with libx264 and libx265, DCMTK's command-line tools.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
cache=${1:?usage: make_data.sh CACHE_DIR}
mkdir -p "$cache"

if [ ! -f "$cache/ct/.done" ]; then
    echo "make_data: CT phantom, 300 slices -> $cache/ct" >&2
    rm -rf "$cache/ct"
    /usr/bin/python3 "$src/examples/ct_phantom/make_phantom.py" "$cache/ct" --seed 1 >/dev/null
    touch "$cache/ct/.done"
fi
for kind in rle jpegll; do
    [ ! -f "$cache/ct_$kind/.done" ] || continue
    echo "make_data: CT series, $kind -> $cache/ct_$kind" >&2
    rm -rf "$cache/ct_$kind"
    mkdir -p "$cache/ct_$kind"
    for f in "$cache"/ct/*.dcm; do
        case $kind in
        rle) dcmcrle -q "$f" "$cache/ct_$kind/${f##*/}" ;;
        jpegll) dcmcjpeg -q +e1 "$f" "$cache/ct_$kind/${f##*/}" ;;
        esac
    done
    touch "$cache/ct_$kind/.done"
done

if [ ! -f "$cache/video/.done" ]; then
    echo "make_data: video clips -> $cache/video" >&2
    rm -rf "$cache/video"
    mkdir -p "$cache/video"
    ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
    noise="noise=alls=12:allf=t+u,format=yuv420p"
    ff -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=10" -vf "$noise" \
       -c:v libx264 -preset medium -crf 23 "$cache/video/h264_1280x720.mp4"
    ff -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=10" -vf "$noise" \
       -c:v libx265 -preset fast -crf 26 -x265-params log-level=error -tag:v hvc1 \
       "$cache/video/hevc_1280x720.mp4"
    ff -f lavfi -i "mandelbrot=size=1920x1080:rate=30,trim=duration=5" -vf "$noise" \
       -c:v libx264 -preset medium -crf 23 "$cache/video/h264_1920x1080.mp4"
    touch "$cache/video/.done"
fi

if [ ! -f "$cache/images/.done" ]; then
    echo "make_data: images -> $cache/images" >&2
    rm -rf "$cache/images"
    python3 "$here/make_images.py" "$cache/images" --seed 1
    touch "$cache/images/.done"
fi
