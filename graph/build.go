package graph

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/ltransfer/ltransfer/params"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ErrUnsupported is wrapped by errors about operators or attributes the engine cannot run.
var ErrUnsupported = errors.New("not supported")

// value is an ONNX value while the Gorgonia graph is built: symbolic (a float32 Gorgonia node)
// or known (a konst).
type value struct {
	node *G.Node
	k    *konst
	// transposeOf is set instead of node for the output of a 2-D Transpose that only MatMul
	// nodes read as their second input (Model.transposedWeight): they multiply by it
	// transposed, and the transpose itself is never computed.
	transposeOf *G.Node
}

func (v value) shape() []int {
	switch {
	case v.node != nil:
		return v.node.Shape().Clone()
	case v.transposeOf != nil:
		s := v.transposeOf.Shape()
		return []int{s[1], s[0]}
	}
	return v.k.shape
}

// builder translates the model's nodes into one Gorgonia graph for a fixed batch size.
type builder struct {
	m        *Model
	g        *G.ExprGraph
	training bool
	// forwardOnly is set for programs without gradients (evaluation, BatchNorm statistics): a
	// node then computes, in the same kernel, the BatchNorm and Relu that alone read its output
	// (see fusedConv), and fused holds the nodes so computed, which apply skips.
	forwardOnly bool
	fused       map[*Node]bool
	vals        map[string]value
	params      map[string]*G.Node // float32 initializers, bound as graph inputs
	norms       []normRef
	// layers are the Gemm and MatMul layers whose weight gradient can be kept as a low-rank
	// product, by weight name.
	layers map[string]denseLayer
}

// denseLayer is a Gemm or MatMul layer y = a W' (W' = W^T, or W) whose trainable weight W is
// read by this layer alone: over a batch, dL/dW = dy^T a (W' = W^T, W is out x in) or a^T dy
// (W' = W, W is in x out), a sum of batch outer products, so the gradient can be kept as the
// factors dy and a (see Session.LossAndFactoredGrad).
type denseLayer struct {
	a, y       *G.Node // the layer's input and its product, before alpha and the bias
	transposed bool    // W' = W^T
}

// normRef ties a BatchNormalization kernel to the running statistics it reads.
type normRef struct {
	k              *batchNorm
	mean, variance string
}

// program is one compiled Gorgonia graph of a model: its input, parameter nodes and outputs.
type program struct {
	g      *G.ExprGraph
	vm     *machine
	x      *G.Node
	in     []float32 // the input batch x is bound to
	params map[string]*G.Node
	logits *G.Node
	loss   *G.Node
	ce     *softmaxCrossEntropy
	grads  map[string]*G.Node
	// lowRank holds, in a factored program, the layers whose weight gradient is returned as
	// factors, with the node of dL/dy.
	lowRank map[string]lowRankGrad
	norms   []normRef
}

// lowRankGrad is a dense layer of a factored program with the node computing dL/dy.
type lowRankGrad struct {
	denseLayer
	dy *G.Node
}

// programKind selects what a program computes.
type programKind int

const (
	evalProgram     programKind = iota // logits, BatchNorm with running statistics
	statsProgram                       // BatchNorm batch statistics, no loss
	trainProgram                       // loss and every trainable parameter's dense gradient
	factoredProgram                    // loss and gradients, dense layers' weights as factors
)

// nodeError names the node an error comes from, as `node "Conv_3" (Conv): ...`.
func nodeError(n *Node, err error) error {
	return fmt.Errorf("node %q (%s): %w", n.Name, n.Op, err)
}

// maxExample bounds the number of values of one input example (a 4096x4096 RGB image has 2^26).
const maxExample = 1 << 28

