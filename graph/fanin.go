package graph

import (
	"errors"
	"fmt"

	"github.com/ltransfer/ltransfer/params"
)

// ErrNoFanIn is wrapped by FanIn's errors when no layer with a fan-in reads the parameter.
var ErrNoFanIn = errors.New("no fan-in")

// FanIn returns the fan-in of a weight or bias: the number of input values each output unit of
// its layer sums over, which PyTorch's default initialization scales by. The layer is the
// operator that reads the parameter, directly or through Identity and Transpose nodes:
//
//   - Conv weight [out, in/groups, kh, kw]: in/groups * kh * kw;
//   - Gemm weight B: its contracted axis, the second ([out, in]) with transB=1 and the first
//     ([in, out]) with transB=0; likewise the first operand A;
//   - MatMul weight B: its second-to-last axis ([in, out]); so a torch Linear(bias=False),
//     exported as Transpose then MatMul, has fan-in = the second axis of its [out, in] weight;
//     a MatMul weight A: its last axis;
//   - a bias (the third input of Conv or Gemm, or an operand of an Add or Sub whose other operand
//     a Conv, Gemm or MatMul computes): the fan-in of that layer's weight.
//
// The error wraps ErrNoFanIn when no such layer reads the parameter (BatchNormalization
// parameters, running statistics, constants), and names the layers when several disagree.
func (m *Model) FanIn(param string) (int, error) {
	if _, ok := m.Params[param]; !ok {
		return 0, m.fanInError(param, errors.New("no such float32 initializer"))
	}
	views, through := m.paramViews(param)
	type found struct {
		fanIn int
		node  string
	}
	var got []found
	for _, n := range m.Nodes {
		for slot, in := range n.Inputs {
			shape, ok := views[in]
			if !ok {
				continue
			}
			f, err := m.slotFanIn(n, slot, shape, views)
			if err != nil {
				return 0, m.fanInError(param, nodeError(n, err))
			}
			if f > 0 {
				got = append(got, found{f, n.Name})
			}
		}
	}
	switch {
	case len(got) == 0 && through != nil:
		return 0, m.fanInError(param, fmt.Errorf("%w: it flows through %s, which FanIn does not follow", ErrNoFanIn, nodeError(through, ErrUnsupported)))
	case len(got) == 0:
		return 0, m.fanInError(param, fmt.Errorf("%w: no Conv, Gemm or MatMul reads it as a weight or bias", ErrNoFanIn))
	}
	for _, g := range got[1:] {
		if g.fanIn != got[0].fanIn {
			return 0, m.fanInError(param, fmt.Errorf("layers disagree: fan-in %d in node %q, %d in node %q", got[0].fanIn, got[0].node, g.fanIn, g.node))
		}
	}
	return got[0].fanIn, nil
}

func (m *Model) fanInError(param string, err error) error {
	if m.Path == "" {
		return fmt.Errorf("graph: parameter %q: %w", param, err)
	}
	return fmt.Errorf("graph: %s: parameter %q: %w", m.Path, param, err)
}

// paramViews returns the shapes under which operators read the parameter: its own name, and the
// outputs of the Identity and Transpose nodes it flows through. through is the first other
// layout operator (Reshape, Flatten, ...) that reads it, whose output FanIn does not follow.
func (m *Model) paramViews(param string) (views map[string][]int, through *Node) {
	views = map[string][]int{param: m.Params[param].Shape}
	for _, n := range m.Nodes {
		if len(n.Inputs) == 0 || len(n.Outputs) == 0 {
			continue
		}
		if shape, ok := views[n.Inputs[0]]; ok {
			if out, ok := viewThrough(n, shape); ok {
				views[n.Outputs[0]] = out
			} else if layoutOps[n.Op] && through == nil {
				through = n
			}
		}
	}
	return views, through
}

// viewThrough returns the shape of the output of an Identity or Transpose node whose input has
// the given shape; ok is false for other operators and malformed permutations.
func viewThrough(n *Node, shape []int) (out []int, ok bool) {
	switch n.Op {
	case "Identity":
		return shape, true
	case "Transpose":
		perm := n.attrInts("perm")
		if perm == nil {
			for i := len(shape) - 1; i >= 0; i-- {
				perm = append(perm, i)
			}
		}
		if len(perm) != len(shape) {
			return nil, false
		}
		out = make([]int, len(perm))
		for i, p := range perm {
			if p < 0 || p >= len(shape) {
				return nil, false
			}
			out[i] = shape[p]
		}
		return out, true
	}
	return nil, false
}

