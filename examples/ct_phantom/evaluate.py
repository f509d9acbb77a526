#!/usr/bin/env python3
"""evaluate.py - generate phantom studies, run pipelines/medical_ct.pipe on them, score the findings.

    python3 examples/ct_phantom/evaluate.py --seeds 1-20 [--size 512 --slices 300 --thickness 1]
                                            [--work /tmp/ct_eval] [--dspipe build/core/dspipe]
                                            [--check]

Each study is generated with make_phantom.py (by /usr/bin/python3, which has
Debian's pydicom and numpy; --python to change) into WORK/seed_N unless it
is already there, run through the pipeline into WORK/out_N, and its
findings.json compared with truth.json:

  - a finding matches a nodule when its centre is within the nodule's radius
    or 3 mm of the nodule's centre (whichever is larger); each nodule takes
    its nearest matching finding;
  - a finding that matches no nodule is a false positive;
  - sensitivity counts nodules of at least 4 mm; centre and diameter errors
    are medians over the matched nodules of at least 4 mm.

Prints one line per study and the totals; with --check the exit status is 1
unless sensitivity >= 95 %, FP/study <= 1, median centre error <= 1.5 mm and
median diameter error <= 1 mm (the acceptance of issue 6; --min-sensitivity
and --max-fp change the first two), and also when findings.json holds a
patient attribute.

Needs only the standard library itself; DSPIPE_PLUGIN_PATH must reach the
dicom and ct plugins (--plugin-path adds to it).
"""
import argparse
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PHI_VALUES = ("PHANTOM^CHEST", "19600101")  # what make_phantom.py puts in the patient module


def parse_seeds(text):
    seeds = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            seeds.extend(range(int(a), int(b) + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def generate(args, seed, data):
    if os.path.exists(os.path.join(data, "truth.json")):
        return 0.0
    t = time.time()
    cmd = [args.python, os.path.join(HERE, "make_phantom.py"), data, "--seed", str(seed),
           "--size", str(args.size), "--slices", str(args.slices),
           "--thickness", str(args.thickness)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.time() - t


def run_pipeline(args, data, out):
    env = dict(os.environ)
    if args.plugin_path:
        env["DSPIPE_PLUGIN_PATH"] = args.plugin_path + (
            ":" + env["DSPIPE_PLUGIN_PATH"] if env.get("DSPIPE_PLUGIN_PATH") else "")
    cmd = [args.dspipe, "--threads", str(args.threads), args.pipe, data, out]
    cmd += sum((["--set", s] for s in args.set), [])
    t = time.time()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.time() - t
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit(f"evaluate.py: dspipe failed on {data} (exit {r.returncode})")
    files = glob.glob(os.path.join(out, "*", "findings.json"))
    if len(files) != 1:
        raise SystemExit(f"evaluate.py: expected one findings.json under {out}, got {files}")
    with open(files[0]) as f:
        text = f.read()
    return json.loads(text), text, dt


def score(truth, found):
    """Match findings to nodules; returns per-nodule (nodule, finding or None) and the FPs."""
    nods = truth["nodules"]
    fs = found["findings"]
    used = set()
    matches = []
    for n in nods:
        tol = max(n["diameter_mm"] / 2, 3.0)
        best, best_d = None, None
        for k, f in enumerate(fs):
            d = math.dist(n["center_mm"], f["center_mm"])
            if d <= tol and (best_d is None or d < best_d):
                best, best_d = k, d
        matches.append((n, None if best is None else fs[best], best_d))
        if best is not None:
            used.add(best)
    # a finding is a false positive only if it lies near no nodule at all
    fps = [f for k, f in enumerate(fs) if k not in used and not any(
        math.dist(n["center_mm"], f["center_mm"]) <= max(n["diameter_mm"] / 2, 3.0)
        for n in nods)]
    return matches, fps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1-20", help="e.g. 1-20 or 1,4,9 (default 1-20)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--thickness", type=float, default=1.0)
    ap.add_argument("--work", default="/tmp/ct_eval", help="studies and outputs go here")
    ap.add_argument("--dspipe", default=os.environ.get("DSPIPE_BIN", "dspipe"))
    ap.add_argument("--pipe", default=os.path.join(ROOT, "pipelines", "medical_ct.pipe"))
    ap.add_argument("--plugin-path", default="", help="prepended to DSPIPE_PLUGIN_PATH")
    ap.add_argument("--python", default="/usr/bin/python3",
                    help="interpreter with pydicom + numpy for make_phantom.py")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="NAME=VALUE for the pipeline")
    ap.add_argument("--check", action="store_true", help="exit 1 when the acceptance fails")
    ap.add_argument("--min-sensitivity", type=float, default=0.95,
                    help="--check: least sensitivity for nodules >= 4 mm (default 0.95)")
    ap.add_argument("--max-fp", type=float, default=1.0,
                    help="--check: most false positives per study (default 1)")
    args = ap.parse_args()

    tag = f"{args.size}x{args.slices}x{args.thickness:g}"
    n_big = hit_big = n_fp = n_studies = 0
    center_err, diam_err, phi_leaks = [], [], []
    for seed in parse_seeds(args.seeds):
        data = os.path.join(args.work, f"seed_{seed}_{tag}")
        out = os.path.join(args.work, f"out_{seed}_{tag}")
        gen_s = generate(args, seed, data)
        found, text, run_s = run_pipeline(args, data, out)
        with open(os.path.join(data, "truth.json")) as f:
            truth = json.load(f)
        matches, fps = score(truth, found)
        n_studies += 1
        n_fp += len(fps)
        if any(v in text for v in PHI_VALUES) or '"patient' in text:
            phi_leaks.append(seed)
        missed = []
        for n, f, d in matches:
            if n["diameter_mm"] < 4:
                continue
            n_big += 1
            if f is None:
                missed.append(f'{n["diameter_mm"]:.1f}mm {n["kind"]}')
                continue
            hit_big += 1
            center_err.append(d)
            diam_err.append(abs(f["diameter_mm"] - n["diameter_mm"]))
        big = sum(1 for n, _, _ in matches if n["diameter_mm"] >= 4)
        print(f"seed {seed:3d}: {len(found['findings'])} findings, "
              f"{big - len(missed)}/{big} nodules >= 4 mm, {len(fps)} FP"
              + (f", missed {', '.join(missed)}" if missed else "")
              + (", FP " + ", ".join(f'{f["diameter_mm"]:.1f}mm {f["type"]}' for f in fps)
                 if fps else "")
              + f"  (run {run_s:.1f} s" + (f", generated in {gen_s:.0f} s)" if gen_s else ")"),
              flush=True)
    sens = hit_big / n_big if n_big else float("nan")
    fp_rate = n_fp / n_studies if n_studies else float("nan")
    ce = statistics.median(center_err) if center_err else float("nan")
    de = statistics.median(diam_err) if diam_err else float("nan")
    print(f"\n{n_studies} studies ({tag}, seeds {args.seeds}): sensitivity (>= 4 mm) "
          f"{hit_big}/{n_big} = {100 * sens:.1f} %, FP/study {fp_rate:.2f}, "
          f"median centre error {ce:.2f} mm, median diameter error {de:.2f} mm, "
          f"PHI in findings.json: {'seeds ' + str(phi_leaks) if phi_leaks else 'none'}")
    if args.check:
        ok = (sens >= args.min_sensitivity and fp_rate <= args.max_fp and ce <= 1.5 and de <= 1.0
              and not phi_leaks)
        print("acceptance:", "PASS" if ok else "FAIL")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
