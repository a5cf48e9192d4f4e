package graph

import (
	"fmt"
	"slices"
)

// shapeVal is a value of the shape pass: its shape, and its elements when they are known (a
// constant, or a shape computation folded once the batch size is fixed).
type shapeVal struct {
	dims []int
	k    *konst
}

func (v shapeVal) shape() []int {
	if v.k != nil {
		return v.k.shape
	}
	return v.dims
}

// shapePass computes the shape of every value of a model for one batch size without building
// an executable graph and without touching parameter data: what the symmetry walk needs. It
// knows the operators of the torchvision classification families, including some the engine
// does not run yet.
type shapePass struct {
	m    *Model
	vals map[string]shapeVal
}

// newShapePass starts the pass: the data input at the batch size and the known initializers.
func newShapePass(m *Model, batch int) (*shapePass, error) {
	if err := m.checkInput(); err != nil {
		return nil, err
	}
	p := &shapePass{m: m, vals: map[string]shapeVal{}}
	p.vals[m.Input.Name] = shapeVal{dims: append([]int{batch}, m.Input.Shape[1:]...)}
	for name, t := range m.consts {
		k, err := konstFromTensor(t)
		if err != nil {
			return nil, fmt.Errorf("initializer %q: %w", name, err)
		}
		p.vals[name] = shapeVal{k: k}
	}
	return p, nil
}

// input returns input i of n; ok is false when it is omitted.
func (p *shapePass) input(n *Node, i int) (v shapeVal, ok bool, err error) {
	if i >= len(n.Inputs) || n.Inputs[i] == "" {
		return v, false, nil
	}
	if v, ok := p.vals[n.Inputs[i]]; ok {
		return v, true, nil
	}
	if t, ok := p.m.Params[n.Inputs[i]]; ok {
		return shapeVal{dims: t.Shape}, true, nil
	}
	return v, false, fmt.Errorf("input %q is not produced by any node, initializer or graph input", n.Inputs[i])
}

// need returns input i of n, which must be present.
func (p *shapePass) need(n *Node, i int) (shapeVal, error) {
	v, ok, err := p.input(n, i)
	if err == nil && !ok {
		err = fmt.Errorf("input %d is missing", i)
	}
	return v, err
}

// known returns input i of n, which must be known.
func (p *shapePass) known(n *Node, i int) (*konst, error) {
	v, err := p.need(n, i)
	if err == nil && v.k == nil {
		err = fmt.Errorf("input %q must be a constant: %w", n.Inputs[i], ErrUnsupported)
	}
	return v.k, err
}

// knownInts returns input i of n as integers, or nil when it is omitted.
func (p *shapePass) knownInts(n *Node, i int) ([]int64, error) {
	if _, ok, _ := p.input(n, i); !ok {
		return nil, nil
	}
	k, err := p.known(n, i)
	if err != nil {
		return nil, err
	}
	return k.asInts(), nil
}

// ints returns the integer attribute name, or input i when the attribute is absent (operators
// whose attributes became inputs in later opsets).
func (p *shapePass) ints(n *Node, name string, i int) ([]int64, error) {
	if a := n.attrInts(name); a != nil {
		out := make([]int64, len(a))
		for j, v := range a {
			out[j] = int64(v)
		}
		return out, nil
	}
	return p.knownInts(n, i)
}

func (p *shapePass) set(n *Node, out int, v shapeVal) {
	if out < len(n.Outputs) && n.Outputs[out] != "" {
		p.vals[n.Outputs[out]] = v
	}
}

