#!/usr/bin/python3
"""A short torchvision ResNet-18 training run on MNIST, exported both ways, for the end-to-end test.

    /usr/bin/python3 testdata/gen/make_resnet18_trajectory.py --out DIR [--mnist MNIST_DIR]
        [--steps 20] [--checkpoints 2] [--batch 32] [--ref-images 16]

Trains `mnist_resnet18` of torchvision_models.py (torchvision's ResNet-18 with the paper's CIFAR
stem and one input channel) with seed 1 in real PyTorch on real MNIST (the recipe of
make_fixtures.py: the first 54000 training images, normalised, seeded shuffle, SGD lr 0.01
momentum 0.9, mean cross-entropy) for --steps steps, and writes:

    DIR/eval/seed1/ckpt_000.onnx .. ckpt_NNN.onnx   eval-mode default export (BN fused, constant
                                                   folding, identical initializers deduplicated)
    DIR/train/seed1/ckpt_000.onnx .. ckpt_NNN.onnx  training-mode export (BN kept)
    DIR/{eval,train}/seed2/ckpt_000.onnx            seed 2's initialization, the transfer target
    DIR/reference.json                             PyTorch's eval-mode logits of every seed-1
                                                   checkpoint and of seed 2's init on the first
                                                   --ref-images validation images (54000, ...)

ckpt_000 is the initialization; the others are evenly spaced over the steps. MNIST_DIR defaults
to the GoMNIST module's data folder, as for make_fixtures.py. Written last, reference.json marks
a complete folder. Deterministic on one machine (fixed seeds, torch.set_num_threads(2)).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import LR, MOMENTUM, N_TRAIN, SHUFFLE_SEED_OFFSET, default_mnist_dir, load_mnist  # noqa: E402
from torchvision_models import build, export  # noqa: E402

FAMILY = "mnist_resnet18"


def logits_of(model, x):
    model.eval()
    with torch.no_grad():
        return model(x).reshape(-1).tolist()


def save(model, out, seed, index, shape):
    for mode in ("eval", "train"):
        path = os.path.join(out, mode, f"seed{seed}", f"ckpt_{index:03d}.onnx")
        export(model, path, shape, mode=mode)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--mnist", default=None, help="folder with the gzipped MNIST IDX files")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--checkpoints", type=int, default=2, help="checkpoints after the init")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ref-images", type=int, default=16)
    args = ap.parse_args()
    if args.checkpoints < 1 or args.steps < args.checkpoints:
        sys.exit("need 1 <= --checkpoints <= --steps")
    torch.set_num_threads(2)
    start = time.time()
    xtr, ytr, _, _ = load_mnist(args.mnist or default_mnist_dir())
    xref = xtr[N_TRAIN:N_TRAIN + args.ref_images]
    ref = {"family": FAMILY, "steps": args.steps, "batch": args.batch,
           "val_images": args.ref_images, "logits": {}}

    target, shape = build(FAMILY, seed=2, calibrated=False)
    save(target, args.out, 2, 0, shape)
    ref["logits"]["seed2/ckpt_000"] = logits_of(target, xref)

    model, shape = build(FAMILY, seed=1, calibrated=False)
    save(model, args.out, 1, 0, shape)
    ref["logits"]["seed1/ckpt_000"] = logits_of(model, xref)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1 + SHUFFLE_SEED_OFFSET))
    marks = {round(args.steps * (i + 1) / args.checkpoints): i + 1 for i in range(args.checkpoints)}
    for step in range(1, args.steps + 1):
        model.train()
        idx = order[(step - 1) * args.batch:step * args.batch]
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in marks:
            save(model, args.out, 1, marks[step], shape)
            name = f"seed1/ckpt_{marks[step]:03d}"
            ref["logits"][name] = logits_of(model, xref)
            print(f"{name}: step {step}, training loss {loss.item():.4f}", flush=True)
    path = os.path.join(args.out, "reference.json")
    with open(path + ".tmp", "w") as f:
        json.dump(ref, f)
    os.replace(path + ".tmp", path)
    print(f"wrote {args.out} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
