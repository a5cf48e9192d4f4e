#!/usr/bin/env python3
"""BatchNorm running statistics recomputed by PyTorch, the reference for graph's NormStats.

For the final checkpoints of the cnn and resnet fixtures, reset every BatchNorm layer's running
statistics, set momentum=None (PyTorch then keeps the plain average of the batch statistics:
mean and unbiased variance), and run the model in training mode on the 32 reference images of
testdata/ref/<name>.pb in two batches of 16. The resulting running_mean and running_var of every
layer are written to testdata/ref/<name>-bnstats.pb (a serialized onnx.GraphProto whose
initializers are named like the model's).

Run from the repository root with Debian's PyTorch:  /usr/bin/python3 testdata/gen/make_bnstats_reference.py
"""
import os
import sys

import onnx
import torch
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import CNN, ResNet  # noqa: E402
from make_train_reference import load_onnx_into  # noqa: E402

FIXTURES = {"cnn": (CNN, "testdata/cnn/seed1/ckpt_002.onnx"), "resnet": (ResNet, "testdata/resnet/seed1/ckpt_002.onnx")}


def main():
    torch.set_num_threads(2)
    for name, (cls, path) in FIXTURES.items():
        model = cls()
        load_onnx_into(model, path)
        graph = onnx.GraphProto()
        with open(f"testdata/ref/{name}.pb", "rb") as f:
            graph.ParseFromString(f.read())
        x = torch.from_numpy(next(numpy_helper.to_array(t) for t in graph.initializer if t.name == "input").copy())
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad():
            for batch in (x[:16], x[16:]):
                model(batch)
        tensors = [numpy_helper.from_array(t.detach().numpy(), name=k)
                   for k, t in model.state_dict().items() if k.endswith("running_mean") or k.endswith("running_var")]
        out = helper.make_graph([], f"bnstats_{name}", [], [], initializer=tensors)
        with open(f"testdata/ref/{name}-bnstats.pb", "wb") as f:
            f.write(out.SerializeToString())
        print(f"{name}: {len(tensors)} running statistics")


if __name__ == "__main__":
    main()
