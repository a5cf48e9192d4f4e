package graph

import (
	"fmt"
	"slices"
	"testing"

	"gorgonia.org/tensor"
)

// TestShapeRulesServeBothPasses applies single nodes to a [2 6 4 4] input, at opset 13 (Slice,
// Split and Pad read their integers from inputs, ReduceMean its axes from an attribute), in the
// shape pass and in the engine's builder: both must give the shapes worked out by hand from the
// ONNX definitions, the same known values for a shape computation, and the same error for a
// node the rules refuse.
func TestShapeRulesServeBothPasses(t *testing.T) {
	ints := func(v ...int64) tensor.Tensor { return tensor.New(tensor.WithShape(len(v)), tensor.WithBacking(v)) }
	consts := map[string]tensor.Tensor{
		"c1": ints(1), "c2": ints(2), "c4": ints(4), "c5": ints(5), "c-1": ints(-1), "c-100": ints(-100), "c3": ints(3),
		"split24": ints(2, 4), "pads": ints(0, 0, 1, 1, 0, 0, 1, 1), "pads4": ints(0, 0, 1, 1),
		"seq": ints(10, 20, 30, 40, 50),
		"w":   tensor.New(tensor.WithShape(4, 3), tensor.WithBacking(make([]float32, 12))),
		"c3d": tensor.New(tensor.WithShape(2, 6, 4), tensor.WithBacking(make([]float32, 48))),
	}
	node := func(op string, inputs []string, outputs int, attrs map[string]any) *Node {
		n := &Node{Name: op + "_0", Op: op, Inputs: inputs, Attrs: attrs}
		for i := range outputs {
			n.Outputs = append(n.Outputs, fmt.Sprintf("y%d", i))
		}
		return n
	}
	cases := []struct {
		name string
		n    *Node
		want [][]int // the output shapes
		err  string  // or the error
	}{
		{"Slice with a step", node("Slice", []string{"x", "c1", "c5", "c1", "c2"}, 1, nil), [][]int{{2, 2, 4, 4}}, ""},
		{"Slice backwards", node("Slice", []string{"x", "c-1", "c-100", "c3", "c-1"}, 1, nil), [][]int{{2, 6, 4, 4}}, ""},
		{"Split by sizes", node("Split", []string{"x", "split24"}, 2, map[string]any{"axis": int64(1)}), [][]int{{2, 2, 4, 4}, {2, 4, 4, 4}}, ""},
		{"Split into too few parts", node("Split", []string{"x"}, 4, map[string]any{"axis": int64(1)}), nil,
			"Split into [2 2 2] along axis 1 has 4 outputs"},
		{"Pad", node("Pad", []string{"x", "pads"}, 1, nil), [][]int{{2, 6, 6, 6}}, ""},
		{"Pad with pads for 2 axes", node("Pad", []string{"x", "pads4"}, 1, nil), nil, "Pad has 4 pads for 4 axes"},
		{"Transpose", node("Transpose", []string{"x"}, 1, map[string]any{"perm": []int64{0, 2, 3, 1}}), [][]int{{2, 4, 4, 6}}, ""},
		{"Transpose by a repeated axis", node("Transpose", []string{"x"}, 1, map[string]any{"perm": []int64{0, 1, 1, 2}}), nil,
			"axis 1 repeated in [0 1 1 2]"},
		{"ReduceMean", node("ReduceMean", []string{"x"}, 1, map[string]any{"axes": []int64{2, -1}, "keepdims": int64(0)}), [][]int{{2, 6}}, ""},
		{"ReduceMean of no axes", node("ReduceMean", []string{"x"}, 1, nil), [][]int{{1, 1, 1, 1}}, ""},
		{"ReduceMean as a no-op", node("ReduceMean", []string{"x"}, 1, map[string]any{"noop_with_empty_axes": int64(1)}), [][]int{{2, 6, 4, 4}}, ""},
		{"Concat", node("Concat", []string{"x", "x"}, 1, map[string]any{"axis": int64(-1)}), [][]int{{2, 6, 4, 8}}, ""},
		{"Concat of ranks 4 and 3", node("Concat", []string{"x", "c3d"}, 1, map[string]any{"axis": int64(1)}), nil,
			"Concat of shapes [2 6 4 4] and [2 6 4]"},
		{"MatMul", node("MatMul", []string{"x", "w"}, 1, nil), [][]int{{2, 6, 4, 3}}, ""},
		{"MatMul of inner dimensions 4 and 6", node("MatMul", []string{"x", "c3d"}, 1, nil), nil,
			"MatMul of shapes [2 6 4 4] and [2 6 4] (transB false): inner dimensions differ"},
		{"Slice of a shape computation", node("Slice", []string{"seq", "c1", "c4"}, 1, nil), [][]int{{3}}, ""},
		{"Slice ends from the data", node("Slice", []string{"x", "c1", "x"}, 1, nil), nil,
			`input 2 ("x") must be a constant, it is computed from the data or trainable: not supported`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sink := &Node{Name: "sink", Op: "Identity", Inputs: c.n.Outputs, Outputs: []string{"z"}}
			m := &Model{Opset: 13, Input: ValueInfo{Name: "x", Shape: []int{-1, 6, 4, 4}}, Output: ValueInfo{Name: "z"},
				Nodes: []*Node{c.n, sink}, consts: consts}
			p, err := newShapePass(m, 2)
			must(t, err)
			b, _, err := newBuilder(m, 2, true)
			must(t, err)
			perr, berr := p.apply(c.n), b.apply(c.n)
			if c.err != "" {
				if perr == nil || berr == nil || perr.Error() != c.err || berr.Error() != c.err {
					t.Fatalf("errors %v (shape pass) and %v (engine), want %q from both", perr, berr, c.err)
				}
				return
			}
			if perr != nil || berr != nil {
				t.Fatalf("errors %v (shape pass) and %v (engine)", perr, berr)
			}
			for i, want := range c.want {
				out := c.n.Outputs[i]
				got, engine := p.vals[out], b.vals[out]
				if !slices.Equal(got.shape(), want) || !slices.Equal(engine.shape(), want) {
					t.Errorf("output %s: shape %v (shape pass) and %v (engine), want %v", out, got.shape(), engine.shape(), want)
				}
				if (got.k == nil) != (engine.k == nil) || (got.k != nil && !slices.Equal(got.k.asInts(), engine.k.asInts())) {
					t.Errorf("output %s: known values %v (shape pass) and %v (engine)", out, got.k, engine.k)
				}
			}
			if c.name == "Slice of a shape computation" && !slices.Equal(p.vals["y0"].k.asInts(), []int64{20, 30, 40}) {
				t.Errorf("known values %v, want [20 30 40]", p.vals["y0"].k.asInts())
			}
		})
	}
}
