#!/usr/bin/python3
"""Regenerate testdata/finetune: the paper's fine-tuning scenario trained by real PyTorch.

Usage (from the repository root):

    /usr/bin/python3 testdata/gen/make_finetune_fixtures.py [MNIST_DIR] [--out testdata]

Two 784-256-10 ReLU MLPs (the `mlp` fixture's architecture and export) are pre-trained for 3
epochs on MNIST digits 0-4 from seeds 1 and 2; the first is then fine-tuned for 3 epochs on digits
5-9 with a fresh optimizer and its 10-way head kept (SGD lr 0.01, momentum 0.9, batch 128; the
first 54000 training images, of which those of the task's digits). Written:

    finetune/source/ckpt_000.onnx   model A pre-trained (the start of the fine-tuning trajectory)
    finetune/source/ckpt_003.onnx   model A fine-tuned on 5-9 (its end)
    finetune/target.onnx            model B pre-trained (the initialization to transfer onto)

The checkpoints of epochs 1 and 2 are not kept, to stay within the size budget of testdata.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as fx  # noqa: E402

PRETRAIN, FINETUNE = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
EPOCHS = 3


def subset(x, y, classes):
    keep = torch.zeros_like(y, dtype=torch.bool)
    for c in classes:
        keep |= y == c
    return x[keep].contiguous(), y[keep].contiguous()


def train(model, x, y, epochs, shuffle_seed):
    opt = torch.optim.SGD(model.parameters(), lr=fx.LR, momentum=fx.MOMENTUM)
    gen = torch.Generator().manual_seed(shuffle_seed)
    for _ in range(epochs):
        fx.train_epoch(model, opt, x, y, gen)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mnist_dir", nargs="?", default=fx.default_mnist_dir())
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = ap.parse_args()
    out = os.path.join(os.path.normpath(args.out), "finetune")
    torch.set_num_threads(2)
    xall, yall, _, _ = fx.load_mnist(args.mnist_dir)
    xtr, ytr = xall[:fx.N_TRAIN], yall[:fx.N_TRAIN]
    xval, yval = xall[fx.N_TRAIN:fx.N_TRAIN + fx.N_VAL], yall[fx.N_TRAIN:fx.N_TRAIN + fx.N_VAL]
    pre_x, pre_y = subset(xtr, ytr, PRETRAIN)
    ft_x, ft_y = subset(xtr, ytr, FINETUNE)
    val_pre, val_ft = subset(xval, yval, PRETRAIN), subset(xval, yval, FINETUNE)

    models = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        m = fx.MLP()
        train(m, pre_x, pre_y, EPOCHS, seed + fx.SHUFFLE_SEED_OFFSET)
        models[seed] = m
        print(f"pre-trained seed {seed}: digits 0-4 {fx.accuracy(m, *val_pre):.4f}, 5-9 {fx.accuracy(m, *val_ft):.4f}")
    fx.export(models[1], os.path.join(out, "source", "ckpt_000.onnx"), 13)
    fx.export(models[2], os.path.join(out, "target.onnx"), 13)
    train(models[1], ft_x, ft_y, EPOCHS, 1 + 2 * fx.SHUFFLE_SEED_OFFSET)
    fx.export(models[1], os.path.join(out, "source", "ckpt_003.onnx"), 13)
    print(f"fine-tuned seed 1: digits 5-9 {fx.accuracy(models[1], *val_ft):.4f}")


if __name__ == "__main__":
    main()
