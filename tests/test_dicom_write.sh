#!/bin/sh
# test_dicom_write.sh - medical_ct.pipe's DICOM outputs on a phantom study: the Secondary
# Capture key images and the Structured Report are valid (dciodvfy, dsrdump), stay in the
# source study, carry no patient attribute, and the SR has one diameter per finding.
# Skips (77) without the DICOM plugin, the phantom generator's Python, or DCMTK's tools;
# skips only the dciodvfy part (with a message) without dicom3tools.
set -u
: "${DSPIPE_BIN:?}" "${TESTS_SRCDIR:?}"
top_src=$(cd "$TESTS_SRCDIR/.." && pwd)
top_build=$(cd "$(dirname "$DSPIPE_BIN")/.." && pwd)
[ -f "$top_build/plugins/dicom/.libs/dsp_dicom.so" ] || { echo "no dicom plugin: skip"; exit 77; }
[ -f "$top_build/plugins/ct/.libs/dsp_ct.so" ] || { echo "no ct plugin: skip"; exit 77; }
/usr/bin/python3 -c 'import pydicom, numpy' 2>/dev/null || { echo "no pydicom/numpy: skip"; exit 77; }
for t in dcmdump dsrdump; do
    command -v $t >/dev/null || { echo "no $t (apt-get install dcmtk): skip"; exit 77; }
done

work=$(mktemp -d /tmp/test_dicom_write.XXXXXX)
trap 'rm -rf "$work"' EXIT
DSPIPE_PLUGIN_PATH="$top_build/plugins/builtin/.libs:$top_build/plugins/dicom/.libs:$top_build/plugins/ct/.libs:$top_build/encoders/ct/.libs"
export DSPIPE_PLUGIN_PATH
fail() { echo "FAIL: $*" >&2; exit 1; }

/usr/bin/python3 "$top_src/examples/ct_phantom/make_phantom.py" "$work/study" --size 256 \
    --slices 100 --thickness 2.5 --seed 101 >/dev/null || fail "make_phantom.py"
"$DSPIPE_BIN" "$top_src/pipelines/medical_ct.pipe" "$work/study" "$work/out" >"$work/stdout" \
    2>"$work/stderr" || { cat "$work/stderr" >&2; fail "medical_ct.pipe"; }

# the value of one attribute as dcmdump prints it: [value], or "" when empty
attr() { dcmdump -Un +P "$2" "$1" 2>/dev/null | sed -n 's/^[^[]*\[\(.*\)\].*$/\1/p' | head -n 1; }

src_file=$(find "$work/study" -type f -name '*.dcm' | head -n 1)
[ -n "$src_file" ] || src_file=$(find "$work/study" -type f | grep -v -i readme | head -n 1)
study_uid=$(attr "$src_file" StudyInstanceUID)
series_uid=$(attr "$src_file" SeriesInstanceUID)
[ -n "$study_uid" ] || fail "no StudyInstanceUID in $src_file"
dir="$work/out/$study_uid"
json="$dir/findings.json"
[ -f "$json" ] || fail "no $json"
nf=$(grep -o '"diameter_mm"' "$json" | wc -l)
[ "$nf" -gt 0 ] || fail "the phantom gave no finding"
nsc=$(ls "$dir"/sc/finding_*.dcm 2>/dev/null | wc -l)
[ "$nsc" -eq "$nf" ] || fail "$nsc SC files for $nf findings"
[ -f "$dir/sr.dcm" ] || fail "no $dir/sr.dcm"

for f in "$dir"/sc/finding_*.dcm "$dir/sr.dcm"; do
    # same study, a new series, no patient attribute
    [ "$(attr "$f" StudyInstanceUID)" = "$study_uid" ] || fail "$f: StudyInstanceUID differs"
    s=$(attr "$f" SeriesInstanceUID)
    [ -n "$s" ] && [ "$s" != "$series_uid" ] || fail "$f: SeriesInstanceUID not new"
    dcmdump +P PatientName "$f" | grep -q 'no value available' || fail "$f: PatientName not empty"
    for a in PatientID PatientBirthDate; do
        [ -z "$(attr "$f" $a)" ] || fail "$f: $a not empty"
    done
done
if grep -a -l -e 'PHANTOM' -e 'PH000101' -e '19600101' -e 'A000101' "$dir"/sc/*.dcm "$dir/sr.dcm"; then
    fail "the phantom's patient attributes in a DICOM output"
fi
[ "$(attr "$dir/sc/finding_1.dcm" SOPClassUID)" = 1.2.840.10008.5.1.4.1.1.7 ] ||
    fail "finding_1.dcm is not Secondary Capture"
[ "$(attr "$dir/sc/finding_1.dcm" PhotometricInterpretation)" = RGB ] || fail "SC not RGB"

# the SR: DCMTK reads it without a warning, one NUM diameter per finding, and it
# references the source series and every key image
dsrdump --log-level warn "$dir/sr.dcm" >"$work/sr.txt" 2>"$work/sr.err" || fail "dsrdump failed"
[ ! -s "$work/sr.err" ] || { cat "$work/sr.err" >&2; fail "dsrdump warns"; }
ndia=$(grep -c 'NUM:(,,"Diameter")=' "$work/sr.txt")
[ "$ndia" -eq "$nf" ] || fail "SR has $ndia diameters for $nf findings"
nimg=$(grep -c 'IMAGE:(,,"Best illustration of finding")' "$work/sr.txt")
[ "$nimg" -eq "$nf" ] || fail "SR references $nimg key images for $nf findings"
grep -q 'SCOORD3D:(,,"Center")=(POINT' "$work/sr.txt" || fail "SR has no SCOORD3D centre"
dcmdump "$dir/sr.dcm" | grep -q "\[$series_uid\]" || fail "SR evidence lacks the source series"
for f in "$dir"/sc/finding_*.dcm; do
    dcmdump "$dir/sr.dcm" | grep -q "\[$(attr "$f" SOPInstanceUID)\]" ||
        fail "SR does not reference $f"
done

# dciodvfy (dicom3tools): no error in any file; warnings are allowed
if command -v dciodvfy >/dev/null; then
    for f in "$dir"/sc/finding_*.dcm "$dir/sr.dcm"; do
        dciodvfy "$f" >"$work/vfy.txt" 2>&1
        if grep -q '^Error' "$work/vfy.txt"; then
            cat "$work/vfy.txt" >&2
            fail "dciodvfy: errors in $f"
        fi
    done
else
    echo "dciodvfy not found (apt-get install dicom3tools): IOD validation skipped"
fi
echo "ok: $nf findings, $nsc SC images, SR valid"
