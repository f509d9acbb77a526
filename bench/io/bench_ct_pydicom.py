#!/usr/bin/python3
"""bench_ct_pydicom.py - the peer of dicom.read: a CT series folder to an f32 HU volume with pydicom + numpy.

    /usr/bin/python3 bench/io/bench_ct_pydicom.py DIR [REPS] [WARMUP]

What a Python pipeline does without a DICOM library of its own: pydicom.dcmread
every *.dcm file, sort the slices by ImagePositionPatient projected on the
slice normal (the cross product of ImageOrientationPatient's row and column
directions), pixel_array (decompressed by whatever handler pydicom has: numpy
for native data, GDCM or pylibjpeg for compressed), RescaleSlope/Intercept in
float32, np.stack. One repetition is all of that, file reading included;
WARMUP untimed repetitions come first. Prints one JSON line in bench_io's
format (seconds, median, shape, sum of the volume in double), plus the
pixel handler that decoded the first file.
"""
import glob
import os
import sys

import numpy as np
import pydicom

from peer_timing import arguments, report, timed


def load_volume(paths):
    slices = [pydicom.dcmread(p) for p in paths]
    row = np.array(slices[0].ImageOrientationPatient[:3], dtype=np.float64)
    col = np.array(slices[0].ImageOrientationPatient[3:], dtype=np.float64)
    normal = np.cross(row, col)
    slices.sort(key=lambda ds: float(np.dot(normal, np.array(ds.ImagePositionPatient,
                                                                dtype=np.float64))))
    planes = []
    for ds in slices:
        slope = np.float32(getattr(ds, "RescaleSlope", 1.0))
        intercept = np.float32(getattr(ds, "RescaleIntercept", 0.0))
        planes.append(ds.pixel_array.astype(np.float32) * slope + intercept)
    return np.stack(planes), slices[0]


def handler_of(ds):
    """The pixel data handler pydicom used for ds (pydicom 2.x keeps none on
    the dataset, so ask each available one whether it supports the syntax,
    in pydicom's order)."""
    tsyntax = ds.file_meta.TransferSyntaxUID
    for h in pydicom.config.pixel_data_handlers:
        if h.is_available() and h.supports_transfer_syntax(tsyntax):
            return f"{h.__name__.split('.')[-1]} ({tsyntax.name})"
    return f"none ({tsyntax.name})"


def main():
    folder, reps, warmup = arguments(__doc__, 5, 1)
    paths = sorted(glob.glob(os.path.join(folder, "*.dcm")))
    if not paths:
        sys.exit(f"bench_ct_pydicom.py: no *.dcm files in {folder}")
    secs, cpu, (vol, first) = timed(lambda: load_volume(paths), reps, warmup)
    report(secs, cpu, impl="pydicom", op="dcmread+stack", files=len(paths), shape=list(vol.shape),
           dtype="f32", sum=float(vol.sum(dtype=np.float64)), handler=handler_of(first),
           pydicom=pydicom.__version__, numpy=np.__version__)


if __name__ == "__main__":
    main()
