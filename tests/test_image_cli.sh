#!/usr/bin/env bash
# test_image_cli.sh - pipelines/image_preprocess.pipe on a folder of images with bad files among them: the bad ones are recorded and skipped, the rest written, equal to torchvision.
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"

SRC=${TESTS_SRCDIR:?run through make check}
PIPE="$SRC/../pipelines/image_preprocess.pipe"
DATA="$SRC/data/image"
cli_begin test_image_cli

# ---- a folder: good images of every kind, many copies, and four bad files -------
mkdir -p in/sub
cp "$DATA/rgb8.png" "$DATA/rgb420.jpg" "$DATA/orient6.jpg" "$DATA/gray8.png" \
   "$DATA/rgba16.png" "$DATA/palette_trns.png" "$DATA/progressive.jpg" in/
for i in $(seq 1 40); do cp "$DATA/rgb444.jpg" "in/sub/copy$i.jpg"; done
head -c 1000 "$DATA/rgb420.jpg" >in/broken.jpg          # truncated
head -c 300 "$DATA/rgb8.png" >in/cut.png                 # truncated
: >in/empty.png                                          # zero bytes
echo "not an image" >in/notes.txt
good=$((7 + 40))

expect 0 validate -- "$DSPIPE" validate "$PIPE" in prep
expect 3 run-skips-bad-files -- "$DSPIPE" -q "$PIPE" in prep
n=$(find prep -name '*.npy' | wc -l | tr -d ' ')
[ "$n" = "$good" ] && ok || fail "want $good .npy files, got $n"
[ "$(lines prep/index.jsonl)" = "$good" ] && ok || fail "index.jsonl: want $good lines"
[ "$(lines prep/errors.jsonl)" = 4 ] && ok || fail "errors.jsonl: want 4 lines, got $(lines prep/errors.jsonl)"
has prep/errors.jsonl 'broken.jpg' errors-record
has prep/errors.jsonl 'strict=false' errors-record
has prep/errors.jsonl 'cut.png' errors-record
has prep/errors.jsonl 'truncated' errors-record
has prep/errors.jsonl 'empty.png' errors-record
has prep/errors.jsonl 'notes.txt' errors-record
has prep/errors.jsonl '"node":"decode"' errors-record
has prep/index.jsonl '"shape":[3,224,224]' index
has prep/index.jsonl '"orientation":6' index
# f32 [3, 224, 224] with a 128-byte header
size=$(stat -c %s prep/rgb8.npy)
[ "$size" = $((128 + 3 * 224 * 224 * 4)) ] && ok || fail "rgb8.npy is $size bytes"
[ -z "$(find prep -name '.*tmp*')" ] && ok || fail "temporary files left in prep/"

# ---- strict=false would have accepted the truncated JPEG; abort stops at the first --
expect 1 abort -- "$DSPIPE" -q --on-error abort "$PIPE" in prep2
has err "broken.jpg" abort

# ---- tensor.write takes a decoded image as it is: u8 [H, W, 3] .npy ---------------
cat >raw.pipe <<'EOF'
arg input
arg out
files  = files.list   dir=$input
decode = image.decode mode=rgb depth=8
write  = tensor.write path=$out/{stem}.npy
files -> decode -> write
EOF
mkdir -p one && cp "$DATA/rgb8.png" one/
expect 0 write-decoded-image -- "$DSPIPE" -q raw.pipe one raw
if python3 -c 'import numpy, PIL' 2>/dev/null; then
    python3 - one/rgb8.png raw/rgb8.npy >py.out 2>&1 <<'EOF'
import sys
import numpy as np
from PIL import Image
ref = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
got = np.load(sys.argv[2])
assert got.dtype == np.uint8 and got.shape == ref.shape, (got.dtype, got.shape, ref.shape)
assert (got == ref).all(), "pixels differ from Pillow"
EOF
    if [ $? -eq 0 ]; then ok; else fail "decoded image .npy differs from Pillow"; cat py.out >&2; fi
else
    [ -s raw/rgb8.npy ] && ok || fail "raw/rgb8.npy not written"
fi

# ---- image.encode {rel}: the input's path below root=, subfolders kept -------------
cat >rel.pipe <<'EOF'
arg input
arg out
files  = files.list   dir=$input glob=copy1?.jpg
decode = image.decode mode=rgb depth=8
write  = image.encode path=$out/{rel}.png root=$input
files -> decode -> write
EOF
expect 0 encode-rel -- "$DSPIPE" -q rel.pipe in/ relout
[ "$(cd relout && find . -name '*.png' | sort | head -2 | tr '\n' ' ')" = "./sub/copy10.png ./sub/copy11.png " ] &&
    ok || fail "encode-rel: want relout/sub/copy1N.png, got $(cd relout && find . -type f | head -3)"
# a path outside root keeps its folders; '..' cannot climb out of the template's folder
mkdir -p lst && echo "../in/rgb8.png" >lst/paths.txt
sed -e 's/dir=$input glob=copy1?.jpg/list=$input/' -e 's/root=$input/root=in/' rel.pipe >rel2.pipe
expect 0 encode-rel-outside -- "$DSPIPE" -q rel2.pipe lst/paths.txt relout2
[ -s relout2/lst/_/in/rgb8.png ] && ok || fail "encode-rel-outside: got $(find relout2 -type f)"

# ---- the same images through torchvision, when Python has it ---------------------
if python3 -c 'import numpy, PIL, torchvision' 2>/dev/null; then
    python3 - "$WORK/in" "$WORK/prep" >py.out 2>&1 <<'EOF'
import os, sys
import numpy as np
import torchvision.transforms as T
from PIL import Image, ImageOps
src, prep = sys.argv[1], sys.argv[2]
tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
worst = 0.0
for name in ("rgb8.png", "rgb420.jpg", "orient6.jpg", "gray8.png", "rgba16.png",
             "palette_trns.png", "progressive.jpg"):
    im = ImageOps.exif_transpose(Image.open(os.path.join(src, name))).convert("RGB")
    ref = tf(im).numpy()
    got = np.load(os.path.join(prep, os.path.splitext(name)[0] + ".npy"))
    assert got.shape == ref.shape, (name, got.shape, ref.shape)
    d = float(np.abs(got - ref).max())
    print(f"{name}: max |dspipe - torchvision| = {d:g}")
    worst = max(worst, d)
sys.exit(0 if worst == 0.0 else 1)
EOF
    if [ $? -eq 0 ]; then ok; else fail "outputs differ from torchvision"; cat py.out >&2; fi
else
    echo "SKIP: python3 without numpy / Pillow / torchvision: no comparison with torchvision"
fi

cli_end test_image_cli
