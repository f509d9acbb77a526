#!/usr/bin/env python3
"""make_tensorio_fixtures.py - writes the .npy/.safetensors fixtures under tests/data/tensorio/.

Run from anywhere:  python3 tests/reference/make_tensorio_fixtures.py
Needs numpy and safetensors (python3 -m pip install numpy safetensors).

Besides the files it writes expected.json, which test_tensorio.c reads:
  { file: { "format": "npy" | "safetensors",
            "metadata": {...}                      (safetensors only),
            "tensors": { name: { "dtype": dspipe dtype name, "shape": [...],
                                 "fortran": bool, "values": [text, ...] } } } }
Values are flat in C order and written as text ("0.5", "-3", "nan", "inf",
"18446744073709551615") so that 64-bit integers and non-finite floats survive
JSON; the C side parses them with strtod/strtoll/strtoull.
"""
import json
import os
import struct

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tensorio")
DSP_NAME = {"f": {2: "f16", 4: "f32", 8: "f64"},
            "i": {1: "i8", 2: "i16", 4: "i32", 8: "i64"},
            "u": {1: "u8", 2: "u16", 4: "u32", 8: "u64"},
            "b": {1: "bool"}}

expected = {}


def value_text(v):
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, float):
        if np.isnan(v):
            return "nan"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    return str(int(v))


def describe(a, fortran=False, dtype_name=None):
    flat = np.ascontiguousarray(a).reshape(-1)
    if dtype_name == "bf16":
        values = [value_text(float(v)) for v in flat.astype(np.float32)]
    else:
        values = [value_text(v) for v in flat.tolist()]
    return {"dtype": dtype_name or DSP_NAME[a.dtype.kind][a.dtype.itemsize],
            "shape": list(a.shape), "fortran": fortran, "values": values}


def npy(name, a, version=None, fortran=False):
    path = os.path.join(OUT, name)
    # the name promises the byte order and layout: make sure numpy kept them
    assert ("_be" in name) == (a.dtype.byteorder == ">"), name
    assert fortran == (a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous), name
    with open(path, "wb") as f:
        np.lib.format.write_array(f, a, version=version)
    expected[name] = {"format": "npy",
                      "tensors": {"x": describe(a, fortran=fortran)}}


def npy_unaligned(name, a):
    """A valid .npy whose data does not start on an element boundary
    (NumPy itself never writes one, but accepts it): exercises the copy path."""
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (
        a.dtype.str, repr(a.shape))
    d += " " * ((-(10 + len(d) + 1) + 3) % 64)   # data offset == 3 (mod 64)
    hdr = d + "\n"
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
        f.write(a.tobytes())
    assert np.array_equal(np.load(os.path.join(OUT, name)), a)
    expected[name] = {"format": "npy", "tensors": {"x": describe(a)}}


