#!/usr/bin/env python3
"""measure.py - run one command, print one JSON line: its wall time, CPU time and peak RSS.

    python3 bench/video/measure.py LABEL -- CMD ARGS...

Wall time is taken around the child alone (this interpreter's start is not in it); CPU seconds
(user + system, all threads) and peak RSS (ru_maxrss) are getrusage(RUSAGE_CHILDREN) after it
exits: this process has no other children. When the
command prints a JSON object as its last stdout line (bench_torch.py does) its fields are merged
in. A failing command's output goes to stderr and measure.py exits with its status.
"""
import json
import resource
import subprocess
import sys
import time


def main():
    label, cmd = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(out.decode(errors="replace") + err.decode(errors="replace"))
        sys.exit(f"measure.py: {label}: {cmd[0]} exited {p.returncode}")
    row = {"label": label, "load_before": load, "wall_s": round(wall, 3)}
    lines = out.decode(errors="replace").strip().splitlines()
    if lines and lines[-1].startswith("{"):
        row.update(json.loads(lines[-1]))
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    row["cpu_s"], row["peak_rss_mb"] = round(ru.ru_utime + ru.ru_stime, 2), round(ru.ru_maxrss / 1024, 1)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