// checkInput checks that the data input has a declared shape whose dimensions, all but the
// batch dimension, are fixed and not absurd.
func (m *Model) checkInput() error {
	if len(m.Input.Shape) < 1 {
		return fmt.Errorf("input %q has no declared shape", m.Input.Name)
	}
	if slices.Min(append([]int{1}, m.Input.Shape[1:]...)) <= 0 {
		return fmt.Errorf("input %q has shape %v: only the batch dimension may be symbolic", m.Input.Name, m.Input.Shape)
	}
	if _, ok := params.Volume(m.Input.Shape[1:], maxExample); !ok {
		return fmt.Errorf("input %q has shape %v: more than %d values an example", m.Input.Name, m.Input.Shape, maxExample)
	}
	return nil
}

// newBuilder starts the graph of m for a batch size: the input node and the known initializers.
func newBuilder(m *Model, batch int, training bool) (*builder, *G.Node, error) {
	if err := m.checkInput(); err != nil {
		return nil, nil, err
	}
	shape := append([]int{batch}, m.Input.Shape[1:]...)
	b := &builder{m: m, g: G.NewGraph(), training: training, vals: map[string]value{}, params: map[string]*G.Node{},
		layers: map[string]denseLayer{}, fused: map[*Node]bool{}}
	x := G.NewTensor(b.g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName("input:"+m.Input.Name))
	b.vals[m.Input.Name] = value{node: x}
	for name, t := range m.consts {
		k, err := konstFromTensor(t)
		if err != nil {
			return nil, nil, fmt.Errorf("initializer %q: %w", name, err)
		}
		b.vals[name] = value{k: k}
	}
	return b, x, nil
}

// buildProgram builds the graph of m for batch size batch. Except in an evalProgram,
// BatchNormalization uses batch statistics; a trainProgram adds the cross-entropy and the
// gradient of every trainable parameter that the loss depends on, a factoredProgram the same with
// the weight gradients of dense layers as factors where that is smaller.
func buildProgram(m *Model, batch int, kind programKind) (*program, error) {
	return buildFused(m, batch, kind, kind == evalProgram || kind == statsProgram)
}

// buildFused is buildProgram with the fusion of forward-only programs (see fusedConv) on or off.
func buildFused(m *Model, batch int, kind programKind, fuse bool) (*program, error) {
	b, x, err := newBuilder(m, batch, kind != evalProgram)
	if err != nil {
		return nil, err
	}
	b.forwardOnly = fuse
	for _, n := range m.Nodes {
		if err := b.apply(n); err != nil {
			return nil, nodeError(n, err)
		}
	}
	out, ok := b.vals[m.Output.Name]
	if !ok || out.node == nil {
		return nil, fmt.Errorf("output %q is not computed from the input", m.Output.Name)
	}
	p := &program{g: b.g, x: x, params: b.params, logits: out.node, norms: b.norms}
	if kind == trainProgram || kind == factoredProgram {
		if err := p.addLoss(m, b, batch, kind == factoredProgram); err != nil {
			return nil, err
		}
	}
	kept := G.Nodes{p.logits}
	if p.loss != nil {
		kept = append(kept, p.loss)
	}
	for _, g := range p.grads {
		kept = append(kept, g)
	}
	for _, l := range p.lowRank {
		kept = append(kept, l.a, l.dy)
	}
	if p.vm, err = newMachine(b.g, kept...); err != nil {
		return nil, err
	}
	return p, nil
}

// needed returns the nodes of order (a topological order of g) that the kept nodes read,
// directly or not, in that order; all of them when none is kept. Symbolic differentiation adds
// the gradient of every input of an operator on the way, wanted or not: in a factored program
// the dense weight gradients that the factors replace, which would take as much memory as the
// weights themselves.
func needed(g *G.ExprGraph, order []*G.Node, kept G.Nodes) []*G.Node {
	if len(kept) == 0 {
		return order
	}
	live := map[*G.Node]bool{}
	stack := slices.Clone(kept)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if live[n] {
			continue
		}
		live[n] = true
		stack = append(stack, inputsOf(g, n)...)
	}
	return slices.DeleteFunc(order, func(n *G.Node) bool { return !live[n] })
}

