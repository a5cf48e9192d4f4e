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
// an executable graph and without reading parameter data (but for the non-trainable
// initializers a node reads as known inputs): what the symmetry walk needs. It applies the
// engine's shape rules (shaperules.go) and knows the operators of the torchvision
// classification families, including some the engine does not run yet.
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

// constInput returns input i of n as a known value (see operands).
func (p *shapePass) constInput(n *Node, i int) (*konst, bool, error) {
	v, ok, err := p.input(n, i)
	if err != nil || !ok || v.k != nil {
		return v.k, ok, err
	}
	if k := p.m.constParam(n.Inputs[i]); k != nil {
		return k, true, nil
	}
	return nil, false, notConstant(n, i)
}

// opset returns the model's opset.
func (p *shapePass) opset() int64 { return p.m.Opset }

func (p *shapePass) set(n *Node, out int, v shapeVal) {
	if out < len(n.Outputs) && n.Outputs[out] != "" {
		p.vals[n.Outputs[out]] = v
	}
}

// move sets output out of n to the movement mv of x, known when x is.
func (p *shapePass) move(n *Node, out int, x shapeVal, mv movement) error {
	v := shapeVal{dims: mv.out}
	if x.k != nil {
		var err error
		if v.k, err = movedKonst(x.k, x.shape(), mv); err != nil {
			return err
		}
	}
	p.set(n, out, v)
	return nil
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
		k, err := gatherKonst(p, n)
		if err != nil {
			return err
		}
		p.set(n, 0, shapeVal{k: k})
	case "Reshape", "Flatten", "Squeeze", "Unsqueeze":
		out, err := reshapedShape(p, n, in)
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
		// Known operands are a shape computation, as in the engine; otherwise the shapes broadcast.
		var v shapeVal
		if x.k != nil && y.k != nil {
			v.k, err = konstArith(n.Op, x.k, y.k)
		} else {
			v.dims, err = broadcastShape(in, y.shape())
		}
		if err != nil {
			return err
		}
		p.set(n, 0, v)
	case "Concat":
		return p.concat(n)
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
		reduced, keep, err := reduceRule(p, n, in)
		if err != nil {
			return err
		}
		if reduced == nil {
			p.set(n, 0, x)
			return nil
		}
		p.set(n, 0, shapeVal{dims: reducedAxes(in, reduced, keep, 1)})
	case "Slice", "Split", "Pad", "Transpose":
		mvs, err := moveRules[n.Op](p, n, in)
		if err != nil {
			return err
		}
		for i, mv := range mvs {
			if err := p.move(n, i, x, mv); err != nil {
				return err
			}
		}
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

// concat is Concat (see concatShape), known when its inputs are known and 1-D.
func (p *shapePass) concat(n *Node) error {
	vals, err := needAll(n, p.need)
	if err != nil {
		return err
	}
	shapes := make([][]int, len(vals))
	ks := make([]*konst, len(vals))
	for i, v := range vals {
		shapes[i], ks[i] = v.shape(), v.k
	}
	axis, err := concatAxis(n, len(shapes[0]))
	if err != nil {
		return err
	}
	out, err := concatShape(axis, shapes)
	if err != nil {
		return err
	}
	res := shapeVal{dims: out}
	if !slices.Contains(ks, nil) && len(out) == 1 {
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
	out, err := matMulShape(a, bs, false)
	if err != nil {
		return err
	}
	p.set(n, 0, shapeVal{dims: out})
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
		var err error
		if kernel, err = poolKernel(n); err != nil {
			return err
		}
	}
	strides, dilations, pads, err := windowOf(n, in[2:], kernel)
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
