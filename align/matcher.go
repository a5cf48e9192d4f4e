package align

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// MatcherOptions configures a Matcher. Zero values select the defaults.
type MatcherOptions struct {
	// Seed seeds the random group order of the coordinate-descent sweeps.
	Seed uint64
	// MaxSweeps bounds the number of sweeps; <= 0 means 100.
	MaxSweeps int
	// Tol is the relative stopping tolerance: Solve stops after a sweep that lowers the objective
	// by no more than Tol * sum_p w_p (||target_p||^2 + ||source_p||^2). <= 0 (or NaN) means 1e-12.
	Tol float64
}

// Default option values.
const (
	defaultMaxSweeps = 100
	defaultTol       = 1e-12
)

// seedStream is the second PCG seed word of the sweep-order generator.
const seedStream = 0x616c69676e // "align"

// Result describes the outcome of Matcher.Solve.
type Result struct {
	// Objective is sum_p w_p ||target_p - pi(source_p)||^2 at the returned pi, summed over the
	// parameters named by the spec (other parameters do not depend on pi and are ignored).
	Objective float64
	// Sweeps is the number of coordinate-descent sweeps run.
	Sweeps int
	// Improved reports whether Objective is strictly lower than at the starting permutation.
	Improved bool
}

// Matcher finds the permutation that best aligns source parameters to target parameters over
// a set of weighted pairs (see the package documentation for the objective). Build it with
// NewMatcher, add pairs with Add, then call Solve. A Matcher is not safe for concurrent use.
type Matcher struct {
	spec      Spec
	opt       MatcherOptions
	names     []string      // parameters named by the spec, sorted
	axes      [][]axisPerm  // permuted axes of names[k]
	members   [][]memberRef // per group: its members with parameter indices
	neighbors [][]int       // per group: the other groups sharing a parameter with it
	specErr   error         // structural problem of the spec, reported by Add and Solve
	pairs     []pair        // added pairs
	scale     float64       // sum_p w_p (||T_p||^2 + ||S_p||^2), for the relative tolerance
	maxElems  int           // largest parameter size, for the objective's scratch buffer
}

// memberRef is a group member with its parameter resolved to an index into Matcher.names.
type memberRef struct {
	param, axis, block int
}

// pair is one added (weight, target, source) triple, holding the spec's tensors by index.
type pair struct {
	w              float64
	target, source []*Tensor
}

// NewMatcher returns a Matcher for spec s. The spec is copied. A parameter may have at most one
// axis in any one group (otherwise the per-group subproblem is quadratic, not a linear
// assignment); such a spec is reported by Add and Solve.
func NewMatcher(s Spec, opt MatcherOptions) *Matcher {
	m := &Matcher{opt: opt}
	m.spec.Groups = make([]Group, len(s.Groups))
	for g, gr := range s.Groups {
		gr.Members = slices.Clone(gr.Members)
		m.spec.Groups[g] = gr
	}
	pa := m.spec.paramAxes()
	for name := range pa {
		m.names = append(m.names, name)
	}
	slices.Sort(m.names)
	byName := make(map[string]int, len(m.names))
	for k, name := range m.names {
		byName[name] = k
		m.axes = append(m.axes, pa[name])
	}
	m.members = make([][]memberRef, len(m.spec.Groups))
	m.neighbors = make([][]int, len(m.spec.Groups))
	for g, gr := range m.spec.Groups {
		for _, mem := range gr.Members {
			k := byName[mem.Param]
			m.members[g] = append(m.members[g], memberRef{k, mem.Axis, mem.Block})
			for _, ap := range m.axes[k] {
				switch {
				case ap.group == g && ap.axis != mem.Axis && m.specErr == nil:
					m.specErr = fmt.Errorf("%s: parameter %q has axes %d and %d in the group; "+
						"a parameter may have at most one axis per group", m.spec.groupLabel(g), mem.Param, mem.Axis, ap.axis)
				case ap.group != g && !slices.Contains(m.neighbors[g], ap.group):
					m.neighbors[g] = append(m.neighbors[g], ap.group)
				}
			}
		}
	}
	return m
}

// Add adds the pair (target, source) with weight w >= 0. Both must contain every parameter
// named by the spec, valid for the spec, with finite values and the same shape in both (and in
// every pair added before); other parameters are ignored. The tensors are retained, not copied: do not modify them while the
// Matcher is in use.
func (m *Matcher) Add(w float64, target, source Params) error {
	if m.specErr != nil {
		return fmt.Errorf("align: matcher: add: spec: %w", m.specErr)
	}
	if !(w >= 0) || math.IsInf(w, 1) {
		return fmt.Errorf("align: matcher: add: weight %v, want finite and >= 0", w)
	}
	if err := m.spec.validate(target); err != nil {
		return fmt.Errorf("align: matcher: add: target: %w", err)
	}
	if err := m.spec.validate(source); err != nil {
		return fmt.Errorf("align: matcher: add: source: %w", err)
	}
	p := pair{w: w, target: make([]*Tensor, len(m.names)), source: make([]*Tensor, len(m.names))}
	norm := 0.0
	for k, name := range m.names {
		t, s := target[name], source[name]
		if !slices.Equal(t.Shape, s.Shape) {
			return fmt.Errorf("align: matcher: add: parameter %q: target shape %v != source shape %v", name, t.Shape, s.Shape)
		}
		if len(m.pairs) > 0 && !slices.Equal(t.Shape, m.pairs[0].target[k].Shape) {
			return fmt.Errorf("align: matcher: add: parameter %q: shape %v != shape %v of the first pair", name, t.Shape, m.pairs[0].target[k].Shape)
		}
		nt, err := sumSquares(t.Data)
		if err != nil {
			return fmt.Errorf("align: matcher: add: target parameter %q: %w", name, err)
		}
		ns, err := sumSquares(s.Data)
		if err != nil {
			return fmt.Errorf("align: matcher: add: source parameter %q: %w", name, err)
		}
		norm += nt + ns
		p.target[k], p.source[k] = t, s
		m.maxElems = max(m.maxElems, len(t.Data))
	}
	m.pairs = append(m.pairs, p)
	m.scale += w * norm
	return nil
}

