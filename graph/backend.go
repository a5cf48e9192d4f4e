package graph

import (
	"fmt"
	"math"

	onnx "github.com/owulveryck/onnx-go"
	gonumgraph "gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/simple"
	"gorgonia.org/tensor"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
)

// backend is the onnx-go backend (onnx.Backend) a model's graph is built into: one value node
// per named edge of the ONNX graph, carrying its tensor when it is a decoded initializer
// (onnx.Namer, onnx.DataCarrier), one weighted edge from each operator's output to each of its
// inputs, weighted by the input's position, and one ApplyOperation call per operator, which it
// records with the operator's attributes as Go values.
type backend struct {
	*simple.WeightedDirectedGraph
	ops []appliedOp
}

var _ onnx.Backend = (*backend)(nil)

// appliedOp is one ApplyOperation call: an ONNX node as the backend received it.
type appliedOp struct {
	opType string
	attrs  map[string]any
}

// valueNode is a value of the decoded graph: a named edge of the ONNX graph, with its tensor
// when it is an initializer.
type valueNode struct {
	id     int64
	name   string
	tensor tensor.Tensor
}

func newBackend() *backend {
	return &backend{WeightedDirectedGraph: simple.NewWeightedDirectedGraph(0, math.Inf(1))}
}

// feed builds the graph of a decoded message into dst through onnx-go's backend interface, in
// the order and with the conventions of onnx-go's own decoder (onnx.Model.UnmarshalBinary).
// onnx-go decodes only bytes, into protobuf types of an internal package, so handing it the
// message parsed by our bindings would mean encoding it again and parsing it a second time;
// walking our message instead parses a model once. Initializer tensors other than float32 (the
// parameters, which Model.build reads in place) are decoded for the backend; types without a Go
// counterpart (float16, strings, ...) are left without a tensor, their bytes untouched in the
// message. Tensor attributes must decode.
func feed(dst onnx.Backend, g *onnxpb.GraphProto) error {
	values := map[string]gonumgraph.Node{}
	value := func(name string) gonumgraph.Node {
		if n, ok := values[name]; ok {
			return n
		}
		n := dst.NewNode()
		if named, ok := n.(onnx.Namer); ok {
			named.SetName(name)
		}
		dst.AddNode(n)
		values[name] = n
		return n
	}
	for _, v := range g.Input {
		value(v.GetName())
	}
	for _, v := range g.Output {
		value(v.GetName())
	}
	for _, t := range g.Initializer {
		n := value(t.GetName())
		carrier, ok := n.(onnx.DataCarrier)
		if !ok || onnxpb.TensorProto_DataType(t.GetDataType()) == onnxpb.TensorProto_FLOAT {
			continue
		}
		if dt, err := tensorOf(t); err == nil {
			if err := carrier.SetTensor(dt); err != nil {
				return fmt.Errorf("initializer %q: %w", t.GetName(), err)
			}
		}
	}
	for i, n := range g.Node {
		name := nodeName(n, i)
		outputs := make([]gonumgraph.Node, len(n.Output))
		for k, out := range n.Output {
			outputs[k] = value(out)
			for pos, in := range n.Input {
				if in == out {
					return fmt.Errorf("%w: node %q (%s) reads its own output %q", ErrFormat, name, n.GetOpType(), in)
				}
				dst.SetWeightedEdge(dst.NewWeightedEdge(outputs[k], value(in), float64(pos)))
			}
		}
		attrs, err := attributes(n.Attribute)
		if err != nil {
			return fmt.Errorf("node %q (%s): %w", name, n.GetOpType(), err)
		}
		if err := dst.ApplyOperation(onnx.Operation{Name: n.GetOpType(), Attributes: attrs}, outputs...); err != nil {
			return fmt.Errorf("node %q (%s): %w", name, n.GetOpType(), err)
		}
	}
	return nil
}

// nodeName is the name of the i-th node in messages: its own, or its operator and position.
func nodeName(n *onnxpb.NodeProto, i int) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	return fmt.Sprintf("%s_%d", n.GetOpType(), i)
}