// addLoss adds the mean cross-entropy of the logits and the gradients of the trainable
// parameters. A final Softmax or LogSoftmax is looked through: the loss is computed from the
// logits it reads, which gives the same value and gradient (log_softmax is idempotent) and keeps
// it numerically stable. With factored, the weight of a dense layer whose factors are smaller
// than its gradient (batch*(rows+cols) < rows*cols) gets no gradient node: the gradient of the
// layer's product is computed instead, and the dense product dy^T a is never formed.
func (p *program) addLoss(m *Model, b *builder, batch int, factored bool) error {
	logits := p.logits
	if last := m.producer(m.Output.Name); last != nil && (last.Op == "Softmax" || last.Op == "LogSoftmax") {
		if v, ok := b.vals[last.Inputs[0]]; ok && v.node != nil {
			logits = v.node
		}
	}
	if logits.Shape().Dims() != 2 {
		return fmt.Errorf("output %q has shape %v, the loss needs N x classes logits", m.Output.Name, logits.Shape())
	}
	p.ce = &softmaxCrossEntropy{}
	loss, err := applyKernel(p.ce, logits)
	if err != nil {
		return err
	}
	p.loss = loss
	var names, layers []string
	var wrt G.Nodes
	for _, name := range m.Trainable() {
		n, ok := p.params[name]
		if !ok {
			continue
		}
		if _, ok := b.layers[name]; ok && factored {
			if shape := n.Shape(); batch*(shape[0]+shape[1]) < shape[0]*shape[1] {
				layers = append(layers, name)
				continue
			}
		}
		names = append(names, name)
		wrt = append(wrt, n)
	}
	p.grads = map[string]*G.Node{}
	p.lowRank = map[string]lowRankGrad{}
	for _, name := range layers {
		wrt = append(wrt, b.layers[name].y)
	}
	if len(wrt) == 0 {
		return nil
	}
	// G.Grad differentiates with respect to graph inputs only; Backpropagate (which it calls
	// with the gradient 1 of the cost) accepts the layers' products too.
	one := b.g.AddNode(G.NewConstant(float32(1)))
	grads, err := G.Backpropagate(G.Nodes{loss}, G.Nodes{one}, wrt)
	if err != nil {
		return fmt.Errorf("gradients: %w", err)
	}
	for i, name := range names {
		p.grads[name] = grads[i]
	}
	for i, name := range layers {
		p.lowRank[name] = lowRankGrad{b.layers[name], grads[len(names)+i]}
	}
	return nil
}

// transposedWeight reports whether n is a 2-D Transpose whose output only MatMul nodes read,
// as their second input.
func (m *Model) transposedWeight(n *Node) bool {
	if n.Op != "Transpose" || len(n.Inputs) != 1 || len(n.Outputs) != 1 || n.Outputs[0] == m.Output.Name {
		return false
	}
	if perm := n.attrInts("perm"); perm != nil && !slices.Equal(perm, []int{1, 0}) {
		return false
	}
	readers := m.readers(n.Outputs[0])
	for _, r := range readers {
		if r.Op != "MatMul" || len(r.Inputs) < 2 || r.Inputs[1] != n.Outputs[0] || r.Inputs[0] == n.Outputs[0] {
			return false
		}
	}
	return len(readers) > 0
}

// readers returns the nodes that read the named value.
func (m *Model) readers(name string) []*Node {
	var out []*Node
	for _, n := range m.Nodes {
		if slices.Contains(n.Inputs, name) {
			out = append(out, n)
		}
	}
	return out
}

