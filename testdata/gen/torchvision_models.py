#!/usr/bin/python3
"""torchvision classification families as ONNX files, exported the way users export them.

Random weights (nothing is downloaded), 10 classes, seeded, BatchNorm running statistics
calibrated on one random batch (see calibrate). Used by the tests and benchmarks
that need real torchvision graphs; the files are built into a cache folder, not committed.

    /usr/bin/python3 testdata/gen/torchvision_models.py --out DIR [--families resnet18,densenet121]
        [--mode eval|train|both] [--opset 13] [--batch 2] [--reference]

writes DIR/FAMILY.onnx for each family (FAMILY-train.onnx with --mode train, both with --mode
both; FAMILY-distinct.onnx / FAMILY-train-distinct.onnx with --distinct) and prints one line per
file. With --reference it also writes DIR/FAMILY.ref.pb: PyTorch's reference tensors for a
seeded batch (see pick_reference_batch and write_reference; gradients only with --mode train or
both). `--ops` writes the per-operator fixtures instead (see OPS): DIR/OP-opsetK.onnx
(training-mode export) and DIR/OP-opsetK.ref.pb. `--mode eval` is torch.onnx.export's default
(BatchNorm fused into Conv, constant folding, identical initializers deduplicated); `--mode
train` keeps BatchNorm (training=TrainingMode.TRAINING, do_constant_folding=False). A
training-mode export traces the model in train mode, which moves BatchNorm running statistics: a
copy is exported and the file's initializers are restored from the model's state dict.
torchvision's StochasticDepth (EfficientNet) cannot be exported in train mode (its random mask
has no ONNX form): the exported copy has it replaced by the identity, which it is in evaluation,
and which the engine's gradient pass assumes for every random layer (Dropout included).
`--distinct` draws every bias and BatchNorm affine parameter at random and sets the running
statistics to those of random inputs before exporting, so that no two initializers are equal and
the exporter has nothing to deduplicate (as in a trained network).

Import it to reuse the registry: `FAMILIES[name]` is (constructor, input shape without batch).
"""
import argparse
import copy
import os
import sys

import numpy as np
import onnx
import torch
import torchvision
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import restore_state  # noqa: E402


def cifar_resnet18(num_classes=10, in_channels=3):
    """ResNet-18 as in the paper's CIFAR-10 experiments: 3x3 stride-1 stem, no max-pool."""
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = torch.nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = torch.nn.Identity()
    return m


def _tv(name, **kw):
    def make():
        return getattr(torchvision.models, name)(num_classes=10, **kw)
    return make


# name -> (constructor, input shape C,H,W). Input sizes are the smallest the family exports at
# with every adaptive pool divisible (VGG and AlexNet need 224 for their 7x7 / 6x6 pools).
FAMILIES = {
    "resnet18": (_tv("resnet18"), (3, 64, 64)),
    "resnet50": (_tv("resnet50"), (3, 64, 64)),
    "resnext50_32x4d": (_tv("resnext50_32x4d"), (3, 64, 64)),
    "regnet_y_400mf": (_tv("regnet_y_400mf"), (3, 64, 64)),
    "regnet_x_400mf": (_tv("regnet_x_400mf"), (3, 64, 64)),
    "vgg11_bn": (_tv("vgg11_bn"), (3, 224, 224)),
    "alexnet": (_tv("alexnet"), (3, 224, 224)),
    "squeezenet1_0": (_tv("squeezenet1_0"), (3, 64, 64)),
    # init_weights=False: GoogLeNet's own init (truncated normal, std 0.01) makes the eval-mode
    # logits the same for every input (BatchNorm's unit running variance shrinks the signal
    # away); PyTorch's default init keeps it.
    "googlenet": (_tv("googlenet", aux_logits=False, init_weights=False), (3, 64, 64)),
    "densenet121": (_tv("densenet121"), (3, 64, 64)),
    "mobilenet_v2": (_tv("mobilenet_v2"), (3, 64, 64)),
    "mobilenet_v3_small": (_tv("mobilenet_v3_small"), (3, 64, 64)),
    "shufflenet_v2_x0_5": (_tv("shufflenet_v2_x0_5"), (3, 64, 64)),
    "efficientnet_b0": (_tv("efficientnet_b0"), (3, 64, 64)),
    "mnasnet0_5": (_tv("mnasnet0_5"), (3, 64, 64)),
    "cifar_resnet18": (cifar_resnet18, (3, 32, 32)),
    "mnist_resnet18": (lambda: cifar_resnet18(in_channels=1), (1, 28, 28)),
}