def bf16_bits(values):
    """Round-to-nearest-even f32 -> bf16 bit patterns (values chosen exact)."""
    u = np.asarray(values, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def safetensors_manual(name, tensors, metadata=None):
    """Write a safetensors file by hand for dtypes numpy lacks (BF16).
    tensors: list of (name, st_dtype, shape, raw bytes)."""
    header, off, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for tname, st_dtype, shape, raw in tensors:
        header[tname] = {"dtype": st_dtype, "shape": list(shape),
                         "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))

    # --- .npy: every dtype, both byte orders, both memory orders ----------
    npy("f4_c.npy", (np.arange(6, dtype="<f4").reshape(2, 3) * 0.5 - 1))
    npy("f4_be.npy", np.array([[1.5, -2.25], [3.0e-5, 1e30], [-0.0, 7.0]], dtype=">f4"))
    f8 = np.asfortranarray((np.arange(12, dtype="<f8").reshape(3, 4) / 7.0))
    npy("f8_fortran.npy", f8, fortran=True)
    f8be = np.asfortranarray((np.arange(12).reshape(3, 2, 2) - 5.5).astype(">f8"))
    npy("f8_be_fortran.npy", f8be, fortran=True)
    npy("f2.npy", np.array([0.5, -2.0, 65504.0, 6.1e-5, np.inf, -np.inf, np.nan, 0.0],
                           dtype="<f2"))
    npy("f2_be.npy", np.array([[1.0, -1.5], [1024.0, 0.099975586]], dtype=">f2"))
    npy("i1.npy", np.array([-128, -1, 0, 1, 127], dtype="|i1"))
    npy("i2_be.npy", np.array([[-32768, 32767], [-2, 258]], dtype=">i2"))
    npy("i4.npy", np.array([[-2147483648, 2147483647, 0]], dtype="<i4"))
    npy("i8.npy", np.array([-(2 ** 63), 2 ** 63 - 1, 42], dtype="<i8"))
    npy("i8_be_fortran.npy",
        np.asfortranarray((np.arange(6).reshape(2, 3) * -1000003).astype(">i8")), fortran=True)
    npy("u1.npy", np.array([[0, 1], [128, 255]], dtype="|u1"))
    npy("u2.npy", np.array([0, 1, 65535], dtype="<u2"))
    npy("u4_be.npy", np.array([0, 4294967295, 16909060], dtype=">u4"))
    npy("u8.npy", np.array([0, 2 ** 64 - 1, 2 ** 63], dtype="<u8"))
    npy("b1.npy", np.array([[True, False, True], [False, False, True]]))
    npy("scalar.npy", np.array(3.25, dtype="<f8"))
    npy("empty.npy", np.zeros((0, 3), dtype="<f4"))
    npy("dims5.npy", np.arange(12, dtype="<i2").reshape(2, 1, 3, 1, 2))
    npy("v2.npy", np.arange(4, dtype="<f4") + 0.25, version=(2, 0))
    npy("v3.npy", np.arange(4, dtype="<i4") - 2, version=(3, 0))
    npy_unaligned("unaligned_f4.npy", np.array([1.25, -8.5, 3.0], dtype="<f4"))

    # --- safetensors --------------------------------------------------------
    st = {
        "w": (np.arange(12, dtype=np.float32).reshape(3, 4) / 4 - 1),
        "b": np.array([0.5, -1.0, 2.0, 1024.0], dtype=np.float16),
        "ids": np.array([[1, -2, 3], [2 ** 40, 0, -(2 ** 63)]], dtype=np.int64),
        "mask": np.array([True, False, True, True, False]),
        "pix": np.array([[0, 255], [7, 128]], dtype=np.uint8),
        "d": np.array([1e-300, -2.5], dtype=np.float64),
        "s8": np.array([-128, 5], dtype=np.int8),
        "h": np.array([-300, 300], dtype=np.int16),
        "i": np.array([7, -7, 2 ** 31 - 1], dtype=np.int32),
        "uh": np.array([65535], dtype=np.uint16),
        "ui": np.array([4294967295, 3], dtype=np.uint32),
        "ul": np.array([2 ** 64 - 1], dtype=np.uint64),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    meta = {"format": "np", "author": "dspipe tests"}
    save_file(st, os.path.join(OUT, "multi.safetensors"), metadata=meta)
    expected["multi.safetensors"] = {
        "format": "safetensors", "metadata": meta,
        "tensors": {k: describe(v) for k, v in st.items()}}

    bf = [1.0, -2.5, 0.15625, 3.0e38, -0.0, 65536.0]
    w = np.arange(4, dtype=np.float32) * 0.75
    safetensors_manual("bf16.safetensors", [
        ("emb", "BF16", (2, 3), bf16_bits(bf).tobytes()),
        ("w", "F32", (4,), w.tobytes()),
    ], metadata={"dtype": "bfloat16"})
    expected["bf16.safetensors"] = {
        "format": "safetensors", "metadata": {"dtype": "bfloat16"},
        # expected values are what the bf16 bits mean (3e38 is rounded)
        "tensors": {"emb": describe((bf16_bits(bf).astype(np.uint32) << 16)
                                    .view(np.float32).reshape(2, 3), dtype_name="bf16"),
                    "w": describe(w)}}

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    for f in os.listdir(OUT):       # safetensors creates its files 0600
        os.chmod(os.path.join(OUT, f), 0o644)


if __name__ == "__main__":
    main()
