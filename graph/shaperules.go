package graph

import (
	"fmt"
	"slices"
)

// This file holds the shape rules: the output shape of an operator from its input shapes, its
// attributes and its known inputs, with the geometry the engine builds its kernel from. The
// engine's builder (ops*.go) and the shape pass (shapes.go) read a node's known inputs through
// operands and apply the same rules, so that each rule, and each of its errors, is written once.

// operands is what a shape rule reads of a node besides its attributes and input shapes.
type operands interface {
	// opset returns the model's opset (some attributes became inputs in later opsets).
	opset() int64
	// constInput returns input i of n as a known value; ok is false when the input is omitted,
	// and a present input that is not known is an error.
	constInput(n *Node, i int) (k *konst, ok bool, err error)
}

// constParam returns the named parameter as a known value when it is not trainable (such a
// float initializer may hold a Clip bound or Slice indices), or nil.
func (m *Model) constParam(name string) *konst {
	p, found := m.Params[name]
	if !found {
		return nil
	}
	if info, _ := m.Info(name); info.Trainable {
		return nil
	}
	return &konst{shape: p.Shape, floats: p.Data}
}

// notConstant is the error of input i of n, present but not known.
func notConstant(n *Node, i int) error {
	return fmt.Errorf("input %d (%q) must be a constant, it is computed from the data or trainable: %w", i, n.Inputs[i], ErrUnsupported)
}

// knownInput returns input i of n, which must be present and known.
func knownInput(ops operands, n *Node, i int) (*konst, error) {
	k, ok, err := ops.constInput(n, i)
	if err == nil && !ok {
		err = fmt.Errorf("input %d is missing", i)
	}
	return k, err
}

// intsInput returns the integers of input i of n, or of attribute attr before the opset in which
// the attribute became an input; nil when neither is given.
func intsInput(ops operands, n *Node, i int, attr string, inputSince int64) ([]int, error) {
	if ops.opset() < inputSince {
		return n.attrInts(attr), nil
	}
	k, ok, err := ops.constInput(n, i)
	if err != nil || !ok {
		return nil, err
	}
	out := make([]int, 0, k.size())
	for _, v := range k.asInts() {
		out = append(out, clampInt(v))
	}
	return out, nil
}

// clampInt converts an int64 (ends of INT64_MAX are common) to an int within +-2^40.
func clampInt(v int64) int {
	const lim = 1 << 40
	return int(min(max(v, -lim), lim))
}

// axesOf normalises axes for a rank, refusing repeats.
func axesOf(axes []int, rank int) ([]int, error) {
	out := make([]int, len(axes))
	for i, a := range axes {
		a, err := normAxis(a, rank)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out[:i], a) {
			return nil, fmt.Errorf("axis %d repeated in %v", a, axes)
		}
		out[i] = a
	}
	return out, nil
}