def build(name, seed=0, calibrated=True):
    """The family's model with PyTorch's default initialization for seed, in eval mode, its
    BatchNorm running statistics calibrated (see calibrate) unless calibrated is False (then they
    are PyTorch's initial ones, as in a run's first checkpoint)."""
    make, shape = FAMILIES[name]
    torch.manual_seed(seed)
    model = make()
    if calibrated:
        calibrate(model, shape, seed)
    return model.eval(), shape


def calibrate(model, shape, seed=0, batch=4):
    """Set every BatchNorm's running statistics to those of one seeded batch of standard normal
    inputs (seed + 2000, not the reference batch), as training would have: with the initial
    statistics (mean 0, variance 1) the eval-mode signal of MobileNet, ShuffleNet or GoogLeNet
    saturates (ReLU6, HardSwish) or vanishes, and their logits no longer depend on the input.
    Dropout and StochasticDepth are off; momentum is restored to PyTorch's default."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    model.train()
    for mod in model.modules():
        if isinstance(mod, (torch.nn.Dropout, torch.nn.Dropout2d, torchvision.ops.StochasticDepth)):
            mod.eval()
    momentum = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    g = torch.Generator().manual_seed(seed + 2000)
    with torch.no_grad():
        model(torch.randn(batch, *shape, generator=g))
    for bn, mom in zip(bns, momentum):
        bn.momentum = mom
        bn.num_batches_tracked.zero_()
    model.eval()


def make_distinct(model, seed, shape):
    """Draws every bias and BatchNorm affine parameter at random near its default and sets the
    BatchNorm running statistics to those of random inputs (in place; the model is left in eval
    mode). No two initializers are then equal, and the logits still depend on the input."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point or name.endswith("running_mean") or name.endswith("running_var"):
                continue
            if name.endswith("bias"):
                t.copy_((torch.rand(t.shape, generator=g) - 0.5) * 0.2)
            elif name.endswith("weight") and t.dim() == 1:  # BatchNorm scale
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # the running statistics become the average over the batches
        model.train()
        for _ in range(4):
            model(torch.randn((8,) + tuple(shape), generator=g))
    model.eval()


def export(model, path, shape, mode="eval", opset=13, batch=2):
    """Export model (any mode; left unchanged) to path with a dynamic batch axis and check it.

    Input "input", output "logits". mode "eval" is the default export; "train" keeps BatchNorm
    and restores every initializer named after a state-dict entry to the model's own value.
    """
    m = copy.deepcopy(model)
    if mode == "train":
        _replace_stochastic_depth(m)
    dummy = torch.zeros(batch, *shape)
    training = torch.onnx.TrainingMode.TRAINING if mode == "train" else torch.onnx.TrainingMode.EVAL
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.onnx.export(m, dummy, path, export_params=True, opset_version=opset, training=training,
                      do_constant_folding=(mode != "train"),
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(path)
    if mode == "train" and restore_state(proto, model):
        onnx.save(proto, path)
    onnx.checker.check_model(path, full_check=True)
    return proto


def _replace_stochastic_depth(model):
    """Replace every StochasticDepth module by the identity (its evaluation-mode behaviour)."""
    for name, child in model.named_children():
        if isinstance(child, torchvision.ops.StochasticDepth):
            setattr(model, name, torch.nn.Identity())
        else:
            _replace_stochastic_depth(child)


def _deterministic_train(model):
    """A copy of model in train mode (BatchNorm on batch statistics) with every random layer
    (Dropout, StochasticDepth) in eval mode: the pass the engine's gradients compute."""
    m = copy.deepcopy(model).train()
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Dropout, torch.nn.Dropout2d, torchvision.ops.StochasticDepth)):
            mod.eval()
    return m


