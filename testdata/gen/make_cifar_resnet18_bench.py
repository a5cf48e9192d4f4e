#!/usr/bin/python3
"""A CIFAR-variant ResNet-18 trajectory on generated CIFAR-shaped data, for timing a full GMT transfer.

    /usr/bin/python3 testdata/gen/make_cifar_resnet18_bench.py --out DIR [--steps 40] [--batch 128]

A benchmark input, not a test fixture (nothing in CI runs it). Writes:

    DIR/cifar/data_batch_1.bin .. data_batch_5.bin  50,000 generated 3x32x32 images in CIFAR-10's
                                                   binary layout (read with --data cifar10:DIR/cifar;
                                                   the last 10%, 5,000 images, are the validation split)
    DIR/train/seed1/ckpt_000.onnx, ckpt_001.onnx    cifar_resnet18 (torchvision_models.py) with seed 1,
                                                   at initialization and after --steps SGD steps,
                                                   training-mode exports (BatchNorm kept)
    DIR/train/seed2/ckpt_000.onnx                  seed 2's initialization, the transfer target

The images are learnable but not trivial: each class has a smooth random colour pattern (a sum of a
few low-frequency planes), each image is its class's pattern at a random shift and contrast plus
pixel noise, quantised to bytes. Training follows the recipe of make_fixtures.py (SGD lr 0.01,
momentum 0.9, mean cross-entropy, a seeded shuffle of the first 45,000 images) on inputs scaled to
[0, 1] and normalised with mean 0.5 and std 0.25 per channel (pass --mean 0.5,0.5,0.5 --std
0.25,0.25,0.25 to ltransfer). Deterministic on one machine (fixed seeds, torch.set_num_threads(2)).

    ltransfer transfer --init DIR/train/seed2/ckpt_000.onnx --data cifar10:DIR/cifar \\
        --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25 --steps 10 --bn-batches 20 --out OUT DIR/train/seed1
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep testdata/gen free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchvision_models import build, export  # noqa: E402

FAMILY = "cifar_resnet18"
N_IMAGES, N_TRAIN, CLASSES = 50000, 45000, 10
MEAN, STD = 0.5, 0.25


def make_images(seed=0):
    """Returns N_IMAGES uint8 images (N x 3 x 32 x 32) and their labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    patterns = np.zeros((CLASSES, 3, 32, 32))
    for c in range(CLASSES):
        for _ in range(4):
            fy, fx = rng.uniform(0.05, 0.3, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            colour = rng.normal(size=3)
            patterns[c] += colour[:, None, None] * np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
    patterns /= patterns.std(axis=(1, 2, 3), keepdims=True)
    labels = rng.integers(0, CLASSES, size=N_IMAGES)
    images = np.empty((N_IMAGES, 3, 32, 32), dtype=np.uint8)
    for start in range(0, N_IMAGES, 5000):
        lab = labels[start:start + 5000]
        shift = rng.integers(-4, 5, size=(len(lab), 2))
        contrast = rng.uniform(0.5, 1.5, size=(len(lab), 1, 1, 1))
        base = np.stack([np.roll(patterns[l], tuple(s), axis=(1, 2)) for l, s in zip(lab, shift)])
        x = 128 + 40 * contrast * base + rng.normal(scale=40, size=base.shape)
        images[start:start + 5000] = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return images, labels


def write_cifar(folder, images, labels):
    os.makedirs(folder, exist_ok=True)
    per = N_IMAGES // 5
    for i in range(5):
        rec = np.empty((per, 1 + 3 * 32 * 32), dtype=np.uint8)
        rec[:, 0] = labels[i * per:(i + 1) * per]
        rec[:, 1:] = images[i * per:(i + 1) * per].reshape(per, -1)
        path = os.path.join(folder, f"data_batch_{i + 1}.bin")
        rec.tofile(path + ".tmp")
        os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(2)
    start = time.time()
    images, labels = make_images()
    write_cifar(os.path.join(args.out, "cifar"), images, labels)
    x = (torch.from_numpy(images[:N_TRAIN]).float() / 255 - MEAN) / STD
    y = torch.from_numpy(labels[:N_TRAIN]).long()

    target, shape = build(FAMILY, seed=2, calibrated=False)
    export(target, os.path.join(args.out, "train", "seed2", "ckpt_000.onnx"), shape, mode="train")
    model, shape = build(FAMILY, seed=1, calibrated=False)
    export(model, os.path.join(args.out, "train", "seed1", "ckpt_000.onnx"), shape, mode="train")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1))
    for step in range(1, args.steps + 1):
        model.train()
        idx = order[(step - 1) * args.batch:step * args.batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == args.steps:
            print(f"step {step}: training loss {loss.item():.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        xv = (torch.from_numpy(images[N_TRAIN:N_TRAIN + 1000]).float() / 255 - MEAN) / STD
        acc = (model(xv).argmax(1).numpy() == labels[N_TRAIN:N_TRAIN + 1000]).mean()
    export(model, os.path.join(args.out, "train", "seed1", "ckpt_001.onnx"), shape, mode="train")
    print(f"validation accuracy (1000 images) {acc:.3f}; wrote {args.out} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
