package graph

import (
	"fmt"
	"math"

	"gorgonia.org/tensor"
)

// constInput returns input i of n as a value known while the graph is built: a constant, a
// shape computation, or a float initializer that is not trainable (Clip bounds, Pow exponents
// and Pad values that an exporter stores as initializers). ok is false when the input is omitted.
func (b *builder) constInput(n *Node, i int) (k *konst, ok bool, err error) {
	if i >= len(n.Inputs) || n.Inputs[i] == "" {
		return nil, false, nil
	}
	name := n.Inputs[i]
	if v, found := b.vals[name]; found && v.k != nil {
		return v.k, true, nil
	}
	if k := b.m.constParam(name); k != nil {
		return k, true, nil
	}
	if _, err := b.need(n, i); err != nil {
		return nil, false, err
	}
	return nil, false, notConstant(n, i)
}

// opset returns the model's opset.
func (b *builder) opset() int64 { return b.m.Opset }

// scalarInput returns input i of n, a known single value, or def when the input is omitted.
func (b *builder) scalarInput(n *Node, i int, def float64) (float64, error) {
	k, ok, err := b.constInput(n, i)
	if err != nil || !ok {
		return def, err
	}
	if k.size() != 1 {
		return 0, fmt.Errorf("input %d (%q) has shape %v, want a single value", i, n.Inputs[i], k.shape)
	}
	return float64(k.asFloats()[0]), nil
}

// clip is Clip: bounds are the min and max attributes before opset 11 and optional inputs 1
// and 2 from opset 11 on; an absent bound is infinite.
func (b *builder) clip(n *Node) error {
	lo, hi := n.attrFloat("min", math.Inf(-1)), n.attrFloat("max", math.Inf(1))
	if b.m.Opset >= 11 {
		var err error
		if lo, err = b.scalarInput(n, 1, math.Inf(-1)); err != nil {
			return err
		}
		if hi, err = b.scalarInput(n, 2, math.Inf(1)); err != nil {
			return err
		}
	}
	if lo > hi {
		return fmt.Errorf("Clip bounds min %g > max %g", lo, hi)
	}
	return b.applyUnary(n, &elementwise{op: "Clip", lo: lo, hi: hi})
}

// unary handles the elementwise operators without parameters beyond attributes.
func (b *builder) unary(n *Node) error {
	k := &elementwise{op: n.Op}
	switch n.Op {
	case "HardSigmoid":
		k.alpha, k.beta = n.attrFloat("alpha", 0.2), n.attrFloat("beta", 0.5)
	case "HardSwish":
		k.alpha, k.beta = 1.0/6, 0.5
	}
	return b.applyUnary(n, k)
}

// pow is Pow with an exponent known while the graph is built (x^2 in a decomposed
// LayerNormalization); a computed exponent is not supported.
func (b *builder) pow(n *Node) error {
	k, ok, err := b.constInput(n, 1)
	if err != nil {
		return err
	}
	if !ok || k.size() != 1 {
		return fmt.Errorf("Pow needs a single-valued exponent: %w", ErrUnsupported)
	}
	return b.applyUnary(n, &elementwise{op: "Pow", alpha: float64(k.asFloats()[0])})
}

// applyUnary adds k applied to input 0 of n, or computes it now when the input is known (the
// scale of an attention layer is Pow of a shape computation).
func (b *builder) applyUnary(n *Node, k *elementwise) error {
	v, err := b.need(n, 0)
	if err != nil {
		return err
	}
	if v.k != nil {
		out := &konst{shape: v.k.shape, floats: make([]float32, v.k.size())}
		if err := k.forward([][]float32{v.k.asFloats()}, nil, out.floats); err != nil {
			return err
		}
		b.set(n, value{k: out})
		return nil
	}
	x, err := b.symbolic(v)
	if err != nil {
		return err
	}
	y, err := applyKernel(k, x)
	if err != nil {
		return err
	}
	b.set(n, value{node: y})
	return nil
}

// elementwise is a unary elementwise operator, computed in float64 per element, with PyTorch's
// gradients, including at the kinks: Clip (ReLU6, hardtanh) and HardSigmoid pass the gradient
// strictly inside their linear part, HardSwish has slope x/3 + 1/2 on [-3, 3] (both ends
// included) and 0 below -3.
type elementwise struct {
	op          string // Clip, HardSigmoid, HardSwish, Erf, Sqrt or Pow
	lo, hi      float64
	alpha, beta float64 // HardSigmoid and HardSwish: alpha x + beta; Pow: the exponent
}

func (k *elementwise) name() string {
	switch k.op {
	case "Clip":
		return fmt.Sprintf("Clip(%g,%g)", k.lo, k.hi)
	case "HardSigmoid":
		return fmt.Sprintf("HardSigmoid(%g,%g)", k.alpha, k.beta)
	case "Pow":
		return fmt.Sprintf("Pow(%g)", k.alpha)
	}
	return k.op
}

func (k *elementwise) outShape(in []tensor.Shape) (tensor.Shape, error) { return in[0].Clone(), nil }

func (k *elementwise) differentiable(int) bool { return true }

func (k *elementwise) forward(in [][]float32, _ []tensor.Shape, out []float32) error {
	for i, v := range in[0] {
		x := float64(v)
		var y float64
		switch k.op {
		case "Clip":
			y = min(max(x, k.lo), k.hi)
			if x != x { // NaN passes through
				y = x
			}
		case "HardSigmoid":
			y = min(max(k.alpha*x+k.beta, 0), 1)
		case "HardSwish":
			y = x * min(max(k.alpha*x+k.beta, 0), 1)
		case "Erf":
			y = math.Erf(x)
		case "Sqrt":
			y = math.Sqrt(x)
		case "Pow":
			y = k.power(x)
		default:
			return fmt.Errorf("unknown elementwise operator %s", k.op)
		}
		out[i] = float32(y)
	}
	return nil
}

func (k *elementwise) power(x float64) float64 {
	if k.alpha == 2 {
		return x * x
	}
	return math.Pow(x, k.alpha)
}

func (k *elementwise) backward(_ int, in [][]float32, _ []tensor.Shape, out, dOut, dIn []float32) error {
	for i, v := range in[0] {
		x, g := float64(v), float64(dOut[i])
		var d float64
		switch k.op {
		case "Clip":
			if x > k.lo && x < k.hi {
				d = g
			}
		case "HardSigmoid":
			if z := k.alpha*x + k.beta; z > 0 && z < 1 {
				d = g * k.alpha
			}
		case "HardSwish":
			switch {
			case x < -3:
			case x <= 3:
				d = g * (x/3 + 0.5)
			default:
				d = g
			}
		case "Erf":
			d = g * 2 / math.SqrtPi * math.Exp(-x*x)
		case "Sqrt":
			d = g / (2 * float64(out[i]))
		case "Pow":
			if k.alpha == 2 {
				d = g * 2 * x
			} else {
				d = g * k.alpha * math.Pow(x, k.alpha-1)
			}
		}
		dIn[i] = float32(d)
	}
	return nil
}
