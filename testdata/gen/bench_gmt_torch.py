#!/usr/bin/python3
"""Time GMT and FGMT in PyTorch on the paper's MNIST setting, side by side with ltransfer.

Usage (from the repository root):

    /usr/bin/python3 testdata/gen/bench_gmt_torch.py [--cache DIR] [--compare] [--rounds N]

The setting (Chijiwa, ICLR 2024, MNIST): a 784-4096-10 linear MLP without biases, trained by
PyTorch for 10 epochs from seeds 1 and 2 (SGD lr 0.01, momentum 0.9, batch 128, MNIST
normalised with 0.1307/0.3081, the first 54000 training images; the recipe of
make_fixtures.py). The trajectory of seed 1 (its initialization and final checkpoint) is
transferred onto seed 2's initialization with K = 10 cosine-spaced points and gradients on one
mini-batch of 128 per point; every step is evaluated on the validation split (the last 6000
training images).

Checkpoints: trained once into --cache (default ~/.cache/ltransfer/bench) as
mlp4096/seed{1,2}/ckpt_000.onnx and ckpt_010.onnx, exported like the linear512 fixture (opset
13, eval mode, constant folding off, so each bias-free Linear is Transpose + MatMul and the
initializers keep their names fc1.weight, fc2.weight). `ltransfer bench --checkpoints DIR`
reads the same files. Training takes a few minutes on 2 cores.

The timed procedure is the paper's (its code: utils/learning_transfer.py and
utils/weight_matching.py of the authors' repository), written lean:
  * GMT: at step k = 1..K a fresh matcher receives the gradient pairs of every point j < k: the
    gradient at theta2_0 + pi_{k-1}(theta1_j - theta1_0) and at theta1_j on the same mini-batch
    (both recomputed at every step, as the paper's code does), then solves.
  * FGMT: one matcher for the whole run; step k adds the pair of point k-1 only, then solves.
  * Solve: coordinate descent over permutation groups; for each group the score matrix
    A = sum over pairs and members of target_slabs @ source_slabs^T is built with torch.matmul
    in float32 and scipy.optimize.linear_sum_assignment(A, maximize=True) solves it. Unlike the
    paper's loop, a group is not solved again when no group sharing a parameter with it changed
    (the paper solves it once more and finds no progress): with the MLP's single group this
    saves one score build and one assignment per step, so the PyTorch times here are lower than
    the paper's code would give.
  * theta2_k = theta2_0 + pi_k(theta1_k - theta1_0) is evaluated on the validation split.
The mini-batch of point j is the first 128 positions of the order that ltransfer's
dataset.Shuffle(54000, seed, j+1) draws (a PCG generator and Fisher-Yates shuffle, replicated
here exactly), so both implementations match the same gradients and their accuracies can be
compared step by step. Interpolations are computed in float64 and rounded once, as ltransfer does.

Each method runs in a fresh process (--child METHOD), so its peak RSS (getrusage) is its own.
A child can also run the shipped linear512 and mlp fixtures (--model; the paper-accuracy settings
of convert's tests) and write every score matrix it solves (--dump-scores DIR): real matrices of
4096, 512 and 256 units, on which --time-assign times scipy and align's BenchmarkAssignReal
(LTRANSFER_SCORES=DIR) times Assign, cold and warm. torch uses 2
threads. With --compare the script also builds ltransfer twice (pure Go, and -tags openblas;
needs Go and libopenblas-dev), runs `ltransfer bench --models mlp4096 --json` with each in the
same session, and prints one table with the ratios (--ltransfer NAME=PATH times given binaries
instead); --rounds N repeats everything N times, interleaved, and reports medians.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from scipy.optimize import linear_sum_assignment

sys.dont_write_bytecode = True  # keep testdata/gen free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (MNIST loading, training recipe, export)
from bench_torch import MLP4096  # noqa: E402  (the 784-4096-10 linear MLP)

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EPOCHS = 10
SEEDS = (1, 2)
HIDDEN = "hidden"
# The permutation spec of the MLPs: the hidden units are rows of fc1.weight (and fc1.bias) and
# columns of fc2.weight.
SPEC = {HIDDEN: [("fc1.weight", 0), ("fc2.weight", 1)]}
SPEC_BIAS = {HIDDEN: [("fc1.weight", 0), ("fc1.bias", 0), ("fc2.weight", 1)]}
FIXTURES = os.path.join(REPO, "testdata")
# The models --child can transfer: (module, permutation spec, seed 1's first and last
# checkpoints and seed 2's first, or None for the cache's mlp4096 files). The shipped fixtures
# give real score matrices of 512 and 256 units for --dump-scores.
MODELS = {
    "mlp4096": (MLP4096, SPEC, None),
    "linear512": (mf.Linear512, SPEC, [os.path.join(FIXTURES, "linear512", f) for f in
                                       ("seed1/ckpt_000.onnx", "seed1/ckpt_010.onnx", "seed2/ckpt_000.onnx")]),
    "mlp": (mf.MLP, SPEC_BIAS, [os.path.join(FIXTURES, "mlp", f) for f in
                                ("seed1/ckpt_000.onnx", "seed1/ckpt_005.onnx", "seed2/ckpt_000.onnx")]),
}


# ---------------------------------------------------------------------------
# ltransfer's mini-batch order: math/rand/v2's PCG (DXSM output) and dataset.Shuffle.
# ---------------------------------------------------------------------------

MASK64 = (1 << 64) - 1
MASK128 = (1 << 128) - 1
PCG_MUL = (2549297995355413924 << 64) | 4865540595714422341
PCG_INC = (6364136223846793005 << 64) | 1442695040888963407


class GoPCG:
    """math/rand/v2.PCG: a 128-bit LCG with the DXSM output function."""

    def __init__(self, seed1, seed2):
        self.state = ((seed1 & MASK64) << 64) | (seed2 & MASK64)

    def uint64(self):
        self.state = (self.state * PCG_MUL + PCG_INC) & MASK128
        hi, lo = self.state >> 64, self.state & MASK64
        hi ^= hi >> 32
        hi = (hi * 0xda942042e4dd58b5) & MASK64
        hi ^= hi >> 48
        return (hi * (lo | 1)) & MASK64


def go_shuffle(n, seed, stream):
    """ltransfer's dataset.Shuffle(n, seed, stream): Fisher-Yates with Lemire's bounded draws."""
    order = list(range(n))
    src = GoPCG(seed, stream)
    for i in range(n - 1, 0, -1):
        bound = i + 1
        prod = src.uint64() * bound
        if prod & MASK64 < bound:
            threshold = ((1 << 64) - bound) % bound
            while prod & MASK64 < threshold:
                prod = src.uint64() * bound
        j = prod >> 64
        order[i], order[j] = order[j], order[i]
    return order


def cosine_coefficients(k):
    """convert.Cosine.Coefficients(k): c_i = S(i)/S(k), S(i) = sum_{t<i} (1 + cos(pi t / k))."""
    c, total = [0.0], 0.0
    for i in range(1, k + 1):
        total += 1 + np.cos(np.pi * (i - 1) / k)
        c.append(total)
    c = [x / total for x in c]
    c[k] = 1.0
    return c


# ---------------------------------------------------------------------------
# Checkpoints.
# ---------------------------------------------------------------------------

def checkpoint_paths(cache, seed):
    folder = os.path.join(cache, "mlp4096", f"seed{seed}")
    return os.path.join(folder, "ckpt_000.onnx"), os.path.join(folder, f"ckpt_{EPOCHS:03d}.onnx")


def ensure_checkpoints(cache, mnist_dir):
    """Train and export the checkpoints that are not in the cache yet."""
    missing = [s for s in SEEDS if not all(os.path.exists(p) for p in checkpoint_paths(cache, s))]
    if not missing:
        return
    xall, yall, xtest, _ = mf.load_mnist(mnist_dir)
    xtr, ytr = xall[:mf.N_TRAIN], yall[:mf.N_TRAIN]
    xval, yval = xall[mf.N_TRAIN:mf.N_TRAIN + mf.N_VAL], yall[mf.N_TRAIN:mf.N_TRAIN + mf.N_VAL]
    xref = xtest[:mf.REF_BATCH].contiguous()
    for seed in missing:
        torch.manual_seed(seed)
        model = MLP4096()
        opt = torch.optim.SGD(model.parameters(), lr=mf.LR, momentum=mf.MOMENTUM)
        gen = torch.Generator().manual_seed(seed + mf.SHUFFLE_SEED_OFFSET)
        first, last = checkpoint_paths(cache, seed)
        for epoch in range(EPOCHS + 1):
            if epoch > 0:
                t0 = time.time()
                mf.train_epoch(model, opt, xtr, ytr, gen)
                print(f"  mlp4096 seed{seed} epoch {epoch}: {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
            if epoch not in (0, EPOCHS):
                continue
            path = first if epoch == 0 else last
            tmp = path + ".tmp.onnx"
            proto = mf.export(model, tmp, 13, training=False, constant_folding=False)
            names = sorted(i.name for i in proto.graph.initializer)
            if names != ["fc1.weight", "fc2.weight"]:
                raise AssertionError(f"{path}: initializers {names}, want fc1.weight, fc2.weight")
            err = mf.check_numpy(proto, model, xref, False)
            os.replace(tmp, path)
            print(f"  {path}: val acc {mf.accuracy(model, xval, yval):.4f} (numpy check {err:.1e})",
                  file=sys.stderr, flush=True)


def load_params(path):
    """The float32 initializers of an ONNX file as torch tensors."""
    proto = onnx.load(path)
    return {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in proto.graph.initializer}


# ---------------------------------------------------------------------------
# The transfer.
# ---------------------------------------------------------------------------

def permute(params, perm, spec):
    """Apply the hidden-unit permutation: output unit i takes source unit perm[i]."""
    out = dict(params)
    for name, axis in spec[HIDDEN]:
        out[name] = params[name].index_select(axis, perm)
    return out


def combine(a, s, b, c):
    """a + s*(b - c) per parameter, in float64, rounded once (convert.combine)."""
    return {k: (a[k].double() + s * (b[k].double() - c[k].double())).float() for k in a}


class Matcher:
    """The paper's WeightMatching: weighted (target, source) pairs, coordinate descent."""

    def __init__(self, spec):
        self.spec = spec
        self.pairs = []

    def add(self, target, source):
        self.pairs.append((target, source))

    def solve(self, init_perm, clock, dump=None):
        perm = {HIDDEN: init_perm.clone()}
        solved = {}
        changed = {g: 0 for g in self.spec}
        tick = 0
        for _ in range(100):
            progress = False
            for p in [HIDDEN]:  # the random group order of the paper: one group here
                # Skip a group no neighbour of which changed since it was solved (see the doc).
                if p in solved and not any(changed[q] > solved[p] for q in self.spec if q != p):
                    continue
                t0 = time.perf_counter()
                n = perm[p].numel()
                a = torch.zeros((n, n))
                for target, source in self.pairs:
                    for name, axis in self.spec[p]:
                        w_t = torch.moveaxis(target[name], axis, 0).reshape(n, -1)
                        w_s = torch.moveaxis(source[name], axis, 0).reshape(n, -1)
                        a += w_t @ w_s.T
                score = a.numpy()
                if dump:
                    score.astype(np.float64).tofile(dump)
                t1 = time.perf_counter()
                _, cols = linear_sum_assignment(score, maximize=True)
                t2 = time.perf_counter()
                clock["score"] += t1 - t0
                clock["assign"] += t2 - t1
                rows = np.arange(n)
                old = float(score[rows, perm[p].numpy()].astype(np.float64).sum())
                new = float(score[rows, cols].astype(np.float64).sum())
                if new > old + 1e-7:
                    perm[p] = torch.from_numpy(cols.astype(np.int64))
                    progress = True
                    tick += 1
                    changed[p] = tick
                solved[p] = tick
            if not progress:
                break
        return perm[HIDDEN]


