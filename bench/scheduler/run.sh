#!/usr/bin/env bash
# bench/scheduler/run.sh — dspipe scheduler overhead side by side with GStreamer.
# The work is done by sched_bench.py (python3, standard library only); see README.md.
# Usage: run.sh [--dspipe PATH] [--plugins DIR] [--packets N] [--repeats R] [--quick] ...
#        run.sh --help
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v python3 >/dev/null 2>&1 || { echo "run.sh: python3 is required" >&2; exit 2; }
exec python3 "$here/sched_bench.py" "$@"
