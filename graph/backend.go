package graph

import (
	"fmt"
	"math"

	onnx "github.com/owulveryck/onnx-go"
	gonumgraph "gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/simple"
	"gorgonia.org/tensor"
)

// backend is the onnx-go decoding target: onnx-go walks the model and calls it for every value
// (NewNode, SetTensor) and every operator (ApplyOperation). It records what onnx-go decoded: the
// operator types, their attributes converted to Go values, and the initializer tensors.
type backend struct {
	*simple.WeightedDirectedGraph
	ops []appliedOp
}

// appliedOp is one ApplyOperation call: an ONNX node as onnx-go saw it.
type appliedOp struct {
	opType string
	attrs  map[string]interface{}
	output string
}

// valueNode is a value of the decoded graph: a named edge of the ONNX graph, with the tensor
// onnx-go decoded for it when it is an initializer.
type valueNode struct {
	id     int64
	name   string
	tensor tensor.Tensor
}

func newBackend() *backend {
	return &backend{WeightedDirectedGraph: simple.NewWeightedDirectedGraph(0, math.Inf(1))}
}

// NewNode returns a new value node (gonum's graph.NodeAdder).
func (b *backend) NewNode() gonumgraph.Node {
	return &valueNode{id: b.WeightedDirectedGraph.NewNode().ID()}
}

// ApplyOperation records an ONNX operator (onnx-go's OperationCarrier).
func (b *backend) ApplyOperation(op onnx.Operation, outputs ...gonumgraph.Node) error {
	if len(outputs) == 0 {
		return fmt.Errorf("operator %s without outputs", op.Name)
	}
	out, ok := outputs[0].(*valueNode)
	if !ok {
		return fmt.Errorf("operator %s: unexpected node type %T", op.Name, outputs[0])
	}
	b.ops = append(b.ops, appliedOp{opType: op.Name, attrs: op.Attributes, output: out.name})
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
