#!/usr/bin/python3
"""Time one PyTorch forward + cross-entropy + backward step on CPU, batch 128.

Usage (from the repository root):

    /usr/bin/python3 testdata/gen/bench_torch.py [--runs 30]

Models:
  mlp4096  784-4096-10 MLP without biases or activation (the paper's MNIST setting)
  cnn      the testdata/cnn architecture (conv-BN-ReLU-pool x2, linear), train mode

Prints the median and the min over the timed runs (after warm-up), in milliseconds,
with torch.set_num_threads(2).  Gradients are zeroed before each run; no optimizer
step is taken.  Inputs are random normal tensors (timing does not depend on data).
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep testdata/gen free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import CNN  # noqa: E402  (same architecture as the fixture)


class MLP4096(nn.Module):
    """784-4096-10 deep linear network: no biases, no activation."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 4096, bias=False)
        self.fc2 = nn.Linear(4096, 10, bias=False)

    def forward(self, x):
        return self.fc2(self.fc1(x.flatten(1)))


def bench(model, x, y, warmup, runs):
    """Return per-run times (ms) of zero_grad + forward + cross-entropy + backward."""
    model.train()
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        dt = (time.perf_counter() - t0) * 1000.0
        if i >= warmup:
            times.append(dt)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=30, help="timed runs (default %(default)s, at least 20)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs (default %(default)s)")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    runs = max(args.runs, 20)

    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"warm-up {args.warmup}, runs {runs}")
    print(f"{'model':10s} {'params':>9s} {'median ms':>10s} {'min ms':>8s}")
    for name, model in (("mlp4096", MLP4096()), ("cnn", CNN())):
        times = bench(model, x, y, args.warmup, runs)
        n = sum(p.numel() for p in model.parameters())
        print(f"{name:10s} {n:9d} {statistics.median(times):10.2f} {min(times):8.2f}")


if __name__ == "__main__":
    main()
