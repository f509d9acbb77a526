#!/usr/bin/python3
"""make_dicom_fixtures.py - expected pixel values of pydicom's DICOM test files and a small generated CT series, for tests/test_dicom.c.

    /usr/bin/python3 tests/reference/make_dicom_fixtures.py [tests/data/dicom]

Needs Debian's python3-pydicom (2.3.1), python3-numpy, python3-gdcm and python3-pil (the
JPEG, JPEG-LS and JPEG 2000 decoders pydicom uses). Run it with /usr/bin/python3: Debian's
python3-* packages are not seen by other Python builds.

Writes into the output folder:

  expected.json   for every file of pydicom's test set named in FILES: the transfer syntax,
                  shape and dtype dspipe must produce, an FNV-1a 64 hash of the expected
                  array's bytes (little endian), its mean, and a strided sample of about
                  400 values with their flat indices; "tol" is 0 where the decode must be
                  exact (lossless) and the largest allowed absolute difference for lossy JPEG.
                  Monochrome: float32(stored * RescaleSlope + RescaleIntercept) computed in
                  float64, pydicom's apply_modality_lut; colour: uint8/16/32 RGB, pydicom's
                  pixel_array converted from YBR_FULL with convert_color_space where pydicom
                  leaves it in YBR.
  gen/            small generated series (pydicom writes them; the values are known):
                  ct/        6 axial CT slices 20 x 16, int16, intercept -1024, slope 1, file
                             names shuffled and InstanceNumber reversed against position,
                             PatientName/ID/BirthDate set (to check they are dropped)
                  mr/        3 MR slices 8 x 8, uint16 with BitsStored 12 and garbage above,
                             slope 0.25, intercept -1000.5, tilted orientation
                  gap/       the ct series without its 3rd slice
                  dup/       the ct series with one position twice
                  mixed/     the ct series with one slice 20 x 18
                  shear/     4 ct slices each 1 mm further along x (gantry tilt)
                  noipp/     3 slices without ImagePositionPatient: InstanceNumber order
                  mono1/     one MONOCHROME1 8-bit signed image
                  enhanced/  one enhanced multi-frame CT (4 frames out of spatial order,
                             geometry and rescale in the functional groups)
                  unsupported/ an MPEG-2 (1.2.840.10008.1.2.4.100) file
                  notes/     README.txt (not DICOM) and a DICOMDIR
                  gen.json   the expected volumes (as FNV hashes and samples) and geometry
"""
import json
import os
import random
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixel_data_handlers.util import apply_modality_lut, convert_color_space
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian

TEST_FILES = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")

# name: tolerance (0 = exact). Lossy JPEG: DCMTK's IJG decoder vs libjpeg-turbo / GDCM.
FILES = {
    "CT_small.dcm": 0, "MR_small.dcm": 0, "MR_small_implicit.dcm": 0,
    "MR_small_bigendian.dcm": 0, "MR_small_expb.dcm": 0, "MR_small_padded.dcm": 0,
    "MR_small_RLE.dcm": 0, "MR_small_jpeg_ls_lossless.dcm": 0, "MR_small_jp2klossless.dcm": 0,
    "image_dfl.dcm": 0, "rtdose.dcm": 0, "rtdose_expb.dcm": 0, "rtdose_rle.dcm": 0,
    "SC_rgb_rle.dcm": 0, "SC_rgb_rle_16bit.dcm": 0, "SC_rgb_rle_2frame.dcm": 0,
    "SC_rgb_rle_32bit_2frame.dcm": 0, "ExplVR_BigEnd.dcm": 0, "SC_rgb_small_odd.dcm": 0,
    "SC_ybr_full_422_uncompressed.dcm": 1, "SC_rgb_jpeg_gdcm.dcm": 0,
    "GDCMJ2K_TextGBR.dcm": 0, "JPEG2000.dcm": 0, "693_J2KI.dcm": 0, "SC_rgb_gdcm_KY.dcm": 0,
    "JPEG-lossy.dcm": 8, "JPGExtended.dcm": 8, "SC_rgb_jpeg_dcmtk.dcm": 8,
    "SC_rgb_dcmtk_+eb+cy+s2.dcm": 8, "SC_rgb_dcmtk_+eb+cr.dcm": 8,
    "SC_jpeg_no_color_transform.dcm": 8, "SC_rgb_jpeg_lossy_gdcm.dcm": 8,
}


def fnv1a64(b):
    h = 0xcbf29ce484222325
    for x in b:
        h ^= x
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def fnv_fast(arr):
    """FNV-1a over the little-endian bytes; numpy-vectorised per byte would not be
    sequential, so run it in chunks of Python ints (the arrays are small)."""
    return fnv1a64(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())


