package graph

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// kernel is an operator that Gorgonia lacks (or lacks a gradient for), written as plain float32
// loops: a forward function and, per differentiable input, a backward function. kernelOp and
// kernelGradOp adapt it to Gorgonia's Op and SDOp interfaces, so it takes part in Gorgonia's
// symbolic differentiation like any built-in operator.
type kernel interface {
	// name identifies the kernel and its configuration (it is hashed into the graph).
	name() string
	// outShape returns the output shape for the given input shapes.
	outShape(in []tensor.Shape) (tensor.Shape, error)
	// forward computes the output; out has the shape outShape returned.
	forward(in [][]float32, inShapes []tensor.Shape, out []float32) error
	// differentiable tells whether input i has a gradient.
	differentiable(i int) bool
	// backward writes into dIn the gradient of the loss with respect to input i, given the
	// inputs, the forward output and the gradient with respect to that output.
	backward(i int, in [][]float32, inShapes []tensor.Shape, out, dOut, dIn []float32) error
}

// overwriter is a kernel that writes every value of its output in the forward pass (wrt < 0)
// or of the gradient with respect to input wrt, so that a reused output buffer needs no zeroing
// first. Other kernels get zeroed outputs, and may add into them.
type overwriter interface {
	overwrites(wrt int) bool
}

// overwrites tells whether k writes every value of its output (wrt < 0) or gradient.
func overwrites(k kernel, wrt int) bool {
	o, ok := k.(overwriter)
	return ok && o.overwrites(wrt)
}

// gradReader is a kernel whose gradient with respect to input wrt reads only some of its
// arguments (the kernel's inputs, its output, the output's gradient, as kernelGradOp passes
// them); the others are passed as nil with their shapes, and their values need not be kept for
// it. A kernel that is not a gradReader reads them all.
type gradReader interface {
	gradReads(wrt, arg int) bool
}

// applyKernel adds k to the graph as a node reading the given inputs.
func applyKernel(k kernel, inputs ...*G.Node) (*G.Node, error) {
	dims := make([]int, len(inputs))
	for i, n := range inputs {
		dims[i] = n.Shape().Dims()
	}
	shapes := make([]tensor.Shape, len(inputs))
	for i, n := range inputs {
		shapes[i] = n.Shape()
	}
	out, err := k.outShape(shapes)
	if err != nil {
		return nil, err
	}
	return G.ApplyOp(&kernelOp{k: k, inDims: dims, outDims: out.Dims()}, inputs...)
}

// kernelOp is the forward Gorgonia operator of a kernel.
type kernelOp struct {
	k       kernel
	inDims  []int
	outDims int
}

func tensorType(dims int) hm.Type {
	if dims == 0 {
		return hm.TypeVariable('a')
	}
	return G.TensorType{Dims: dims, Of: hm.TypeVariable('a')}
}

func (op *kernelOp) Arity() int { return len(op.inDims) }

func (op *kernelOp) Type() hm.Type {
	ts := make(hm.Types, 0, len(op.inDims)+1)
	for _, d := range op.inDims {
		ts = append(ts, tensorType(d))
	}
	return hm.NewFnType(append(ts, tensorType(op.outDims))...)
}

func (op *kernelOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	shapes, err := G.DimSizersToShapes(in)
	if err != nil {
		return nil, err
	}
	return op.k.outShape(shapes)
}

func (op *kernelOp) Do(vals ...G.Value) (G.Value, error) {
	in, shapes, err := float32Inputs(vals)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op.k.name(), err)
	}
	outShape, err := op.k.outShape(shapes)
	if err != nil {
		return nil, err
	}
	out := make([]float32, outShape.TotalSize())
	if err := op.k.forward(in, shapes, out); err != nil {
		return nil, err
	}
	return newValue(outShape, out), nil
}

func (op *kernelOp) ReturnsPtr() bool     { return false }
func (op *kernelOp) CallsExtern() bool    { return false }
func (op *kernelOp) OverwritesInput() int { return -1 }
func (op *kernelOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "kernel:%s:%p", op.k.name(), op.k)
}
func (op *kernelOp) Hashcode() uint32 { return hashOf(op) }
func (op *kernelOp) String() string   { return op.k.name() }