// apply computes the outputs of one node.
func (p *shapePass) apply(n *Node) error {
	if n.Op == "Constant" {
		k, err := constantOf(n)
		if err != nil {
			return err
		}
		p.set(n, 0, shapeVal{k: k})
		return nil
	}
	x, err := p.need(n, 0)
	if err != nil {
		return err
	}
	in := x.shape()
	switch n.Op {
	case "Identity", "Dropout", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Clip", "HardSigmoid",
		"HardSwish", "Erf", "Elu", "Selu", "Softplus", "Neg", "Exp", "Sqrt", "Reciprocal", "BatchNormalization":
		p.set(n, 0, shapeVal{dims: in, k: x.k})
	case "Cast":
		p.set(n, 0, shapeVal{dims: in, k: castKonst(x.k, n.attrInt("to", 0))})
	case "Shape":
		p.set(n, 0, shapeVal{k: shapeKonst(n, in)})
	case "Gather":
		data, err := p.known(n, 0)
		if err != nil {
			return err
		}
		idx, err := p.known(n, 1)
		if err != nil {
			return err
		}
		k, err := gatherKonst(n, data, idx)
		if err != nil {
			return err
		}
		p.set(n, 0, shapeVal{k: k})
	case "Reshape", "Flatten", "Squeeze", "Unsqueeze":
		out, err := reshapedShape(n, in, func(i int) (*konst, error) { return p.known(n, i) })
		if err != nil {
			return err
		}
		v := shapeVal{dims: out}
		if x.k != nil {
			v.k = &konst{shape: out, ints: x.k.ints, floats: x.k.floats}
		}
		p.set(n, 0, v)
	case "Add", "Sub", "Mul", "Div":
		y, err := p.need(n, 1)
		if err != nil {
			return err
		}
		if x.k != nil && y.k != nil {
			k, err := konstArith(n.Op, x.k, y.k)
			if err != nil {
				return err
			}
			p.set(n, 0, shapeVal{k: k})
			return nil
		}
		out, err := broadcastShape(in, y.shape())
		if err != nil {
			return err
		}
		p.set(n, 0, shapeVal{dims: out})
	case "Concat":
		return p.concat(n)
	case "Transpose":
		perm := n.attrInts("perm")
		if perm == nil {
			for i := len(in) - 1; i >= 0; i-- {
				perm = append(perm, i)
			}
		}
		if len(perm) != len(in) {
			return fmt.Errorf("perm %v for a rank-%d input", perm, len(in))
		}
		out := make([]int, len(perm))
		for i, a := range perm {
			if a < 0 || a >= len(in) {
				return fmt.Errorf("perm %v for a rank-%d input", perm, len(in))
			}
			out[i] = in[a]
		}
		p.set(n, 0, shapeVal{dims: out})
	case "Gemm", "MatMul":
		return p.product(n, in)
	case "Conv", "MaxPool", "AveragePool":
		return p.window(n, in)
	case "GlobalAveragePool":
		out := slices.Clone(in)
		for i := 2; i < len(out); i++ {
			out[i] = 1
		}
		p.set(n, 0, shapeVal{dims: out})
	case "ReduceMean":
		return p.reduce(n, in)
	case "Pad":
		pads, err := p.ints(n, "pads", 1)
		if err != nil {
			return err
		}
		if len(pads) != 2*len(in) {
			return fmt.Errorf("pads %v for a rank-%d input", pads, len(in))
		}
		out := slices.Clone(in)
		for i := range out {
			out[i] += int(pads[i] + pads[i+len(in)])
		}
		p.set(n, 0, shapeVal{dims: out})
	case "Split":
		return p.split(n, in)
	case "Slice":
		return p.slice(n, x)
	default:
		return fmt.Errorf("operator %s is not known to the shape pass: %w", n.Op, ErrUnsupported)
	}
	return nil
}

// castKonst converts a known value to an ONNX element type (1: float, 6 and 7: integers); an
// unknown value stays unknown.
func castKonst(k *konst, to int64) *konst {
	if k == nil {
		return nil
	}
	if to == 1 {
		return &konst{shape: k.shape, floats: append([]float32{}, k.asFloats()...)}
	}
	return &konst{shape: k.shape, ints: k.asInts()}
}

