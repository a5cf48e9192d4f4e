#!/usr/bin/python3
"""torchvision classification families as ONNX files, exported the way users export them.

Random weights (nothing is downloaded), 10 classes, seeded. Used by the tests and benchmarks
that need real torchvision graphs; the files are built into a cache folder, not committed.

    /usr/bin/python3 testdata/gen/torchvision_models.py --out DIR [--families resnet18,densenet121]
        [--mode eval|train] [--opset 13] [--batch 2]

writes DIR/FAMILY.onnx for each family (FAMILY-train.onnx with --mode train, FAMILY-distinct.onnx
with --distinct) and prints one line per file. `--mode eval` is torch.onnx.export's default (BatchNorm fused into Conv, constant
folding, identical initializers deduplicated); `--mode train` keeps BatchNorm
(training=TrainingMode.TRAINING, do_constant_folding=False). A training-mode export traces the
model in train mode, which moves BatchNorm running statistics: a copy is exported and the file's
initializers are restored from the model's state dict. `--distinct` draws every bias and
BatchNorm affine parameter at random and sets the running statistics to those of random inputs
before exporting, so that no two initializers are equal and the exporter has nothing to
deduplicate (as in a trained network).

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
from onnx import numpy_helper


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
    "googlenet": (_tv("googlenet", aux_logits=False, init_weights=True), (3, 64, 64)),
    "densenet121": (_tv("densenet121"), (3, 64, 64)),
    "mobilenet_v2": (_tv("mobilenet_v2"), (3, 64, 64)),
    "mobilenet_v3_small": (_tv("mobilenet_v3_small"), (3, 64, 64)),
    "shufflenet_v2_x0_5": (_tv("shufflenet_v2_x0_5"), (3, 64, 64)),
    "efficientnet_b0": (_tv("efficientnet_b0"), (3, 64, 64)),
    "mnasnet0_5": (_tv("mnasnet0_5"), (3, 64, 64)),
    "cifar_resnet18": (cifar_resnet18, (3, 32, 32)),
    "mnist_resnet18": (lambda: cifar_resnet18(in_channels=1), (1, 28, 28)),
}


def build(name, seed=0):
    """The family's model with PyTorch's default initialization for seed, in eval mode."""
    make, shape = FAMILIES[name]
    torch.manual_seed(seed)
    return make().eval(), shape


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
    dummy = torch.zeros(batch, *shape)
    training = torch.onnx.TrainingMode.TRAINING if mode == "train" else torch.onnx.TrainingMode.EVAL
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.onnx.export(m, dummy, path, export_params=True, opset_version=opset, training=training,
                      do_constant_folding=(mode != "train"),
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(path)
    if mode == "train":
        state = model.state_dict()
        patched = False
        for init in proto.graph.initializer:
            if init.name in state:
                want = state[init.name].detach().cpu().numpy()
                if not np.array_equal(numpy_helper.to_array(init), want):
                    init.CopyFrom(numpy_helper.from_array(want, init.name))
                    patched = True
        if patched:
            onnx.save(proto, path)
    onnx.checker.check_model(path, full_check=True)
    return proto


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--mode", choices=["eval", "train"], default="eval")
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--distinct", action="store_true", help="draw biases and BatchNorm parameters at random")
    args = ap.parse_args()
    torch.set_num_threads(2)
    for name in args.families.split(","):
        if name not in FAMILIES:
            sys.exit(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
        model, shape = build(name, args.seed)
        suffix = "" if args.mode == "eval" else "-" + args.mode
        if args.distinct:
            make_distinct(model, args.seed, shape)
            suffix += "-distinct"
        path = os.path.join(args.out, f"{name}{suffix}.onnx")
        export(model, path, shape, args.mode, args.opset, args.batch)
        params = sum(p.numel() for p in model.parameters())
        print(f"{path}\t{params} parameters\tinput {list(shape)}\topset {args.opset}")


if __name__ == "__main__":
    main()
