#!/usr/bin/env python3
"""check_tensorio_roundtrip.py - reads files that dspipe wrote with numpy and safetensors (the references).

Usage: check_tensorio_roundtrip.py DIR
DIR/manifest.json (written by tests/test_tensorio_python.c) lists each file:
  { file: { "format": "npy" | "safetensors", "metadata": {...},
            "tensors": { name: { "dtype": dspipe name, "shape": [...],
                                 "values": [text, ...] } } } }
Exit 0 when every file reads back with the same dtype, shape and values,
1 on a mismatch, 77 (skip) when numpy or safetensors is missing.
"""
import json
import os
import sys

try:
    import numpy as np
    import safetensors
    from safetensors import safe_open
except ImportError as e:          # the test is skipped, not failed
    print("skipping: %s (python3 -m pip install numpy safetensors)" % e)
    sys.exit(77)

NP_DTYPE = {"f16": "<f2", "f32": "<f4", "f64": "<f8", "i8": "|i1", "i16": "<i2",
            "i32": "<i4", "i64": "<i8", "u8": "|u1", "u16": "<u2", "u32": "<u4",
            "u64": "<u8", "bool": "|b1"}
ST_DTYPE = {"f16": "F16", "f32": "F32", "f64": "F64", "bf16": "BF16", "i8": "I8",
            "i16": "I16", "i32": "I32", "i64": "I64", "u8": "U8", "u16": "U16",
            "u32": "U32", "u64": "U64", "bool": "BOOL"}


def compare(where, arr, spec):
    """arr: numpy array (bf16 already widened to f32)."""
    if list(arr.shape) != spec["shape"]:
        return "%s: shape %s, dspipe wrote %s" % (where, list(arr.shape), spec["shape"])
    flat = np.ascontiguousarray(arr).reshape(-1)
    vals = spec["values"]
    if arr.dtype.kind in "iub":
        got = [int(v) for v in flat.tolist()]
        want = [int(v) for v in vals]
    else:
        # dspipe prints just enough digits for the element type: compare there
        got = flat
        want = np.array([float(v) for v in vals], dtype=np.float64).astype(flat.dtype)
        if np.array_equal(got, want, equal_nan=True):
            return None
        got, want = got.tolist(), want.tolist()
    if got != want:
        return "%s: values differ: numpy reads %s, dspipe wrote %s" % (where, got[:8], want[:8])
    return None


def check_npy(path, spec):
    t = spec["tensors"]["x"]
    arr = np.load(path)
    if arr.dtype.str != NP_DTYPE[t["dtype"]]:
        return "%s: numpy reads dtype %s, expected %s" % (path, arr.dtype.str, NP_DTYPE[t["dtype"]])
    return compare(path, arr, t)


def check_safetensors(path, spec):
    with open(path, "rb") as f:
        raw = f.read()
    # the reference parser validates the header and the data layout
    entries = dict(safetensors.deserialize(raw))
    if set(entries) != set(spec["tensors"]):
        return "%s: tensors %s, expected %s" % (path, sorted(entries), sorted(spec["tensors"]))
    with safe_open(path, framework="numpy") as f:
        if (f.metadata() or {}) != spec.get("metadata", {}):
            return "%s: metadata %s, expected %s" % (path, f.metadata(), spec.get("metadata"))
    for name, t in spec["tensors"].items():
        e = entries[name]
        if e["dtype"].upper() != ST_DTYPE[t["dtype"]]:
            return "%s:%s: dtype %s, expected %s" % (path, name, e["dtype"], ST_DTYPE[t["dtype"]])
        data = bytes(e["data"])
        if t["dtype"] == "bf16":
            u = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(data, dtype=NP_DTYPE[t["dtype"]])
        arr = arr.reshape(e["shape"])
        why = compare("%s:%s" % (path, name), arr, t)
        if why:
            return why
    return None


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "manifest.json")) as f:
        manifest = json.load(f)
    bad = 0
    for name, spec in sorted(manifest.items()):
        path = os.path.join(d, name)
        check = check_npy if spec["format"] == "npy" else check_safetensors
        why = check(path, spec)
        print("%s %s" % ("FAIL" if why else "ok  ", why or name))
        bad += why is not None
    print("%d passed, %d failed" % (len(manifest) - bad, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
