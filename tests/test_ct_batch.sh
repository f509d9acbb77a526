#!/usr/bin/env bash
# test_ct_batch.sh - pipelines/medical_ct.pipe on a folder of many studies (issue 6): one output folder per study, errors.jsonl for the study that fails, exit 3; one study folder still works alone.
# Skips (77) without the DICOM or CT plugin, or without /usr/bin/python3 + pydicom + numpy.
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"

SRC=${TESTS_SRCDIR:?run through make check}
top_src=$(cd "$SRC/.." && pwd)
top_build=$(cd "$(dirname "$DSPIPE")/.." && pwd)
PIPE="$top_src/pipelines/medical_ct.pipe"
MAKE_PHANTOM="$top_src/examples/ct_phantom/make_phantom.py"
[ -f "$top_build/plugins/dicom/.libs/dsp_dicom.so" ] || { echo "no dicom plugin: skip"; exit 77; }
[ -f "$top_build/plugins/ct/.libs/dsp_ct.so" ] || { echo "no ct plugin: skip"; exit 77; }
/usr/bin/python3 -c 'import pydicom, numpy' 2>/dev/null || { echo "no pydicom/numpy: skip"; exit 77; }
DSPIPE_PLUGIN_PATH="$top_build/plugins/builtin/.libs:$top_build/plugins/dicom/.libs:$top_build/plugins/ct/.libs:$top_build/encoders/ct/.libs"
export DSPIPE_PLUGIN_PATH
cli_begin test_ct_batch

# small studies the detector still accepts: 16 slices of 2.5 mm = 40 mm, more
# than CT_MIN_EXTENT_MM (30); 64 x 64 pixels
phantom() { /usr/bin/python3 "$MAKE_PHANTOM" "$1" --seed "$2" --slices 16 --thickness 2.5 \
                --size "${3:-64}" >/dev/null || fail "make_phantom.py $1"; }
study_uid() { /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["study_uid"])' "$1/truth.json"; }

# ---- three good studies at different depths, one broken, a README -------------------
phantom batch/site_a/p1 201
phantom batch/p2 202
phantom batch/site_b/2024/p3 203
# the broken study: one CT series whose second half has another matrix size (same
# seed, so the same study and series UIDs)
phantom gen/small 204
phantom gen/large 204 72
mkdir -p batch/broken
cp gen/small/IM000[1-8].dcm batch/broken/
cp gen/large/IM0009.dcm gen/large/IM001[0-6].dcm batch/broken/
echo "a batch of studies" >batch/README.txt
uids=""
for p in batch/site_a/p1 batch/p2 batch/site_b/2024/p3; do uids="$uids $(study_uid "$p")"; done
broken_uid=$(study_uid gen/small)

expect 3 "a folder of 4 studies, one broken: exit 3" -- "$DSPIPE" -q "$PIPE" batch res
cp out stdout_1
for u in $uids; do
    [ -f "res/$u/findings.json" ] && ok || fail "no res/$u/findings.json"
    has res/$u/findings.json "\"study_uid\"" "findings.json of $u"
    has stdout_1 "study $u:" "the summary names study $u"
done
[ "$(ls -d res/*/ | wc -l)" -eq 3 ] && ok || { fail "want 3 study folders"; ls res >&2; }
[ -e "res/$broken_uid" ] && fail "an output folder for the broken study" || ok
[ "$(lines res/errors.jsonl)" -eq 1 ] && ok || { fail "errors.jsonl: want 1 line"; cat res/errors.jsonl >&2; }
has res/errors.jsonl "mixed sizes" "the broken study's reason"
has res/errors.jsonl "batch/broken" "the broken study's folder"
has res/errors.jsonl '"node":"series"' "failed in dicom.read"

# same folder, same order of results, on one thread and on several
# --resume: the three studies done are journaled by StudyInstanceUID and
# skipped; the broken one is tried again (and fails again)
[ "$(lines res/done.jsonl)" -eq 3 ] && ok || { fail "done.jsonl: want 3 lines"; cat res/done.jsonl >&2; }
for u in $uids; do has res/done.jsonl "\"key\":\"$u\"" "journaled by study UID $u"; done
hasnt res/done.jsonl "$broken_uid" "the broken study is not journaled"
touch -d '2001-01-01' res/*/findings.json
expect 3 "--resume runs only the broken study" -- "$DSPIPE" --resume "$PIPE" batch res
has err "3 of 4 items already done" "resume says what it skipped"
for u in $uids; do
    [ "$(stat -c %Y res/$u/findings.json)" -lt 1000000000 ] && ok || fail "study $u was run again"
done
[ "$(lines res/errors.jsonl)" -eq 1 ] && ok || fail "resume: errors.jsonl: want 1 line"

expect 3 "again on one thread" -- "$DSPIPE" -q --threads 1 "$PIPE" batch res1
grep '^study ' stdout_1 >order_a
grep '^study ' out >order_b
cmp -s order_a order_b && ok || { fail "the studies come in another order"; diff order_a order_b >&2; }

# dicom.studies alone: one record per study, keyed by StudyInstanceUID, the
# README as a note; the broken study is grouped like any other
cat >studies.pipe <<'PIPE'
arg input
arg out
s = dicom.studies dir=$input
j = sink.jsonl    path=$out/studies.jsonl
s -> j
PIPE
expect 0 "dicom.studies -> sink.jsonl" -- "$DSPIPE" -q studies.pipe batch st
[ "$(lines st/studies.jsonl)" -eq 4 ] && ok || fail "studies.jsonl: want 4 records"
for u in $uids $broken_uid; do
    has st/studies.jsonl "\"key\":\"$u\"" "key of $u"
done
has st/studies.jsonl '"files":16' "16 files a study"
has st/studies.jsonl 'README.txt: skipped: not a DICOM file' "the README is a note"

# ---- one study folder, as before -----------------------------------------------------
expect 0 "one study folder" -- "$DSPIPE" -q "$PIPE" batch/p2 one
set -- $uids
[ -f "one/$2/findings.json" ] && ok || fail "one study: no findings.json"
[ "$(ls -d one/*/ | wc -l)" -eq 1 ] && ok || fail "one study: want one folder"
[ -s one/errors.jsonl ] && fail "one study: errors.jsonl not empty" || ok

cli_end test_ct_batch
