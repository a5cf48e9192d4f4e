package graph

import (
	"fmt"
	"slices"
	"testing"
)

// TestShapePassMatchesTheEngine checks the shape pass against the shapes of the engine's graph,
// value by value, on the fixtures and the symmetry structures.
func TestShapePassMatchesTheEngine(t *testing.T) {
	for _, model := range []string{"mlp/seed1/ckpt_000.onnx", "cnn/seed1/ckpt_000.onnx", "cnn-eval/model.onnx",
		"resnet/seed1/ckpt_000.onnx", "depthwise/model.onnx", "symmetry/structures.onnx"} {
		t.Run(model, func(t *testing.T) {
			m, err := Load(testdataPath(model))
			must(t, err)
			for _, batch := range []int{1, 3} {
				p, err := newShapePass(m, batch)
				must(t, err)
				b, _, err := newBuilder(m, batch, false)
				must(t, err)
				compared := 0
				for _, n := range m.Nodes {
					must(t, p.apply(n))
					must(t, b.apply(n))
					for _, out := range n.Outputs {
						want, ok := b.vals[out]
						if out == "" || !ok {
							continue
						}
						if got := p.vals[out].shape(); !slices.Equal(got, want.shape()) {
							t.Fatalf("batch %d: node %q output %q: shape %v, the engine's %v", batch, n.Name, out, got, want.shape())
						}
						compared++
					}
				}
				if compared < len(m.Nodes) {
					t.Fatalf("compared %d values for %d nodes", compared, len(m.Nodes))
				}
			}
		})
	}
}

// TestShapePassWindows checks pooling output sizes against sizes worked out by hand (and checked
// with PyTorch 1.13's MaxPool2d) from PyTorch's formula: floor((in + pads - dilation*(kernel-1) - 1) / stride) + 1, rounded up
// with ceil_mode unless the last window would start in the right padding.
func TestShapePassWindows(t *testing.T) {
	cases := []struct {
		in, kernel, stride, pad int
		ceil                    bool
		want                    int
	}{
		{8, 3, 2, 0, false, 3}, // windows at 0, 2, 4
		{8, 3, 2, 0, true, 4},  // and one at 6, reading 6..7
		{7, 3, 2, 0, true, 3},  // (7-3)/2 is exact: no extra window
		{6, 3, 2, 1, true, 4},  // windows at -1, 1, 3 and 5 (which starts inside the input)
		{5, 2, 2, 1, true, 3},  // windows at -1, 1, 3; one at 5 would start in the right padding
		{55, 3, 2, 0, true, 27},
		{112, 3, 2, 0, true, 56}, // GoogLeNet's first max-pool at 224: 55.5 rounded up
		{64, 7, 2, 3, false, 32}, // the ResNet stem convolution
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c), func(t *testing.T) {
			k, st, pd := int64(c.kernel), int64(c.stride), int64(c.pad)
			ceil := int64(0)
			if c.ceil {
				ceil = 1
			}
			p := &shapePass{m: &Model{}, vals: map[string]shapeVal{"x": {dims: []int{2, 3, c.in, c.in}}}}
			n := &Node{Name: "pool", Op: "MaxPool", Inputs: []string{"x"}, Outputs: []string{"y"}, Attrs: map[string]any{
				"kernel_shape": []int64{k, k}, "strides": []int64{st, st}, "pads": []int64{pd, pd, pd, pd}, "ceil_mode": ceil}}
			must(t, p.apply(n))
			if got := p.vals["y"].shape(); !slices.Equal(got, []int{2, 3, c.want, c.want}) {
				t.Errorf("output %v, want [2 3 %d %d]", got, c.want, c.want)
			}
		})
	}
}
