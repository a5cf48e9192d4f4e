package align

import (
	"runtime"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Sizes of buildScore's workspace, in float32 elements; variables so that tests can force the
// edge cases (several panels, several row blocks, several inner chunks).
var (
	// panelElems bounds each of the two slab panels (per panel 2 Mi elements, 8 MiB), unless a
	// single member's columns are wider.
	panelElems = 1 << 21
	// blockElems bounds the float32 row block of the product before it is added to the score
	// (1 Mi elements, 4 MiB).
	blockElems = 1 << 20
	// chunkCols bounds the inner dimension of one float32 product: longer dot products are
	// split and the parts summed in float64, which bounds the float32 rounding error.
	chunkCols = 1024
	// cacheElems bounds the score matrices a Matcher keeps (see Matcher.score), in float64
	// elements (8 Mi, 64 MiB), unless the largest group's alone is bigger.
	cacheElems = 1 << 23
)

// scoreWork is the reusable workspace of buildScore.
type scoreWork struct {
	a, b   []float32 // slab panels, n x ld
	c      []float32 // one row block of a b^T
	k, mk  []float32 // factored scores: V_t V_s'^T and K U_s
	perm   []float32 // V_s with its columns permuted
	row    []float64 // one expanded row of a low-rank operand
	others []int     // index map of a low-rank operand's other axis
}

// buildScore adds to s (Size x Size, row-major) the score matrix of group g over the pairs
// m.pairs[from:] under the current permutation pi of the other groups:
//
//	s[i][j] += sum_pairs w * sum_{members (P, axis, block) of g} <T_P[i], P'_P[j]>
//
// where T_P[i] is the slab of the target tensor P at the positions of element i on the member
// axis (i*block..i*block+block-1 without offset or repeat; see Member), all other axes included,
// flattened,, and P'_P[j] is the same slab of the source
// tensor after the current permutations of the OTHER axes of P (which belong to other groups)
// are applied; pi[g] itself is not applied. Then sum_i s[i][pi_g[i]] is the part of the
// correlation sum_pairs w <T, pi(S)> that depends on pi_g, so maximising it over pi_g minimises
// the objective over pi_g.
//
// Each member of each pair contributes columns to two float32 panels A and B (Size rows each):
// a dense member its slabs, a factored low-rank member (see AddOperands) the rows of U_t and of
// (V_t V_s'^T) U_s, block position by block position. Full panels, and panels before the pair
// weight changes, are flushed with s += w A B^T: float32 products through gonum's BLAS (OpenBLAS
// in the openblas build) over inner chunks of at most chunkCols columns, each added to s in
// float64.
func (m *Matcher) buildScore(g int, pi Perm, s []float64, from int) {
	n := m.spec.Groups[g].Size
	mems := m.members[g]
	m.panelSum(s, n, m.pairs[from:], len(mems), func(pr pair, k int) int {
		cols, _ := m.memberCols(pr, mems[k], n)
		return cols
	}, func(pr pair, k int, a, b []float32, ld, col int) {
		if _, factored := m.memberCols(pr, mems[k], n); factored {
			m.factoredSlabs(pr, mems[k], pi, n, a, b, ld, col)
		} else {
			m.denseSlabs(pr, mems[k], pi, n, a, b, ld, col)
		}
	})
}

// panelSum adds to s (n x n) the products w A B^T of panel columns: every pair contributes
// cols(pr, k) columns for each of its items k < items, written by fill into columns col.. of
// the panels a and b (row stride ld). Full panels, and panels before the pair weight changes,
// are flushed with addABt; pairs of weight 0 are skipped.
func (m *Matcher) panelSum(s []float64, n int, pairs []pair, items int, cols func(pr pair, k int) int, fill func(pr pair, k int, a, b []float32, ld, col int)) {
	total, widest := 0, 0
	for _, pr := range pairs {
		for k := range items {
			c := cols(pr, k)
			total += c
			widest = max(widest, c)
		}
	}
	ld := min(total, max(widest, panelElems/max(n, 1)))
	if ld == 0 {
		return
	}
	ws := &m.work
	a, b := grow(&ws.a, n*ld), grow(&ws.b, n*ld)
	col, w := 0, 0.0
	for _, pr := range pairs {
		if pr.w == 0 {
			continue
		}
		for k := range items {
			c := cols(pr, k)
			if c == 0 {
				continue
			}
			if col > 0 && (col+c > ld || pr.w != w) {
				addABt(s, w, a, b, n, col, ld, &ws.c)
				col = 0
			}
			w = pr.w
			fill(pr, k, a, b, ld, col)
			col += c
		}
	}
	if col > 0 {
		addABt(s, w, a, b, n, col, ld, &ws.c)
	}
}

// moved is a member whose score changes between two permutations through one other axis of its
// parameter: the positions of that axis whose source moved, and the gather tables before and
// after.
type moved struct {
	mem            memberRef
	axis           int
	positions      []int
	target, before [][]int // the target's tables and the source's before
	after          [][]int
}

// updateScore brings s, the score of group g over the pairs m.pairs[:upto] under old, to the
// score under pi, and reports whether it did: the permutations may differ only in groups that
// permute other axes of g's parameters. A member whose parameter has exactly one such axis
// with moved positions D changes by
//
//	sum_{x in D} T[i, x] (S[j, after(x)] - S[j, before(x)])
//
// (other axes as in buildScore), products over |D|/len(axis) of the member's columns; members
// with no moved axis do not change. When that is not the cheaper way, it returns false with s
// untouched: a member has two moved axes or a low-rank side, or the moved columns are more than
// half of a full build's (three gathers per column instead of two, and a full build also
// clears the rounding the updates accumulate).
func (m *Matcher) updateScore(g int, old, pi Perm, s []float64, upto int) bool {
	n := m.spec.Groups[g].Size
	pairs := m.pairs[:upto]
	var moves []moved
	full, cols := 0, 0
	for _, mem := range m.members[g] {
		for _, pr := range pairs {
			c, _ := m.memberCols(pr, mem, n)
			full += c
		}
		shape := m.shapes[mem.param]
		before := old.offsetTables(shape, m.axes[mem.param], mem.axis)
		after := pi.offsetTables(shape, m.axes[mem.param], mem.axis)
		mv := moved{mem: mem, axis: -1, before: before, after: after}
		for d := range shape {
			if slices.Equal(before[d], after[d]) {
				continue
			}
			if mv.axis >= 0 {
				return false
			}
			mv.axis = d
			for x := range before[d] {
				if before[d][x] != after[d][x] {
					mv.positions = append(mv.positions, x)
				}
			}
		}
		if mv.axis < 0 {
			continue
		}
		for _, pr := range pairs {
			if pr.target[mem.param].dense == nil || pr.source[mem.param].dense == nil {
				return false
			}
		}
		mv.target = identityTables(shape)
		cols += len(pairs) * m.movedCols(mv, n)
		moves = append(moves, mv)
	}
	if 2*cols > full {
		return false
	}
	m.panelSum(s, n, pairs, len(moves), func(_ pair, k int) int { return m.movedCols(moves[k], n) },
		func(pr pair, k int, a, b []float32, ld, col int) { m.movedSlabs(pr, moves[k], n, a, b, ld, col) })
	return true
}

// movedCols returns the number of panel columns of a moved member: its slab columns at the moved
// positions only.
func (m *Matcher) movedCols(mv moved, n int) int {
	shape := m.shapes[mv.mem.param]
	size := 1
	for _, d := range shape {
		size *= d
	}
	if n == 0 || size == 0 {
		return 0
	}
	return mv.mem.repeat * mv.mem.block * len(mv.positions) * (size / (shape[mv.mem.axis] * shape[mv.axis]))
}

// movedSlabs writes the columns of a moved member into columns col.. of the panels: for group
// element i, copy-and-block index r and moved position x, row i of A takes the target's slab at
// (member axis mem.pos(n, i, r), moved axis x) and row i of B the source's slab there after the
// move less the one before, each over the parameter's other axes.
func (m *Matcher) movedSlabs(pr pair, mv moved, n int, a, b []float32, ld, col int) {
	t, src := pr.target[mv.mem.param].dense.Data, pr.source[mv.mem.param].dense.Data
	rest := func(tabs [][]int) [][]int {
		var out [][]int
		for d, tab := range tabs {
			if d != mv.mem.axis && d != mv.axis {
				out = append(out, tab)
			}
		}
		return out
	}
	outerT, runT := runs(rest(mv.target))
	outerS, runS := runs(rest(mv.after))
	inner := m.movedCols(mv, n) / (mv.mem.repeat * mv.mem.block * len(mv.positions))
	copies := mv.mem.repeat * mv.mem.block
	parallelRows(n, copies*len(mv.positions)*inner, func(lo, hi int) {
		prev := make([]float32, inner)
		for i := lo; i < hi; i++ {
			for r := 0; r < copies; r++ {
				p := mv.mem.pos(n, i, r)
				for xi, x := range mv.positions {
					at := i*ld + col + (r*len(mv.positions)+xi)*inner
					gatherRuns(a[at:at+inner], t, mv.target[mv.mem.axis][p]+mv.target[mv.axis][x], outerT, runT)
					dst := b[at : at+inner]
					gatherRuns(dst, src, mv.after[mv.mem.axis][p]+mv.after[mv.axis][x], outerS, runS)
					gatherRuns(prev, src, mv.before[mv.mem.axis][p]+mv.before[mv.axis][x], outerS, runS)
					for y, v := range prev {
						dst[y] -= v
					}
				}
			}
		}
	})
}

// memberCols returns the number of panel columns the member contributes for the pair, and
// whether it is scored in factored form: both sides low rank, with the target's rank below the
// length of the parameter's other axis (then block*rank columns replace block*length).
func (m *Matcher) memberCols(pr pair, mem memberRef, n int) (int, bool) {
	t, s := pr.target[mem.param], pr.source[mem.param]
	shape := t.shape()
	size := 1
	for _, d := range shape {
		size *= d
	}
	if n == 0 || size == 0 {
		return 0, false
	}
	if t.lr != nil && s.lr != nil && t.lr.Rank < shape[1-mem.axis] {
		return mem.repeat * mem.block * t.lr.Rank, true
	}
	return mem.repeat * mem.block * (size / shape[mem.axis]), false
}

// denseSlabs writes the member's slabs of the pair into columns col.. of the panels: for group
// element i and copy-and-block index r (see axisPerm.pos), the slab at axis position
// mem.pos(n, i, r) fills columns col+r*rest..col+r*rest+rest-1 of row i (rest = slab length). A
// low-rank side is expanded row by row.
func (m *Matcher) denseSlabs(pr pair, mem memberRef, pi Perm, n int, a, b []float32, ld, col int) {
	t, src := pr.target[mem.param], pr.source[mem.param]
	shape := t.shape()
	size := 1
	for _, d := range shape {
		size *= d
	}
	rest := size / shape[mem.axis]
	tabsT := identityTables(shape)
	tabsS := pi.offsetTables(shape, m.axes[mem.param], mem.axis)
	without := func(tabs [][]int) [][]int {
		return append(append([][]int(nil), tabs[:mem.axis]...), tabs[mem.axis+1:]...)
	}
	for _, side := range []struct {
		o     operand
		tabs  [][]int
		panel []float32
	}{{t, tabsT, a}, {src, tabsS, b}} {
		other := without(side.tabs)
		if side.o.dense != nil {
			outer, run := runs(other)
			parallelRows(n, rest*mem.repeat*mem.block, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					for r := 0; r < mem.repeat*mem.block; r++ {
						at := i*ld + col + r*rest
						gatherRuns(side.panel[at:at+rest], side.o.dense.Data, side.tabs[mem.axis][mem.pos(n, i, r)], outer, run)
					}
				}
			})
			continue
		}
		lr, idx := m.oriented(side.o.lr, mem.axis, other[0])
		row := grow(&m.work.row, rest)
		for i := 0; i < n; i++ {
			for r := 0; r < mem.repeat*mem.block; r++ {
				at := i*ld + col + r*rest
				lr.row(mem.pos(n, i, r), idx, row) // the member axis itself is never permuted here
				for x, v := range row {
					side.panel[at+x] = float32(v)
				}
			}
		}
	}
}

