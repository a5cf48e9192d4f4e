package graph

import (
	"fmt"
	"slices"

	"github.com/ltransfer/ltransfer/params"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// attrInt returns an integer attribute, or def when absent.
func (n *Node) attrInt(name string, def int64) int64 {
	if v, ok := n.Attrs[name].(int64); ok {
		return v
	}
	return def
}

// attrFloat returns a float attribute, or def when absent.
func (n *Node) attrFloat(name string, def float64) float64 {
	if v, ok := n.Attrs[name].(float32); ok {
		return float64(v)
	}
	return def
}

// attrInts returns an integer-list attribute, or nil when absent.
func (n *Node) attrInts(name string) []int {
	v, ok := n.Attrs[name].([]int64)
	if !ok {
		return nil
	}
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// attrString returns a string attribute, or def when absent.
func (n *Node) attrString(name, def string) string {
	if v, ok := n.Attrs[name].(string); ok {
		return v
	}
	return def
}

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(axis, rank int) (int, error) {
	if axis < 0 {
		axis += rank
	}
	if axis < 0 || axis >= rank {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	return axis, nil
}

func (b *builder) constant(n *Node) error {
	k, err := constantOf(n)
	if err != nil {
		return err
	}
	b.set(n, value{k: k})
	return nil
}

// constantOf returns the value of a Constant node.
func constantOf(n *Node) (*konst, error) {
	switch {
	case n.Attrs["value"] != nil:
		t, ok := n.Attrs["value"].(tensor.Tensor)
		if !ok {
			return nil, fmt.Errorf("value attribute is %T, want a tensor", n.Attrs["value"])
		}
		return konstFromTensor(t)
	case n.Attrs["value_float"] != nil:
		return &konst{floats: []float32{float32(n.attrFloat("value_float", 0))}}, nil
	case n.Attrs["value_int"] != nil:
		return &konst{ints: []int64{n.attrInt("value_int", 0)}}, nil
	case n.Attrs["value_ints"] != nil:
		v, ok := n.Attrs["value_ints"].([]int64)
		if !ok {
			return nil, fmt.Errorf("value_ints attribute is %T, want integers", n.Attrs["value_ints"])
		}
		return &konst{shape: []int{len(v)}, ints: append([]int64{}, v...)}, nil
	case n.Attrs["value_floats"] != nil:
		v, _ := n.Attrs["value_floats"].([]float32)
		return &konst{shape: []int{len(v)}, floats: append([]float32{}, v...)}, nil
	}
	return nil, fmt.Errorf("constant without a supported value attribute: %w", ErrUnsupported)
}

func (b *builder) shapeOf(n *Node) error {
	v, err := b.need(n, 0)
	if err != nil {
		return err
	}
	b.set(n, value{k: shapeKonst(n, v.shape())})
	return nil
}

// shapeKonst is the output of Shape node n on a value of shape s.
func shapeKonst(n *Node, s []int) *konst {
	start, end := int(n.attrInt("start", 0)), int(n.attrInt("end", int64(len(s))))
	clamp := func(i int) int {
		if i < 0 {
			i += len(s)
		}
		return min(max(i, 0), len(s))
	}
	start, end = clamp(start), clamp(end)
	k := &konst{shape: []int{max(end-start, 0)}, ints: []int64{}}
	for _, d := range s[start:max(end, start)] {
		k.ints = append(k.ints, int64(d))
	}
	return k
}

func (b *builder) gather(n *Node) error {
	k, err := gatherKonst(b, n)
	if err != nil {
		return err
	}
	b.set(n, value{k: k})
	return nil
}

// gatherKonst is the output of Gather node n, whose data and indices must be known.
func gatherKonst(ops operands, n *Node) (*konst, error) {
	data, err := knownInput(ops, n, 0)
	if err != nil {
		return nil, err
	}
	idx, err := knownInput(ops, n, 1)
	if err != nil {
		return nil, err
	}
	if len(data.shape) == 0 {
		return nil, fmt.Errorf("gather from a scalar")
	}
	axis, err := normAxis(int(n.attrInt("axis", 0)), len(data.shape))
	if err != nil {
		return nil, err
	}
	outer, dim := 1, data.shape[axis]
	for _, d := range data.shape[:axis] {
		outer *= d
	}
	inner := 1
	for _, d := range data.shape[axis+1:] {
		inner *= d
	}
	var flat []int
	for o := 0; o < outer; o++ {
		for _, j := range idx.asInts() {
			if j < 0 {
				j += int64(dim)
			}
			if j < 0 || j >= int64(dim) {
				return nil, fmt.Errorf("gather index %d out of range [0, %d)", j, dim)
			}
			for in := 0; in < inner; in++ {
				flat = append(flat, (o*dim+int(j))*inner+in)
			}
		}
	}
	shape := append(append(append([]int{}, data.shape[:axis]...), idx.shape...), data.shape[axis+1:]...)
	return data.gather(flat, shape), nil
}

// reshape handles Reshape, Flatten, Squeeze and Unsqueeze: all keep the data and change the shape.
func (b *builder) reshape(n *Node) error {
	v, err := b.need(n, 0)
	if err != nil {
		return err
	}
	in := v.shape()
	out, err := reshapedShape(b, n, in)
	if err != nil {
		return err
	}
	if v.k != nil {
		b.set(n, value{k: &konst{shape: out, ints: v.k.ints, floats: v.k.floats}})
		return nil
	}
	if slices.Equal(in, out) {
		b.set(n, v)
		return nil
	}
	r, err := G.Reshape(v.node, tensor.Shape(out))
	if err != nil {
		return err
	}
	b.set(n, value{node: r})
	return nil
}

// reshapedShape is the output shape of Reshape, Flatten, Squeeze or Unsqueeze node n on an input
// of shape in; the target shape and the axes, when they are inputs, must be known.
func reshapedShape(ops operands, n *Node, in []int) ([]int, error) {
	var out []int
	switch n.Op {
	case "Reshape":
		target, err := knownInput(ops, n, 1)
		if err != nil {
			return nil, err
		}
		if out, err = reshapeTarget(in, target.asInts(), n.attrInt("allowzero", 0) == 1); err != nil {
			return nil, err
		}
	case "Flatten":
		axis := int(n.attrInt("axis", 1))
		if axis < 0 {
			axis += len(in)
		}
		if axis < 0 || axis > len(in) {
			return nil, fmt.Errorf("flatten axis %d out of range for rank %d", axis, len(in))
		}
		out = []int{params.Size(in[:axis]), params.Size(in[axis:])}
	case "Unsqueeze", "Squeeze":
		axes := n.attrInts("axes")
		if len(n.Inputs) > 1 && n.Inputs[1] != "" {
			k, err := knownInput(ops, n, 1)
			if err != nil {
				return nil, err
			}
			for _, a := range k.asInts() {
				axes = append(axes, int(a))
			}
		}
		var err error
		if out, err = squeezeShape(in, axes, n.Op == "Unsqueeze"); err != nil {
			return nil, err
		}
	}
	if params.Size(out) != params.Size(in) {
		return nil, fmt.Errorf("cannot reshape %v to %v", in, out)
	}
	return out, nil
}

// reshapeTarget resolves an ONNX Reshape shape: 0 copies the input dimension (unless allowzero),
// -1 is inferred.
func reshapeTarget(in []int, target []int64, allowZero bool) ([]int, error) {
	out := make([]int, len(target))
	infer := -1
	for i, t := range target {
		switch {
		case t == 0 && !allowZero:
			if i >= len(in) {
				return nil, fmt.Errorf("reshape target %v copies dimension %d of an input of rank %d", target, i, len(in))
			}
			out[i] = in[i]
		case t == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("reshape target %v has two -1", target)
			}
			infer = i
		case t < 0:
			return nil, fmt.Errorf("reshape target %v has a negative dimension", target)
		default:
			out[i] = int(t)
		}
	}
	if infer >= 0 {
		rest := 1
		for i, d := range out {
			if i != infer {
				rest *= d
			}
		}
		if rest == 0 || params.Size(in)%rest != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", in, target)
		}
		out[infer] = params.Size(in) / rest
	}
	return out, nil
}

// squeezeShape removes (or, for unsqueeze, inserts) size-1 axes.
func squeezeShape(in, axes []int, unsqueeze bool) ([]int, error) {
	if unsqueeze {
		rank := len(in) + len(axes)
		ins := make([]bool, rank)
		for _, a := range axes {
			a, err := normAxis(a, rank)
			if err != nil {
				return nil, err
			}
			ins[a] = true
		}
		out, j := make([]int, rank), 0
		for i := range out {
			if ins[i] {
				out[i] = 1
			} else {
				out[i] = in[j]
				j++
			}
		}
		return out, nil
	}
	drop := make([]bool, len(in))
	for _, a := range axes {
		a, err := normAxis(a, len(in))
		if err != nil {
			return nil, err
		}
		if in[a] != 1 {
			return nil, fmt.Errorf("cannot squeeze axis %d of size %d", a, in[a])
		}
		drop[a] = true
	}
	var out []int
	for i, d := range in {
		if (len(axes) == 0 && d == 1) || drop[i] {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

func (b *builder) concat(n *Node) error {
	vals, err := needAll(n, b.need)
	if err != nil {
		return err
	}
	rank := len(vals[0].shape())
	axis, err := concatAxis(n, rank)
	if err != nil {
		return err
	}
	ks := make([]*konst, len(vals))
	for i, v := range vals {
		ks[i] = v.k
	}
	if slices.Contains(ks, nil) {
		nodes := make(G.Nodes, len(vals))
		for i, v := range vals {
			if nodes[i], err = b.symbolic(v); err != nil {
				return err
			}
		}
		c, err := applyKernel(&concatKernel{axis: axis}, nodes...)
		if err != nil {
			return err
		}
		b.set(n, value{node: c})
		return nil
	}
	if axis != 0 || rank != 1 {
		return fmt.Errorf("concatenation of constants of rank %d along axis %d: %w", rank, axis, ErrUnsupported)
	}
	out, err := concatKonsts(ks)
	if err != nil {
		return err
	}
	b.set(n, value{k: out})
	return nil
}

// concatKonsts concatenates known 1-D values.
func concatKonsts(ks []*konst) (*konst, error) {
	out := &konst{shape: []int{0}}
	for _, k := range ks {
		if k.isInt() {
			out.ints = append(out.ints, k.ints...)
		} else {
			out.floats = append(out.floats, k.floats...)
		}
		out.shape[0] += k.size()
	}
	if out.ints != nil && out.floats != nil {
		return nil, fmt.Errorf("concatenation of integer and float constants")
	}
	if out.ints == nil && out.floats == nil {
		out.ints = []int64{}
	}
	return out, nil
}

func (b *builder) cast(n *Node) error {
	v, err := b.need(n, 0)
	if err != nil {
		return err
	}
	to := n.attrInt("to", 0)
	const float, int64Type, int32Type = 1, 7, 6
	switch {
	case v.k != nil && (to == float || to == int64Type || to == int32Type):
		b.set(n, value{k: castKonst(v.k, to)})
	case v.node != nil && to == float:
		b.set(n, v)
	default:
		return fmt.Errorf("cast to type %d: %w", to, ErrUnsupported)
	}
	return nil
}

func (b *builder) transpose(n *Node) error {
	v, err := b.need(n, 0)
	if err != nil {
		return err
	}
	mv, perm, err := transposeRule(n, v.shape())
	if err != nil {
		return err
	}
	// Any rank but a weight's 2-D transpose is an index map (the channel shuffle of ShuffleNet
	// transposes a 5-D tensor).
	if len(perm) != 2 || v.k != nil {
		return b.move(n, n.Outputs[0], v, mv, 0)
	}
	x, err := b.symbolic(v)
	if err != nil {
		return err
	}
	if x.Shape().Dims() == 2 && b.m.transposedWeight(n) {
		// Every reader multiplies by the transpose directly (see matmul): no node is needed.
		b.set(n, value{transposeOf: x})
		return nil
	}
	t, err := G.Transpose(x, perm...)
	if err != nil {
		return err
	}
	b.set(n, value{node: t})
	return nil
}

// gemm is Y = alpha * A' B' + beta * C with A' = A or A^T, B' = B or B^T.
func (b *builder) gemm(n *Node) error {
	a, err := b.sym(n, 0)
	if err != nil {
		return err
	}
	w, err := b.sym(n, 1)
	if err != nil {
		return err
	}
	transA, transB := n.attrInt("transA", 0) == 1, n.attrInt("transB", 0) == 1
	if transA {
		if a, err = G.Transpose(a); err != nil {
			return err
		}
	}
	y, err := b.product(a, w, transB)
	if err != nil {
		return err
	}
	if name, viaTranspose, ok := b.m.layerWeight(n); ok && !transA && !viaTranspose {
		b.layers[name] = denseLayer{a: a, y: y, transposed: transB}
	}
	if alpha := n.attrFloat("alpha", 1); alpha != 1 {
		if y, err = G.Mul(G.NewConstant(float32(alpha)), y); err != nil {
			return err
		}
	}
	c, ok, err := b.input(n, 2)
	if err != nil {
		return err
	}
	if ok {
		cn, err := b.symbolic(c)
		if err != nil {
			return err
		}
		if beta := n.attrFloat("beta", 1); beta != 1 {
			if cn, err = G.Mul(G.NewConstant(float32(beta)), cn); err != nil {
				return err
			}
		}
		if y, err = applyKernel(&binaryOp{op: "Add"}, y, cn); err != nil {
			return err
		}
	}
	b.set(n, value{node: y})
	return nil
}

func (b *builder) matmul(n *Node) error {
	a, err := b.sym(n, 0)
	if err != nil {
		return err
	}
	// A weight exported as Transpose(W) (a bias-free nn.Linear) is multiplied transposed in
	// place rather than transposed at every run.
	var w *G.Node
	v, err := b.need(n, 1)
	if err != nil {
		return err
	}
	transB := v.transposeOf != nil
	if transB {
		w = v.transposeOf
	} else if w, err = b.symbolic(v); err != nil {
		return err
	}
	if a.Shape().Dims() != 2 || w.Shape().Dims() != 2 {
		return b.matmulND(n, a, w, transB)
	}
	y, err := b.product(a, w, transB)
	if err != nil {
		return err
	}
	if name, transposed, ok := b.m.layerWeight(n); ok {
		b.layers[name] = denseLayer{a: a, y: y, transposed: transposed}
	}
	b.set(n, value{node: y})
	return nil
}

// product returns a w, or a w^T when transB, for 2-D a and w.
func (b *builder) product(a, w *G.Node, transB bool) (*G.Node, error) {
	if !transB {
		return G.Mul(a, w)
	}
	if a.Shape().Dims() != 2 || w.Shape().Dims() != 2 {
		return nil, fmt.Errorf("product of shapes %v and %v transposed: only 2-D operands are %w", a.Shape(), w.Shape(), ErrUnsupported)
	}
	return applyKernel(&matMulT{}, a, w)
}

func (b *builder) arith(n *Node) error {
	x, err := b.need(n, 0)
	if err != nil {
		return err
	}
	y, err := b.need(n, 1)
	if err != nil {
		return err
	}
	if x.k != nil && y.k != nil {
		k, err := konstArith(n.Op, x.k, y.k)
		if err != nil {
			return err
		}
		b.set(n, value{k: k})
		return nil
	}
	xn, err := b.symbolic(x)
	if err != nil {
		return err
	}
	yn, err := b.symbolic(y)
	if err != nil {
		return err
	}
	if yn.IsScalar() && y.k != nil {
		yn = G.NewConstant(tensor.New(tensor.WithShape(1), tensor.WithBacking([]float32{y.k.asFloats()[0]})))
	}
	if xn.IsScalar() && x.k != nil {
		xn = G.NewConstant(tensor.New(tensor.WithShape(1), tensor.WithBacking([]float32{x.k.asFloats()[0]})))
	}
	k := &binaryOp{op: n.Op}
	name := n.Outputs[0]
	if r := b.fusable(name, "Relu"); r != nil {
		k.relu, name = true, r.Outputs[0]
		b.fused[r] = true
	}
	out, err := applyKernel(k, xn, yn)
	if err != nil {
		return err
	}
	b.vals[name] = value{node: out}
	return nil
}

// konstArith evaluates arithmetic on known values (shape computations): same shapes, or one
// scalar operand.
func konstArith(op string, x, y *konst) (*konst, error) {
	if x.size() != y.size() && x.size() != 1 && y.size() != 1 {
		return nil, fmt.Errorf("%s of constants of shapes %v and %v: %w", op, x.shape, y.shape, ErrUnsupported)
	}
	shape := x.shape
	if x.size() < y.size() {
		shape = y.shape
	}
	n := max(x.size(), y.size())
	at := func(k *konst, i int) int { return min(i, k.size()-1) }
	if x.isInt() && y.isInt() {
		out := &konst{shape: shape, ints: make([]int64, n)}
		for i := range out.ints {
			a, c := x.ints[at(x, i)], y.ints[at(y, i)]
			switch op {
			case "Add":
				out.ints[i] = a + c
			case "Sub":
				out.ints[i] = a - c
			case "Mul":
				out.ints[i] = a * c
			case "Div":
				if c == 0 {
					return nil, fmt.Errorf("integer division by zero")
				}
				out.ints[i] = a / c
			}
		}
		return out, nil
	}
	xf, yf := x.asFloats(), y.asFloats()
	out := &konst{shape: shape, floats: make([]float32, n)}
	for i := range out.floats {
		a, c := xf[at(x, i)], yf[at(y, i)]
		switch op {
		case "Add":
			out.floats[i] = a + c
		case "Sub":
			out.floats[i] = a - c
		case "Mul":
			out.floats[i] = a * c
		case "Div":
			out.floats[i] = a / c
		}
	}
	return out, nil
}

func (b *builder) activation(n *Node) error {
	x, err := b.sym(n, 0)
	if err != nil {
		return err
	}
	var y *G.Node
	switch n.Op {
	case "Relu":
		y, err = applyKernel(relu{}, x)
	case "LeakyRelu":
		y, err = G.LeakyRelu(x, n.attrFloat("alpha", 0.01))
	case "Sigmoid":
		y, err = G.Sigmoid(x)
	case "Tanh":
		y, err = G.Tanh(x)
	}
	if err != nil {
		return err
	}
	b.set(n, value{node: y})
	return nil
}

func (b *builder) softmax(n *Node) error {
	x, err := b.sym(n, 0)
	if err != nil {
		return err
	}
	rank := x.Shape().Dims()
	def := int64(-1)
	if b.m.Opset < 13 {
		def = 1
	}
	axis, err := normAxis(int(n.attrInt("axis", def)), rank)
	if err != nil {
		return err
	}
	if axis != rank-1 {
		return fmt.Errorf("%s over axis %d of a rank-%d tensor: only the last axis is %w", n.Op, axis, rank, ErrUnsupported)
	}
	y, err := applyKernel(&softmax{log: n.Op == "LogSoftmax"}, x)
	if err != nil {
		return err
	}
	b.set(n, value{node: y})
	return nil
}

// pads2D reads the ONNX pads of a 2-D window operator as top, left, bottom, right, resolving
// auto_pad.
func pads2D(n *Node, in []int, kernel, strides, dilations []int) ([4]int, error) {
	var p [4]int
	switch mode := n.attrString("auto_pad", "NOTSET"); mode {
	case "NOTSET", "":
		pads := n.attrInts("pads")
		if pads == nil {
			return p, nil
		}
		if len(pads) != 4 || slices.Min(pads) < 0 {
			return p, fmt.Errorf("pads %v: want 4 non-negative values for a 2-D window", pads)
		}
		return [4]int{pads[0], pads[1], pads[2], pads[3]}, nil
	case "VALID":
		return p, nil
	case "SAME_UPPER", "SAME_LOWER":
		for i := 0; i < 2; i++ {
			out := (in[i] + strides[i] - 1) / strides[i]
			total := max((out-1)*strides[i]+(kernel[i]-1)*dilations[i]+1-in[i], 0)
			small, big := total/2, total-total/2
			if mode == "SAME_UPPER" {
				p[i], p[i+2] = small, big
			} else {
				p[i], p[i+2] = big, small
			}
		}
		return p, nil
	default:
		return p, fmt.Errorf("auto_pad %q is not an ONNX mode", mode)
	}
}

// window2 returns the attribute of a 2-D window (kernel_shape, strides, dilations): two
// positive values, [def, def] when the attribute is absent.
func (n *Node) window2(name string, def int) ([]int, error) {
	v := n.attrInts(name)
	if v == nil {
		return []int{def, def}, nil
	}
	if len(v) != 2 || v[0] < 1 || v[1] < 1 {
		return nil, fmt.Errorf("%s %v: want 2 positive values for a 2-D window", name, v)
	}
	return v, nil
}

// conv adds a Conv node: the conv2D kernel (any groups, strides, dilations and padding, the
// auto_pad modes resolved to explicit pads), then the bias, if any, broadcast over channels.
func (b *builder) conv(n *Node) error {
	x, err := b.sym(n, 0)
	if err != nil {
		return err
	}
	w, err := b.sym(n, 1)
	if err != nil {
		return err
	}
	if x.Shape().Dims() != 4 || w.Shape().Dims() != 4 {
		return fmt.Errorf("Conv of input %v with weight %v: only 2-D convolutions are %w", x.Shape(), w.Shape(), ErrUnsupported)
	}
	group := int(n.attrInt("group", 1))
	if group < 1 {
		return fmt.Errorf("group=%d", group)
	}
	strides, dilations, pads, err := windowOf(n, x.Shape()[2:], w.Shape()[2:])
	if err != nil {
		return err
	}
	// The graph's input needs no gradient: the kernel then leaves out that product.
	k := &conv2D{
		convAttrs: convAttrs{groups: group, sh: strides[0], sw: strides[1], dh: dilations[0], dw: dilations[1],
			top: pads[0], left: pads[1], bottom: pads[2], right: pads[3]},
		constInput: x == b.vals[b.m.Input.Name].node,
	}
	bias, ok, err := b.input(n, 2)
	if err != nil {
		return err
	}
	if b.forwardOnly {
		return b.fusedConv(n, k, x, w, bias, ok)
	}
	y, err := applyKernel(k, x, w)
	if err != nil {
		return err
	}
	if ok {
		bn, err := b.symbolic(bias)
		if err != nil {
			return err
		}
		c := bn.Shape().TotalSize()
		if bn, err = G.Reshape(bn, tensor.Shape{1, c, 1, 1}); err != nil {
			return err
		}
		if y, err = applyKernel(&binaryOp{op: "Add"}, y, bn); err != nil {
			return err
		}
	}
	b.set(n, value{node: y})
	return nil
}

// fusedConv adds the convolution k of x with w (and bias, if hasBias) of node n as a fusedConv
// kernel, with the evaluation-mode BatchNormalization and the Relu that alone read its output.
func (b *builder) fusedConv(n *Node, k *conv2D, x, w *G.Node, bias value, hasBias bool) error {
	k.filters = new(filterCache)
	f := &fusedConv{conv: k, bias: hasBias}
	args := G.Nodes{x, w}
	if hasBias {
		bn, err := b.symbolic(bias)
		if err != nil {
			return err
		}
		args = append(args, bn)
	}
	out := n.Outputs[0]
	if norm := b.fusable(out, "BatchNormalization"); norm != nil && !b.training && len(norm.Inputs) >= 5 {
		for i := 1; i < 5; i++ {
			a, err := b.sym(norm, i)
			if err != nil {
				return nodeError(norm, err)
			}
			args = append(args, a)
		}
		f.norm, f.epsilon, out = true, norm.attrFloat("epsilon", 1e-5), norm.Outputs[0]
		b.fused[norm] = true
	}
	if r := b.fusable(out, "Relu"); r != nil {
		f.relu, out = true, r.Outputs[0]
		b.fused[r] = true
	}
	y, err := applyKernel(f, args...)
	if err != nil {
		return err
	}
	b.vals[out] = value{node: y}
	return nil
}

func (b *builder) pool(n *Node) error {
	x, err := b.sym(n, 0)
	if err != nil {
		return err
	}
	if x.Shape().Dims() != 4 {
		return fmt.Errorf("%s of a rank-%d input: only 2-D pooling is %w", n.Op, x.Shape().Dims(), ErrUnsupported)
	}
	k := &pool2D{max: n.Op == "MaxPool", global: n.Op == "GlobalAveragePool"}
	if !k.global {
		kernel, err := poolKernel(n)
		if err != nil {
			return err
		}
		if d, err := n.window2("dilations", 1); err != nil || d[0] != 1 || d[1] != 1 {
			return fmt.Errorf("dilated pooling is %w", ErrUnsupported)
		}
		if len(n.Outputs) > 1 && n.Outputs[1] != "" && b.m.isRead(n.Outputs[1]) {
			return fmt.Errorf("the MaxPool indices output is %w", ErrUnsupported)
		}
		strides, _, pads, err := windowOf(n, x.Shape()[2:], kernel)
		if err != nil {
			return err
		}
		k.ceil = n.attrInt("ceil_mode", 0) == 1
		k.kh, k.kw, k.sh, k.sw = kernel[0], kernel[1], strides[0], strides[1]
		k.top, k.left, k.bottom, k.right = pads[0], pads[1], pads[2], pads[3]
		k.countPad = n.attrInt("count_include_pad", 0) == 1
	}
	y, err := applyKernel(k, x)
	if err != nil {
		return err
	}
	b.set(n, value{node: y})
	return nil
}

func (b *builder) batchNorm(n *Node) error {
	if len(n.Inputs) < 5 {
		return fmt.Errorf("BatchNormalization needs 5 inputs, has %d", len(n.Inputs))
	}
	// In training mode the running statistics are not read, so they do not become graph inputs.
	args := make([]*G.Node, 3, 5)
	if !b.training {
		args = args[:5]
	}
	for i := range args {
		var err error
		if args[i], err = b.sym(n, i); err != nil {
			return err
		}
	}
	k := &batchNorm{epsilon: n.attrFloat("epsilon", 1e-5), training: b.training}
	name := n.Outputs[0]
	if r := b.fusable(name, "Relu"); r != nil {
		k.relu, name = true, r.Outputs[0]
		b.fused[r] = true
	}
	y, err := applyKernel(k, args...)
	if err != nil {
		return err
	}
	b.norms = append(b.norms, normRef{k: k, mean: n.Inputs[3], variance: n.Inputs[4]})
	b.vals[name] = value{node: y}
	return nil
}
