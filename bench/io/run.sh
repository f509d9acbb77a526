#!/bin/sh
# run.sh - issue 4's I/O targets: dspipe's DICOM, video and image readers against pydicom + numpy, the ffmpeg CLI and Pillow, side by side.
#
# usage: bench/io/run.sh BUILD_DIR [ROUNDS] [PARTS]
#   BUILD_DIR  a non-ASan build (configure without --enable-asan) with the dicom, video and
#              image plugins; bench_io.c is compiled against it here
#   ROUNDS     rounds of every benchmark, the sides alternating (default 5)
#   PARTS      comma-separated subset of ct,ctz,video,image (default all)
# The inputs are made once into $DSPIPE_BENCH_CACHE (default /tmp/io_bench) by make_data.sh
# (about 2 minutes the first time). Results: bench/io/RESULTS.md; what is measured: README.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR [ROUNDS] [PARTS]}" && pwd)
rounds=${2:-5}
parts=${3:-ct,ctz,video,image}
src=$(cd "$here/../.." && pwd)
cache=${DSPIPE_BENCH_CACHE:-/tmp/io_bench}
export PYTHONDONTWRITEBYTECODE=1    # no __pycache__ in the source tree (peer_timing.py)
for p in builtin dicom video image; do
    [ -f "$build/plugins/$p/.libs/dsp_$p.so" ] ||
        { echo "run.sh: no $build/plugins/$p/.libs/dsp_$p.so: build dspipe with DCMTK and FFmpeg first" >&2; exit 1; }
done
sh "$here/make_data.sh" "$cache"
cc -O2 -std=gnu11 -Wall -Wextra -I"$src/core/include" -I"$build" "$here/bench_io.c" \
   -o "$build/bench_io" -L"$build/core/.libs" -ldspipe -Wl,-rpath,"$build/core/.libs"
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load: $(load)"
echo "# dspipe $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo '(no git)'), $(ffmpeg -hide_banner -version | head -1 | cut -d' ' -f1-3)"
/usr/bin/python3 -c '
import pydicom, numpy
try:
    import gdcm; g = "python3-gdcm " + gdcm.Version.GetVersion()
except ImportError:
    g = "no python3-gdcm"
print("# /usr/bin/python3: pydicom", pydicom.__version__, "numpy", numpy.__version__, g)'
python3 -c 'import PIL, numpy; from PIL import features; print("# python3: Pillow", PIL.__version__, "libjpeg-turbo", features.version("libjpeg_turbo"), "zlib", features.version("zlib"), "numpy", numpy.__version__)'
echo "# dspipe's image plugin links: $(ldd "$build/plugins/image/.libs/dsp_image.so" | grep -oE 'lib(turbojpeg|png16)[^ ]*' | sort -u | tr '\n' ' ')($(dpkg-query -W -f '${Package} ${Version} ' libturbojpeg0 libpng16-16 libdcmtk17 2>/dev/null || echo 'versions: no dpkg'))"
python3 "$here/compare.py" --build "$build" --data "$cache" --rounds "$rounds" --parts "$parts"
echo "# load after: $(load), $(date -u '+%H:%M UTC')"