// oriented returns the low-rank operand with the member axis as its rows (transposed for a
// member on axis 1), and the column index map of its other axis from that axis' offset table.
func (m *Matcher) oriented(l *LowRank, axis int, otherTab []int) (*LowRank, []int) {
	stride := 1
	if axis == 1 {
		l, stride = l.transposed(), l.Shape[1]
	}
	idx := grow(&m.work.others, len(otherTab))
	for x, off := range otherTab {
		idx[x] = off / stride
	}
	return l, idx
}

// factoredSlabs writes the factored columns of a low-rank member into columns col.. of the
// panels. With the member axis as rows, T = U_t^T V_t and S' = U_s^T V_s' (the other axis
// permuted), <T[p], S'[q]> = sum_t U_t[t][p] M[t][q] with M = (V_t V_s'^T) U_s; for group element
// i and block position r, row i of A takes U_t[.][i*block+r] and row i of B takes
// M[.][i*block+r], in columns col+r*rank..col+r*rank+rank-1.
func (m *Matcher) factoredSlabs(pr pair, mem memberRef, pi Perm, n int, a, b []float32, ld, col int) {
	shape := pr.target[mem.param].shape()
	tabs := pi.offsetTables(shape, m.axes[mem.param], mem.axis)
	t, _ := m.oriented(pr.target[mem.param].lr, mem.axis, tabs[1-mem.axis])
	s, idx := m.oriented(pr.source[mem.param].lr, mem.axis, tabs[1-mem.axis])
	rows, width := t.Shape[0], t.Shape[1]
	vs := s.V
	identity := true
	for x, c := range idx {
		identity = identity && x == c
	}
	if !identity {
		vs = grow(&m.work.perm, s.Rank*width)
		for u := 0; u < s.Rank; u++ {
			src, dst := s.V[u*width:u*width+width], vs[u*width:u*width+width]
			for x, c := range idx {
				dst[x] = src[c]
			}
		}
	}
	rt, rs := t.Rank, s.Rank
	k := grow(&m.work.k, rt*rs)
	mk := grow(&m.work.mk, rt*rows)
	impl := blas32.Implementation()
	if rs > 0 && width > 0 {
		impl.Sgemm(blas.NoTrans, blas.Trans, rt, rs, width, 1, t.V, width, vs, width, 0, k, rs)
		impl.Sgemm(blas.NoTrans, blas.NoTrans, rt, rows, rs, 1, k, rs, s.U, rows, 0, mk, rows)
	} else {
		clear(mk)
	}
	for tt := 0; tt < rt; tt++ {
		u, v := t.U[tt*rows:(tt+1)*rows], mk[tt*rows:(tt+1)*rows]
		for i := 0; i < n; i++ {
			for r := 0; r < mem.repeat*mem.block; r++ {
				p, at := mem.pos(n, i, r), i*ld+col+r*rt+tt
				a[at], b[at] = u[p], v[p]
			}
		}
	}
}

