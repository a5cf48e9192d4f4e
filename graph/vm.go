package graph

import (
	"fmt"
	"slices"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// machine runs the nodes of one Gorgonia graph in the order of Gorgonia's tape machine, but
// with a memory plan: the outputs of this package's kernels (and of Gorgonia operators that can
// write into a given buffer) live in buffers allocated on the first run and reused by every run,
// and a buffer is handed to a later node as soon as the last reader of the value it holds has
// run. A training pass therefore holds what the backward pass still needs (the forward values
// its kernels read) and a few gradient buffers, not every value of the pass; a forward-only pass
// holds a few activations; and no run allocates activation-sized memory after the first.
//
// Values a caller reads after the run (kept) are never reused. The output of another Gorgonia
// operator (a Reshape) may be a view of its inputs: the buffers it may view live as long as it.
type machine struct {
	order []*G.Node
	steps []step
	vals  []G.Value
	index map[*G.Node]int
	// bufs are the planned buffers; sizes their lengths, allocated on the first run.
	bufs  [][]float32
	sizes []int
	// arena, when set, provides the buffers (shared with the other machines of a session):
	// buffer b is its slot rank[b], and gen is the arena's generation bufs were taken at.
	arena *arena
	rank  []int
	gen   int
}

// arena holds the planned buffers of the machines of one session. They run one at a time, and a
// caller copies the values it reads out of a run before the next, so the machines can share
// their buffers: slot r serves the r-th largest buffer of every machine, and the session holds,
// rank by rank, the largest of its machines' buffers instead of all of them (a transfer's
// evaluation and BatchNorm-statistics passes then fit in the training pass's memory).
type arena struct {
	slots [][]float32
	// gen counts the slots reallocated: a machine whose buffers are of an older generation
	// takes them again.
	gen int
}

// take returns buffers of the given sizes, buffer b in slot rank[b], growing slots as needed.
func (a *arena) take(sizes, rank []int) [][]float32 {
	out := make([][]float32, len(sizes))
	for b, size := range sizes {
		r := rank[b]
		for len(a.slots) <= r {
			a.slots = append(a.slots, nil)
		}
		if len(a.slots[r]) < size {
			a.slots[r] = make([]float32, size)
			a.gen++
		}
		out[b] = a.slots[r][:size]
	}
	return out
}

// step is one node of the order: a leaf (an input, a parameter or a constant), whose value is
// the node's own, or an operator reading the values at positions in.
type step struct {
	op    G.Op
	in    []int
	shape tensor.Shape
	// buf is the planned buffer of the output, or -1 when the operator allocates its own.
	buf int
	// out wraps the planned buffer as a Gorgonia value (set on the first run).
	out G.Value
	// inData and inShapes are reused for the kernels' arguments.
	inData   [][]float32
	inShapes []tensor.Shape
	// unread[j] is set for the arguments of a kernel's gradient that it does not read (see
	// gradReader): they get no data, and do not keep their values alive.
	unread []bool
}

// planned tells whether the output of op can be written into a planned buffer.
func planned(op G.Op, shape tensor.Shape) bool {
	if shape.IsScalar() || shape.TotalSize() == 0 {
		return false
	}
	switch op.(type) {
	case *kernelOp, *kernelGradOp, G.UsePreallocDoer:
		return true
	}
	return false
}

// newMachine plans the runs of g; the values of kept nodes stay valid after a run.
func newMachine(g *G.ExprGraph, kept ...*G.Node) (*machine, error) {
	sorted, err := G.Sort(g)
	if err != nil {
		return nil, err
	}
	slices.Reverse(sorted)
	sorted = needed(g, sorted, kept)
	m := &machine{order: sorted, steps: make([]step, len(sorted)), vals: make([]G.Value, len(sorted)),
		index: make(map[*G.Node]int, len(sorted))}
	for i, n := range sorted {
		m.index[n] = i
	}
	// lastRead[i] is the last position reading value i (len(order) for kept values).
	lastRead := make([]int, len(sorted))
	for i, n := range sorted {
		lastRead[i] = i
		s := &m.steps[i]
		s.buf = -1
		s.shape = n.Shape()
		children := inputsOf(g, n)
		if n.Op() == nil || len(children) == 0 {
			continue
		}
		s.op = n.Op()
		s.unread = make([]bool, len(children))
		if k, ok := s.op.(*kernelGradOp); ok {
			if r, ok := k.k.(gradReader); ok {
				for a := range s.unread {
					s.unread[a] = !r.gradReads(k.wrt, a)
				}
			}
		}
		for a, c := range children {
			j, ok := m.index[c]
			if !ok || j >= i {
				return nil, fmt.Errorf("node %s reads %s, which does not run before it", n.Name(), c.Name())
			}
			s.in = append(s.in, j)
			if !s.unread[a] {
				lastRead[j] = i
			}
		}
		s.inData, s.inShapes = make([][]float32, len(s.in)), make([]tensor.Shape, len(s.in))
		for a, c := range children {
			s.inShapes[a] = c.Shape()
		}
	}
	for _, n := range kept {
		if i, ok := m.index[n]; ok {
			lastRead[i] = len(sorted)
		}
	}
	// roots[i] are the planned values that value i is, or may be a view of.
	roots := make([][]int, len(sorted))
	end := make([]int, len(sorted)) // the last position at which a planned value is read
	for i := range sorted {
		s := &m.steps[i]
		switch {
		case s.op == nil:
		case planned(s.op, s.shape):
			roots[i] = []int{i}
		default:
			for _, j := range s.in {
				roots[i] = append(roots[i], roots[j]...)
			}
			slices.Sort(roots[i])
			roots[i] = slices.Compact(roots[i])
		}
		for _, r := range roots[i] {
			end[r] = max(end[r], lastRead[i])
		}
	}
	// Assign buffers in order, taking a free one of the same size when there is one; a buffer
	// is free after the position where its value is last read.
	free := map[int][]int{}
	release := make([][]int, len(sorted)+1)
	for i := range sorted {
		s := &m.steps[i]
		if s.op != nil && planned(s.op, s.shape) {
			size := s.shape.TotalSize()
			if list := free[size]; len(list) > 0 {
				s.buf, free[size] = list[len(list)-1], list[:len(list)-1]
			} else {
				s.buf = len(m.sizes)
				m.sizes = append(m.sizes, size)
			}
			release[end[i]] = append(release[end[i]], s.buf)
		}
		for _, b := range release[i] {
			free[m.sizes[b]] = append(free[m.sizes[b]], b)
		}
	}
	byRank := make([]int, len(m.sizes))
	for b := range byRank {
		byRank[b] = b
	}
	slices.SortStableFunc(byRank, func(a, b int) int { return m.sizes[b] - m.sizes[a] })
	m.rank = make([]int, len(m.sizes))
	for r, b := range byRank {
		m.rank[b] = r
	}
	return m, nil
}

// run runs every node once.
func (m *machine) run() error {
	if m.bufs == nil || (m.arena != nil && m.gen != m.arena.gen) {
		if m.arena != nil {
			m.bufs = m.arena.take(m.sizes, m.rank)
			m.gen = m.arena.gen
		} else {
			m.bufs = make([][]float32, len(m.sizes))
			for i, size := range m.sizes {
				m.bufs[i] = make([]float32, size)
			}
		}
		for i := range m.steps {
			if s := &m.steps[i]; s.buf >= 0 {
				s.out = tensor.New(tensor.WithShape(s.shape.Clone()...), tensor.WithBacking(m.bufs[s.buf][:s.shape.TotalSize()]))
			}
		}
	}
	for i, n := range m.order {
		s := &m.steps[i]
		if s.op == nil {
			if m.vals[i] = n.Value(); m.vals[i] == nil {
				return fmt.Errorf("node %s has no value bound", n.Name())
			}
			continue
		}
		v, err := m.exec(s)
		if err != nil {
			return fmt.Errorf("%s: %w", n.Name(), err)
		}
		m.vals[i] = v
	}
	return nil
}

// exec runs one operator.
func (m *machine) exec(s *step) (G.Value, error) {
	vals := make([]G.Value, len(s.in))
	for j, k := range s.in {
		if !s.unread[j] {
			vals[j] = m.vals[k]
		}
	}
	if s.buf < 0 {
		return s.op.Do(vals...)
	}
	switch op := s.op.(type) {
	case *kernelOp, *kernelGradOp:
		if err := float32Into(vals, s.inData, s.inShapes); err != nil { // nil for the unread
			return nil, err
		}
		out := m.bufs[s.buf][:s.shape.TotalSize()]
		if k, ok := op.(*kernelOp); ok {
			if !overwrites(k.k, -1) {
				clear(out)
			}
			return s.out, k.k.forward(s.inData, s.inShapes, out)
		}
		k := op.(*kernelGradOp)
		if !overwrites(k.k, k.wrt) {
			clear(out)
		}
		n := len(s.inData) - 2
		return s.out, k.k.backward(k.wrt, s.inData[:n], s.inShapes[:n], s.inData[n], s.inData[n+1], out)
	case G.UsePreallocDoer:
		return op.UsePreallocDo(s.out, vals...)
	}
	return nil, fmt.Errorf("operator %v has a planned buffer", s.op)
}

// value returns the value node n computed in the last run.
func (m *machine) value(n *G.Node) G.Value {
	if i, ok := m.index[n]; ok {
		return m.vals[i]
	}
	return n.Value()
}

// inputsOf returns the nodes n reads, in order.
func inputsOf(g *G.ExprGraph, n *G.Node) []*G.Node {
	var out []*G.Node
	for it := g.From(n.ID()); it.Next(); {
		out = append(out, it.Node().(*G.Node))
	}
	return out
}
