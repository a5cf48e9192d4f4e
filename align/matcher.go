package align

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ltransfer/ltransfer/params"
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
// NewMatcher, add pairs with Add or AddOperands, then call Solve. A Matcher is not safe for
// concurrent use.
type Matcher struct {
	spec      Spec
	opt       MatcherOptions
	names     []string      // parameters named by the spec, sorted
	axes      [][]axisPerm  // permuted axes of names[k]
	members   [][]memberRef // per group: its members with parameter indices
	neighbors [][]int       // per group: the other groups sharing a parameter with it
	specErr   error         // structural problem of the spec, reported by Add and Solve
	pairs     []pair        // added pairs
	shapes    [][]int       // shape of names[k], set by the first pair
	scale     float64       // sum_p w_p (||T_p||^2 + ||S_p||^2), for the relative tolerance
	maxElems  int           // largest dense parameter size, for the objective's scratch buffer

	// State kept across Solve calls: the assignment solver of every group (warm starts), the
	// score matrix of every group and what it holds (within cacheElems, see score), the scratch
	// space of the score products.
	assigners  []Assigner
	caches     []scoreCache
	cacheClock int
	work       scoreWork
	timing     Timing
}

// Timing is where Solve spent its time.
type Timing struct {
	// Score is the time spent building score matrices (the products of the pairs' slabs),
	// Assign the time spent solving linear assignment problems.
	Score, Assign time.Duration
}

// memberRef is a group member with its parameter resolved to an index into Matcher.names.
type memberRef struct {
	param int
	axisPerm
}

// pair is one added (weight, target, source) triple, holding the spec's parameters by index.
type pair struct {
	w              float64
	target, source []operand
}

// operand is one parameter of one side of a pair: dense or low rank, with its squared norm.
type operand struct {
	dense *params.Tensor
	lr    *LowRank
	norm  float64
}

func (o operand) shape() []int {
	if o.dense != nil {
		return o.dense.Shape
	}
	return o.lr.Shape
}

