#!/usr/bin/env python3
"""A small network with the symmetry structures of the torchvision families, for graph's tests.

Writes testdata/symmetry/structures.onnx (opset 13, eval mode, as users export): an Inception
module (torch.cat of convolution branches, GoogLeNet), a dense layer (torch.cat of a layer's input
with its output, DenseNet), a grouped convolution (ResNeXt, RegNet) followed by a
squeeze-and-excitation block (EfficientNet, RegNetY, MobileNetV3), a depthwise convolution with a
channel multiplier, a channel shuffle of two branches (ShuffleNetV2) and a fire module (SqueezeNet),
built only from operators the engine runs. Weights keep PyTorch's initialization; biases and
BatchNorm affine parameters are drawn at random near their defaults, and the running statistics
are those of random inputs (so that the logits depend on the input through every layer), so that
the exporter has no equal initializers to deduplicate.

Run from the repository root with Debian's PyTorch:
  /usr/bin/python3 testdata/gen/make_symmetry_structures.py
"""
import torch
import torch.nn as nn


def cbr(cin, cout, k=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups), nn.BatchNorm2d(cout), nn.ReLU())


class Structures(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 8, 3)
        self.b1 = cbr(8, 4)
        self.b2 = nn.Sequential(cbr(8, 6), cbr(6, 4, 3))
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), cbr(8, 4))
        self.dense_bn = nn.BatchNorm2d(12)
        self.dense_conv = nn.Conv2d(12, 6, 3, padding=1)
        self.trans_bn = nn.BatchNorm2d(18)
        self.reduce = cbr(18, 16)
        self.grouped = cbr(16, 16, 3, groups=4)
        self.se1 = nn.Conv2d(16, 4, 1)
        self.se2 = nn.Conv2d(4, 16, 1)
        self.expand = nn.Sequential(nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16))
        self.dw = nn.Conv2d(16, 32, 3, padding=1, groups=16)
        self.p = nn.Conv2d(32, 8, 1)
        self.q = nn.Conv2d(32, 8, 1)
        self.mix = cbr(16, 10)
        self.squeeze = cbr(10, 6)
        self.e1 = nn.Conv2d(6, 5, 1)
        self.e3 = nn.Conv2d(6, 5, 3, padding=1)
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)  # Inception
        x = torch.cat([x, self.dense_conv(torch.relu(self.dense_bn(x)))], 1)  # dense layer
        x = self.grouped(self.reduce(torch.relu(self.trans_bn(x))))
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        x = x * torch.sigmoid(self.se2(torch.relu(self.se1(s))))  # squeeze-and-excitation
        x = torch.relu(self.dw(self.expand(x)))
        x = torch.cat([self.p(x), self.q(x)], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        x = self.squeeze(self.mix(x))
        x = torch.relu(torch.cat([self.e1(x), self.e3(x)], 1))  # fire
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def main():
    torch.manual_seed(3)
    model = Structures()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point or name.endswith("weight") and t.dim() > 1:
                continue
            if name.endswith("weight"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith("bias"):
                t.copy_(torch.randn_like(t) * 0.1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # running statistics: the average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(10):
            model(torch.randn(16, 3, 8, 8))
    model.eval()
    x = torch.randn(4, 3, 8, 8)
    assert model(x).std(0).min() > 1e-3, "the logits do not depend on the input"
    torch.onnx.export(model, torch.randn(2, 3, 8, 8), "testdata/symmetry/structures.onnx", opset_version=13,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


if __name__ == "__main__":
    main()