def summary(arr, tol):
    flat = arr.reshape(-1)
    step = max(1, flat.size // 400)
    idx = np.arange(0, flat.size, step)
    return {
        "shape": list(arr.shape), "dtype": {"float32": "f32", "uint8": "u8", "uint16": "u16",
                                            "uint32": "u32"}[str(arr.dtype)],
        "fnv": fnv_fast(arr), "mean": float(flat.astype(np.float64).mean()), "tol": tol,
        "index": idx.tolist(), "value": [float(v) for v in flat[idx]],
    }


def expected_of(ds):
    arr = ds.pixel_array
    nf = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.SamplesPerPixel)
    if spp == 1:
        if nf == 1:
            arr = arr[None]
        return apply_modality_lut(arr, ds).astype(np.float64).astype(np.float32)
    pi = ds.PhotometricInterpretation
    if nf == 1:
        arr = arr[None]
    # pydicom leaves YBR data (JPEG via Pillow, native 4:2:2) in YBR; dspipe gives RGB
    if pi.startswith("YBR_FULL"):
        arr = convert_color_space(arr, "YBR_FULL", "RGB")
    return arr.astype({1: np.uint8, 2: np.uint16, 4: np.uint32}[arr.dtype.itemsize])


def pydicom_files(out):
    res = {}
    for name, tol in FILES.items():
        ds = pydicom.dcmread(os.path.join(TEST_FILES, name))
        e = summary(expected_of(ds), tol)
        e["transfer_syntax"] = str(ds.file_meta.TransferSyntaxUID)
        res[name] = e
        print("%-36s %-24s %-14s %s tol %g" % (name, e["transfer_syntax"], e["shape"],
                                               e["dtype"], tol))
    return res


# ---- generated series ---------------------------------------------------------------

STUDY = "1.2.826.0.1.3680043.10.543.1"
ROOT = "1.2.826.0.1.3680043.10.543."


def base_ds(series_uid, modality, rows, cols, number):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "DOE^JOHN", "PID12345", "19700101"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series_uid
    ds.FrameOfReferenceUID = ROOT + "99"
    ds.Modality, ds.SeriesNumber = modality, number
    ds.SeriesDescription = {"CT": "Axial CT", "MR": "T1 tilted"}.get(modality, "other")
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelSpacing = [0.7, 0.8]
    ds.SliceThickness = 2.5
    return ds


def save(ds, path, uid_n):
    ds.SOPInstanceUID = ROOT + "1.%d" % uid_n
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, write_like_original=False)


def ct_slices(rng, rows=16, cols=20, n=6):
    """HU volume [n, rows, cols] and per-slice z positions (descending by 2.5 mm)."""
    vol = rng.integers(-1024, 2000, size=(n, rows, cols)).astype(np.int16)
    z = [10.0 - 2.5 * k for k in range(n)]
    return vol, z


def write_ct(folder, series_uid, vol, z, names, shuffle_seed, uid_base, sizes=None, shift=0.0):
    order = list(range(len(z)))
    random.Random(shuffle_seed).shuffle(order)
    for rank, k in enumerate(order):
        sl = vol[k] if sizes is None or sizes[k] is None else sizes[k]
        ds = base_ds(series_uid, "CT", sl.shape[0], sl.shape[1], 2)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-5.0 + shift * k, -7.0, z[k]]
        ds.InstanceNumber = 1 + k          # reversed against position: z falls as k grows
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = (sl.astype(np.int32) + 1024).astype(np.int16).tobytes()
        save(ds, os.path.join(folder, names[rank]), uid_base + k)