def run_method(method, cache, mnist_dir, steps, batch, seed, dump_dir=None, model="mlp4096"):
    """One transfer, timed; returns the result dictionary."""
    torch.set_num_threads(2)
    xall, yall, _, _ = mf.load_mnist(mnist_dir)
    xtr, ytr = xall[:mf.N_TRAIN], yall[:mf.N_TRAIN]
    xval, yval = xall[mf.N_TRAIN:mf.N_TRAIN + mf.N_VAL], yall[mf.N_TRAIN:mf.N_TRAIN + mf.N_VAL]
    module, spec, files = MODELS[model]
    if files is None:
        files = [*checkpoint_paths(cache, 1), checkpoint_paths(cache, 2)[0]]
    src0, src1, init = (load_params(p) for p in files)
    coefs = cosine_coefficients(steps)
    # The fixed mini-batch of every point, as ltransfer draws it (not timed).
    batches = [torch.tensor(go_shuffle(xtr.shape[0], seed, j + 1)[:batch]) for j in range(steps)]
    model_t, model_s, model_e = module(), module(), module()
    model_t.train()
    model_s.train()
    model_e.eval()

    def load(model, params):
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name])

    def source(j):
        return combine(src0, coefs[j], src1, src0)

    def transferred(j, perm):
        delta = combine({k: torch.zeros_like(v) for k, v in src0.items()}, 1.0, source(j), src0)
        return combine(init, 1.0, permute(delta, perm, spec), {k: torch.zeros_like(v) for k, v in init.items()})

    def grads(j, perm):
        """The gradient pair of point j: at the transferred point and at the source point."""
        load(model_t, transferred(j, perm))
        load(model_s, source(j))
        model_t.zero_grad()
        model_s.zero_grad()
        x, y = xtr[batches[j]], ytr[batches[j]]
        F.cross_entropy(model_t(x), y).backward()
        F.cross_entropy(model_s(x), y).backward()
        return ({n: p.grad.clone() for n, p in model_t.named_parameters()},
                {n: p.grad.clone() for n, p in model_s.named_parameters()})

    @torch.no_grad()
    def evaluate(params):
        load(model_e, params)
        correct = 0
        for i in range(0, xval.shape[0], 1000):
            correct += (model_e(xval[i:i + 1000]).argmax(1) == yval[i:i + 1000]).sum().item()
        return correct / xval.shape[0]

    clock = {"grad": 0.0, "score": 0.0, "assign": 0.0, "eval": 0.0}
    perm = torch.arange(src0["fc1.weight"].shape[0])
    matcher = Matcher(spec)
    start = time.perf_counter()
    t0 = time.perf_counter()
    accs = [evaluate(init)]
    clock["eval"] += time.perf_counter() - t0
    for k in range(1, steps + 1):
        if method == "gmt":
            matcher = Matcher(spec)
            todo = range(k)
        else:
            todo = [k - 1]
        t0 = time.perf_counter()
        for j in todo:
            matcher.add(*grads(j, perm))
        clock["grad"] += time.perf_counter() - t0
        dump = os.path.join(dump_dir, f"{model}_{method}_step{k:02d}.f64") if dump_dir else None
        perm = matcher.solve(perm, clock, dump)
        t0 = time.perf_counter()
        accs.append(evaluate(transferred(k, perm)))
        clock["eval"] += time.perf_counter() - t0
        print(f"  torch {method} step {k}/{steps}: acc {100 * accs[-1]:.2f}%  "
              f"elapsed {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    best = max(range(len(accs)), key=lambda i: (accs[i], -i))
    return {
        "impl": "pytorch", "model": model, "method": method, "seconds": wall,
        "grad_seconds": clock["grad"], "score_seconds": clock["score"],
        "assign_seconds": clock["assign"], "eval_seconds": clock["eval"],
        "best_accuracy": accs[best], "best_step": best, "accuracies": accs,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def time_assign(paths):
    """Print the time of scipy's linear_sum_assignment (maximize) on each raw float64 matrix."""
    print(f"{'matrix':28s} {'n':>5s} {'scipy s':>8s}")
    for path in paths:
        a = np.fromfile(path, dtype=np.float64)
        n = int(round(a.size ** 0.5))
        a = a.reshape(n, n)
        t0 = time.perf_counter()
        linear_sum_assignment(a, maximize=True)
        print(f"{os.path.basename(path):28s} {n:5d} {time.perf_counter() - t0:8.3f}", flush=True)


# ---------------------------------------------------------------------------
# Driver.
# ---------------------------------------------------------------------------

def child(args, method):
    """Run one method in a fresh process and return its result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--cache", args.cache, "--mnist", args.mnist,
           "--steps", str(args.steps), "--seed", str(args.seed), "--child", method]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def build_ltransfer(cache):
    """Build the pure-Go and the openblas ltransfer into cache/bin; returns {name: path}."""
    bins = {}
    for name, tags in (("gonum", []), ("openblas", ["-tags", "openblas"])):
        path = os.path.join(cache, "bin", "ltransfer-" + name)
        subprocess.run(["go", "build", *tags, "-o", path, "./cmd/ltransfer"], cwd=REPO, check=True)
        bins[name] = path
    return bins


def run_ltransfer(args, name, path):
    cmd = [path, "bench", "--checkpoints", args.cache, "--models", "mlp4096", "--methods", args.methods,
           "--steps", str(args.steps), "--seed", str(args.seed), "--data", "mnist:" + args.mnist, "--json"]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    rows = json.loads(out)
    for r in rows:
        r["impl"] = "ltransfer-" + name
    return rows


def median_rows(rows):
    """Median of every numeric field over the rounds of each (impl, method)."""
    keyed = {}
    for r in rows:
        keyed.setdefault((r["impl"], r["method"]), []).append(r)
    out = []
    for (impl, method), rs in keyed.items():
        m = dict(rs[0])
        for k, v in rs[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                m[k] = statistics.median(r[k] for r in rs)
        m["rounds"] = len(rs)
        out.append(m)
    return out


def print_table(rows):
    """The side-by-side table: medians per implementation and method, times relative to torch."""
    torch_wall = {r["method"]: r["seconds"] for r in rows if r["impl"] == "pytorch"}
    head = (f"{'implementation':20s} {'method':6s} {'wall s':>7s} {'vs torch':>8s} {'grad s':>7s} "
            f"{'score s':>7s} {'assign s':>8s} {'eval s':>7s} {'peak RSS MB':>11s} {'transfer MB':>11s} "
            f"{'buffers MB':>10s} {'best acc':>8s} {'step':>4s}")
    print(head)
    for r in rows:
        ratio = r["seconds"] / torch_wall[r["method"]] if r["method"] in torch_wall else float("nan")
        mem = "" if "buffer_bytes" not in r else \
            f"{r['transfer_bytes'] / 2**20:11.0f} {r['buffer_bytes'] / 2**20:10.0f}"
        print(f"{r['impl']:20s} {r['method']:6s} {r['seconds']:7.1f} {ratio:7.2f}x {r['grad_seconds']:7.1f} "
              f"{r['score_seconds']:7.1f} {r['assign_seconds']:8.1f} {r['eval_seconds']:7.1f} "
              f"{r['peak_rss_bytes'] / 2**20:11.0f} {mem:22s} {100 * r['best_accuracy']:7.2f}% {int(r['best_step']):4d}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "ltransfer", "bench"),
                    help="checkpoint folder (default %(default)s)")
    ap.add_argument("--mnist", default=mf.default_mnist_dir(), help="MNIST folder (default %(default)s)")
    ap.add_argument("--methods", default="gmt,fgmt")
    ap.add_argument("--steps", type=int, default=10, help="K (default %(default)s)")
    ap.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help="mini-batch seed, as ltransfer's --seed (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat everything N times, report medians")
    ap.add_argument("--compare", action="store_true", help="also build and time ltransfer (pure Go and openblas)")
    ap.add_argument("--ltransfer", action="append", default=[], metavar="NAME=PATH",
                    help="also time this ltransfer binary (repeatable; instead of building with --compare)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="mlp4096", choices=sorted(MODELS),
                    help="with --child: the model (linear512 and mlp are the shipped fixtures)")
    ap.add_argument("--dump-scores", metavar="DIR",
                    help="with --child: write every score matrix solved as raw float64 (METHOD_stepKK.f64)")
    ap.add_argument("--table", metavar="FILE", help="print the table of a saved results file and exit")
    ap.add_argument("--time-assign", metavar="FILE", nargs="+",
                    help="time linear_sum_assignment on raw float64 score matrices (from --dump-scores) and exit")
    args = ap.parse_args()

    if args.child:
        if args.dump_scores:
            os.makedirs(args.dump_scores, exist_ok=True)
        json.dump(run_method(args.child, args.cache, args.mnist, args.steps, args.batch, args.seed,
                             args.dump_scores, args.model), sys.stdout)
        return
    if args.time_assign:
        time_assign(args.time_assign)
        return
    if args.table:
        with open(args.table) as f:
            print_table(median_rows(json.load(f)))
        return

    ensure_checkpoints(args.cache, args.mnist)
    bins = build_ltransfer(args.cache) if args.compare else {}
    for spec in args.ltransfer:
        name, _, path = spec.partition("=")
        bins[name] = path
    rows = []
    for rnd in range(args.rounds):
        for method in args.methods.split(","):
            print(f"round {rnd + 1}: pytorch {method}", file=sys.stderr, flush=True)
            rows.append(child(args, method))
        for name, path in bins.items():
            print(f"round {rnd + 1}: ltransfer-{name}", file=sys.stderr, flush=True)
            rows.extend(run_ltransfer(args, name, path))
    saved = os.path.join(args.cache, time.strftime("results-%Y%m%d-%H%M%S.json"))
    with open(saved, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"torch {torch.__version__} (2 threads), scipy {__import__('scipy').__version__}; mlp4096 "
          f"784-4096-10 linear, init+final of seed 1 onto seed 2's init, K={args.steps} cosine, batch "
          f"{args.batch}, 1 gradient batch; median of {args.rounds} round(s); every run: {saved}")
    print_table(median_rows(rows))


if __name__ == "__main__":
    main()
