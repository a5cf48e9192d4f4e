#!/usr/bin/python3
"""Time scipy.optimize.linear_sum_assignment(maximize=True) for comparison with align.Assign.

Usage: /usr/bin/python3 testdata/gen/bench_assign.py [--sizes 256,512,...] [--runs N] [--seed S]

For each size n the script draws a dense n x n float64 matrix with entries uniform in [0, 1)
(the same distribution as BenchmarkAssign in align/bench_test.go), solves it --runs times and
reports the median and minimum wall time of the solve alone (matrix generation is not timed).
scipy has no warm start, so its time is the reference for both BenchmarkAssign and
BenchmarkAssignWarm. Compare on an otherwise idle machine, or interleave runs and compare ratios.
"""

import argparse
import statistics
import time

import numpy as np
from scipy.optimize import linear_sum_assignment


def time_solve(a, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        linear_sum_assignment(a, maximize=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256,512,1024,2048,4096")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    print(f"scipy {__import__('scipy').__version__}, numpy {np.__version__}, runs={args.runs}")
    print(f"{'n':>6} {'median s':>10} {'min s':>10}")
    for n in (int(s) for s in args.sizes.split(",")):
        a = rng.random((n, n))
        med, best = time_solve(a, args.runs)
        print(f"{n:>6} {med:>10.4f} {best:>10.4f}", flush=True)


if __name__ == "__main__":
    main()