// sumSquares returns the sum of squares of x in float64, or an error naming a non-finite element.
func sumSquares(x []float32) (float64, error) {
	s := 0.0
	for i, v := range x {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("element %d is %v", i, v)
		}
		s += f * f
	}
	return s, nil
}

// Len returns the number of pairs added.
func (m *Matcher) Len() int { return len(m.pairs) }

// errNoPairs is returned by Solve when no pair was added.
var errNoPairs = errors.New("align: matcher: solve: no pairs added")

// Solve runs coordinate descent over the groups, starting from warm (nil means the identity).
// Each sweep visits the groups in a random order drawn from the seeded generator. For group g it
// builds the Size x Size score matrix
//
//	S[i][j] = sum_p w_p * sum_{members (param, axis, block) of g} <T_i, P_j>
//
// where T_i is the slab of target_p[param] at group element i of the member axis (block
// positions i*block..i*block+block-1, all other axes included) and P_j the slab at element j of
// source_p[param] with the current permutations of the other groups applied to its other axes.
// It solves one exact linear assignment on S (a per-group Assigner warm-starts from the previous
// sweep) and adopts the new pi_g if it strictly increases sum_i S[i][pi_g[i]], so the objective
// never increases. A group none of whose neighbours (groups sharing a parameter) changed
// since its last solve is skipped, since its optimum cannot have moved. Solve stops after a sweep
// that changes nothing or lowers the objective by no more than Tol (relative), or after MaxSweeps.
// warm is not modified. The result is deterministic for a given Seed and input.
func (m *Matcher) Solve(warm Perm) (Perm, Result, error) {
	if m.specErr != nil {
		return nil, Result{}, fmt.Errorf("align: matcher: solve: spec: %w", m.specErr)
	}
	if len(m.pairs) == 0 {
		return nil, Result{}, errNoPairs
	}
	var pi Perm
	if warm == nil {
		pi = Identity(m.spec)
	} else {
		if err := warm.validate(m.spec); err != nil {
			return nil, Result{}, fmt.Errorf("align: matcher: solve: warm: %w", err)
		}
		pi = warm.clone()
	}
	maxSweeps, tol := m.opt.MaxSweeps, m.opt.Tol
	if maxSweeps <= 0 {
		maxSweeps = defaultMaxSweeps
	}
	if !(tol > 0) {
		tol = defaultTol
	}

	start := m.objective(pi)
	groups := len(m.spec.Groups)
	assigners := make([]Assigner, groups)
	maxSize := 0
	for _, gr := range m.spec.Groups {
		maxSize = max(maxSize, gr.Size)
	}
	score := make([]float64, maxSize*maxSize)
	var ws scoreWork
	rng := rand.New(rand.NewPCG(m.opt.Seed, seedStream))
	// Logical clock: changedAt[g] is when pi_g last changed, solvedAt[g] when g was last solved.
	clock := 0
	changedAt := make([]int, groups)
	solvedAt := make([]int, groups)
	for g := range solvedAt {
		solvedAt[g] = -1
	}
	var res Result
	for res.Sweeps < maxSweeps {
		res.Sweeps++
		gain, changed := 0.0, false
		for _, g := range rng.Perm(groups) {
			if !m.stale(g, solvedAt, changedAt) {
				continue
			}
			n := m.spec.Groups[g].Size
			s := score[:n*n]
			m.buildScore(g, pi, s, &ws)
			perm, total, err := assigners[g].solve(n, s)
			if err != nil { // only reachable through float64 overflow of huge weights or values
				return nil, Result{}, fmt.Errorf("align: matcher: solve: %s: score matrix: %w", m.spec.groupLabel(g), err)
			}
			cur := 0.0
			for i, j := range pi[g] {
				cur += s[i*n+j]
			}
			if total > cur {
				pi[g] = perm
				gain += total - cur
				changed = true
				clock++
				changedAt[g] = clock
			}
			solvedAt[g] = clock
		}
		// The objective equals a constant minus twice the correlation, which rose by gain.
		if !changed || 2*gain <= tol*m.scale {
			break
		}
	}
	res.Objective = m.objective(pi)
	res.Improved = res.Objective < start
	return pi, res, nil
}

// stale reports whether group g must be solved: it never was, or a neighbour changed since.
func (m *Matcher) stale(g int, solvedAt, changedAt []int) bool {
	if solvedAt[g] < 0 {
		return true
	}
	for _, h := range m.neighbors[g] {
		if changedAt[h] > solvedAt[g] {
			return true
		}
	}
	return false
}

// objective returns sum_p w_p ||target_p - pi(source_p)||^2 over the spec's parameters.
func (m *Matcher) objective(pi Perm) float64 {
	buf := make([]float64, m.maxElems)
	total := 0.0
	for _, pr := range m.pairs {
		sum := 0.0
		for k := range m.names {
			t, s := pr.target[k], pr.source[k]
			ps := buf[:len(s.Data)]
			gather(ps, s.Data, 0, pi.offsetTables(s.Shape, m.axes[k], -1))
			for x, v := range t.Data {
				d := float64(v) - ps[x]
				sum += d * d
			}
		}
		total += pr.w * sum
	}
	return total
}