// NewMatcher returns a Matcher for spec s. The spec is copied. A parameter may have at most one
// member in any one group (otherwise the per-group subproblem is quadratic, not a linear
// assignment); such a spec is reported by Add and Solve.
func NewMatcher(s Spec, opt MatcherOptions) *Matcher {
	m := &Matcher{opt: opt}
	m.spec.Groups = make([]Group, len(s.Groups))
	for g, gr := range s.Groups {
		gr.Members = slices.Clone(gr.Members)
		m.spec.Groups[g] = gr
	}
	m.assigners = make([]Assigner, len(m.spec.Groups))
	m.caches = make([]scoreCache, len(m.spec.Groups))
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
			m.members[g] = append(m.members[g], memberRef{k, axisPerm{mem.Axis, g, mem.Block, mem.Offset, mem.copies()}})
			for _, ap := range m.axes[k] {
				switch {
				case ap.group == g && (ap.axis != mem.Axis || ap.offset != mem.Offset) && m.specErr == nil:
					m.specErr = fmt.Errorf("%s: parameter %q has two members (axis %d offset %d, axis %d offset %d) in the group; "+
						"a parameter may have at most one member per group", m.spec.groupLabel(g), mem.Param, mem.Axis, mem.Offset, ap.axis, ap.offset)
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
// every pair added before); other parameters are ignored. The tensors are retained, not copied:
// do not modify them while the Matcher is in use.
func (m *Matcher) Add(w float64, target, source params.Set) error {
	return m.AddOperands(w, Operand{Params: target}, Operand{Params: source})
}

// AddOperands is Add for operands whose parameters may be held as low-rank products. A
// parameter named by the spec must be in exactly one of an operand's maps; a low-rank one is
// scored in factored form when the other side of the pair is low rank too and the rank is below
// the length of the parameter's other axis: for a member on the rows of T = U_t^T V_t and
// S = U_s^T V_s, the score U_t^T (V_t V_s'^T) U_s (V_s' with the other groups' permutation
// applied to its columns) costs about rows*(rank_t*rank_s + rows*rank_t) instead of
// rows*rows*cols. Otherwise it is expanded row by row. The factors are retained, not copied.
func (m *Matcher) AddOperands(w float64, target, source Operand) error {
	if m.specErr != nil {
		return fmt.Errorf("align: matcher: add: spec: %w", m.specErr)
	}
	if !(w >= 0) || math.IsInf(w, 1) {
		return fmt.Errorf("align: matcher: add: weight %v, want finite and >= 0", w)
	}
	p := pair{w: w, target: make([]operand, len(m.names)), source: make([]operand, len(m.names))}
	for _, side := range []struct {
		name string
		op   Operand
		dst  []operand
	}{{"target", target, p.target}, {"source", source, p.source}} {
		if err := m.spec.validateShapes(side.op.shape); err != nil {
			return fmt.Errorf("align: matcher: add: %s: %w", side.name, err)
		}
		for k, name := range m.names {
			o, err := side.op.operand(name)
			if err != nil {
				return fmt.Errorf("align: matcher: add: %s parameter %q: %w", side.name, name, err)
			}
			side.dst[k] = o
		}
	}
	norm := 0.0
	for k, name := range m.names {
		ts, ss := p.target[k].shape(), p.source[k].shape()
		if !slices.Equal(ts, ss) {
			return fmt.Errorf("align: matcher: add: parameter %q: target shape %v != source shape %v", name, ts, ss)
		}
		if m.shapes != nil && !slices.Equal(ts, m.shapes[k]) {
			return fmt.Errorf("align: matcher: add: parameter %q: shape %v != shape %v of the first pair", name, ts, m.shapes[k])
		}
		norm += p.target[k].norm + p.source[k].norm
	}
	if m.shapes == nil {
		for k := range m.names {
			m.shapes = append(m.shapes, p.target[k].shape())
		}
	}
	for k := range m.names {
		if p.target[k].dense != nil {
			m.maxElems = max(m.maxElems, len(p.target[k].dense.Data))
		}
	}
	m.pairs = append(m.pairs, p)
	m.scale += w * norm
	return nil
}

// shape looks a parameter up for Spec.validateShapes.
func (o Operand) shape(name string) ([]int, error) {
	t, dense := o.Params[name]
	l, low := o.LowRank[name]
	switch {
	case dense && t != nil && low && l != nil:
		return nil, errors.New("given both dense and low rank")
	case dense && t != nil:
		return t.Shape, t.Check()
	case low && l != nil:
		return l.Shape, l.check()
	}
	return nil, errNoParam
}

// operand returns the parameter with its squared norm, or an error naming a non-finite value.
func (o Operand) operand(name string) (operand, error) {
	if t := o.Params[name]; t != nil {
		n, err := sumSquares(t.Data)
		return operand{dense: t, norm: n}, err
	}
	l := o.LowRank[name]
	n, err := lowRankNorm(l)
	return operand{lr: l, norm: n}, err
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

// Reset removes every pair, so that the Matcher can be reused for a new set of pairs on the same
// spec as if it were new, except that the assignment solver of every group keeps its last
// solution to warm start from (the results are the same exact optima, up to ties between equally
// good assignments).
func (m *Matcher) Reset() {
	m.pairs = m.pairs[:0]
	m.shapes = nil
	m.scale, m.maxElems = 0, 0
	for g := range m.caches {
		m.caches[g].valid = false
	}
}

// Timing returns the time all Solve calls so far spent in score products and assignments.
func (m *Matcher) Timing() Timing { return m.timing }

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
// The products are computed in float32 and accumulated in float64 (see buildScore). It solves
// one exact linear assignment on S (each group's Assigner warm-starts from its previous solve,
// in this call or an earlier one) and adopts the new pi_g if it strictly increases
// sum_i S[i][pi_g[i]], so the objective never increases (up to the float32 rounding of the
// products). A group none of whose neighbours (groups sharing a parameter) changed since its
// last solve is skipped, since its optimum cannot have moved. Every group's score matrix is
// kept (up to 64 MiB together, or the largest group's): when the group is built again, only
// the pairs added since are summed in (FGMT adds one pair per step to a Matcher it keeps), and
// when some neighbours changed, only the change their moved positions make (see updateScore;
// later sweeps move a fraction of the units). Solve stops after a sweep that changes nothing
// or lowers the objective by no more than Tol (relative), or after MaxSweeps. warm is not
// modified. The result is deterministic for a given Seed and sequence of calls.
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
			t0 := time.Now()
			s := m.score(g, pi)
			t1 := time.Now()
			perm, total, err := m.assigners[g].solve(n, s)
			m.timing.Score += t1.Sub(t0)
			m.timing.Assign += time.Since(t1)
			if err != nil { // only reachable through overflow of huge weights or values
				m.caches[g].valid = false
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

// scoreCache is the score matrix of a group as last built: the number of pairs summed in and
// the permutations of the group's neighbours it was built under.
type scoreCache struct {
	valid     bool
	score     []float64
	pairs     int
	neighbors [][]int
	used      int // when it was last used, on the Matcher's cacheClock
}

// score returns the score matrix of group g over every pair under pi, brought up to date from
// the group's cached one: pairs added since are summed in, and when neighbours changed, the
// change is added (updateScore) unless a build from scratch is cheaper. The matrices kept take
// at most cacheElems elements or the largest group's matrix: the least recently used are
// released to make room.
func (m *Matcher) score(g int, pi Perm) []float64 {
	c := &m.caches[g]
	n := m.spec.Groups[g].Size
	if cap(c.score) < n*n {
		m.release(g, n*n)
	}
	s := grow(&c.score, n*n)
	m.cacheClock++
	c.used = m.cacheClock
	switch {
	case c.valid && c.holds(m.neighbors[g], pi):
	case c.valid && m.updateScore(g, c.before(m.neighbors[g], pi), pi, s, c.pairs):
	default:
		clear(s)
		c.pairs = 0
	}
	m.buildScore(g, pi, s, c.pairs)
	c.valid, c.pairs = true, len(m.pairs)
	c.neighbors = c.neighbors[:0]
	for _, h := range m.neighbors[g] {
		c.neighbors = append(c.neighbors, slices.Clone(pi[h]))
	}
	return s
}

// release frees the least recently used score matrices of groups other than g until one of
// elems elements more fits the cache bound.
func (m *Matcher) release(g, elems int) {
	bound := cacheElems
	for _, gr := range m.spec.Groups {
		bound = max(bound, gr.Size*gr.Size)
	}
	for {
		total, lru := elems, -1
		for h, c := range m.caches {
			if h == g || c.score == nil {
				continue
			}
			total += cap(c.score)
			if lru < 0 || c.used < m.caches[lru].used {
				lru = h
			}
		}
		if total <= bound || lru < 0 {
			return
		}
		m.caches[lru] = scoreCache{}
	}
}

// holds reports whether the cache was built under the current permutation of the neighbours.
func (c *scoreCache) holds(neighbors []int, pi Perm) bool {
	for k, h := range neighbors {
		if !slices.Equal(c.neighbors[k], pi[h]) {
			return false
		}
	}
	return true
}

// before returns pi with the neighbours' permutations the cache was built under.
func (c *scoreCache) before(neighbors []int, pi Perm) Perm {
	old := slices.Clone(pi)
	for k, h := range neighbors {
		old[h] = c.neighbors[k]
	}
	return old
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

// objective returns sum_p w_p ||target_p - pi(source_p)||^2 over the spec's parameters. Dense
// parameters are compared element by element; a low-rank one contributes
// ||T||^2 + ||S||^2 - 2<T, pi(S)>, the correlation computed on the factors. The pairs are shared
// out to GOMAXPROCS goroutines, each pair summed as one, and their sums added in pair order: the
// result does not depend on the number of goroutines.
func (m *Matcher) objective(pi Perm) float64 {
	sums := make([]float64, len(m.pairs))
	parallelRows(len(m.pairs), m.maxElems, func(lo, hi int) {
		buf := make([]float32, m.maxElems)
		var work []float32
		for p, pr := range m.pairs[lo:hi] {
			sum := 0.0
			for k := range m.names {
				t, s := pr.target[k], pr.source[k]
				if t.dense == nil || s.dense == nil {
					sum += max(t.norm+s.norm-2*m.lowRankCorrelation(k, t, s, pi, &work), 0)
					continue
				}
				ps := buf[:len(s.dense.Data)]
				gather(ps, s.dense.Data, 0, pi.offsetTables(s.dense.Shape, m.axes[k], -1))
				for x, v := range t.dense.Data {
					d := float64(v) - float64(ps[x])
					sum += d * d
				}
			}
			sums[lo+p] = pr.w * sum
		}
	})
	total := 0.0
	for _, s := range sums {
		total += s
	}
	return total
}

// lowRankCorrelation returns <t, pi(s)> for parameter k of a pair where t or s is low rank.
func (m *Matcher) lowRankCorrelation(k int, t, s operand, pi Perm, work *[]float32) float64 {
	shape := t.shape()
	tabs := pi.offsetTables(shape, m.axes[k], -1)
	rows, cols := make([]int, shape[0]), tabs[1]
	for i, off := range tabs[0] {
		rows[i] = off / max(shape[1], 1)
	}
	if t.lr != nil && s.lr != nil {
		return lowRankDot(t.lr, s.lr, rows, cols, work)
	}
	// One side dense: expand the low-rank side row by row.
	sum := 0.0
	row := make([]float64, shape[1])
	for i := 0; i < shape[0]; i++ {
		if t.lr != nil {
			t.lr.row(i, nil, row)
			src := s.dense.Data[rows[i]*shape[1]:]
			for j, v := range row {
				sum += v * float64(src[cols[j]])
			}
			continue
		}
		s.lr.row(rows[i], cols, row)
		for j, v := range t.dense.Data[i*shape[1] : (i+1)*shape[1]] {
			sum += float64(v) * row[j]
		}
	}
	return sum
}
