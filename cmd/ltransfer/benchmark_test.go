package main

import (
	"context"
	"slices"
	"testing"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/internal/testenv"
)

// TestBenchSplitsTimeAndCountsBuffers runs the benchmark on the linear512 fixture (a 784-512-10
// linear MLP, FGMT, K = 2) and checks its figures against what was measured independently: the
// accuracies against a plain transfer with the same options (the transfer is deterministic);
// the parts of the time that the transfer reports against the wall time measured around it
// (they cannot exceed it, and the rest is not negative); the buffer bytes against their
// definition computed by hand ((T+2)·P: the 2 checkpoints, the initialization and the
// session's point; the scratch of the largest parameter, fc1's 512 x 784 weight; the 2K
// gradients kept, fc1's as rank-64 factors; the 512 x 512 float64 score matrix); and the peak
// memory against those buffers, which were all resident at once during the transfer.
func TestBenchSplitsTimeAndCountsBuffers(t *testing.T) {
	train, val := testenv.MNIST(t, 2048, 512)
	src, err := convert.LoadTrajectory(testenv.Fixture("linear512", "seed1", "ckpt_000.onnx"), testenv.Fixture("linear512", "seed1", "ckpt_010.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	init, err := graph.Load(testenv.Fixture("linear512", "seed2", "ckpt_000.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	_, base, err := readRSS()
	if err != nil {
		t.Skip(err) // not Linux
	}
	opt := convert.Options{Method: "fgmt", Steps: 2, Schedule: convert.Cosine, Batch: 64, GradBatches: 1, NormBatches: 1, Seed: 1, Train: train, Val: val}
	r, err := benchTransfer(context.Background(), benchCase{model: "linear512", source: src, init: init}, opt, base)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := convert.Transfer(context.Background(), src, init, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []float64
	for _, s := range ref.Steps {
		want = append(want, s.Accuracy)
	}
	if !slices.Equal(r.Accuracies, want) || r.BestStep != ref.Best || r.BestAccuracy != want[ref.Best] || r.Steps != 2 {
		t.Errorf("accuracies %v (best step %d, %v), the transfer's %v (best step %d)", r.Accuracies, r.BestStep, r.BestAccuracy, want, ref.Best)
	}
	measured := r.GradSeconds + r.ScoreSeconds + r.AssignSeconds + r.EvalSeconds
	if measured > r.Seconds || r.OtherSeconds < 0 || r.GradSeconds <= 0 || r.ScoreSeconds <= 0 || r.AssignSeconds <= 0 || r.EvalSeconds <= 0 {
		t.Errorf("time split %+v: the parts must be positive and at most the wall time %v", r, r.Seconds)
	}
	point := int64(4 * (512*784 + 10*512))
	grad := int64(4 * (64*(512+784) + 10*512))
	if want := 4*point + 4*512*784 + 2*2*grad + 8*512*512; r.BufferBytes != want {
		t.Errorf("buffer bytes %d, want %d", r.BufferBytes, want)
	}
	// Inside a test binary other tests have already raised the process's memory, so the peak may
	// sit below the base read before; `ltransfer bench` measures each row in a fresh process.
	if r.PeakRSSBytes < r.BufferBytes || r.BaseRSSBytes != base || r.TransferBytes != r.PeakRSSBytes-base {
		t.Errorf("peak RSS %d below the buffers' %d bytes, or base %d is not %d, or %+v", r.PeakRSSBytes, r.BufferBytes, r.BaseRSSBytes, base, r)
	}
}
