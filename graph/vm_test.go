package graph

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMachineRunsDoNotDependOnHistory runs the resnet fixture's passes in one session, whose
// machines reuse their buffers and share them (the session's arena), interleaved on two batches,
// and checks every result bit for bit against a fresh session's: no value may leak from one run
// (or one program) into another. The arena must hold less than the programs' buffers together.
func TestMachineRunsDoNotDependOnHistory(t *testing.T) {
	m, err := Load(testdataPath("resnet", "seed1", "ckpt_002.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	const batch = 8
	rng := rand.New(rand.NewPCG(7, 8))
	batchOf := func() ([]float32, []int64) {
		s, err := NewSession(m, batch)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, batch*s.ExampleSize())
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		y := make([]int64, batch)
		for i := range y {
			y[i] = int64(rng.IntN(m.Output.Shape[1]))
		}
		return x, y
	}
	x1, y1 := batchOf()
	x2, y2 := batchOf()
	fresh := func() *Session {
		s, err := NewSession(m, batch)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	wantLoss, wantGrads, err := fresh().LossAndGrad(x1, y1)
	if err != nil {
		t.Fatal(err)
	}
	wantLogits, err := fresh().Logits(x1)
	if err != nil {
		t.Fatal(err)
	}
	wantStats, err := fresh().NormStats(oneBatch(x1))
	if err != nil {
		t.Fatal(err)
	}
	s := fresh()
	for round := 0; round < 2; round++ {
		if _, _, err := s.LossAndGrad(x2, y2); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Logits(x2); err != nil {
			t.Fatal(err)
		}
		stats, err := s.NormStats(oneBatch(x1))
		if err != nil {
			t.Fatal(err)
		}
		for name, w := range wantStats {
			if !slices.Equal(stats[name].Data, w.Data) {
				t.Errorf("round %d: %q after the statistics pass differs from a fresh session's", round, name)
			}
		}
		loss, grads, err := s.LossAndGrad(x1, y1)
		if err != nil {
			t.Fatal(err)
		}
		if loss != wantLoss {
			t.Errorf("round %d: loss %v after other runs, %v in a fresh session", round, loss, wantLoss)
		}
		for name, g := range wantGrads {
			if !slices.Equal(grads[name].Data, g.Data) {
				t.Errorf("round %d: gradient of %q differs from a fresh session's", round, name)
			}
		}
		logits, err := s.Logits(x1)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(logits, wantLogits) {
			t.Errorf("round %d: logits differ from a fresh session's", round)
		}
	}
	held, planned := 0, 0
	for _, slot := range s.buffers.slots {
		held += len(slot)
	}
	for _, p := range []*program{s.eval, s.train, s.stats} {
		for _, size := range p.vm.sizes {
			planned += size
		}
	}
	t.Logf("arena: %d floats for %d planned by the programs", held, planned)
	if held >= planned {
		t.Errorf("the session's arena holds %d floats, its programs plan %d: nothing shared", held, planned)
	}
}

// TestMachineReusesBuffers checks the memory plan of the resnet fixture's programs: the training
// program holds fewer values than it computes (gradients and the outputs of BatchNorm, Relu's
// input and Add are freed after their last reader), and the evaluation program holds about as
// much as a residual block needs at once, not every activation of the pass.
func TestMachineReusesBuffers(t *testing.T) {
	m, err := Load(testdataPath("resnet", "seed1", "ckpt_002.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind programKind
		// most is the largest planned size allowed, in largest values.
		most int
	}{{trainProgram, 0}, {evalProgram, 5}} {
		p, err := buildProgram(m, 16, tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		planned, computed, largest := 0, 0, 0
		for _, size := range p.vm.sizes {
			planned += size
		}
		for _, s := range p.vm.steps {
			if s.buf >= 0 {
				computed += s.shape.TotalSize()
				largest = max(largest, s.shape.TotalSize())
			}
		}
		t.Logf("program %d: %d values planned in %d buffers (%d floats) for %d floats computed, the largest %d",
			tc.kind, len(p.vm.steps), len(p.vm.sizes), planned, computed, largest)
		if planned >= computed {
			t.Errorf("program %d: %d floats planned for %d computed: no buffer reused", tc.kind, planned, computed)
		}
		if tc.most > 0 && planned > tc.most*largest {
			t.Errorf("program %d: %d floats planned, more than %d values of the largest (%d)", tc.kind, planned, tc.most, largest)
		}
	}
}
