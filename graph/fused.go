package graph

import (
	"errors"
	"fmt"
	"math"

	"gorgonia.org/tensor"
)

// fusedConv is a convolution with what alone reads its output, in a forward-only program (an
// evaluation or a BatchNorm-statistics pass): its bias, an evaluation-mode BatchNormalization
// (running statistics) and a Relu, each optional. They are applied to each example's output
// planes right after the product writes them, while they are in cache, instead of by three more
// passes over the batch's activations, each with a buffer of its own. Every value goes through
// the float32 and float64 operations of the separate kernels, in their order (the bias add in
// float32, BatchNorm's v*a + (bias - mean*a) in float64, then max(v, 0)): the outputs are
// bit-identical to the unfused graph's.
//
// Inputs: x, w, then the convolution's bias (c values) when bias is set, then BatchNorm's scale,
// bias, running mean and running variance (c values each) when norm is set. Nothing is
// differentiable: training programs keep the separate kernels.
type fusedConv struct {
	conv    *conv2D
	bias    bool
	norm    bool
	epsilon float64 // BatchNorm's
	relu    bool
}

func (k *fusedConv) name() string {
	return fmt.Sprintf("%s(bias %t, BatchNormalization(eval) %t eps %g, Relu %t)", k.conv.name(), k.bias, k.norm, k.epsilon, k.relu)
}

// inputs returns the number of inputs the kernel reads.
func (k *fusedConv) inputs() int {
	n := 2
	if k.bias {
		n++
	}
	if k.norm {
		n += 4
	}
	return n
}

func (k *fusedConv) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if len(in) != k.inputs() {
		return nil, fmt.Errorf("%s: %d inputs, want %d", k.name(), len(in), k.inputs())
	}
	out, err := k.conv.outShape(in)
	if err != nil {
		return nil, err
	}
	for i := 2; i < len(in); i++ {
		if in[i].TotalSize() != out[1] {
			return nil, fmt.Errorf("%s: input %d has shape %v, want %d channels", k.name(), i, in[i], out[1])
		}
	}
	return out, nil
}

func (k *fusedConv) differentiable(int) bool { return false }

func (k *fusedConv) overwrites(i int) bool { return i < 0 }

// errFusedGradient is what the backward pass of a fused kernel returns: programs with gradients
// do not fuse.
var errFusedGradient = errors.New("a fused forward-only kernel has no gradient")

func (k *fusedConv) backward(int, [][]float32, []tensor.Shape, []float32, []float32, []float32) error {
	return errFusedGradient
}

func (k *fusedConv) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	var bias []float32
	rest := in[2:]
	if k.bias {
		bias, rest = rest[0], rest[1:]
	}
	// a and off are BatchNorm's per-channel factor and offset, computed as batchNorm computes them.
	var a, off []float64
	if k.norm {
		scale, shift, mean, variance := rest[0], rest[1], rest[2], rest[3]
		a, off = make([]float64, len(scale)), make([]float64, len(scale))
		for c := range a {
			a[c] = float64(scale[c]) * (1 / math.Sqrt(float64(variance[c])+k.epsilon))
			off[c] = float64(shift[c]) - float64(mean[c])*a[c]
		}
	}
	p := shapes[0][0]
	if p > 0 {
		p = len(out) / (p * shapes[1][0]) // output plane size
	}
	return k.conv.convolve(in[0], in[1], shapes, out, func(m0 int, y []float32) {
		for m := 0; m*p < len(y); m++ {
			row, c := y[m*p:][:p], m0+m
			if bias != nil {
				bv := bias[c]
				for j, v := range row {
					row[j] = v + bv
				}
			}
			if a != nil {
				ac, oc := a[c], off[c]
				for j, v := range row {
					row[j] = float32(float64(v)*ac + oc)
				}
			}
			if k.relu {
				reluInPlace(row)
			}
		}
	})
}

// reluInPlace sets x to max(x, 0), as relu computes it.
func reluInPlace(x []float32) { reluInto(x, x) }

// reluInto sets dst to max(src, 0): +0 where src <= 0 (-0 included), src elsewhere, a NaN
// unchanged. It clears the bits of a value whose sign bit is set instead of comparing: about
// half of the values of an activation are negative, at random, and a comparison's branch would
// be mispredicted as often (the loop ran 5x slower).
func reluInto(dst, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		b := math.Float32bits(v)
		mask := uint32(int32(b) >> 31) // all ones when the sign bit is set
		if b&0x7fffffff > 0x7f800000 { // a NaN (rare: predicted)
			mask = 0
		}
		dst[i] = math.Float32frombits(b &^ mask)
	}
}