def generated(out):
    rng = np.random.default_rng(7)
    gen = os.path.join(out, "gen")
    info = {}
    vol, z = ct_slices(rng)
    names = ["f%02d_%s" % (i, c) for i, c in enumerate("qzamkx")]
    write_ct(os.path.join(gen, "ct"), ROOT + "2.1", vol, z, names, 1, 100)
    # sorted by position along the normal (0, 0, 1): ascending z = reversed k
    expect = vol[::-1].astype(np.float32)
    info["ct"] = dict(summary(expect, 0), spacing_mm=[2.5, 0.7, 0.8],
                      origin_mm=[-5.0, -7.0, z[-1]], direction=[1, 0, 0, 0, 1, 0, 0, 0, 1])
    keep = [k for k in range(6) if k != 2]
    write_ct(os.path.join(gen, "gap"), ROOT + "2.2", vol[keep], [z[k] for k in keep],
             names[:5], 2, 200)
    zd = list(z)
    zd[4] = zd[3]
    write_ct(os.path.join(gen, "dup"), ROOT + "2.3", vol, zd, names, 3, 300)
    sizes = [None] * 6
    sizes[1] = rng.integers(-1000, 1000, size=(16, 18)).astype(np.int16)
    write_ct(os.path.join(gen, "mixed"), ROOT + "2.4", vol, z, names, 4, 400, sizes)

    # gantry tilt: each slice 1 mm further along x (in-plane), refused unless allow_shear
    write_ct(os.path.join(gen, "shear"), ROOT + "2.10", vol[:4], z[:4], names[:4], 5, 1000,
             shift=1.0)

    # MR: 12 bits stored in 16 with garbage above, fractional rescale, tilted orientation
    c, s = np.cos(0.3), np.sin(0.3)
    row, col = np.array([1, 0, 0]), np.array([0, c, s])
    normal = np.cross(row, col)
    mr = rng.integers(0, 4096, size=(3, 8, 8)).astype(np.uint16)
    for k in range(3):
        ds = base_ds(ROOT + "2.5", "MR", 8, 8, 3)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = 0.25, -1000.5
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate([row, col])]
        ds.ImagePositionPatient = [float(v) for v in (np.array([1.0, 2.0, 3.0]) + 4.0 * k * normal)]
        ds.InstanceNumber = k + 1
        ds.PixelData = (mr[k] | np.uint16(0xA000)).tobytes()   # bits 13-15 must be masked
        save(ds, os.path.join(gen, "mr", "mr%d.dcm" % k), 500 + k)
    info["mr"] = dict(summary((mr.astype(np.float64) * 0.25 - 1000.5).astype(np.float32), 0),
                      spacing_mm=[4.0, 0.7, 0.8])

    # no positions: InstanceNumber order, with a note
    nv = rng.integers(0, 255, size=(3, 4, 4)).astype(np.uint8)
    for i, k in enumerate([2, 0, 1]):
        ds = base_ds(ROOT + "2.6", "OT", 4, 4, 4)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.InstanceNumber = k + 1
        ds.PixelData = nv[k].tobytes()
        save(ds, os.path.join(gen, "noipp", "n%d.dcm" % i), 600 + k)
    info["noipp"] = summary(nv.astype(np.float32), 0)

    # MONOCHROME1, 8-bit signed: values pass through, dicom.window inverts
    m1 = rng.integers(-128, 127, size=(1, 5, 6)).astype(np.int8)
    ds = base_ds(ROOT + "2.7", "CR", 5, 6, 5)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 1
    ds.PixelData = m1.tobytes()
    save(ds, os.path.join(gen, "mono1", "m1.dcm"), 700)
    info["mono1"] = summary(m1.astype(np.float32), 0)

    # an enhanced multi-frame CT: geometry in the functional groups, frames out of order
    mf = rng.integers(-1000, 1000, size=(4, 5, 6)).astype(np.int16)
    zs = [5.0, 0.0, 15.0, 10.0]
    ds = base_ds(ROOT + "2.9", "CT", 5, 6, 7)
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    del ds.PixelSpacing, ds.SliceThickness
    ds.NumberOfFrames = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    orient, meas, trans = Dataset(), Dataset(), Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    meas.PixelSpacing, meas.SliceThickness = [0.5, 0.6], 5.0
    trans.RescaleSlope, trans.RescaleIntercept, trans.RescaleType = 2, -10, "HU"
    shared.PlaneOrientationSequence = [orient]
    shared.PixelMeasuresSequence = [meas]
    shared.PixelValueTransformationSequence = [trans]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for z in zs:
        fg, pos = Dataset(), Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, z]
        fg.PlanePositionSequence = [pos]
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = mf.tobytes()
    save(ds, os.path.join(gen, "enhanced", "mf.dcm"), 900)
    order = np.argsort(zs)
    info["enhanced"] = dict(summary((mf[order].astype(np.float64) * 2 - 10).astype(np.float32), 0),
                            spacing_mm=[5.0, 0.5, 0.6])

    # a valid file in a transfer syntax dspipe does not decode (MPEG-2): refused by name
    ds = base_ds(ROOT + "2.8", "OT", 4, 4, 6)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(12)])
    ds["PixelData"].is_undefined_length = True
    ds["PixelData"].VR = "OB"
    save(ds, os.path.join(gen, "unsupported", "mpeg2.dcm"), 800)

    # a text file and a DICOMDIR: skipped with a note
    os.makedirs(os.path.join(gen, "notes"), exist_ok=True)
    with open(os.path.join(gen, "notes", "README.txt"), "w") as f:
        f.write("not a DICOM file\n")
    dd = Dataset()
    dd.file_meta = FileMetaDataset()
    dd.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    dd.file_meta.MediaStorageSOPInstanceUID = ROOT + "3.1"
    dd.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dd.is_little_endian, dd.is_implicit_VR = True, False
    dd.FileSetID = "DSPIPE"
    dd.DirectoryRecordSequence = []
    dd.save_as(os.path.join(gen, "notes", "DICOMDIR"), write_like_original=False)
    with open(os.path.join(gen, "gen.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "data", "dicom")
    os.makedirs(out, exist_ok=True)
    res = pydicom_files(out)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"pydicom": pydicom.__version__, "files": res}, f, indent=1, sort_keys=True)
        f.write("\n")
    generated(out)


if __name__ == "__main__":
    main()
