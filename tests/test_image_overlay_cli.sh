#!/usr/bin/env bash
# test_image_overlay_cli.sh - image.overlay in pipelines: boxes, a polygon and text drawn from meta onto a PNG equal Pillow's drawing of the same; contours from a mask port equal the mask's boundary; bad meta and a missing font fail clearly.
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"

SRC=${TESTS_SRCDIR:?run through make check}
DATA="$SRC/data/image"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf
cli_begin test_image_overlay_cli

if [ ! -r "$FONT" ]; then
    echo "SKIP: $FONT missing (apt-get install fonts-dejavu-core)"
    exit 77
fi
mkdir -p in masks
cp "$DATA/rgb8.png" in/
cp "$DATA/gray8.png" masks/      # same size as rgb8.png: every gray level is a label

# ---- boxes, a polygon, text: ... -> image.overlay -> image.encode (PNG) ----------
# the image is padded to 160 x 100 first; base.png keeps it without the overlay
cat >draw.pipe <<'EOF'
arg input
arg out
files  = files.list    dir=$input glob="*.png"
decode = image.decode
pad    = image.pad     width=160 height=100 mode=edge
base   = image.encode  path=$out/base.png
marks  = meta.set      json="{\"overlay\": [{\"box\": [60, 30, 120, 80], \"label\": \"nodule 1  6.2 mm\"}, {\"box\": [-10, 90, 20, 130], \"color\": \"cyan\", \"thickness\": 3}, {\"polygon\": [[5, 35], [40, 38], [20, 60]], \"color\": \"#30d030\", \"thickness\": 1}, {\"text\": \"key slice 12 / é\", \"at\": [2, 84], \"color\": \"white\"}]}"
draw   = image.overlay font_size=12
write  = image.encode  path=$out/{stem}.png
files -> decode -> pad -> marks -> draw -> write
pad -> base
EOF
expect 0 validate -- "$DSPIPE" validate draw.pipe in res
expect 0 draw -- "$DSPIPE" -q draw.pipe in res
[ -s res/rgb8.png ] && [ -s res/base.png ] && ok || fail "res/rgb8.png or res/base.png not written"
expect 0 inspect -- "$DSPIPE" inspect image.overlay
has out "font_size" inspect

have_py=0
python3 -c 'import numpy, PIL' 2>/dev/null && have_py=1
if [ "$have_py" = 1 ]; then
    # Pillow draws the same: rectangle(width=t) grows inward like image.overlay,
    # text with the BASIC layout (hinted integer advances, no shaping) at the
    # top-left of the ascender line; 2-point-wide Bresenham lines match
    # ImageDraw.line(width=1). The whole image must be equal, pixel for pixel.
    python3 - res "$FONT" >py.out 2>&1 <<'EOF'
import sys
import numpy as np
from PIL import Image, ImageDraw, ImageFont
res, font = sys.argv[1], sys.argv[2]
got = np.asarray(Image.open(f"{res}/rgb8.png"))
ref = Image.open(f"{res}/base.png").convert("RGB")
assert got.shape == (100, 160, 3), got.shape
f = ImageFont.truetype(font, 12, layout_engine=ImageFont.Layout.BASIC)
d = ImageDraw.Draw(ref)
red = (0xff, 0x30, 0x30)
d.rectangle((60, 30, 120, 80), outline=red, width=2)
asc, desc = f.getmetrics()
d.text((60, 30 - (asc + desc)), "nodule 1  6.2 mm", fill=red, font=f)
d.rectangle((-10, 90, 20, 130), outline=(0, 255, 255), width=3)
d.line([(5, 35), (40, 38), (20, 60), (5, 35)], fill=(0x30, 0xd0, 0x30), width=1)
d.text((2, 84), "key slice 12 / é", fill=(255, 255, 255), font=f)
ref = np.asarray(ref)
diff = np.abs(got.astype(int) - ref.astype(int)).max(axis=2)
ys, xs = np.nonzero(diff)
print(f"pixels differing from Pillow: {len(xs)} of {diff.size}, max {diff.max()}")
print("first:", list(zip(xs[:8].tolist(), ys[:8].tolist())))
sys.exit(0 if len(xs) == 0 else 1)
EOF
    if [ $? -eq 0 ]; then ok; else fail "overlay differs from Pillow's drawing"; cat py.out >&2; fi
else
    echo "SKIP: python3 without numpy / Pillow: no comparison with Pillow"
fi

# ---- contours of a label mask on the mask port ----------------------------------
cat >contours.pipe <<'EOF'
arg input
arg masks
arg out
files  = files.list    dir=$input
decode = image.decode
mfiles = files.list    dir=$masks
labels = image.decode
draw   = image.overlay mask=image palette=[red, "#00ff00", blue]
write  = image.encode  path=$out/{stem}.png
files -> decode -> draw -> write
mfiles -> labels -> draw.mask
EOF
expect 0 contours -- "$DSPIPE" -q contours.pipe in masks res2
if [ "$have_py" = 1 ]; then
    python3 - "$DATA/rgb8.png" "$DATA/gray8.png" res2/rgb8.png >py.out 2>&1 <<'EOF'
import sys
import numpy as np
from PIL import Image
img = np.asarray(Image.open(sys.argv[1]).convert("RGB")).astype(int)
m = np.asarray(Image.open(sys.argv[2])).astype(int)
got = np.asarray(Image.open(sys.argv[3])).astype(int)
# a labelled pixel is on the boundary when a 4-neighbour differs or lies outside
p = np.pad(m, 1, constant_values=-1)
edge = (m > 0) & ((p[:-2, 1:-1] != m) | (p[2:, 1:-1] != m) | (p[1:-1, :-2] != m) | (p[1:-1, 2:] != m))
pal = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255)])
want = img.copy()
want[edge] = pal[(m[edge] - 1) % 3]
bad = (got != want).any(axis=2)
print(f"boundary pixels {edge.sum()}, differing {bad.sum()}")
sys.exit(0 if bad.sum() == 0 and edge.sum() > 0 else 1)
EOF
    if [ $? -eq 0 ]; then ok; else fail "contours differ from the mask's boundary"; cat py.out >&2; fi
fi

# ---- bad meta: the item fails naming the element and what is wrong ---------------
cat >bad.pipe <<'EOF'
arg input
files  = files.list    dir=$input
decode = image.decode
marks  = meta.set      json="{\"overlay\": [{\"box\": [1, 2, 3, 4]}, {\"box\": [9, 2, 3]}]}"
draw   = image.overlay
write  = image.encode  path=bad/{stem}.png
files -> decode -> marks -> draw -> write
EOF
expect 2 bad-meta -- "$DSPIPE" -q --on-error abort bad.pipe in
has err 'rgb8.png: meta "overlay"[1].box: want 4 numbers' bad-meta
[ ! -e bad/rgb8.png ] && ok || fail "bad/rgb8.png written for a failed item"

# ---- a missing font: names the file and the package --------------------------------
cat >nofont.pipe <<'EOF'
arg input
files  = files.list    dir=$input
decode = image.decode
marks  = meta.set      json="{\"overlay\": [{\"box\": [1, 2, 3, 4]}, {\"text\": \"x\", \"at\": [0, 0]}]}"
draw   = image.overlay font=/nonexistent/DejaVuSansMono.ttf
write  = image.encode  path=nofont/{stem}.png
files -> decode -> marks -> draw -> write
EOF
expect 1 no-font -- "$DSPIPE" -q --on-error abort nofont.pipe in
has err "/nonexistent/DejaVuSansMono.ttf" no-font
has err "fonts-dejavu-core" no-font

cli_end test_image_overlay_cli
