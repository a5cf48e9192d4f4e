#!/usr/bin/python3
"""Time PyTorch's three passes of a torchvision family, beside `ltransfer bench --passes`.

    /usr/bin/python3 testdata/gen/bench_resnet_torch.py [--family cifar_resnet18] [--batch 128]
        [--threads 2] [--runs 3] [--export FILE.onnx] [--json]

The model is torchvision_models.build(family, seed 0) (the CIFAR-variant ResNet-18 by default:
3x3 stride-1 stem, no max-pool, 10 classes, 3x32x32). With --export it is also written as a
training-mode ONNX file (torchvision_models.export, mode "train"), the file ltransfer times.
Passes, each in a fresh child process so that its peak resident memory (ru_maxrss) is its own:

  train  forward in train mode (BatchNorm batch statistics), mean cross-entropy, backward
         (gradients zeroed before each run, no optimizer step)
  eval   forward in eval mode under torch.no_grad (BatchNorm running statistics)
  stats  forward in train mode under torch.no_grad with BatchNorm momentum None (the running
         statistics of new parameters, one batch)

Prints one line per pass, the minimum and median seconds over --runs timed runs after one
warm-up, the median CPU time (all threads; on a shared machine the steadier figure) and the
child's peak RSS; --json prints the same as a JSON list. Inputs are random
normal, labels random (timing does not depend on data).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep testdata/gen free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from torchvision_models import build, export  # noqa: E402

PASSES = ("train", "eval", "stats")


def child(args):
    torch.set_num_threads(args.threads)
    model, shape = build(args.family, 0)
    torch.manual_seed(1)
    x = torch.randn(args.batch, *shape)
    y = torch.randint(0, 10, (args.batch,))
    if args.child == "stats":
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None
                m.reset_running_stats()

    def run():
        if args.child == "train":
            model.train()
            model.zero_grad(set_to_none=False)
            F.cross_entropy(model(x), y).backward()
        elif args.child == "eval":
            model.eval()
            with torch.no_grad():
                model(x)
        else:
            model.train()
            with torch.no_grad():
                model(x)

    times, cpu = [], []
    for i in range(args.runs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        if i > 0:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"pass": args.child, "min_seconds": min(times), "median_seconds": statistics.median(times),
                      "cpu_seconds": statistics.median(cpu),
                      "peak_rss_bytes": peak}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="cifar_resnet18")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--export", help="also write the model as a training-mode ONNX file")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=PASSES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.export:
        model, shape = build(args.family, 0)
        export(model, args.export, shape, mode="train")
    rows = []
    for p in PASSES:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", p, "--family", args.family,
                              "--batch", str(args.batch), "--threads", str(args.threads), "--runs", str(args.runs)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out))
    if args.json:
        print(json.dumps(rows))
        return
    print(f"PyTorch {torch.__version__}, {args.family}, batch {args.batch}, {args.threads} threads, "
          f"min/median of {args.runs} runs after one warm-up")
    for r in rows:
        print(f"{r['pass']}\t{r['min_seconds']:.2f} s\t{r['median_seconds']:.2f} s\tCPU {r['cpu_seconds']:.2f} s\t"
              f"peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