def reference_batch(shape, batch, seed=0, classes=10, draw=0):
    """A reference batch: standard normal inputs and uniform labels, from seed + 1000 + 7919 draw."""
    g = torch.Generator().manual_seed(seed + 1000 + 7919 * draw)
    x = torch.randn(batch, *shape, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    return x, y


class _Jump(torch.autograd.Function):
    """Zero forward; adds mask * (output gradient) to its input's gradient."""

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return torch.zeros_like(x)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask, None


# The piecewise-linear activations (torch.nn.functional names): their kinks for the call's
# arguments, and their derivative as PyTorch's backward computes it.
_KINKED = {
    "relu": (lambda *a, **k: (0.0,), lambda x, *a, **k: (x > 0).to(x.dtype)),
    "hardtanh": (lambda min_val=-1.0, max_val=1.0, *a, **k: (min_val, max_val),
                 lambda x, min_val=-1.0, max_val=1.0, *a, **k: ((x > min_val) & (x < max_val)).to(x.dtype)),
    "hardswish": (lambda *a, **k: (-3.0, 3.0),
                  lambda x, *a, **k: torch.where(x < -3, 0 * x, torch.where(x <= 3, x / 3 + 0.5, 0 * x + 1))),
    "hardsigmoid": (lambda *a, **k: (-3.0, 3.0), lambda x, *a, **k: ((x > -3) & (x < 3)).to(x.dtype) / 6),
}


def _activation_pass(model, x, y=None, visit=None, toggle=None):
    """One training pass of model on x (with y, forward and backward; the gradients are left
    on the parameters) with every call of a _KINKED activation numbered in order: visit(call,
    name, input, args, kw) sees its input; toggle = (call, flat index) switches the derivative
    of that one input element to the other side of its nearest kink, as a float32 rounding on
    the other side would. In-place calls run out of place (every torchvision caller uses the
    returned tensor)."""
    F = torch.nn.functional
    saved = {name: getattr(F, name) for name in _KINKED}
    count = [0]

    def watch(name):
        def f(input, *args, **kw):
            call = count[0]
            count[0] += 1
            if name == "hardtanh" and len(args) > 2:
                args = args[:2]
            kw.pop("inplace", None)
            if name != "hardtanh":
                args = ()
            if visit is not None:
                visit(call, name, input.detach(), args, kw)
            out = saved[name](input, *args, **kw)
            if toggle is not None and toggle[0] == call:
                kinks, deriv = _KINKED[name]
                v = input.detach().reshape(-1)
                i = toggle[1]
                k = min(kinks(*args, **kw), key=lambda k: abs(v[i].item() - k))
                mask = torch.zeros_like(v)
                mirror = (2 * k - v[i]).reshape(1)
                mask[i] = deriv(mirror, *args, **kw)[0] - deriv(v[i].reshape(1), *args, **kw)[0]
                out = out + _Jump.apply(input, mask.reshape(input.shape))
            return out
        return f
    try:
        for name in _KINKED:
            setattr(F, name, watch(name))
        m = _deterministic_train(model)
        if y is None:
            with torch.no_grad():
                m(x)
            return m
        torch.nn.functional.cross_entropy(m(x), y).backward()
        return m
    finally:
        for name, f in saved.items():
            setattr(F, name, f)


def near_kinks(model, x, limit=float("inf")):
    """The inputs of piecewise-linear activations closest to a kink in the training pass of
    model on x, as (distance relative to the call's largest input, call, flat index), sorted,
    those below limit (exact hits, the zeros of a ReLU'd input, do not count: every
    implementation computes them alike); the first entry's distance is the batch's kink margin."""
    found = []

    def visit(call, name, v, args, kw):
        scale = v.abs().max().item()
        if scale == 0:
            return
        flat = v.reshape(-1)
        for k in _KINKED[name][0](*args, **kw):
            d = (flat - k).abs() / scale
            d[d == 0] = float("inf")
            if limit == float("inf"):
                i = torch.argmin(d).item()
                found.append((d[i].item(), call, i))
                continue
            near = torch.nonzero(d < limit).reshape(-1).tolist()
            found.extend((d[i].item(), call, i) for i in near)
    _activation_pass(model, x, visit=visit)
    return sorted(found) or [(float("inf"), -1, -1)]


def kink_margin(model, x):
    """The smallest relative distance from an activation input to a kink (see near_kinks)."""
    return near_kinks(model, x)[0][0]


# The flip envelope of a reference (see flip_envelope) covers the FLIP_UNITS activation inputs
# nearest to a kink, those within FLIP_LIMIT of it (relative): farther ones do not flip in
# float32 (the engine's activations are ~1e-7 of their scale from PyTorch's float64 ones).
FLIP_UNITS = 4
FLIP_LIMIT = 1e-5


def flip_envelope(model, x, y, grads):
    """For each parameter, sum over the activation inputs nearest to a kink of |g_u - g|, g_u
    the gradient with unit u's derivative switched to the other side of the kink, g = grads:
    how far the gradient moves when a float32 computation rounds some of those inputs to the
    other side. model and x in float64. Returns {name: tensor}."""
    env = {n: torch.zeros_like(g) for n, g in grads.items()}
    for _, call, i in near_kinks(model, x, FLIP_LIMIT)[:FLIP_UNITS]:
        if call < 0:
            break
        m = _activation_pass(model, x, y, toggle=(call, i))
        for n, p in m.named_parameters():
            if n in env and p.grad is not None:
                env[n] += (p.grad - grads[n]).abs()
    return env


# A reference batch is drawn again while an activation input lies closer than this to a kink
# (relative to the call's largest input): the engine computes in float32 in another order than
# PyTorch, and an input that lands on the other side of a kink sends its gradient elsewhere,
# which moves a layer's gradient by percents at these small batches (ResNet-18's first batch of
# 4 has an input 9e-9 from ReLU's kink, and two of its layers' gradients came out 5% and 10%
# off). A margin of 1e-6 is rare (a ResNet-18 batch of 4 has about 10^6 ReLU inputs), so the
# best of a few draws is taken, and the flip envelope (flip_envelope) covers the rest.
MIN_KINK_MARGIN = 3e-7
MAX_DRAWS = 4


def pick_reference_batch(model, shape, batch, seed=0):
    """The first of MAX_DRAWS reference batches whose kink margin is at least MIN_KINK_MARGIN,
    or the one with the largest margin; returns x, y and the margin."""
    best = None
    m64 = copy.deepcopy(model).double()
    for draw in range(MAX_DRAWS):
        x, y = reference_batch(shape, batch, seed, draw=draw)
        margin = kink_margin(m64, x.double())
        if best is None or margin > best[2]:
            best = (x, y, margin)
        if margin >= MIN_KINK_MARGIN:
            break
    return best


def _passes(model, x, y, grads=True):
    """Eval logits, training loss, gradients and one-batch BatchNorm statistics of model (only
    the logits without grads), in the precision of model and x."""
    with torch.no_grad():
        logits = copy.deepcopy(model).eval()(x)
    if not grads:
        return logits, None, {}, {}
    m = _deterministic_train(model)
    loss = torch.nn.functional.cross_entropy(m(x), y)
    loss.backward()
    grads = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
    m = _deterministic_train(model)
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None
    with torch.no_grad():
        m(x)
    stats = {n: t for n, t in m.state_dict().items() if n.endswith("running_mean") or n.endswith("running_var")}
    return logits, loss.detach(), grads, stats


def _rel_error(a, b):
    """max |a - b| / max |b| (max |a - b| when max |b| < 1e-6), as graph/torchvision_test.go."""
    d, scale = (a.double() - b.double()).abs().max().item(), b.double().abs().max().item()
    return d if scale < 1e-6 else d / scale


def write_reference(path, name, model, x, y, grads=True, margin=None):
    """Write PyTorch's reference tensors for model on (x, y) as a serialized GraphProto whose
    initializers are the tensors, the format of make_fixtures.write_ref (graph/reference_test.go
    reads it):

    input, labels; logits (eval mode); with grads, loss and grad/<parameter> (state-dict names)
    from a training pass with BatchNorm on batch statistics and Dropout/StochasticDepth off, and
    stats/<running statistic> (state-dict names), the running mean and unbiased variance that
    BatchNorm layers get from this one batch with momentum=None, i.e. the batch's statistics;
    kink_margin, when given (see pick_reference_batch); with grads, flip/grad/<parameter>, the
    flip envelope of the gradient (flip_envelope) relative to its largest value: where an
    activation input lies so close to a kink that a float32 computation may round it to the
    other side, the gradient legitimately moves by up to this much.

    The references are computed in float64 (a copy of the model) and stored as float32. The same
    passes in float32 give PyTorch's own float32 error of every tensor, stored as the scalar
    torch32/<name> (_rel_error; e.g. torch32/grad/conv1.weight): it tells how well conditioned
    the tensor is (BatchNorm over a few values amplifies rounding; the gradient of a BatchNorm
    bias followed by another BatchNorm is zero up to rounding), and the tests bound the
    engine's error by a multiple of it.
    """
    m64 = copy.deepcopy(model).double()
    ref = _passes(m64, x.double(), y, grads)
    f32 = _passes(model, x, y, grads)
    arr = lambda t: t.detach().numpy().astype(np.float32)  # noqa: E731
    tensors = [numpy_helper.from_array(arr(x), "input"),
               numpy_helper.from_array(y.numpy().astype(np.int64), "labels"),
               numpy_helper.from_array(arr(ref[0]), "logits")]
    if grads:
        tensors.append(numpy_helper.from_array(arr(ref[1]), "loss"))
    tensors += [numpy_helper.from_array(arr(g), "grad/" + n) for n, g in ref[2].items()]
    tensors += [numpy_helper.from_array(arr(t), "stats/" + n) for n, t in ref[3].items()]
    if grads:
        env = flip_envelope(m64, x.double(), y, ref[2])
        tensors += [numpy_helper.from_array(np.array(e.abs().max().item() / max(ref[2][n].abs().max().item(), 1e-6),
                                                     dtype=np.float32), "flip/grad/" + n) for n, e in env.items()]
    errors = {"logits": _rel_error(f32[0], ref[0])}
    errors.update({"grad/" + n: _rel_error(f32[2][n], g) for n, g in ref[2].items()})
    errors.update({"stats/" + n: _rel_error(f32[3][n], t) for n, t in ref[3].items()})
    tensors += [numpy_helper.from_array(np.array(e, dtype=np.float32), "torch32/" + k) for k, e in errors.items()]
    if margin is not None:
        tensors.append(numpy_helper.from_array(np.array(margin, dtype=np.float32), "kink_margin"))
    graph = helper.make_graph([], "ref_" + name, [], [], initializer=tensors,
                              doc_string=f"ltransfer reference tensors for {name}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(graph.SerializeToString())
    os.replace(tmp, path)
    return errors


# ---------------------------------------------------------------------------
# Per-operator fixtures: a tiny classifier around each operator, so that the gradient of the
# convolution before it checks the operator's backward pass.
# ---------------------------------------------------------------------------

class _OpNet(torch.nn.Module):
    """Conv(3->c, 3x3) -> BatchNorm -> op -> Flatten -> Linear(->10)."""

    def __init__(self, op, c=6, hw=9, features=None):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, c, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(c)
        self.op = op
        with torch.no_grad():
            n = features or self.op(self.bn(self.conv(torch.zeros(1, 3, hw, hw)))).numel()
        self.fc = torch.nn.Linear(n, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.op(self.bn(self.conv(x))), 1))


class _Lambda(torch.nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


def _split(x):
    a, b = torch.split(x, [2, 4], dim=1)
    return torch.cat((b, a * b[:, 2:]), 1)


class _Shuffle(torch.nn.Module):
    """ShuffleNetV2's unit core: chunk, branch, concat, channel shuffle (5-D transpose)."""

    def __init__(self):
        super().__init__()
        self.branch = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        x = torch.cat((a, self.branch(b)), dim=1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous()
        return x.view(n, c, h, w)


class _Attention(torch.nn.Module):
    """Self-attention over the 9x9 positions: Linear on 3-D tokens, 4-D MatMuls, LayerNorm, GELU."""

    def __init__(self, c=6, heads=2):
        super().__init__()
        self.heads = heads
        self.norm = torch.nn.LayerNorm(c)
        self.qkv = torch.nn.Linear(c, 3 * c)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(c, 2 * c), torch.nn.GELU(), torch.nn.Linear(2 * c, c))

    def forward(self, x):
        n, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # n, hw, c
        q, k, v = self.qkv(self.norm(t)).reshape(n, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5, dim=-1)
        t = t + (a @ v).transpose(1, 2).reshape(n, h * w, c)
        return t + self.mlp(t)


# name -> (module factory, opsets). Each is exported in training mode at every listed opset.
OPS = {
    "relu6": (lambda: torch.nn.ReLU6(), [10, 11, 13]),
    "clamp_min": (lambda: _Lambda(lambda x: torch.clamp(x, min=-0.25)), [11, 13]),
    "hardsigmoid": (lambda: torch.nn.Hardsigmoid(), [11, 13]),
    "hardswish": (lambda: torch.nn.Hardswish(), [13, 14, 17]),
    "silu": (lambda: torch.nn.SiLU(), [13, 17]),
    "gelu": (lambda: torch.nn.GELU(), [13, 17]),
    "maxpool_ceil": (lambda: torch.nn.MaxPool2d(3, 2, ceil_mode=True), [11, 13]),
    "maxpool_ceil_pad": (lambda: torch.nn.MaxPool2d(2, 2, padding=1, ceil_mode=True), [13]),
    "avgpool_ceil": (lambda: torch.nn.AvgPool2d(3, 2, padding=1, ceil_mode=True), [11, 13]),
    "avgpool_ceil_nopad": (lambda: torch.nn.AvgPool2d(3, 2, padding=1, ceil_mode=True,
                                                      count_include_pad=False), [13]),
    "pad": (lambda: _Lambda(lambda x: torch.nn.functional.pad(x, (1, 2, 0, 1), value=0.5)), [10, 11, 13]),
    "reducemean": (lambda: _Lambda(lambda x: x.mean([2, 3]) + x.mean(1, keepdim=True).mean()), [11, 13, 17]),
    "slice": (lambda: _Lambda(lambda x: x[:, 1:5:2, ::2, -3:]), [11, 13]),
    "split": (lambda: _Lambda(_split), [11, 13]),
    "shuffle": (lambda: _Shuffle(), [11, 13, 17]),
    "attention": (lambda: _Attention(), [13, 17]),
}


def write_op_fixtures(out, ops=None, batch=3, seed=0):
    """Export every per-operator fixture and its reference; return the written paths."""
    written = []
    for name in ops or OPS:
        make, opsets = OPS[name]
        torch.manual_seed(seed)
        model = _OpNet(make()).eval()
        x, y = reference_batch((3, 9, 9), batch, seed)
        for opset in opsets:
            base = os.path.join(out, f"{name}-opset{opset}")
            export(model, base + ".onnx", (3, 9, 9), "train", opset, batch)
            write_reference(base + ".ref.pb", f"{name} opset {opset}", model, x, y)
            written.append(base + ".onnx")
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--mode", choices=["eval", "train", "both"], default="eval",
                    help="export mode; both writes FAMILY.onnx and FAMILY-train.onnx")
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--distinct", action="store_true", help="draw biases and BatchNorm parameters at random")
    ap.add_argument("--reference", action="store_true",
                    help="also write FAMILY.ref.pb, PyTorch's tensors for a batch of --batch")
    ap.add_argument("--ops", action="store_true", help="write the per-operator fixtures instead")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.ops:
        for path in write_op_fixtures(args.out, batch=args.batch, seed=args.seed):
            print(path)
        return
    for name in args.families.split(","):
        if name not in FAMILIES:
            sys.exit(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
        model, shape = build(name, args.seed)
        distinct = ""
        if args.distinct:
            make_distinct(model, args.seed, shape)
            distinct = "-distinct"
        for mode in ["eval", "train"] if args.mode == "both" else [args.mode]:
            suffix = ("" if mode == "eval" else "-" + mode) + distinct
            path = os.path.join(args.out, f"{name}{suffix}.onnx")
            export(model, path, shape, mode, args.opset, args.batch)
            params = sum(p.numel() for p in model.parameters())
            print(f"{path}\t{params} parameters\tinput {list(shape)}\topset {args.opset}")
        if args.reference:
            # The logits are continuous in every input: only gradients need a kink margin.
            grads = args.mode != "eval"
            x, y, margin = (pick_reference_batch(model, shape, args.batch, args.seed) if grads
                            else reference_batch(shape, args.batch, args.seed) + (None,))
            write_reference(os.path.join(args.out, f"{name}{distinct}.ref.pb"), name, model, x, y,
                            grads=grads, margin=margin)


if __name__ == "__main__":
    main()