// layerWeight returns the trainable parameter that input 1 of the Gemm or MatMul node n reads,
// directly or through a 2-D Transpose, if that parameter (and the Transpose) is read by nothing
// else; transposed tells whether a Transpose is in between.
func (m *Model) layerWeight(n *Node) (name string, transposed, ok bool) {
	if len(n.Inputs) < 2 {
		return "", false, false
	}
	name = n.Inputs[1]
	if t := m.producer(name); t != nil {
		perm := t.attrInts("perm")
		if t.Op != "Transpose" || len(t.Inputs) != 1 || (perm != nil && !slices.Equal(perm, []int{1, 0})) ||
			len(m.readers(name)) != 1 || name == m.Output.Name {
			return "", false, false
		}
		name, transposed = t.Inputs[0], true
	}
	info, found := m.Info(name)
	if !found || !info.Trainable || len(info.Shape) != 2 || len(m.readers(name)) != 1 {
		return "", false, false
	}
	return name, transposed, true
}

// fusable returns, in a forward-only program, the node of operator op that alone reads the
// value out (as its first input, none of its other outputs read, out not the model's output), or
// nil: the node writing out may compute it too, and then marks it fused.
func (b *builder) fusable(out, op string) *Node {
	if !b.forwardOnly || out == b.m.Output.Name {
		return nil
	}
	readers := b.m.readers(out)
	if len(readers) != 1 {
		return nil
	}
	r := readers[0]
	if r.Op != op || len(r.Inputs) == 0 || r.Inputs[0] != out || slices.Index(r.Inputs[1:], out) >= 0 {
		return nil
	}
	for _, o := range r.Outputs[1:] {
		if o != "" && (o == b.m.Output.Name || len(b.m.readers(o)) > 0) {
			return nil
		}
	}
	return r
}

// producer returns the node that writes the named value.
func (m *Model) producer(name string) *Node {
	for _, n := range m.Nodes {
		if slices.Contains(n.Outputs, name) {
			return n
		}
	}
	return nil
}

// input returns input i of n, or false when it is omitted.
func (b *builder) input(n *Node, i int) (value, bool, error) {
	if i >= len(n.Inputs) || n.Inputs[i] == "" {
		return value{}, false, nil
	}
	name := n.Inputs[i]
	if v, ok := b.vals[name]; ok {
		return v, true, nil
	}
	if p, ok := b.m.Params[name]; ok {
		node := G.NewTensor(b.g, tensor.Float32, len(p.Shape), G.WithShape(p.Shape...), G.WithName(name))
		if len(p.Shape) == 0 {
			node = G.NewScalar(b.g, tensor.Float32, G.WithName(name))
		}
		b.params[name] = node
		v := value{node: node}
		b.vals[name] = v
		return v, true, nil
	}
	return value{}, false, fmt.Errorf("input %q is not produced by any node, initializer or graph input", name)
}

// need returns input i of n, which must be present.
func (b *builder) need(n *Node, i int) (value, error) {
	v, ok, err := b.input(n, i)
	if err != nil {
		return v, err
	}
	if !ok {
		return v, fmt.Errorf("input %d is missing", i)
	}
	return v, nil
}

// sym returns input i of n as a Gorgonia node, turning a known float value into a constant.
func (b *builder) sym(n *Node, i int) (*G.Node, error) {
	v, err := b.need(n, i)
	if err != nil {
		return nil, err
	}
	return b.symbolic(v)
}

func (b *builder) symbolic(v value) (*G.Node, error) {
	if v.node != nil {
		return v.node, nil
	}
	if v.transposeOf != nil {
		return G.Transpose(v.transposeOf, 1, 0)
	}
	data := v.k.asFloats()
	if len(v.k.shape) == 0 {
		return G.NewConstant(data[0]), nil
	}
	return G.NewConstant(tensor.New(tensor.WithShape(v.k.shape...), tensor.WithBacking(append([]float32(nil), data...)))), nil
}

func (b *builder) set(n *Node, v value) {
	b.vals[n.Outputs[0]] = v
}

// maxValues bounds the number of values of any tensor a graph computes: a file whose shapes or
// attributes (a padding of millions, say) make a larger one is refused before anything is
// allocated. 2^28 float32 values are 1 GiB; a ResNet-50 at 224x224 and batch 128 stays below.
var maxValues = 1 << 28