// addABt adds w a b^T to s: s[i*n+j] += w * sum_{t<k} a[i*ld+t] * b[j*ld+t], for n x k panels a
// and b with row stride ld. The products are float32 matrix products over inner chunks of at most
// chunkCols columns, computed for blocks of rows into c (grown as needed) and then added to s in
// float64, shared out to GOMAXPROCS goroutines.
func addABt(s []float64, w float64, a, b []float32, n, k, ld int, c *[]float32) {
	rowsPer := max(1, min(n, blockElems/n))
	cb := grow(c, rowsPer*n)
	impl := blas32.Implementation()
	for i0 := 0; i0 < n; i0 += rowsPer {
		rows := min(rowsPer, n-i0)
		for k0 := 0; k0 < k; k0 += chunkCols {
			kc := min(chunkCols, k-k0)
			impl.Sgemm(blas.NoTrans, blas.Trans, rows, n, kc, 1, a[i0*ld+k0:], ld, b[k0:], ld, 0, cb, n)
			addScaled(s[i0*n:(i0+rows)*n], w, cb[:rows*n])
		}
	}
}

// parallelRows calls rows(lo, hi) on consecutive ranges covering 0..n-1, shared out to
// GOMAXPROCS goroutines when the n rows of width elements are enough work.
func parallelRows(n, width int, rows func(lo, hi int)) {
	const minPerWorker = 1 << 15
	workers := min(runtime.GOMAXPROCS(0), n, n*width/minPerWorker)
	if workers <= 1 {
		rows(0, n)
		return
	}
	per := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		wg.Go(func() { rows(lo, min(lo+per, n)) })
	}
	wg.Wait()
}

// addScaled adds w*x to dst in float64, in parallel for long slices.
func addScaled(dst []float64, w float64, x []float32) {
	const minPerWorker = 1 << 16
	workers := min(runtime.GOMAXPROCS(0), len(dst)/minPerWorker)
	if workers <= 1 {
		for i, v := range x {
			dst[i] += w * float64(v)
		}
		return
	}
	per := (len(dst) + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < len(dst); lo += per {
		hi := min(lo+per, len(dst))
		wg.Go(func() {
			d, v := dst[lo:hi], x[lo:hi]
			for i, y := range v {
				d[i] += w * float64(y)
			}
		})
	}
	wg.Wait()
}
