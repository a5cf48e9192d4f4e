// Package ltransfer holds what the ltransfer command carries inside its binary: the checkpoints
// of `ltransfer demo`, so that a binary installed with `go install` runs the demo from any
// folder. They are embedded from testdata/mlp, the files the tests read, so there is one copy.
// The code lives in the packages graph, align, convert, models and cmd/ltransfer.
package ltransfer

import "embed"

// Demo holds the demo's trajectory and initialization (784-256-10 ReLU MLPs trained by PyTorch
// on MNIST, see testdata/README.md): testdata/mlp/seed1/ckpt_000.onnx and ckpt_005.onnx, the
// start and end of the source run, and testdata/mlp/seed2/ckpt_000.onnx, the new
// initialization.
//
//go:embed testdata/mlp/seed1/ckpt_000.onnx testdata/mlp/seed1/ckpt_005.onnx testdata/mlp/seed2/ckpt_000.onnx
var Demo embed.FS
