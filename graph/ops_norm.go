package graph

import (
	"fmt"
	"math"

	"github.com/ltransfer/ltransfer/params"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// layerNorm is LayerNormalization (opset 17): normalisation over the axes from axis (default
// -1) on, then scale and an optional bias of those axes' shape. The Mean and InvStdDev outputs
// are not computed.
func (b *builder) layerNorm(n *Node) error {
	x, err := b.sym(n, 0)
	if err != nil {
		return err
	}
	for _, out := range n.Outputs[1:] {
		if out != "" && b.m.isRead(out) {
			return fmt.Errorf("the Mean and InvStdDev outputs are read: %w", ErrUnsupported)
		}
	}
	axis, err := normAxis(int(n.attrInt("axis", -1)), x.Shape().Dims())
	if err != nil {
		return err
	}
	args := G.Nodes{x}
	for i := 1; i < 3; i++ {
		v, ok, err := b.input(n, i)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		node, err := b.symbolic(v)
		if err != nil {
			return err
		}
		args = append(args, node)
	}
	if len(args) < 2 {
		return fmt.Errorf("LayerNormalization without a scale input")
	}
	y, err := applyKernel(&layerNormKernel{axis: axis, epsilon: n.attrFloat("epsilon", 1e-5)}, args...)
	if err != nil {
		return err
	}
	b.set(n, value{node: y})
	return nil
}

// layerNormKernel normalises every row (the trailing axes from axis on) with its own mean and
// biased variance, computed in float64, then applies scale (input 1) and bias (input 2, if any).
type layerNormKernel struct {
	axis    int
	epsilon float64
}

func (k *layerNormKernel) name() string {
	return fmt.Sprintf("LayerNormalization(%d,%g)", k.axis, k.epsilon)
}

func (k *layerNormKernel) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if k.axis >= in[0].Dims() {
		return nil, fmt.Errorf("LayerNormalization axis %d of input %v", k.axis, in[0])
	}
	width := params.Size(in[0][k.axis:])
	for i, s := range in[1:] {
		if s.TotalSize() != width {
			return nil, fmt.Errorf("LayerNormalization input %d has shape %v, want %v", i+1, s, in[0][k.axis:])
		}
	}
	return in[0].Clone(), nil
}

func (k *layerNormKernel) differentiable(int) bool { return true }

// rows calls f for every normalised row with its offset, mean and inverse standard deviation.
func (k *layerNormKernel) rows(x []float32, s tensor.Shape, f func(off int, mean, invstd float64)) {
	width := params.Size(s[k.axis:])
	for off := 0; off < len(x); off += width {
		var sum, sq float64
		for _, v := range x[off : off+width] {
			sum += float64(v)
		}
		mean := sum / float64(width)
		for _, v := range x[off : off+width] {
			d := float64(v) - mean
			sq += d * d
		}
		f(off, mean, 1/math.Sqrt(sq/float64(width)+k.epsilon))
	}
}

func (k *layerNormKernel) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	x, scale := in[0], in[1]
	k.rows(x, shapes[0], func(off int, mean, invstd float64) {
		for j := range scale {
			y := (float64(x[off+j]) - mean) * invstd * float64(scale[j])
			if len(in) > 2 {
				y += float64(in[2][j])
			}
			out[off+j] = float32(y)
		}
	})
	return nil
}

func (k *layerNormKernel) backward(i int, in [][]float32, shapes []tensor.Shape, _, dOut, dIn []float32) error {
	x, scale := in[0], in[1]
	width := float64(len(scale))
	k.rows(x, shapes[0], func(off int, mean, invstd float64) {
		switch i {
		case 1:
			for j := range scale {
				dIn[j] += dOut[off+j] * float32((float64(x[off+j])-mean)*invstd)
			}
		case 2:
			for j := range scale {
				dIn[j] += dOut[off+j]
			}
		default:
			var sumG, sumGXhat float64
			for j := range scale {
				g := float64(dOut[off+j]) * float64(scale[j])
				sumG += g
				sumGXhat += g * (float64(x[off+j]) - mean) * invstd
			}
			for j := range scale {
				g := float64(dOut[off+j]) * float64(scale[j])
				xhat := (float64(x[off+j]) - mean) * invstd
				dIn[off+j] = float32(invstd / width * (width*g - sumG - xhat*sumGXhat))
			}
		}
	})
	return nil
}
