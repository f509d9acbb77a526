#!/usr/bin/env bash
# test_csv_cli.sh - csv.write in a pipeline: file names with commas, quotes, newlines and non-ASCII go through files.list to a CSV that Python's csv module reads back equal to the packets' meta (as sink.jsonl recorded it).
set -u

. "${TESTS_SRCDIR:?run through make check}/cli_lib.sh"

cli_begin test_csv_cli

mkdir -p in
: >"in/plain.txt"
: >"in/a,b.txt"
: >'in/say "hi".txt'
: >"in/two
lines.txt"
: >"in/crème brûlée 日本.txt"
: >"in/tab	in.txt"

cat >meta.pipe <<'EOF'
arg input
arg out
files = files.list dir=$input
csv   = csv.write  path=$out/files.csv columns=[name, path, index, missing]
tsv   = csv.write  path=$out/files.tsv sep="\t" newline=lf
jsonl = sink.jsonl path=$out/files.jsonl
files -> csv
files -> tsv
files -> jsonl
EOF

expect 0 validate -- "$DSPIPE" validate meta.pipe in res
expect 0 run -- "$DSPIPE" -q meta.pipe in res
[ -z "$(find res -name '.*tmp*')" ] && ok || fail "temporary files left in res/"
has res/files.csv 'name,path,index,missing' header
has res/files.csv '"a,b.txt"' comma-quoted
has res/files.csv '"say ""hi"".txt"' quote-doubled

if python3 -c 'import csv, json' 2>/dev/null; then
    python3 - res >py.out 2>&1 <<'EOF'
import csv, json, os, sys
res = sys.argv[1]
recs = [json.loads(l) for l in open(os.path.join(res, "files.jsonl"), encoding="utf-8")]
assert len(recs) == 6, len(recs)
by_item = {r["item"]: r["meta"] for r in recs}
raw = open(os.path.join(res, "files.csv"), "rb").read()
assert raw.endswith(b"\r\n"), "rows end in CRLF"
with open(os.path.join(res, "files.csv"), newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
assert rows[0] == ["name", "path", "index", "missing"], rows[0]
assert len(rows) == 7, len(rows)
for row in rows[1:]:
    m = by_item[int(row[2])]
    assert row == [m["name"], m["path"], str(m["index"]), ""], (row, m)
# no columns=: the scalar keys of the first packet, sorted
with open(os.path.join(res, "files.tsv"), newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f, delimiter="\t"))
cols = sorted(k for k, v in recs[0]["meta"].items() if not isinstance(v, (list, dict)))
assert rows[0] == cols, (rows[0], cols)
for row in rows[1:]:
    m = by_item[int(row[cols.index("index")])]
    assert row == [str(m[c]) for c in cols], (row, m)
print("ok: %d rows" % (len(rows) - 1))
EOF
    if [ $? -eq 0 ]; then ok; else fail "Python's csv module reads back other values"; cat py.out >&2; fi
else
    echo "SKIP: no python3: CSV not read back"
fi

# ---- meta.set tags every row; a value that is not a JSON object stops the run ------
cat >tag.pipe <<'EOF'
files = files.list dir=in
tag   = meta.set   json="{\"site\": \"A, north\", \"dose\": [1.5, 2]}"
csv   = csv.write  path=tagged.csv columns=[name, site, dose]
files -> tag -> csv
EOF
expect 0 meta-set -- "$DSPIPE" -q tag.pipe
[ "$(grep -c '"A, north","\[1.5,2\]"' tagged.csv)" = 6 ] && ok || fail "meta.set keys not in every row"
sed 's/json=".*"/json="[1, 2]"/' tag.pipe >tag_bad.pipe
expect 2 meta-set-not-object -- "$DSPIPE" -q tag_bad.pipe
has err "json: want an object" meta-set-not-object

# ---- a bad separator fails before anything runs, naming the parameter -----------
cat >bad.pipe <<'EOF'
files = files.list dir=in
csv   = csv.write  path=bad.csv sep=";;"
files -> csv
EOF
expect 2 bad-sep -- "$DSPIPE" -q bad.pipe
has err "sep=';;'" bad-sep
[ ! -e bad.csv ] && ok || fail "bad.csv written by a failed run"

cli_end test_csv_cli
