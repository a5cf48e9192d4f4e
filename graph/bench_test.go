package graph

import (
	"math/rand/v2"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

// linearMLP builds the paper's MNIST setting: Flatten, then 784-hidden-10 linear layers without
// biases or activation, as torch.onnx.export writes nn.Linear(bias=False) (Transpose, MatMul).
func linearMLP(tb testing.TB, hidden int) *Model {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	uniform := func(shape []int, bound float64) *params.Tensor {
		t := &params.Tensor{Shape: shape, Data: make([]float32, params.Size(shape))}
		for i := range t.Data {
			t.Data[i] = float32((2*rng.Float64() - 1) * bound)
		}
		return t
	}
	b := NewBuilder("linear", 13)
	b.Input("input", []int{-1, 1, 28, 28})
	b.Output("logits", []int{-1, 10})
	b.Initializer("fc1.weight", uniform([]int{hidden, 784}, 1/28.0))
	b.Initializer("fc2.weight", uniform([]int{10, hidden}, 0.01))
	for _, err := range []error{
		b.Node("Flatten", "flatten", []string{"input"}, []string{"flat"}),
		b.Node("Transpose", "t1", []string{"fc1.weight"}, []string{"w1t"}),
		b.Node("MatMul", "fc1", []string{"flat", "w1t"}, []string{"h"}),
		b.Node("Transpose", "t2", []string{"fc2.weight"}, []string{"w2t"}),
		b.Node("MatMul", "fc2", []string{"h", "w2t"}, []string{"logits"}),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	m, err := b.Model()
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// benchRun times run(s, x, y) on a session of m at the given batch size, on random inputs.
func benchRun(b *testing.B, m *Model, batch int, run func(s *Session, x []float32, y []int64) error) {
	s, err := NewSession(m, batch)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, batch*s.ExampleSize())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	y := make([]int64, batch)
	for i := range y {
		y[i] = int64(rng.IntN(10))
	}
	if err := run(s, x, y); err != nil { // build and warm up outside the timer
		b.Fatal(err)
	}
	for b.Loop() {
		if err := run(s, x, y); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLossAndFactoredGrad and BenchmarkLogits time the two passes a transfer runs on the
// paper's 784-4096-10 linear MLP at batch 128: the training pass with fc1's gradient kept as
// factors (no dense dW product), and the evaluation forward pass.
func BenchmarkLossAndFactoredGrad(b *testing.B) {
	benchRun(b, linearMLP(b, 4096), 128, func(s *Session, x []float32, y []int64) error {
		_, _, err := s.LossAndFactoredGrad(x, y)
		return err
	})
}

func BenchmarkLogits(b *testing.B) {
	benchRun(b, linearMLP(b, 4096), 128, func(s *Session, x []float32, _ []int64) error {
		_, err := s.Logits(x)
		return err
	})
}

func benchLossAndGrad(b *testing.B, m *Model, batch int) {
	benchRun(b, m, batch, func(s *Session, x []float32, y []int64) error {
		_, _, err := s.LossAndGrad(x, y)
		return err
	})
}

// BenchmarkLossAndGrad times one training pass (forward, loss, all gradients) at batch 128 for
// the paper's 784-4096-10 linear MLP and for the cnn and resnet fixtures (whose time is mostly
// convolutions and BatchNorm). testdata/gen/bench_torch.py times the MLP and cnn in PyTorch.
func BenchmarkLossAndGrad(b *testing.B) {
	b.Run("mlp784-4096-10/batch128", func(b *testing.B) {
		benchLossAndGrad(b, linearMLP(b, 4096), 128)
	})
	for _, name := range []string{"cnn", "resnet"} {
		b.Run(name+"/batch128", func(b *testing.B) {
			m, err := Load(testdataPath(name, "seed1", "ckpt_002.onnx"))
			if err != nil {
				b.Fatal(err)
			}
			benchLossAndGrad(b, m, 128)
		})
	}
}