func (op *kernelOp) DiffWRT(n int) []bool {
	out := make([]bool, n)
	for i := range out {
		out[i] = op.k.differentiable(i)
	}
	return out
}

func (op *kernelOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	out := make(G.Nodes, len(inputs))
	for i := range inputs {
		if !op.k.differentiable(i) {
			continue
		}
		args := append(append(G.Nodes{}, inputs...), output, grad)
		dims := make([]int, len(args))
		for j, a := range args {
			dims[j] = a.Shape().Dims()
		}
		n, err := G.ApplyOp(&kernelGradOp{k: op.k, wrt: i, inDims: dims}, args...)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// kernelGradOp computes the gradient of a kernel with respect to one input; it reads the
// kernel's inputs, its output and the output's gradient.
type kernelGradOp struct {
	k      kernel
	wrt    int
	inDims []int
}

func (op *kernelGradOp) Arity() int { return len(op.inDims) }

func (op *kernelGradOp) Type() hm.Type {
	ts := make(hm.Types, 0, len(op.inDims)+1)
	for _, d := range op.inDims {
		ts = append(ts, tensorType(d))
	}
	return hm.NewFnType(append(ts, tensorType(op.inDims[op.wrt]))...)
}

func (op *kernelGradOp) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	shapes, err := G.DimSizersToShapes(in)
	if err != nil {
		return nil, err
	}
	return shapes[op.wrt].Clone(), nil
}

func (op *kernelGradOp) Do(vals ...G.Value) (G.Value, error) {
	all, shapes, err := float32Inputs(vals)
	if err != nil {
		return nil, fmt.Errorf("%s gradient: %w", op.k.name(), err)
	}
	n := len(all) - 2
	dIn := make([]float32, shapes[op.wrt].TotalSize())
	if err := op.k.backward(op.wrt, all[:n], shapes[:n], all[n], all[n+1], dIn); err != nil {
		return nil, err
	}
	return newValue(shapes[op.wrt], dIn), nil
}

func (op *kernelGradOp) ReturnsPtr() bool     { return false }
func (op *kernelGradOp) CallsExtern() bool    { return false }
func (op *kernelGradOp) OverwritesInput() int { return -1 }
func (op *kernelGradOp) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "kernelgrad:%s:%p:%d", op.k.name(), op.k, op.wrt)
}
func (op *kernelGradOp) Hashcode() uint32 { return hashOf(op) }
func (op *kernelGradOp) String() string   { return fmt.Sprintf("d%s/d%d", op.k.name(), op.wrt) }

// hashOf hashes an operator through its WriteHash.
func hashOf(op interface{ WriteHash(hash.Hash) }) uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

// float32Inputs extracts the float32 data and shapes of Gorgonia values (tensors or scalars).
func float32Inputs(vals []G.Value) ([][]float32, []tensor.Shape, error) {
	data := make([][]float32, len(vals))
	shapes := make([]tensor.Shape, len(vals))
	return data, shapes, float32Into(vals, data, shapes)
}

// float32Into writes the float32 data and shapes of Gorgonia values into data and shapes.
func float32Into(vals []G.Value, data [][]float32, shapes []tensor.Shape) error {
	for i, v := range vals {
		switch t := v.(type) {
		case nil: // an argument the kernel does not read: its shape only
			data[i] = nil
		case *G.F32:
			data[i] = []float32{float32(*t)}
			shapes[i] = tensor.ScalarShape()
		case tensor.Tensor:
			d, ok := t.Data().([]float32)
			if !ok {
				if s, isScalar := t.Data().(float32); isScalar {
					d = []float32{s}
				} else {
					return fmt.Errorf("input %d is %v, want float32", i, t.Dtype())
				}
			}
			data[i] = d
			shapes[i] = t.Shape()
		default:
			return fmt.Errorf("input %d has unsupported value type %T", i, v)
		}
	}
	return nil
}

// newValue wraps float32 data as a Gorgonia value of the given shape.
func newValue(shape tensor.Shape, data []float32) G.Value {
	if shape.IsScalar() {
		return G.NewF32(data[0])
	}
	return tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(data))
}
