#!/bin/sh
# test_ct_cli.sh - pipelines/medical_ct.pipe end to end on two small phantom studies:
# sensitivity, false positives, centre and size errors (examples/ct_phantom/evaluate.py
# --check), and no patient attribute in findings.json.
# Skips (77) without the DICOM plugin (DCMTK) or without /usr/bin/python3 + pydicom + numpy.
set -u
: "${DSPIPE_BIN:?}" "${TESTS_SRCDIR:?}"
top_src=$(cd "$TESTS_SRCDIR/.." && pwd)
top_build=$(cd "$(dirname "$DSPIPE_BIN")/.." && pwd)
[ -f "$top_build/plugins/dicom/.libs/dsp_dicom.so" ] || { echo "no dicom plugin: skip"; exit 77; }
[ -f "$top_build/plugins/ct/.libs/dsp_ct.so" ] || { echo "no ct plugin: skip"; exit 77; }
[ -f "$top_src/examples/ct_phantom/make_phantom.py" ] || { echo "no phantom generator: skip"; exit 77; }
/usr/bin/python3 -c 'import pydicom, numpy' 2>/dev/null || { echo "no pydicom/numpy: skip"; exit 77; }
PY=$(command -v python3 || echo /usr/bin/python3)

work=$(mktemp -d /tmp/test_ct_cli.XXXXXX)
trap 'rm -rf "$work"' EXIT
DSPIPE_PLUGIN_PATH="$top_build/plugins/builtin/.libs:$top_build/plugins/dicom/.libs:$top_build/plugins/ct/.libs:$top_build/encoders/ct/.libs"
export DSPIPE_PLUGIN_PATH
# 2.5 mm slices are coarser than the acceptance's studies and two studies hold
# only 9 nodules >= 4 mm: one miss is 88.9 %, so this checks >= 85 % (the full
# acceptance, >= 95 % over 20 studies, is examples/ct_phantom/evaluate.py's job)
"$PY" "$top_src/examples/ct_phantom/evaluate.py" --seeds 101,102 --size 256 --slices 100 \
    --thickness 2.5 --work "$work" --dspipe "$DSPIPE_BIN" --check \
    --min-sensitivity 0.85 --max-fp 1.0 || exit 1

# the phantom's made-up patient attributes never reach the results
if grep -l -e 'PHANTOM' -e 'PH000101' -e '19600101' -e 'A000101' "$work"/out_101_*/*/findings.json; then
    echo "patient attributes in findings.json" >&2
    exit 1
fi
# the summary names the study and the classifier when one is given; without one
# (the pipe's default) it says so
"$DSPIPE_BIN" "$top_src/pipelines/medical_ct.pipe" "$work"/seed_101_* "$work/again" \
    --set classifier="$top_src/examples/ct_classifier/model" >"$work/stdout" 2>/dev/null || exit 1
grep -q "classifier: ct_nodule_cnn" "$work/stdout" || { cat "$work/stdout"; exit 1; }
"$DSPIPE_BIN" "$top_src/pipelines/medical_ct.pipe" "$work"/seed_101_* "$work/again2" \
    >"$work/stdout" 2>/dev/null || exit 1
grep -q "classical detector only" "$work/stdout" || { cat "$work/stdout"; exit 1; }

# a study folder with garbage in it (issue 6): an MR image, a DICOMDIR, a text
# file and a truncated copy of a CT slice beside the CT series. The CT gets its
# findings; the truncated file is recorded in errors.jsonl, and so is the MR
# image (a study of its own, with no CT series: dicom.studies groups by
# StudyInstanceUID); the others are skipped with a note; the run exits 3.
T=/usr/lib/python3/dist-packages/pydicom/data/test_files
if [ -f "$T/MR_small.dcm" ] && [ -f "$T/dicomdirtests/DICOMDIR" ]; then
    mixed="$work/mixed"
    mkdir -p "$mixed/ct" "$mixed/mr"
    cp "$work"/seed_101_*/*.dcm "$mixed/ct/"
    cp "$T/MR_small.dcm" "$mixed/mr/"
    cp "$T/dicomdirtests/DICOMDIR" "$mixed/"
    echo "study notes" >"$mixed/README.txt"
    first=$(ls "$mixed/ct" | head -n 1)
    head -c 3000 "$mixed/ct/$first" >"$mixed/cut_copy.dcm"
    "$DSPIPE_BIN" -q "$top_src/pipelines/medical_ct.pipe" "$mixed" "$work/mixed_out" \
        >"$work/mixed_stdout" 2>"$work/mixed_stderr"
    rc=$?
    [ "$rc" = 3 ] || { echo "mixed folder: exit $rc, want 3" >&2; cat "$work/mixed_stderr" >&2; exit 1; }
    ls "$work"/mixed_out/*/findings.json >/dev/null 2>&1 ||
        { echo "mixed folder: no findings.json" >&2; exit 1; }
    [ "$(wc -l <"$work/mixed_out/errors.jsonl")" = 2 ] &&
        grep -q 'cut_copy.dcm: truncated' "$work/mixed_out/errors.jsonl" &&
        grep -q 'modality MR, not CT' "$work/mixed_out/errors.jsonl" ||
        { echo "mixed folder: want two errors, cut_copy.dcm and the MR study" >&2; cat "$work/mixed_out/errors.jsonl" >&2; exit 1; }
    [ "$(ls -d "$work"/mixed_out/*/ | wc -l)" = 1 ] ||
        { echo "mixed folder: want one study folder" >&2; ls "$work/mixed_out" >&2; exit 1; }
else
    echo "no pydicom test files: mixed-folder case skipped"
fi

# a single slice (Debian's CT_small.dcm): a clear "needs a series", exit 3
if [ -f "$T/CT_small.dcm" ]; then
    mkdir -p "$work/single"
    cp "$T/CT_small.dcm" "$work/single/"
    "$DSPIPE_BIN" -q "$top_src/pipelines/medical_ct.pipe" "$work/single" "$work/single_out" \
        >/dev/null 2>&1
    rc=$?
    [ "$rc" = 3 ] && grep -q 'every slice of the series' "$work/single_out/errors.jsonl" ||
        { echo "single slice: exit $rc, want 3 and a 'needs the series' record" >&2; exit 1; }
fi
echo "ok"