// attributes converts a node's attributes to the Go values onnx-go gives its backends: int64,
// float32, string, []int64, []float32, []string or tensor.Tensor.
func attributes(list []*onnxpb.AttributeProto) (map[string]any, error) {
	out := make(map[string]any, len(list))
	for _, a := range list {
		var v any
		switch a.GetType() {
		case onnxpb.AttributeProto_UNDEFINED:
			v = struct{}{}
		case onnxpb.AttributeProto_FLOAT:
			v = a.GetF()
		case onnxpb.AttributeProto_INT:
			v = a.GetI()
		case onnxpb.AttributeProto_STRING:
			v = string(a.GetS())
		case onnxpb.AttributeProto_FLOATS:
			v = a.GetFloats()
		case onnxpb.AttributeProto_INTS:
			v = a.GetInts()
		case onnxpb.AttributeProto_STRINGS:
			s := make([]string, len(a.GetStrings()))
			for i, b := range a.GetStrings() {
				s[i] = string(b)
			}
			v = s
		case onnxpb.AttributeProto_TENSOR:
			t := a.GetT()
			if t == nil {
				return nil, fmt.Errorf("%w: attribute %q is a tensor without a value", ErrFormat, a.GetName())
			}
			if err := checkTensor(t); err != nil {
				return nil, fmt.Errorf("attribute %q: %w", a.GetName(), err)
			}
			dt, err := tensorOf(t)
			if err != nil {
				return nil, fmt.Errorf("attribute %q: %w", a.GetName(), err)
			}
			v = dt
		default:
			return nil, fmt.Errorf("attribute %q of type %v is %w", a.GetName(), a.GetType(), ErrUnsupported)
		}
		out[a.GetName()] = v
	}
	return out, nil
}

// tensorOf decodes a checked tensor (see checkTensor) of type FLOAT, DOUBLE or an integer type
// (integers and booleans as int64) into a Gorgonia tensor, a scalar when it has no dimensions.
func tensorOf(t *onnxpb.TensorProto) (tensor.Tensor, error) {
	dims := make([]int, len(t.Dims))
	for i, d := range t.Dims {
		dims[i] = int(d)
	}
	var backing any
	switch dt := onnxpb.TensorProto_DataType(t.GetDataType()); dt {
	case onnxpb.TensorProto_FLOAT:
		backing = floatsOf(t)
	case onnxpb.TensorProto_DOUBLE:
		backing = doublesOf(t)
	default:
		ints, err := int64sOf(t)
		if err != nil {
			return nil, fmt.Errorf("tensor of type %v is %w", dt, ErrUnsupported)
		}
		backing = ints
	}
	return tensor.New(tensor.WithShape(dims...), tensor.WithBacking(backing)), nil
}

// NewNode returns a new value node (gonum's graph.NodeAdder).
func (b *backend) NewNode() gonumgraph.Node {
	return &valueNode{id: b.WeightedDirectedGraph.NewNode().ID()}
}

// ApplyOperation records an ONNX operator (onnx-go's OperationCarrier).
func (b *backend) ApplyOperation(op onnx.Operation, outputs ...gonumgraph.Node) error {
	if len(outputs) == 0 {
		return fmt.Errorf("%w: operator %s without outputs", ErrFormat, op.Name)
	}
	b.ops = append(b.ops, appliedOp{opType: op.Name, attrs: op.Attributes})
	return nil
}

// tensors returns the decoded tensor of every named value that carries one.
func (b *backend) tensors() map[string]tensor.Tensor {
	out := map[string]tensor.Tensor{}
	nodes := b.Nodes()
	for nodes.Next() {
		if v, ok := nodes.Node().(*valueNode); ok && v.tensor != nil && v.name != "" {
			out[v.name] = v.tensor
		}
	}
	return out
}

// ID implements gonum's graph.Node.
func (n *valueNode) ID() int64 { return n.id }

// SetName implements onnx-go's Namer.
func (n *valueNode) SetName(name string) { n.name = name }

// GetName implements onnx-go's Namer.
func (n *valueNode) GetName() string { return n.name }

// SetTensor implements onnx-go's DataCarrier.
func (n *valueNode) SetTensor(t tensor.Tensor) error {
	n.tensor = t
	return nil
}

// GetTensor implements onnx-go's DataCarrier.
func (n *valueNode) GetTensor() tensor.Tensor { return n.tensor }
