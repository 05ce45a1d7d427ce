#!/usr/bin/env python3
"""Summarize several `clnorm_bench --csv` runs of the same suite.

The machines this runs on are shared and noisy, so one run says little; this
prints, per case, the range and the median over the runs of the fraction of
copy bandwidth (each run against its own copy yardstick) and the median
fraction of the copy on the case's own buffers, alternated with it; then the
performance targets, judged on each case's median over the runs (as the
bench's own targets block judges one run), and again on the median fraction
of the copy alternated with each case ("x own"), which the machine's drift
between the yardstick and the case does not move.

    for i in 1 2 3; do build/bench/clnorm_bench --csv > run$i.csv 2> run$i.err; done
    python3 bench/summarize.py run1.csv run2.csv run3.csv

Where a run's stderr lies beside its CSV (run1.err), the median of the
read-twice bounds the bench printed there closes the summary.
"""
import csv
import statistics
import sys

TARGET_MB = 50.0
# (class, goal, lower is better); as bench.c's target table
TARGETS = [
    ("batch norm forward training", 0.80, False),
    ("batch norm forward inference", 0.90, False),
    ("batch norm backward", 0.75, False),
    ("layer / RMS / group norm forward", 0.80, False),
    ("layer / RMS / group norm backward", 0.75, False),
    ("per-activation batch norm, all directions", 0.70, False),
    ("tiny shapes: per call / empty kernel", 2.00, True),
]


def target_class(op, direction, vs_empty):
    if vs_empty > 0:
        return 6
    if op == "bn-peract":
        return 5
    if op == "bn":
        return {"fwd-train": 0, "fwd-infer": 1}.get(direction, 2)
    return 3 if direction == "fwd" else 4


def print_targets(cases, against):
    """cases: (op, dir, tensor MB, median fraction, median vs_empty)"""
    print(f"targets against {against} (medians over the runs; fp32 tensors of "
          f"{TARGET_MB:.0f} MB and more):")
    for c, (name, goal, lower) in enumerate(TARGETS):
        figs = {False: [], True: []}  # all sizes, big ones
        for op, d, mb, frac, vs in cases:
            if target_class(op, d, vs) != c:
                continue
            fig = vs if lower else frac
            figs[False].append(fig)
            if lower or mb >= TARGET_MB:
                figs[True].append(fig)
        big = bool(figs[True])
        f = figs[big]
        if not f:
            continue
        worst = max(f) if lower else min(f)
        met = sum(1 for v in f if (v <= goal if lower else v >= goal))
        scope = "" if big else " (none of 50 MB or more: all sizes)"
        print(f"  {name:42s} {'<=' if lower else '>='} {goal:.2f}  worst {worst:5.2f}  "
              f"{met} of {len(f)} cases meet it{scope}")


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
    cases = []
    for i, k in enumerate(keys):
        fr = [float(run[i]["frac_copy"]) for run in runs]
        fs = [float(run[i]["frac_own_copy"]) for run in runs]
        print(f"{' '.join(k):46s} {min(fr):8.2f} - {max(fr):5.2f} "
              f"{statistics.median(fr):7.2f} {statistics.median(fs):7.2f}")
        if "tensor_mb" in runs[0][i]:
            vs = statistics.median(float(run[i]["vs_empty"]) for run in runs)
            cases.append((k[0], k[1], float(runs[0][i]["tensor_mb"]), statistics.median(fr),
                          statistics.median(fs), vs))
    if cases:
        print_targets([(o, d, mb, fr, vs) for o, d, mb, fr, _, vs in cases], "the copy yardstick")
        print_targets([(o, d, mb, fs, vs) for o, d, mb, _, fs, vs in cases],
                      "the copy alternated with each case (x own)")
    else:
        print("(no tensor_mb column: runs from an older bench; no targets block)")
    print_bounds(paths)
    return 0


def print_bounds(paths):
    """The read-twice bounds the bench prints on stderr, from each run's
    stderr saved beside its CSV (run1.csv: run1.err), where there is one."""
    figs = []
    for p in paths:
        err = p[:-4] + ".err" if p.endswith(".csv") else p + ".err"
        try:
            for line in open(err):
                if "read-twice bounds:" in line:
                    w = line.replace(",", " ").split()
                    figs.append((float(w[w.index("forward") + 1]), float(w[w.index("backward") + 1])))
        except (OSError, ValueError, IndexError):
            continue
    if figs:
        fw = statistics.median(f for f, _ in figs)
        bw = statistics.median(b for _, b in figs)
        print(f"reading the tensor from memory twice reaches at most (median over {len(figs)} runs' "
              f"stderr): forward {fw:.2f}, backward {bw:.2f} of the copy yardstick")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