// apply translates one ONNX node and checks the size of what it computes.
func (b *builder) apply(n *Node) error {
	if b.fused[n] {
		return nil
	}
	if err := b.applyOp(n); err != nil {
		return err
	}
	for _, out := range n.Outputs {
		if v, ok := b.vals[out]; ok && v.node != nil {
			if size, ok := params.Volume(v.node.Shape(), maxValues); !ok || size == 0 {
				return fmt.Errorf("%w: output %q would have shape %v: empty or more than %d values", ErrFormat, out, v.node.Shape(), maxValues)
			}
		}
	}
	return nil
}

// applyOp translates one ONNX node with the builder its operator has in opBuilders.
func (b *builder) applyOp(n *Node) error {
	if len(n.Outputs) == 0 {
		return errors.New("node has no outputs")
	}
	build, ok := opBuilders[n.Op]
	if !ok {
		return fmt.Errorf("operator %s (opset %d) is %w", n.Op, b.m.Opset, ErrUnsupported)
	}
	return build(b, n)
}

// opBuilders maps every ONNX operator the engine runs to the builder method that translates it;
// SupportedOps is derived from it. A builder reads the attributes and inputs of every opset from
// 7 on (an attribute that later became an input is read from either).
var opBuilders = map[string]func(*builder, *Node) error{
	"Constant": (*builder).constant, "Identity": (*builder).identity, "Dropout": (*builder).identity,
	"Shape": (*builder).shapeOf, "Gather": (*builder).gather, "Cast": (*builder).cast,
	"Unsqueeze": (*builder).reshape, "Squeeze": (*builder).reshape, "Reshape": (*builder).reshape, "Flatten": (*builder).reshape,
	"Concat": (*builder).concat, "Transpose": (*builder).transpose,
	"Gemm": (*builder).gemm, "MatMul": (*builder).matmul,
	"Add": (*builder).arith, "Sub": (*builder).arith, "Mul": (*builder).arith, "Div": (*builder).arith,
	"Relu": (*builder).activation, "LeakyRelu": (*builder).activation, "Sigmoid": (*builder).activation, "Tanh": (*builder).activation,
	"Softmax": (*builder).softmax, "LogSoftmax": (*builder).softmax,
	"Conv": (*builder).conv, "BatchNormalization": (*builder).batchNorm,
	"MaxPool": (*builder).pool, "AveragePool": (*builder).pool, "GlobalAveragePool": (*builder).pool,
	"Clip": (*builder).clip, "HardSigmoid": (*builder).unary, "HardSwish": (*builder).unary,
	"Erf": (*builder).unary, "Sqrt": (*builder).unary, "ConstantOfShape": (*builder).constantOfShape,
	"Pow": (*builder).pow, "Pad": (*builder).moved, "Slice": (*builder).moved, "Split": (*builder).moved,
	"ReduceMean": (*builder).reduceMean, "LayerNormalization": (*builder).layerNorm,
}

// SupportedOps lists the ONNX operators the engine runs, sorted.
func SupportedOps() []string {
	return slices.Sorted(maps.Keys(opBuilders))
}

// identity handles Identity and Dropout, which the engine always runs as the identity (PyTorch's
// evaluation mode; a gradient pass is deterministic).
func (b *builder) identity(n *Node) error {
	v, err := b.need(n, 0)
	if err != nil {
		return err
	}
	if n.Op == "Dropout" && len(n.Outputs) > 1 && n.Outputs[1] != "" && b.m.isRead(n.Outputs[1]) {
		return fmt.Errorf("the Dropout mask output is read: %w", ErrUnsupported)
	}
	b.set(n, v)
	return nil
}

// isRead reports whether any node reads the named value or it is a graph output.
func (m *Model) isRead(name string) bool {
	for _, n := range m.Nodes {
		if slices.Contains(n.Inputs, name) {
			return true
		}
	}
	return name == m.Output.Name
}
