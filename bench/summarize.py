#!/usr/bin/env python3
"""Summarize several `clnorm_bench --csv` runs of the same suite.

The machines this runs on are shared and noisy, so one run says little; this
prints, per case, the range and the median over the runs of the fraction of
copy bandwidth (each run against its own copy yardstick) and the median
fraction of the copy on the case's own buffers, alternated with it.

    for i in 1 2 3; do build/bench/clnorm_bench --csv > run$i.csv; done
    python3 bench/summarize.py run1.csv run2.csv run3.csv
"""
import csv
import statistics
import sys


def main(paths):
    if not paths:
        print(__doc__.strip())
        return 2
    runs = [list(csv.DictReader(open(p))) for p in paths]
    keys = [(r["op"], r["dir"], r["layout"], r["shape"]) for r in runs[0]]
    for run, path in zip(runs, paths):
        if [(r["op"], r["dir"], r["layout"], r["shape"]) for r in run] != keys:
            print(f"{path}: not the same cases as {paths[0]}", file=sys.stderr)
            return 1
    print(f"{'case':46s} {'x copy: min - max':>18s} {'median':>7s} {'x own':>7s}")
    for i, k in enumerate(keys):
        fr = [float(run[i]["frac_copy"]) for run in runs]
        fs = [float(run[i]["frac_own_copy"]) for run in runs]
        print(f"{' '.join(k):46s} {min(fr):8.2f} - {max(fr):5.2f} "
              f"{statistics.median(fr):7.2f} {statistics.median(fs):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
