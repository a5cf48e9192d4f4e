package graph

import (
	"fmt"

	"github.com/ltransfer/ltransfer/params"
	"gorgonia.org/tensor"
)

// konst is a value known while the Gorgonia graph is built: an initializer that is not a
// parameter, a Constant node, or the result of a shape computation (Shape, Gather, Unsqueeze,
// Concat, ...) once the batch size is fixed. Exactly one of ints and floats is set.
type konst struct {
	shape  []int
	ints   []int64
	floats []float32
}

func (k *konst) size() int { return params.Size(k.shape) }

func (k *konst) isInt() bool { return k.floats == nil }

// at returns element i as int64 (floats are truncated).
func (k *konst) at(i int) int64 {
	if k.isInt() {
		return k.ints[i]
	}
	return int64(k.floats[i])
}

// asInts returns the elements as a slice of int64.
func (k *konst) asInts() []int64 {
	out := make([]int64, k.size())
	for i := range out {
		out[i] = k.at(i)
	}
	return out
}

// asFloats returns the elements as float32.
func (k *konst) asFloats() []float32 {
	if !k.isInt() {
		return k.floats
	}
	out := make([]float32, len(k.ints))
	for i, v := range k.ints {
		out[i] = float32(v)
	}
	return out
}

// gather takes the elements at the given flat indices into a new konst of the given shape.
func (k *konst) gather(idx []int, shape []int) *konst {
	out := &konst{shape: shape}
	if k.isInt() {
		out.ints = make([]int64, len(idx))
		for i, j := range idx {
			out.ints[i] = k.ints[j]
		}
		return out
	}
	out.floats = make([]float32, len(idx))
	for i, j := range idx {
		out.floats[i] = k.floats[j]
	}
	return out
}

// konstFromTensor converts a decoded tensor (onnx-go decodes initializers and tensor attributes
// into Gorgonia tensors) into a konst.
func konstFromTensor(t tensor.Tensor) (*konst, error) {
	k := &konst{shape: append([]int(nil), t.Shape()...)}
	if t.Shape().IsScalar() {
		k.shape = nil
	}
	if !t.Shape().IsScalar() && t.Shape().TotalSize() == 0 { // Data panics on an empty tensor
		if t.Dtype() == tensor.Float32 || t.Dtype() == tensor.Float64 {
			k.floats = []float32{}
		} else {
			k.ints = []int64{}
		}
		return k, nil
	}
	switch d := t.Data().(type) {
	case []int64:
		k.ints = append([]int64(nil), d...)
	case []int32:
		for _, v := range d {
			k.ints = append(k.ints, int64(v))
		}
	case []bool:
		for _, v := range d {
			k.ints = append(k.ints, map[bool]int64{false: 0, true: 1}[v])
		}
	case []float32:
		k.floats = append([]float32{}, d...)
	case []float64:
		for _, v := range d {
			k.floats = append(k.floats, float32(v))
		}
	case int64:
		k.ints = []int64{d}
	case int32:
		k.ints = []int64{int64(d)}
	case float32:
		k.floats = []float32{d}
	case float64:
		k.floats = []float32{float32(d)}
	default:
		return nil, fmt.Errorf("constant of type %v is not supported", t.Dtype())
	}
	if k.ints == nil && k.floats == nil {
		k.ints = []int64{}
	}
	if len(k.ints)+len(k.floats) != k.size() {
		return nil, fmt.Errorf("constant holds %d values for shape %v", len(k.ints)+len(k.floats), k.shape)
	}
	return k, nil
}
