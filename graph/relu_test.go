package graph

import (
	"math"
	"testing"
)

// TestReluMatchesPyTorch checks Relu's value and gradient where they can differ between
// frameworks: torch.relu(0) = 0 with gradient 0 (threshold_backward keeps the gradient only where
// x > 0), and a NaN input passes through with its gradient.
func TestReluMatchesPyTorch(t *testing.T) {
	nan := float32(math.NaN())
	x := []float32{-1, 0, 2, nan}
	out := make([]float32, 4)
	if err := (relu{}).forward([][]float32{x}, nil, out); err != nil {
		t.Fatal(err)
	}
	if out[0] != 0 || out[1] != 0 || out[2] != 2 || !math.IsNaN(float64(out[3])) {
		t.Errorf("relu(%v) = %v, want [0 0 2 NaN]", x, out)
	}
	dOut := []float32{5, 6, 7, 8}
	dIn := make([]float32, 4)
	if err := (relu{}).backward(0, [][]float32{x}, nil, out, dOut, dIn); err != nil {
		t.Fatal(err)
	}
	if dIn[0] != 0 || dIn[1] != 0 || dIn[2] != 7 || dIn[3] != 8 {
		t.Errorf("relu gradient %v, want [0 0 7 8]", dIn)
	}
}
