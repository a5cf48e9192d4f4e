// Package params holds the project's parameter containers: a dense float32 Tensor and a Set of
// tensors by parameter name (a model's initializers, a gradient, a difference of checkpoints),
// with the few operations every package applies to them: copying, zero tensors of the same
// shapes, a subset by name, and checks of sizes and finiteness. It imports nothing else of the
// project, so align, graph, models and convert all build on it.
package params

import (
	"fmt"
	"math"
	"slices"
)

// Tensor is a dense row-major float32 tensor. len(Data) must equal the product of Shape.
type Tensor struct {
	Shape []int
	Data  []float32
}

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
}

// Check returns an error unless the length of t's data matches its shape.
func (t *Tensor) Check() error {
	n, ok := Volume(t.Shape, math.MaxInt)
	if !ok {
		return fmt.Errorf("shape %v has a negative dimension or overflows", t.Shape)
	}
	if len(t.Data) != n {
		return fmt.Errorf("shape %v needs %d values, data has %d", t.Shape, n, len(t.Data))
	}
	return nil
}

// Volume returns the product of dims, or false if a dimension is negative or the product
// exceeds limit.
func Volume(dims []int, limit int) (int, bool) {
	n := 1
	for _, d := range dims {
		if d < 0 || (d > 0 && n > limit/d) {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// Set maps parameter names to tensors.
type Set map[string]*Tensor

// Clone returns a deep copy of s.
func (s Set) Clone() Set {
	out := make(Set, len(s))
	for name, t := range s {
		out[name] = t.Clone()
	}
	return out
}

// ZerosLike returns zero tensors shaped like those of s.
func (s Set) ZerosLike() Set {
	out := make(Set, len(s))
	for name, t := range s {
		out[name] = &Tensor{Shape: slices.Clone(t.Shape), Data: make([]float32, len(t.Data))}
	}
	return out
}

// Subset returns the tensors of s named in names, shared, not copied.
func (s Set) Subset(names []string) Set {
	out := make(Set, len(names))
	for _, n := range names {
		out[n] = s[n]
	}
	return out
}

// CheckFinite returns an error naming the first of the parameters names (in that order) that
// holds a NaN or an infinite value, and where.
func (s Set) CheckFinite(names []string) error {
	for _, n := range names {
		for i, v := range s[n].Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("parameter %q has the non-finite value %v at index %d", n, v, i)
			}
		}
	}
	return nil
}

// Bytes returns the size of the tensors' data in bytes.
func (s Set) Bytes() int64 {
	var n int64
	for _, t := range s {
		n += 4 * int64(len(t.Data))
	}
	return n
}

// Size returns the number of values of a tensor of the given shape, or 0 if a dimension is
// negative or the product overflows an int.
func Size(shape []int) int {
	n, _ := Volume(shape, math.MaxInt)
	return n
}
