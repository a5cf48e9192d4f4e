#!/usr/bin/python3
"""Time scipy.optimize.linear_sum_assignment(maximize=True) for comparison with align.Assign.

Usage: /usr/bin/python3 testdata/gen/bench_assign.py [--sizes 256,512,...] [--runs N] [--seed S]

For each size n the script draws a dense n x n float64 matrix with entries uniform in [0, 1)
(the same distribution as BenchmarkAssign in align/bench_test.go), solves it --runs times and
reports the median and minimum wall time. It also times a "warm" case for reference: the matrix
B = A + 0.01 * N(0, 1) * (max(A) - min(A)), which scipy solves from scratch (it has no warm start),
matching BenchmarkAssignWarm. Only the solve is timed; matrix generation is not.
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
    print(f"{'n':>6} {'cold median s':>14} {'cold min s':>11} {'perturbed median s':>19}")
    for n in (int(s) for s in args.sizes.split(",")):
        a = rng.random((n, n))
        cold_med, cold_min = time_solve(a, args.runs)
        b = a + 0.01 * (a.max() - a.min()) * rng.standard_normal((n, n))
        warm_med, _ = time_solve(b, args.runs)
        print(f"{n:>6} {cold_med:>14.4f} {cold_min:>11.4f} {warm_med:>19.4f}", flush=True)


if __name__ == "__main__":
    main()