// needAll returns every input of n, each of which must be present.
func needAll[V any](n *Node, need func(*Node, int) (V, error)) ([]V, error) {
	vals := make([]V, len(n.Inputs))
	for i := range n.Inputs {
		v, err := need(n, i)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	return vals, nil
}

// movement is the output of an operator that moves values without computing new ones (Slice,
// Split, Pad, Transpose): its shape, and src, which rewrites an output coordinate into the input
// coordinate it reads, in place, and reports false when it falls outside the input (the fill
// value of padding).
type movement struct {
	out []int
	src func(coord []int) bool
}

// moveRules are the shape rules of the operators that move values: one movement per output.
var moveRules = map[string]func(ops operands, n *Node, in []int) ([]movement, error){
	"Slice": sliceRule, "Split": splitRule, "Pad": padRule,
	"Transpose": func(_ operands, n *Node, in []int) ([]movement, error) {
		mv, _, err := transposeRule(n, in)
		return []movement{mv}, err
	},
}

// movedKonst applies the movement mv to the known value k of shape in (a shape computation).
func movedKonst(k *konst, in []int, mv movement) (*konst, error) {
	idx := indexMap(in, mv.out, mv.src)
	flat := make([]int, len(idx))
	for o, i := range idx {
		if i < 0 {
			return nil, fmt.Errorf("padding a constant: %w", ErrUnsupported)
		}
		flat[o] = int(i)
	}
	return k.gather(flat, slices.Clone(mv.out)), nil
}

// concatAxis returns the axis of Concat node n for inputs of rank rank.
func concatAxis(n *Node, rank int) (int, error) {
	return normAxis(int(n.attrInt("axis", 0)), rank)
}

// concatShape is the shape of the concatenation of shapes along axis: they must agree on every
// other axis.
func concatShape(axis int, shapes [][]int) ([]int, error) {
	out := slices.Clone(shapes[0])
	if axis >= len(out) {
		return nil, fmt.Errorf("Concat axis %d of rank-%d inputs", axis, len(out))
	}
	for _, s := range shapes[1:] {
		if len(s) != len(out) {
			return nil, fmt.Errorf("Concat of shapes %v and %v", shapes[0], s)
		}
		for ax := range s {
			if ax != axis && s[ax] != out[ax] {
				return nil, fmt.Errorf("Concat along axis %d of shapes %v and %v", axis, shapes[0], s)
			}
		}
		out[axis] += s[axis]
	}
	return out, nil
}

// sliceRule is Slice node n on an input of shape in: starts, ends, axes and steps are
// attributes before opset 10 and inputs 1-4 from opset 10 on, clamped as ONNX specifies.
func sliceRule(ops operands, n *Node, in []int) ([]movement, error) {
	var args [4][]int
	for i, attr := range []string{"starts", "ends", "axes", "steps"} {
		var err error
		if args[i], err = intsInput(ops, n, i+1, attr, 10); err != nil {
			return nil, err
		}
	}
	starts, ends, axes, steps := args[0], args[1], args[2], args[3]
	if len(starts) != len(ends) || (axes != nil && len(axes) != len(starts)) || (steps != nil && len(steps) != len(starts)) {
		return nil, fmt.Errorf("Slice starts %v, ends %v, axes %v, steps %v differ in length", starts, ends, axes, steps)
	}
	if axes == nil {
		for i := range starts {
			axes = append(axes, i)
		}
	}
	axes, err := axesOf(axes, len(in))
	if err != nil {
		return nil, err
	}
	first, step := make([]int, len(in)), make([]int, len(in))
	out := slices.Clone(in)
	for i := range step {
		step[i] = 1
	}
	for i, ax := range axes {
		s := 1
		if steps != nil {
			s = steps[i]
		}
		if s == 0 {
			return nil, fmt.Errorf("Slice step 0 on axis %d", ax)
		}
		dim, start, end := in[ax], starts[i], ends[i]
		if start < 0 {
			start += dim
		}
		if end < 0 {
			end += dim
		}
		if s > 0 {
			start, end = min(max(start, 0), dim), min(max(end, 0), dim)
			out[ax] = max(0, (end-start+s-1)/s)
		} else {
			start, end = min(max(start, 0), dim-1), min(max(end, -1), dim-1)
			out[ax] = max(0, (start-end-s-1)/(-s))
		}
		first[ax], step[ax] = start, s
	}
	return []movement{{out: out, src: func(c []int) bool {
		for ax := range c {
			c[ax] = first[ax] + c[ax]*step[ax]
		}
		return true
	}}}, nil
}

// splitRule is Split node n on an input of shape in, one movement per output: the sizes are
// attribute split before opset 13 and input 1 from opset 13 on; without them the axis is split
// into equal parts (the last one smaller when they do not divide it), one per output.
func splitRule(ops operands, n *Node, in []int) ([]movement, error) {
	axis, err := normAxis(int(n.attrInt("axis", 0)), len(in))
	if err != nil {
		return nil, err
	}
	sizes, err := intsInput(ops, n, 1, "split", 13)
	if err != nil {
		return nil, err
	}
	if sizes == nil {
		parts := len(n.Outputs)
		if k := n.attrInt("num_outputs", 0); k > 0 {
			parts = int(k)
		}
		each := (in[axis] + parts - 1) / parts
		for rest := in[axis]; rest > 0; rest -= each {
			sizes = append(sizes, min(each, rest))
		}
	}
	if len(sizes) != len(n.Outputs) {
		return nil, fmt.Errorf("Split into %v along axis %d has %d outputs", sizes, axis, len(n.Outputs))
	}
	if slices.Min(sizes) < 0 || sumInts(sizes) != in[axis] {
		return nil, fmt.Errorf("Split sizes %v do not add up to dimension %d (%d)", sizes, axis, in[axis])
	}
	mvs := make([]movement, len(sizes))
	offset := 0
	for i, size := range sizes {
		off := offset
		offset += size
		out := slices.Clone(in)
		out[axis] = size
		mvs[i] = movement{out: out, src: func(c []int) bool { c[axis] += off; return true }}
	}
	return mvs, nil
}

func sumInts(v []int) int {
	s := 0
	for _, x := range v {
		s += x
	}
	return s
}

// padRule is Pad node n in constant mode on an input of shape in: pads are an attribute before
// opset 11 and input 1 from opset 11 on (with optional axes, input 3, from opset 18). Negative
// pads crop. The fill value is the builder's business.
func padRule(ops operands, n *Node, in []int) ([]movement, error) {
	if mode := n.attrString("mode", "constant"); mode != "constant" {
		return nil, fmt.Errorf("Pad mode %q: only constant is %w", mode, ErrUnsupported)
	}
	pads, err := intsInput(ops, n, 1, "pads", 11)
	if err != nil {
		return nil, err
	}
	axes, err := intsInput(ops, n, 3, "", 18)
	if err != nil {
		return nil, err
	}
	if axes == nil {
		for i := range in {
			axes = append(axes, i)
		}
	}
	if axes, err = axesOf(axes, len(in)); err != nil {
		return nil, err
	}
	if len(pads) != 2*len(axes) {
		return nil, fmt.Errorf("Pad has %d pads for %d axes", len(pads), len(axes))
	}
	begin := make([]int, len(in))
	out := slices.Clone(in)
	for i, ax := range axes {
		begin[ax] = pads[i]
		out[ax] += pads[i] + pads[i+len(axes)]
		if out[ax] < 0 {
			return nil, fmt.Errorf("Pad %v leaves axis %d of %v negative", pads, ax, in)
		}
	}
	return []movement{{out: out, src: func(c []int) bool {
		for ax := range c {
			c[ax] -= begin[ax]
			if c[ax] < 0 || c[ax] >= in[ax] {
				return false
			}
		}
		return true
	}}}, nil
}

// transposeRule is Transpose node n on an input of shape in, and its permutation (the axes
// reversed when the perm attribute is absent).
func transposeRule(n *Node, in []int) (movement, []int, error) {
	perm := n.attrInts("perm")
	if perm == nil {
		for i := len(in) - 1; i >= 0; i-- {
			perm = append(perm, i)
		}
	}
	if len(perm) != len(in) {
		return movement{}, nil, fmt.Errorf("Transpose perm %v for rank %d", perm, len(in))
	}
	if _, err := axesOf(perm, len(in)); err != nil {
		return movement{}, nil, err
	}
	out := make([]int, len(in))
	for i, p := range perm {
		out[i] = in[p]
	}
	src := make([]int, len(in))
	return movement{out: out, src: func(c []int) bool {
		for i, p := range perm {
			src[p] = c[i]
		}
		copy(c, src)
		return true
	}}, perm, nil
}

// reduceRule is ReduceMean node n on an input of shape in: the axes it reduces and whether it
// keeps them with size 1. Axes are an attribute before opset 18 and input 1 from opset 18 on; no
// axes reduce all of them, unless noop_with_empty_axes, when reduced is nil (the output is the
// input).
func reduceRule(ops operands, n *Node, in []int) (reduced []bool, keep bool, err error) {
	axes, err := intsInput(ops, n, 1, "axes", 18)
	if err != nil {
		return nil, false, err
	}
	if len(axes) == 0 {
		if n.attrInt("noop_with_empty_axes", 0) == 1 {
			return nil, false, nil
		}
		for i := range in {
			axes = append(axes, i)
		}
	}
	if axes, err = axesOf(axes, len(in)); err != nil {
		return nil, false, err
	}
	reduced = make([]bool, len(in))
	for _, a := range axes {
		reduced[a] = true
	}
	return reduced, n.attrInt("keepdims", 1) == 1, nil
}

// reducedAxes is the shape (or any per-axis description) in of a value after a reduction of
// its reduced axes: they are dropped, or kept as kept (size 1) with keep.
func reducedAxes[T any](in []T, reduced []bool, keep bool, kept T) []T {
	var out []T
	for ax, d := range in {
		switch {
		case !reduced[ax]:
			out = append(out, d)
		case keep:
			out = append(out, kept)
		}
	}
	return out
}

// matMulShape is the shape of MatMul of operands of shapes a and b, of rank 2 or more, with
// numpy broadcasting of the batch axes; with transB, b holds B^T.
func matMulShape(a, b []int, transB bool) ([]int, error) {
	if len(a) < 2 || len(b) < 2 {
		return nil, fmt.Errorf("MatMul of shapes %v and %v: operands of rank 1 are %w", a, b, ErrUnsupported)
	}
	inner, cols := b[len(b)-2], b[len(b)-1]
	if transB {
		inner, cols = cols, inner
	}
	if a[len(a)-1] != inner {
		return nil, fmt.Errorf("MatMul of shapes %v and %v (transB %v): inner dimensions differ", a, b, transB)
	}
	batch, err := broadcastShape(a[:len(a)-2], b[:len(b)-2])
	if err != nil {
		return nil, err
	}
	return append(batch, a[len(a)-2], cols), nil
}

// poolKernel returns the kernel_shape of a pooling node, which must be given.
func poolKernel(n *Node) ([]int, error) {
	if n.attrInts("kernel_shape") == nil {
		return nil, fmt.Errorf("the kernel_shape attribute is missing")
	}
	return n.window2("kernel_shape", 0)
}

// windowOf reads the strides, dilations and pads (top, left, bottom, right; auto_pad resolved)
// of a 2-D Conv or pooling node n with the given kernel on spatial dimensions in.
func windowOf(n *Node, in, kernel []int) (strides, dilations []int, pads [4]int, err error) {
	if strides, err = n.window2("strides", 1); err != nil {
		return nil, nil, pads, err
	}
	if dilations, err = n.window2("dilations", 1); err != nil {
		return nil, nil, pads, err
	}
	pads, err = pads2D(n, in, kernel, strides, dilations)
	return strides, dilations, pads, err
}