func (p *shapePass) concat(n *Node) error {
	var vals []shapeVal
	known := true
	for i := range n.Inputs {
		v, err := p.need(n, i)
		if err != nil {
			return err
		}
		vals = append(vals, v)
		known = known && v.k != nil
	}
	rank := len(vals[0].shape())
	axis, err := normAxis(int(n.attrInt("axis", 0)), rank)
	if err != nil {
		return err
	}
	out := slices.Clone(vals[0].shape())
	out[axis] = 0
	for _, v := range vals {
		s := v.shape()
		if len(s) != rank {
			return fmt.Errorf("concatenation of ranks %d and %d", rank, len(s))
		}
		out[axis] += s[axis]
	}
	res := shapeVal{dims: out}
	if known && rank == 1 {
		ks := make([]*konst, len(vals))
		for i, v := range vals {
			ks[i] = v.k
		}
		if res.k, err = concatKonsts(ks); err != nil {
			return err
		}
	}
	p.set(n, 0, res)
	return nil
}

// product is Gemm (2-D, optionally transposed operands) and MatMul (numpy matmul broadcasting).
func (p *shapePass) product(n *Node, a []int) error {
	b, err := p.need(n, 1)
	if err != nil {
		return err
	}
	bs := b.shape()
	if n.Op == "Gemm" {
		if len(a) != 2 || len(bs) != 2 {
			return fmt.Errorf("Gemm of shapes %v and %v", a, bs)
		}
		m, k := a[0], a[1]
		if n.attrInt("transA", 0) == 1 {
			m, k = k, m
		}
		k2, cols := bs[0], bs[1]
		if n.attrInt("transB", 0) == 1 {
			k2, cols = cols, k2
		}
		if k != k2 {
			return fmt.Errorf("Gemm of shapes %v and %v", a, bs)
		}
		p.set(n, 0, shapeVal{dims: []int{m, cols}})
		return nil
	}
	if len(a) < 2 || len(bs) < 2 || a[len(a)-1] != bs[len(bs)-2] {
		return fmt.Errorf("MatMul of shapes %v and %v: %w", a, bs, ErrUnsupported)
	}
	batch, err := broadcastShape(a[:len(a)-2], bs[:len(bs)-2])
	if err != nil {
		return err
	}
	p.set(n, 0, shapeVal{dims: append(batch, a[len(a)-2], bs[len(bs)-1])})
	return nil
}

// window is the output shape of a 2-D Conv or pooling: floor (or, with ceil_mode, ceiling) of
// (in + pads - dilation*(kernel-1) - 1) / stride + 1; with ceil_mode the last window must start
// inside the input or the left padding, as in PyTorch and ONNX Runtime.
func (p *shapePass) window(n *Node, in []int) error {
	if len(in) != 4 {
		return fmt.Errorf("%s of a rank-%d input: only 2-D windows are %w", n.Op, len(in), ErrUnsupported)
	}
	var kernel []int
	channels := in[1]
	if n.Op == "Conv" {
		w, err := p.need(n, 1)
		if err != nil {
			return err
		}
		ws := w.shape()
		if len(ws) != 4 {
			return fmt.Errorf("Conv weight of shape %v", ws)
		}
		kernel, channels = ws[2:], ws[0]
	} else {
		if n.attrInts("kernel_shape") == nil {
			return fmt.Errorf("the kernel_shape attribute is missing")
		}
		var err error
		if kernel, err = n.window2("kernel_shape", 0); err != nil {
			return err
		}
	}
	strides, err := n.window2("strides", 1)
	if err != nil {
		return err
	}
	dilations, err := n.window2("dilations", 1)
	if err != nil {
		return err
	}
	pads, err := pads2D(n, in[2:], kernel, strides, dilations)
	if err != nil {
		return err
	}
	out := []int{in[0], channels, 0, 0}
	for i := 0; i < 2; i++ {
		span := in[2+i] + pads[i] + pads[i+2] - dilations[i]*(kernel[i]-1) - 1
		if span < 0 {
			return fmt.Errorf("window %v larger than the padded input %v", kernel, in[2:])
		}
		o := span/strides[i] + 1
		if n.attrInt("ceil_mode", 0) == 1 && span%strides[i] != 0 {
			o++
			if (o-1)*strides[i] >= in[2+i]+pads[i] {
				o--
			}
		}
		out[2+i] = o
	}
	p.set(n, 0, shapeVal{dims: out})
	return nil
}

