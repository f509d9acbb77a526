#!/usr/bin/env bash
# test_dicom_cli.sh - pipelines/dicom_volume.pipe on a folder: a CT series in shuffled files, an MR series, notes, broken files; what is written, recorded and withheld.
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"

SRC=${TESTS_SRCDIR:?run through make check}
PIPE="$SRC/../pipelines/dicom_volume.pipe"
GEN="$SRC/data/dicom/gen"
cli_begin test_dicom_cli

# ---- a study folder: CT (6 files), MR (3), a README, a DICOMDIR, 3 broken files ----
mkdir -p in/ct/deeper in/mr
cp "$GEN"/ct/f0[0-2]* in/ct/
cp "$GEN"/ct/f0[3-5]* in/ct/deeper/
cp "$GEN"/mr/*.dcm in/mr/
cp "$GEN"/notes/README.txt "$GEN"/notes/DICOMDIR in/
: >in/empty.dcm
head -c 700 "$GEN/ct/f00_q" >in/ct/cut.dcm
printf 'P5\n2 2\n255\n\0\0\0\0' >in/scan.dcm                 # a PGM named .dcm

expect 3 "folder with broken files" -- "$DSPIPE" "$PIPE" in vol
[ -f vol/series_0.npy ] || [ -n "$(ls vol/series_*.npy 2>/dev/null)" ] && ok || fail "no volume written"
[ "$(ls vol/series_*.npy 2>/dev/null | wc -l)" -eq 1 ] && ok || fail "want one volume (largest)"
[ "$(lines vol/errors.jsonl)" -eq 3 ] && ok || { fail "errors.jsonl: want 3 lines"; cat vol/errors.jsonl >&2; }
has vol/errors.jsonl "empty.dcm: empty (0 bytes)" "zero-length file"
has vol/errors.jsonl "cut.dcm: " "truncated file"
has vol/errors.jsonl "scan.dcm: not a DICOM file" "wrong extension"
[ "$(lines vol/series.jsonl)" -eq 1 ] && ok || fail "series.jsonl: want 1 line"
has vol/series.jsonl '"modality":"CT"' "the largest series is the CT"
has vol/series.jsonl '"spacing_mm":[2.5,' "spacing"
has vol/series.jsonl '"sort":"position"' "sorted by position"
has vol/series.jsonl 'the largest of the series that pass the rules' "selection says why"
has vol/series.jsonl 'README.txt: skipped: not a DICOM file' "note: README"
has vol/series.jsonl 'DICOMDIR: skipped: a DICOMDIR' "note: DICOMDIR"
# no patient-identifying attribute anywhere in the outputs by default
for f in vol/series.jsonl vol/errors.jsonl; do
    hasnt "$f" "DOE^JOHN" "PHI in $f"
    hasnt "$f" "PID12345" "PHI in $f"
    hasnt "$f" "19700101" "PHI in $f"
done
if command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c 'import numpy' 2>/dev/null; then
    /usr/bin/python3 - "$SRC/data/dicom/gen/gen.json" vol/series_*.npy <<'PY' && ok || fail "volume differs from gen.json"
import json, sys, numpy as np
e = json.load(open(sys.argv[1]))["ct"]
v = np.load(sys.argv[2])
assert list(v.shape) == e["shape"] and v.dtype == np.float32, (v.shape, v.dtype)
flat = v.reshape(-1)
assert all(flat[i] == x for i, x in zip(e["index"], e["value"]))
PY
fi

# ---- select=all, modality, phi=keep ---------------------------------------------------
expect 3 "select=all" -- "$DSPIPE" "$PIPE" in all --set select=all
[ "$(lines all/series.jsonl)" -eq 2 ] && ok || fail "select=all: want 2 series"
expect 3 "modality=MR" -- "$DSPIPE" "$PIPE" in mr --set modality=MR
has mr/series.jsonl '"modality":"MR"' "modality=MR"
has mr/series.jsonl 'modality CT, not MR' "selection says why CT was not chosen"
expect 3 "phi=keep" -- "$DSPIPE" "$PIPE" in phi --set phi=keep
has phi/series.jsonl '"patient_name":"DOE^JOHN"' "phi=keep passes the name"

# ---- a series with a missing slice is refused, naming the files --------------------------
mkdir gap
cp "$GEN"/gap/* gap/
expect 1 "missing slice" -- "$DSPIPE" "$PIPE" gap gapout
has err "missing slice(s): a gap of 5.000 mm" "gap reported"
[ -z "$(ls gapout/*.npy 2>/dev/null)" ] && ok || fail "a volume was written from a series with a gap"

cli_end test_dicom_cli
