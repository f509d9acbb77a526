#!/usr/bin/env python3
"""compare.py - bench/io's driver: each benchmark's sides run alternately ROUNDS times; medians and ratios against issue 4's targets.

    python3 bench/io/compare.py --build BUILD --data CACHE [--rounds N] [--parts ct,ctz,video,image]

run.sh calls it after make_data.sh and after building bench_io. A benchmark has
two or more sides (dspipe and its peer); a round runs each side once, the
order rotating from round to round, so a burst of load from other processes
falls on the sides alike. A side's figure is either the wall time of its
whole command (process start, imports / plugin loading and everything else
included) or the in-process median its program prints (bench_io,
bench_ct_pydicom.py, bench_image_pillow.py: one JSON line). The summary gives
each side's median over the rounds, the ratio peer / dspipe (above 1: dspipe
is faster) and the target, and checks that the sides produced the same
result where both report it (the sum of the volume or the image's samples).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Side:
    """One side of a benchmark: a command and which of its times counts."""

    def __init__(self, label, argv, env=None, inproc=False):
        self.label, self.argv, self.env, self.inproc = label, argv, env, inproc
        self.values, self.sums, self.cpu, self.rss = [], [], [], []

    def run(self):
        env = dict(os.environ, **(self.env or {}))
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(self.argv, env=env, stdout=out, stderr=err)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if p.returncode != 0:
            sys.exit(f"compare.py: {self.label}: exit status {p.returncode}: "
                     f"{' '.join(self.argv)}\n{stderr[-2000:]}")
        lines = [l for l in stdout.splitlines() if l.startswith("{")]
        res = json.loads(lines[-1]) if lines else {}
        if self.inproc and "median_s" not in res:
            sys.exit(f"compare.py: {self.label}: no JSON result on stdout:\n{stdout[-2000:]}")
        self.values.append(res["median_s"] if self.inproc else wall)
        # in process: the program's own CPU median; whole command: the process's
        self.cpu.append(res.get("cpu_median_s", 0) if self.inproc
                        else ru.ru_utime + ru.ru_stime)
        self.rss.append(ru.ru_maxrss / 1024)
        if "sum" in res:
            self.sums.append(res["sum"])
        return res


class Bench:
    def __init__(self, name, what, sides, target=None, rounds=None):
        self.name, self.what, self.sides, self.target = name, what, sides, target
        self.rounds = rounds     # None: --rounds
        self.extra = {}          # label -> the first JSON result (versions, handler)
        self.loads = []

    def round(self, r):
        self.loads.append(load())
        n = len(self.sides)
        for k in range(n):
            side = self.sides[(r + k) % n]
            res = side.run()
            self.extra.setdefault(side.label, res)

    def report(self, out):
        dsp = self.sides[0]
        dmed = statistics.median(dsp.values)
        out.append(f"### {self.name}")
        out.append(f"{self.what}")
        out.append(f"load before each round: {'; '.join(self.loads)}")
        out.append("")
        whole = not dsp.inproc
        dcpu = statistics.median(dsp.cpu)
        out.append("| side | median | all rounds | peer / dspipe | CPU (user+sys) | "
                   "CPU peer / dspipe |" + (" peak RSS |" if whole else ""))
        out.append("|---|---|---|---|---|---|" + ("---|" if whole else ""))
        for s in self.sides:
            med, cpu = statistics.median(s.values), statistics.median(s.cpu)
            ratio = "" if s is dsp else f"**{med / dmed:.2f}x**"
            cratio = "" if s is dsp or not dcpu else f"{cpu / dcpu:.2f}x"
            row = (f"| {s.label} | {fmt(med)} | {', '.join(fmt(v) for v in s.values)} | "
                   f"{ratio} | {fmt(cpu)} | {cratio} |")
            if whole:
                row += f" {max(s.rss):.0f} MB |"
            out.append(row)
        if self.target:
            peer = self.sides[1]
            r = statistics.median(peer.values) / dmed
            out.append("")
            out.append(f"target: dspipe >= {self.target}x {peer.label} (as a speed ratio): "
                       f"{r:.2f}x, **{'met' if r >= self.target else 'NOT met'}**")
        sums = {s.label: s.sums[0] for s in self.sides if s.sums}
        if len(sums) > 1:
            same = len({round(v, 3) for v in sums.values()}) == 1
            out.append(f"same result on every side (sum of all samples {next(iter(sums.values())):.0f}): "
                       f"{'yes' if same else 'NO: ' + str(sums)}")
        notes = [f"{k}: {v[f]}" for k, v in self.extra.items() for f in ("handler", "libs")
                 if f in v]
        if notes:
            out.append("; ".join(notes))
        out.append("")


def fmt(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.3f} s"


def ct_benches(a, env, kind, label):
    folder = os.path.join(a.data, kind)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".dcm"))
    py = ["/usr/bin/python3", os.path.join(HERE, "bench_ct_pydicom.py"), folder]
    study = [a.dspipe, "-q", "-j", "2", os.path.join(HERE, "ct_study_null.pipe"), folder]
    flist = [a.dspipe, "-q", "-j", "2", os.path.join(HERE, "ct_null.pipe"), folder]
    bench_io = [os.path.join(a.build, "bench_io")]
    out = []
    if kind == "ct":
        out.append(Bench(
            f"CT {label}: whole command", f"300 x 512 x 512 from {folder} to an f32 HU volume, "
            "one process each: `dspipe ct_study_null.pipe` (dicom.studies -> dicom.read "
            "input=studies -> sink.null, as medical_ct.pipe reads; the study's files decoded "
            "on 2 threads) against `bench_ct_pydicom.py DIR 1 0` (one pass, no warm-up)",
            [Side("dspipe CLI", study, env), Side("pydicom + numpy", py + ["1", "0"])], 5))
        out.append(Bench(
            f"CT {label}: whole command, one file at a time", "the same with `dspipe "
            "ct_null.pipe` (files.list -> dicom.read -> sink.null: dicom.read's folder mode "
            "reads the files one by one on one thread)",
            [Side("dspipe CLI", flist, env), Side("pydicom + numpy", py + ["1", "0"])]))
    # a compressed series takes pydicom seconds a pass: one pass after one warm-up
    reps = "3" if kind == "ct" else "1"
    out.append(Bench(
        f"CT {label}: in process", f"the same work timed inside each process, median of {reps} "
        "pass(es) after 1 warm-up: bench_io -s dicom.read input=studies (read and decode on 2 "
        "threads, sort, HU) against dcmread + sort + rescale + np.stack",
        [Side("dspipe dicom.read", bench_io + ["-n", reps, "-w", "1", "-s", "dicom.read",
                                               "input=studies", "--"] + files, env, inproc=True),
         Side("pydicom + numpy", py + [reps, "1"], inproc=True)],
        5 if kind == "ct" else None,     # issue 4's target is for the native series
        rounds=a.rounds if kind == "ct" else min(a.rounds, 3)))
    return out


def video_benches(a, env):
    out = []
    folder = os.path.join(a.data, "video")
    for clip in ("h264_1280x720.mp4", "hevc_1280x720.mp4", "h264_1920x1080.mp4"):
        path = os.path.join(folder, clip)
        for every in (1, 2):
            dspipe = [a.dspipe, "-q", "-j", "2", os.path.join(HERE, "video_null.pipe"), folder,
                      clip, "--set", f"every={every}"]
            vf = "scale=224:224:flags=bilinear,format=rgb24"
            ff = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "2",
                  "-i", path]
            if every == 1:
                ff += ["-vf", vf]
                what = "every frame"
            else:
                ff += ["-vf", f"select=not(mod(n\\,{every})),{vf}", "-fps_mode", "passthrough"]
                what = f"every {every}nd frame"
            ff += ["-f", "null", "-"]
            out.append(Bench(
                f"video {clip}, {what}", f"decode (2 threads) + scale to 224x224 RGB "
                f"(bilinear): `dspipe video_null.pipe` against "
                f"`{' '.join(ff).replace(folder + '/', '')}`",
                [Side("dspipe CLI", dspipe, env), Side("ffmpeg CLI", ff)], 0.9))
    return out


def image_benches(a, env):
    out = []
    folder = os.path.join(a.data, "images")
    for f in sorted(os.listdir(folder)):
        if f.startswith("."):
            continue
        path = os.path.join(folder, f)
        reps = str(a.image_reps)
        out.append(Bench(
            f"image {f}", f"one decode, median of {reps} in process after 2 warm-ups",
            [Side("dspipe image.decode", [os.path.join(a.build, "bench_io"), "-n", reps,
                                          "-w", "2", "image.decode", "--", path], env,
                  inproc=True),
             Side("Pillow (pip, python3)", ["python3", os.path.join(HERE, "bench_image_pillow.py"),
                                           path, reps, "2"], inproc=True),
             Side("Pillow (Debian, /usr/bin/python3)",
                  ["/usr/bin/python3", os.path.join(HERE, "bench_image_pillow.py"), path, reps,
                   "2"], inproc=True)], 1.0))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--image-reps", type=int, default=15)
    ap.add_argument("--parts", default="ct,ctz,video,image")
    a = ap.parse_args()
    b = a.build
    env = {"DSPIPE_NO_DEFAULT_PLUGINS": "1", "DSPIPE_OPS_THREADS": "2",
           "DSPIPE_PLUGIN_PATH": ":".join(os.path.join(b, "plugins", p, ".libs")
                                          for p in ("builtin", "dicom", "video", "image"))}
    # the program itself, not libtool's wrapper script in the build folder (a shell and a
    # sed before every run, which an installed dspipe does not have)
    a.dspipe = os.path.join(b, "core", ".libs", "dspipe")
    if os.path.exists(a.dspipe):
        env["LD_LIBRARY_PATH"] = os.path.join(b, "core", ".libs")
    else:
        a.dspipe = os.path.join(b, "core", "dspipe")
    parts = a.parts.split(",")
    unknown = set(parts) - {"ct", "ctz", "video", "image"}
    if unknown:
        ap.error(f"unknown part(s) {', '.join(sorted(unknown))}: choose from ct,ctz,video,image")
    benches = []
    if "ct" in parts:
        benches += ct_benches(a, env, "ct", "native (explicit VR LE)")
    if "ctz" in parts:
        benches += ct_benches(a, env, "ct_rle", "RLE lossless")
        benches += ct_benches(a, env, "ct_jpegll", "JPEG lossless SV1")
    if "video" in parts:
        benches += video_benches(a, env)
    if "image" in parts:
        benches += image_benches(a, env)
    t0 = time.time()
    for bench in benches:
        for r in range(bench.rounds or a.rounds):
            bench.round(r)
        lines = []
        bench.report(lines)
        print("\n".join(lines), flush=True)
    print(f"# {len(benches)} benchmarks x {a.rounds} rounds in {time.time() - t0:.0f} s; "
          f"load after: {load()}")


if __name__ == "__main__":
    main()
