#!/usr/bin/env python3
"""A depthwise-separable convolution fixture with PyTorch references (grouped convolutions).

Writes testdata/depthwise/model.onnx (opset 13, eval mode, constant folding off so parameter
names stay) and testdata/ref/depthwise.pb (logits, loss and gradients on the reference batch of
testdata/ref/mlp.pb), with make_fixtures.py's export and write_ref. The weights are PyTorch's
initialization for seed 7, untrained: the fixture checks the arithmetic of grouped convolution,
not accuracy.

Run from the repository root with Debian's PyTorch:
  /usr/bin/python3 testdata/gen/make_depthwise_reference.py
"""
import os
import sys

import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import export, write_ref  # noqa: E402


class Depthwise(nn.Module):
    """Conv(1,6,3) - ReLU - depthwise Conv(6,6,3,stride 2,groups 6) - ReLU - pointwise
    Conv(6,8,1) - ReLU - GlobalAveragePool - Linear(8,10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.dw = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6)
        self.pw = nn.Conv2d(6, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.dw(x))
        x = torch.relu(self.pw(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def main():
    torch.set_num_threads(2)
    torch.manual_seed(7)
    model = Depthwise()
    proto = export(model, "testdata/depthwise/model.onnx", 13, training=False, constant_folding=False)
    ref = onnx.GraphProto()
    with open("testdata/ref/mlp.pb", "rb") as f:
        ref.ParseFromString(f.read())
    arrays = {t.name: numpy_helper.to_array(t) for t in ref.initializer}
    x, y = torch.from_numpy(arrays["input"].copy()), torch.from_numpy(arrays["labels"].copy())
    write_ref("testdata/ref/depthwise.pb", "depthwise", model, x, y, proto)
    print("ops:", sorted({n.op_type for n in proto.graph.node}))


if __name__ == "__main__":
    main()
