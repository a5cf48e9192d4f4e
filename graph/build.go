package graph

import (
	"errors"
	"fmt"
	"slices"

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
}

func (v value) shape() []int {
	if v.node != nil {
		return v.node.Shape().Clone()
	}
	return v.k.shape
}

// builder translates the model's nodes into one Gorgonia graph for a fixed batch size.
type builder struct {
	m        *Model
	g        *G.ExprGraph
	training bool
	vals     map[string]value
	params   map[string]*G.Node // float32 initializers, bound as graph inputs
	norms    []normRef
}

// normRef ties a BatchNormalization kernel to the running statistics it reads.
type normRef struct {
	k              *batchNorm
	mean, variance string
}

// program is one compiled Gorgonia graph of a model: its input, parameter nodes and outputs.
type program struct {
	g      *G.ExprGraph
	vm     G.VM
	x      *G.Node
	params map[string]*G.Node
	logits *G.Node
	loss   *G.Node
	ce     *softmaxCrossEntropy
	grads  map[string]*G.Node
	norms  []normRef
}

// nodeError names the node an error comes from, as `node "Conv_3" (Conv): ...`.
func nodeError(n *Node, err error) error {
	return fmt.Errorf("node %q (%s): %w", n.Name, n.Op, err)
}

// newBuilder starts the graph of m for a batch size: the input node and the known initializers.
func newBuilder(m *Model, batch int, training bool) (*builder, *G.Node, error) {
	if len(m.Input.Shape) < 1 {
		return nil, nil, fmt.Errorf("input %q has no declared shape", m.Input.Name)
	}
	shape := append([]int{batch}, m.Input.Shape[1:]...)
	for _, d := range shape[1:] {
		if d <= 0 {
			return nil, nil, fmt.Errorf("input %q has shape %v: only the batch dimension may be symbolic", m.Input.Name, m.Input.Shape)
		}
	}
	b := &builder{m: m, g: G.NewGraph(), training: training, vals: map[string]value{}, params: map[string]*G.Node{}}
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

// buildProgram builds the graph of m for batch size batch. In training mode BatchNormalization
// uses batch statistics; withLoss adds the cross-entropy and the gradient of every trainable
// parameter that the loss depends on.
func buildProgram(m *Model, batch int, training, withLoss bool) (*program, error) {
	b, x, err := newBuilder(m, batch, training)
	if err != nil {
		return nil, err
	}
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
	if withLoss {
		if err := p.addLoss(m, b); err != nil {
			return nil, err
		}
	}
	p.vm = G.NewTapeMachine(b.g)
	return p, nil
}

// addLoss adds the mean cross-entropy of the logits and the gradients of the trainable
// parameters. A final Softmax or LogSoftmax is looked through: the loss is computed from the
// logits it reads, which gives the same value and gradient (log_softmax is idempotent) and keeps
// it numerically stable.
func (p *program) addLoss(m *Model, b *builder) error {
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
	var names []string
	var wrt G.Nodes
	for _, name := range m.Trainable() {
		if n, ok := p.params[name]; ok {
			names = append(names, name)
			wrt = append(wrt, n)
		}
	}
	p.grads = map[string]*G.Node{}
	if len(wrt) == 0 {
		return nil
	}
	grads, err := G.Grad(loss, wrt...)
	if err != nil {
		return fmt.Errorf("gradients: %w", err)
	}
	for i, name := range names {
		p.grads[name] = grads[i]
	}
	return nil
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
	data := v.k.asFloats()
	if len(v.k.shape) == 0 {
		return G.NewConstant(data[0]), nil
	}
	return G.NewConstant(tensor.New(tensor.WithShape(v.k.shape...), tensor.WithBacking(append([]float32(nil), data...)))), nil
}

// known returns input i of n, which must be known at build time.
func (b *builder) known(n *Node, i int) (*konst, error) {
	v, err := b.need(n, i)
	if err != nil {
		return nil, err
	}
	if v.k == nil {
		return nil, fmt.Errorf("input %d (%q) must be a constant (a shape computation), it depends on the data: %w", i, n.Inputs[i], ErrUnsupported)
	}
	return v.k, nil
}

func (b *builder) set(n *Node, v value) {
	b.vals[n.Outputs[0]] = v
}

// apply translates one ONNX node.
func (b *builder) apply(n *Node) error {
	if len(n.Outputs) == 0 {
		return errors.New("node has no outputs")
	}
	switch n.Op {
	case "Constant":
		return b.constant(n)
	case "Identity", "Dropout":
		v, err := b.need(n, 0)
		if err != nil {
			return err
		}
		if n.Op == "Dropout" && len(n.Outputs) > 1 && n.Outputs[1] != "" && b.m.isRead(n.Outputs[1]) {
			return fmt.Errorf("the Dropout mask output is read: %w", ErrUnsupported)
		}
		b.set(n, v)
		return nil
	case "Shape":
		return b.shapeOf(n)
	case "Gather":
		return b.gather(n)
	case "Unsqueeze", "Squeeze", "Reshape", "Flatten":
		return b.reshape(n)
	case "Concat":
		return b.concat(n)
	case "Cast":
		return b.cast(n)
	case "Transpose":
		return b.transpose(n)
	case "Gemm":
		return b.gemm(n)
	case "MatMul":
		return b.matmul(n)
	case "Add", "Sub", "Mul", "Div":
		return b.arith(n)
	case "Relu", "LeakyRelu", "Sigmoid", "Tanh":
		return b.activation(n)
	case "Softmax", "LogSoftmax":
		return b.softmax(n)
	case "Conv":
		return b.conv(n)
	case "MaxPool", "AveragePool", "GlobalAveragePool":
		return b.pool(n)
	case "BatchNormalization":
		return b.batchNorm(n)
	}
	return fmt.Errorf("operator %s is %w", n.Op, ErrUnsupported)
}

// SupportedOps lists the ONNX operators the engine runs.
func SupportedOps() []string {
	return []string{"Add", "AveragePool", "BatchNormalization", "Cast", "Concat", "Constant", "Conv", "Div",
		"Dropout", "Flatten", "Gather", "Gemm", "GlobalAveragePool", "Identity", "LeakyRelu", "LogSoftmax",
		"MatMul", "MaxPool", "Mul", "Relu", "Reshape", "Shape", "Sigmoid", "Softmax", "Squeeze", "Sub",
		"Tanh", "Transpose", "Unsqueeze"}
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