// viewShape returns the shape of a value that is an initializer, possibly seen through Identity
// and Transpose nodes; ok is false for any other value.
func (m *Model) viewShape(name string) (shape []int, ok bool) {
	var chain []*Node // the Identity and Transpose nodes from the initializer to name, last first
	for len(chain) <= len(m.Nodes) {
		if p, isParam := m.Params[name]; isParam {
			shape = p.Shape
			for i := len(chain) - 1; i >= 0 && shape != nil; i-- {
				shape, _ = viewThrough(chain[i], shape)
			}
			return shape, shape != nil
		}
		n := m.producer(name)
		if n == nil || len(n.Inputs) == 0 || n.Outputs[0] != name || (n.Op != "Identity" && n.Op != "Transpose") {
			return nil, false
		}
		chain = append(chain, n)
		name = n.Inputs[0]
	}
	return nil, false // a cycle
}

// slotFanIn returns the fan-in that input slot of n gives the parameter read there with the given
// shape, or 0 when that slot does not make it a weight or bias of a layer.
func (m *Model) slotFanIn(n *Node, slot int, shape []int, views map[string][]int) (int, error) {
	switch {
	case (n.Op == "Conv" || n.Op == "Gemm" || n.Op == "MatMul") && slot < 2:
		return weightFanIn(n, slot, shape)
	case (n.Op == "Conv" || n.Op == "Gemm") && slot == 2:
		return m.layerFanIn(n)
	case (n.Op == "Add" || n.Op == "Sub") && slot < 2 && len(n.Inputs) == 2:
		if _, both := views[n.Inputs[1-slot]]; both {
			return 0, nil
		}
		if l := m.producer(n.Inputs[1-slot]); l != nil && (l.Op == "Conv" || l.Op == "Gemm" || l.Op == "MatMul") {
			f, err := m.layerFanIn(l)
			if err != nil {
				return 0, fmt.Errorf("bias of %w", nodeError(l, err))
			}
			return f, nil
		}
	}
	return 0, nil
}

// weightFanIn is the contracted size of a weight operand of shape shape in input slot of n.
func weightFanIn(n *Node, slot int, shape []int) (int, error) {
	rank := len(shape)
	var f int
	switch {
	case n.Op == "Conv" && slot == 0, n.Op == "Conv" && rank < 3:
		return 0, fmt.Errorf("a parameter of shape %v as Conv input %d is %w", shape, slot, ErrUnsupported)
	case n.Op == "Conv":
		f = params.Size(shape[1:])
	case rank == 0, n.Op == "Gemm" && rank != 2:
		return 0, fmt.Errorf("a parameter of shape %v as %s input %d is %w", shape, n.Op, slot, ErrUnsupported)
	case n.Op == "Gemm":
		trans := n.attrInt([]string{"transA", "transB"}[slot], 0) == 1
		// A' = [M, K] and B' = [K, N]: K is axis 1 of A and axis 0 of B, swapped when transposed.
		axis := 1 - slot
		if trans {
			axis = slot
		}
		f = shape[axis]
	case slot == 0: // MatMul A [..., M, K]
		f = shape[rank-1]
	case rank == 1: // MatMul B [K]
		f = shape[0]
	default: // MatMul B [..., K, N]
		f = shape[rank-2]
	}
	if f < 1 {
		return 0, fmt.Errorf("weight of shape %v has fan-in %d", shape, f)
	}
	return f, nil
}

// layerFanIn is the fan-in of the weight of a Conv, Gemm or MatMul: the initializer read as its
// second operand (or as the first, when the second is computed).
func (m *Model) layerFanIn(n *Node) (int, error) {
	for _, slot := range []int{1, 0} {
		if slot >= len(n.Inputs) || (n.Op == "Conv" && slot == 0) {
			continue
		}
		if shape, ok := m.viewShape(n.Inputs[slot]); ok {
			return weightFanIn(n, slot, shape)
		}
	}
	return 0, fmt.Errorf("its weight is not an initializer, so the layer's fan-in is unknown: %w", ErrUnsupported)
}
