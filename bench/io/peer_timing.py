"""peer_timing.py - what bench_ct_pydicom.py and bench_image_pillow.py share: arguments, the timing loop, bench_io's JSON line.

Imported from the scripts' folder by both interpreters (Debian's /usr/bin/python3
and the python3 on PATH), so it uses the standard library only.
"""
import json
import statistics
import sys
import time


def arguments(doc, reps, warmup):
    """(INPUT, REPS, WARMUP) from sys.argv, with these defaults; the usage
    (the script's docstring) and exit without INPUT."""
    if len(sys.argv) < 2:
        sys.exit(doc)
    return (sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else reps,
            int(sys.argv[3]) if len(sys.argv) > 3 else warmup)


def timed(work, reps, warmup):
    """Call work() warmup times untimed, then reps times timed: (wall seconds
    of each timed call, CPU seconds of each (the process's, all threads),
    what the first timed call returned)."""
    for _ in range(warmup):
        work()
    secs, cpu, first = [], [], None
    for r in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        out = work()
        secs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if r == 0:
            first = out
        del out
    return secs, cpu, first


def report(secs, cpu, **fields):
    """Print bench_io's JSON line: fields, every repetition's seconds, the
    median, the median CPU seconds."""
    print(json.dumps(dict(fields, seconds=[round(s, 6) for s in secs],
                          median_s=round(statistics.median(secs), 6),
                          cpu_median_s=round(statistics.median(cpu), 6))))