func (p *shapePass) reduce(n *Node, in []int) error {
	axes, err := p.ints(n, "axes", 1)
	if err != nil {
		return err
	}
	reduced := make([]bool, len(in))
	for _, a := range axes {
		ax, err := normAxis(int(a), len(in))
		if err != nil {
			return err
		}
		reduced[ax] = true
	}
	keep := n.attrInt("keepdims", 1) == 1
	var out []int
	for i, d := range in {
		switch {
		case len(axes) > 0 && !reduced[i]:
			out = append(out, d)
		case keep:
			out = append(out, 1)
		}
	}
	p.set(n, 0, shapeVal{dims: out})
	return nil
}

func (p *shapePass) split(n *Node, in []int) error {
	axis, err := normAxis(int(n.attrInt("axis", 0)), len(in))
	if err != nil {
		return err
	}
	sizes, err := p.ints(n, "split", 1)
	if err != nil {
		return err
	}
	if sizes == nil {
		if in[axis]%len(n.Outputs) != 0 {
			return fmt.Errorf("axis of %d cannot split into %d equal parts", in[axis], len(n.Outputs))
		}
		for range n.Outputs {
			sizes = append(sizes, int64(in[axis]/len(n.Outputs)))
		}
	}
	total := int64(0)
	for _, s := range sizes {
		total += s
	}
	if len(sizes) != len(n.Outputs) || total != int64(in[axis]) {
		return fmt.Errorf("split %v of an axis of %d into %d outputs", sizes, in[axis], len(n.Outputs))
	}
	for i, s := range sizes {
		out := slices.Clone(in)
		out[axis] = int(s)
		p.set(n, i, shapeVal{dims: out})
	}
	return nil
}

// slice is Slice (opset 10 and later: starts, ends, axes and steps as inputs; opset 1-9 as
// attributes), on a value or a known 1-D constant.
func (p *shapePass) slice(n *Node, x shapeVal) error {
	in := x.shape()
	starts, err := p.ints(n, "starts", 1)
	if err != nil {
		return err
	}
	ends, err := p.ints(n, "ends", 2)
	if err != nil {
		return err
	}
	axes, err := p.ints(n, "axes", 3)
	if err != nil {
		return err
	}
	steps, err := p.knownInts(n, 4)
	if err != nil {
		return err
	}
	if len(starts) != len(ends) || (axes != nil && len(axes) != len(starts)) || (steps != nil && len(steps) != len(starts)) {
		return fmt.Errorf("starts %v, ends %v, axes %v, steps %v differ in length", starts, ends, axes, steps)
	}
	out := slices.Clone(in)
	from := make([]int, len(in))
	for i := range starts {
		a := int64(i)
		if axes != nil {
			a = axes[i]
		}
		ax, err := normAxis(int(a), len(in))
		if err != nil {
			return err
		}
		step := int64(1)
		if steps != nil {
			step = steps[i]
		}
		if step != 1 {
			return fmt.Errorf("slice step %d: %w", step, ErrUnsupported)
		}
		d := int64(in[ax])
		clamp := func(v int64) int64 {
			if v < 0 {
				v += d
			}
			return min(max(v, 0), d)
		}
		s, e := clamp(starts[i]), clamp(ends[i])
		from[ax], out[ax] = int(s), int(max(e-s, 0))
	}
	v := shapeVal{dims: out}
	if x.k != nil && len(in) == 1 {
		idx := make([]int, out[0])
		for i := range idx {
			idx[i] = from[0] + i
		}
		v.k = x.k.gather(idx, out)
	}
	p.set(n, 0, v)
	return nil
}
