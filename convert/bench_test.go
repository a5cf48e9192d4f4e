package convert

import (
	"math"
	"testing"

	"github.com/ltransfer/ltransfer/graph"
)

// TestBenchSplitsTimeAndCountsBuffers runs the benchmark on the linear512 fixture (a 784-512-10
// linear MLP, FGMT, K = 2) and checks its accounting: the parts of the time add up to the wall
// time, the buffer bytes follow their definition (checkpoints, initialization, a source and a
// transferred point; the 2K gradients kept, fc1's as rank-64 factors; the 512 x 512 float64
// score matrix), and the memory figures are consistent.
func TestBenchSplitsTimeAndCountsBuffers(t *testing.T) {
	train, val := mnist(t, 2048, 512)
	src, err := LoadTrajectory(fixture("linear512", "seed1", "ckpt_000.onnx"), fixture("linear512", "seed1", "ckpt_010.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	init, err := graph.Load(fixture("linear512", "seed2", "ckpt_000.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	_, base, err := ReadRSS()
	if err != nil {
		t.Skip(err) // not Linux
	}
	opt := Options{Method: "fgmt", Steps: 2, Schedule: Cosine, Batch: 64, GradBatches: 1, NormBatches: 1, Seed: 1, Train: train, Val: val}
	r, err := Bench(BenchCase{Model: "linear512", Source: src, Init: init}, opt, base)
	if err != nil {
		t.Fatal(err)
	}
	parts := r.GradSeconds + r.ScoreSeconds + r.AssignSeconds + r.EvalSeconds + r.OtherSeconds
	if math.Abs(parts-r.Seconds) > 1e-6*r.Seconds || r.GradSeconds <= 0 || r.ScoreSeconds <= 0 || r.AssignSeconds <= 0 {
		t.Errorf("time split %+v does not add up to %v", r, r.Seconds)
	}
	point := int64(4 * (512*784 + 10*512))
	grad := int64(4 * (64*(512+784) + 10*512))
	if want := 5*point + 2*2*grad + 8*512*512; r.BufferBytes != want {
		t.Errorf("buffer bytes %d, want %d", r.BufferBytes, want)
	}
	// Inside a test binary other tests have already raised the process's memory, so the peak may
	// sit below the base read before; `ltransfer bench` measures each row in a fresh process.
	if r.PeakRSSBytes <= 0 || r.TransferBytes != r.PeakRSSBytes-base || len(r.Accuracies) != 3 || r.BestAccuracy < 0.5 {
		t.Errorf("result %+v", r)
	}
}
