package align

import (
	"fmt"
	"math"
	"slices"
)

// This file implements the dense linear assignment problem (LAP) solver.
//
// Algorithm: Jonker & Volgenant, "A shortest augmenting path algorithm for dense and sparse
// linear assignment problems", Computing 38 (1987) — "LAPJV". The solver works on the
// minimisation form with reduced costs r[i][j] = V[j] - score[i][j], where V is the vector of
// column potentials (the negated column duals of min sum -score); the implicit row dual of row i
// is u[i] = min_j r[i][j]. Every phase keeps the invariant that each assigned row is assigned to
// a column attaining its row minimum of r (complementary slackness with a feasible dual), so once
// every row is assigned the assignment is optimal.
//
// Phases of a cold solve:
//  1. Column reduction: V[j] = max_i score[i][j]; each column is offered to its best row, and a
//     row receiving exactly one column keeps it. Computed row by row so that the matrix is read
//     contiguously. When fewer than a third of the rows win a column (a few dominant rows take
//     them all), it is redone on the matrix with each row's maximum subtracted, whose potentials
//     suit every row.
//  2. Reduction transfer: a row that kept a column transfers its slack to that column's potential.
//  3. Augmenting row reduction (two passes; an auction-like step): each free row takes its best
//     column, raising that column's potential to the row's second-best value and evicting the
//     previous owner. The number of row scans is capped (n + arrScanFactor per free row), which
//     also stops floating-point price wars between near-ties; rows left over go to phase 4.
//  4. Augmentation: for each remaining free row, a Dijkstra shortest-path search over the reduced
//     costs finds an augmenting path to a free column; the potentials of the scanned columns are
//     then updated and the path is flipped. Each search step scans one whole row contiguously.
//  5. Auction, when augmentation turns out expensive: if the searches of the latest rows,
//     extrapolated to the rows left, would scan more than switchScans*n rows in all, augmentation
//     stops and Bertsekas' forward auction with ε-scaling runs from the current potentials (see
//     auction); its ε-optimal assignment is then made exact by the warm-start repair below.
//     Score matrices of gradient matching are of low rank (sums of a few hundred outer
//     products), with a few dominant rows: phases 1-3 leave most rows free and each search
//     scans hundreds of rows (about 300n scans in all at n = 4096), while the auction needs
//     10n-40n bids of one row scan each. On random matrices augmentation stays short and the
//     auction never runs.
//
// Complexity: O(n^3) time in the worst case (n augmentations of O(n^2) each); on dense random
// matrices phases 1-3 assign all but a few percent of the rows in O(n^2) time, and the total is
// far below the bound (about 20n row scans at n = 4096); with the auction, real score matrices
// of n = 4096 take about 40n row scans. Memory: O(n) workspace besides the n x n input, which is
// read only and never copied. Row scans read whole rows, so large problems are bound by memory
// bandwidth.
//
// Warm start (Assigner.Solve with the same n as the previous solve): the previous potentials V
// and assignment are kept, and one pass over the new matrix checks every row. A row whose
// previous column still attains its new row minimum keeps it; a violated row is kept too if
// lowering its column's potential can repair it without hurting any other row (see solveWarm);
// the others are freed, and phases 3 and 4 (and 5, if augmentation grows long; the auction's ε
// then starts at the largest violation) run on the freed rows only. The invariant holds for
// every kept pair, so the result is an exact optimum of the new matrix, as after a cold solve.
// The work saved grows with the number of rows whose optimal column does not move. On a uniform
// random matrix the optimal assignment reacts to changes of the order of spread/n, so a
// perturbation much larger than that (e.g. 1% of the spread at n >= 256) moves most rows, and a
// warm solve then costs about as much as a cold one (0.85x to 1.5x of its time in our
// benchmarks); with 0.01% of the spread it is 2-3x faster at n = 512..2048. Rows are also freed
// by exact ties in the previous duals (the solver leaves many), which bounds the gain for tiny
// perturbations.

// arrScanFactor caps the row scans of augmenting row reduction at n + arrScanFactor*(free rows)
// per solve. Beyond that, further scans cost more than the augmentations they save.
const arrScanFactor = 4

// Assign solves the dense linear assignment problem on the n x n matrix score (row-major,
// len(score) == n*n), MAXIMISING the total score. It returns perm with perm[i] the column
// assigned to row i, and total = sum_i score[i*n+perm[i]].
//
// Ties are broken deterministically. Negative scores are fine. For n == 0 it returns an empty
// perm and total 0. Invalid input (n < 0, len(score) != n*n, a NaN or infinite entry, or an
// entry of magnitude above MaxFloat64/(8(n+1)), where sums of differences could overflow) yields
// a nil perm and a NaN total; use AssignChecked to learn why.
//
// Assign allocates a fresh workspace per call; use an Assigner to reuse workspace and to warm
// start on a sequence of similar matrices.
func Assign(n int, score []float64) (perm []int, total float64) {
	var a Assigner
	return a.Solve(n, score)
}

// AssignChecked is Assign with an error describing invalid input instead of a nil perm.
func AssignChecked(n int, score []float64) ([]int, float64, error) {
	var a Assigner
	return a.SolveChecked(n, score)
}

// Assigner is a reusable workspace for the linear assignment solver. It keeps the column dual
// variables and the assignment of its last successful solve so that the next solve of the same
// size starts warm (see SolveChecked). The zero value is ready to use. An Assigner is not safe
// for concurrent use.
type Assigner struct {
	n      int
	warm   bool      // v, rowsol and colsol hold a complete optimal solution of size n
	v      []float64 // column potentials V[j]; reduced cost r[i][j] = V[j] - score[i][j]
	rowsol []int     // rowsol[i] = column assigned to row i
	colsol []int     // colsol[j] = row assigned to column j, or -1

	free    []int     // free rows
	d       []float64 // Dijkstra distances
	pred    []int     // Dijkstra predecessor row of each column
	scanJ   []int     // Dijkstra: columns scanned so far, in order
	scanV   []float64 // Dijkstra: their potentials before masking
	scanD   []float64 // Dijkstra: their final distances
	matches []int     // column reduction: number of columns offered to each row

	auctions int // auctions run, for tests and benchmarks
}

// Solve is like Assign but reuses the Assigner's workspace and, when n equals the size of the
// previous successful solve, warm starts from that solve's column duals and assignment. The
// result is an exact optimum either way. The returned perm is a fresh slice owned by the caller.
// Invalid input yields a nil perm and a NaN total and resets the warm state; use SolveChecked
// to learn why.
func (a *Assigner) Solve(n int, score []float64) ([]int, float64) {
	perm, total, err := a.SolveChecked(n, score)
	if err != nil {
		return nil, math.NaN()
	}
	return perm, total
}

// SolveChecked is Solve with an error describing invalid input.
func (a *Assigner) SolveChecked(n int, score []float64) ([]int, float64, error) {
	perm, total, err := a.solve(n, score)
	if err != nil {
		return nil, math.NaN(), fmt.Errorf("align: assign: %w", err)
	}
	return perm, total, nil
}

// solve is SolveChecked with errors not prefixed by the package and operation.
func (a *Assigner) solve(n int, score []float64) ([]int, float64, error) {
	if err := checkScore(n, score); err != nil {
		a.warm = false
		return nil, math.NaN(), err
	}
	switch n {
	case 0:
		a.warm = false
		return []int{}, 0, nil
	case 1:
		a.warm = false
		return []int{0}, score[0], nil
	}
	if !a.warm || a.n != n {
		a.resize(n)
		a.solveCold(score)
	} else {
		a.solveWarm(score, true)
	}
	a.warm = true
	perm := make([]int, n)
	copy(perm, a.rowsol)
	total := 0.0
	for i, j := range perm {
		total += score[i*n+j]
	}
	return perm, total, nil
}

// checkScore validates the solver input; its errors carry no package prefix.
func checkScore(n int, score []float64) error {
	if n < 0 {
		return fmt.Errorf("negative size %d", n)
	}
	if n > 0 && len(score)/n != n || len(score) != n*n {
		return fmt.Errorf("score has %d entries, want %d x %d", len(score), n, n)
	}
	// Potentials and path lengths stay within a small multiple of n*(max-min); bounding every
	// |score| by maxScore(n) keeps them finite.
	limit := maxScore(n)
	for k, x := range score {
		if x >= -limit && x <= limit {
			continue
		}
		if x-x != 0 { // NaN or ±Inf
			return fmt.Errorf("score[%d][%d] = %v is not finite", k/n, k%n, x)
		}
		return fmt.Errorf("|score[%d][%d]| = %g exceeds %g", k/n, k%n, math.Abs(x), limit)
	}
	return nil
}

// maxScore returns the largest score magnitude accepted for an n x n problem.
func maxScore(n int) float64 {
	return math.MaxFloat64 / (8 * float64(n+1))
}

// resize prepares the workspace for size n, discarding any warm state.
func (a *Assigner) resize(n int) {
	a.n = n
	a.warm = false
	if cap(a.v) < n {
		a.v = make([]float64, n)
		a.d = make([]float64, n)
		a.rowsol = make([]int, n)
		a.colsol = make([]int, n)
		a.free = make([]int, n)
		a.scanJ = make([]int, n)
		a.scanV = make([]float64, n)
		a.scanD = make([]float64, n)
		a.pred = make([]int, n)
		a.matches = make([]int, n)
	}
	a.v, a.d = a.v[:n], a.d[:n]
	a.rowsol, a.colsol = a.rowsol[:n], a.colsol[:n]
	a.free = a.free[:n]
	a.scanJ, a.scanV, a.scanD = a.scanJ[:n], a.scanV[:n], a.scanD[:n]
	a.pred, a.matches = a.pred[:n], a.matches[:n]
}

// solveCold runs the LAPJV phases (and the auction if needed) on an n x n matrix, n >= 2.
func (a *Assigner) solveCold(score []float64) {
	n := a.n
	v, rowsol, matches := a.v, a.rowsol, a.matches

	// Phase 1: column reduction. When few rows win a column (a few dominant rows, as in the
	// low-rank score matrices of gradient matching), the potentials they set are far from
	// optimal for every other row; reducing each row by its maximum first puts the rows on an
	// equal footing.
	a.columnReduction(score, nil)
	if countNonzero(matches)*hubDivisor < n {
		shift := a.d[:n] // scratch: the row maxima
		for i := range shift {
			shift[i] = slices.Max(score[i*n : i*n+n])
		}
		a.columnReduction(score, shift)
	}

	// Phase 2: reduction transfer.
	numfree := 0
	for i := 0; i < n; i++ {
		switch matches[i] {
		case 0:
			a.free[numfree] = i
			numfree++
		case 1:
			// Raise the potential of the row's column until it ties with its second best.
			j1 := rowsol[i]
			row := score[i*n : i*n+n]
			row = row[:len(v)]
			m := math.Inf(1)
			for j, x := range row {
				if h := v[j] - x; h < m && j != j1 {
					m = h
				}
			}
			v[j1] += m - (v[j1] - row[j1])
		}
	}

	numfree = a.augmentingRowReduction(score, numfree)
	if !a.augment(score, numfree, true) {
		a.auction(score, math.Inf(1))
		a.solveWarm(score, false)
	}
}

// hubDivisor: column reduction is redone on the row-reduced matrix when fewer than n/hubDivisor
// rows win a column (about 2n/3 do on a uniform random matrix, 10%-30% on score matrices of
// gradient matching).
const hubDivisor = 3

// columnReduction sets every column's potential to its best score (less the row's shift, when
// shift is not nil: V[j] = max_i score[i][j] - shift[i]) and offers the column to that row
// (the lowest index on ties); a row receiving exactly one column keeps it. matches counts the
// columns offered to each row. Every kept pair is tight: the column attains its row's minimum
// reduced cost V[j] - score[i][j].
func (a *Assigner) columnReduction(score, shift []float64) {
	n := a.n
	v, rowsol, colsol, matches := a.v, a.rowsol, a.colsol, a.matches
	for j := range colsol {
		colsol[j] = 0
	}
	for i := 0; i < n; i++ {
		row := score[i*n : i*n+n]
		row = row[:len(v)]
		s := 0.0
		if shift != nil {
			s = shift[i]
		}
		if i == 0 {
			for j, x := range row {
				v[j] = x - s
			}
			continue
		}
		for j, x := range row {
			if x-s > v[j] {
				v[j] = x - s
				colsol[j] = i
			}
		}
	}
	for i := range matches {
		matches[i] = 0
		rowsol[i] = -1
	}
	for j, i := range colsol {
		matches[i]++
		if matches[i] == 1 {
			rowsol[i] = j
		} else {
			colsol[j] = -1
		}
	}
}

// countNonzero returns the number of non-zero entries of x.
func countNonzero(x []int) int {
	c := 0
	for _, v := range x {
		if v != 0 {
			c++
		}
	}
	return c
}

// solveWarm re-optimises from the previous solve's potentials and assignment (same n, n >= 2).
//
// One pass over the new matrix computes, for every row i with previous column x, the violation
// delta[i] = r[i][x] - min_j r[i][j] >= 0 of complementary slackness, and for every column j the
// smallest slack e[k][j] = r[k][j] - r[k][x_k] over the rows k not assigned to j. A violated
// row i is repaired by lowering V[x] by delta[i] when delta[i] <= slack[x]: this makes x a row
// minimum of row i again without making x better than its own column for any other row, and
// several such repairs never conflict (each lowers only its own column, by at most the slack every
// other row has towards it). Rows that cannot be repaired are freed, their columns' potentials
// lowered by the same rule (by slack[x], which keeps every kept row tight), and they are
// re-assigned by augmenting row reduction and augmentation. Rows that are unassigned on entry
// (after an auction stopped early) are free from the start. With switchable, an augmentation
// phase that turns out long hands over to the auction (see augment), after which solveWarm runs
// once more without that option.
func (a *Assigner) solveWarm(score []float64, switchable bool) {
	n := a.n
	v, rowsol, colsol := a.v, a.rowsol, a.colsol
	slack := a.d[:len(v)]
	delta := a.scanD[:n]
	inf := math.Inf(1)
	for j := range slack {
		slack[j] = inf
	}
	numfree := 0
	for i := 0; i < n; i++ {
		row := score[i*n : i*n+n]
		row = row[:len(v)]
		x := rowsol[i]
		if x < 0 {
			delta[i] = 0
			a.free[numfree] = i
			numfree++
			continue
		}
		m := v[x] - row[x]
		saved := slack[x] // row i owns column x: its e[i][x] = 0 must not count
		emin := 0.0
		for j, s := range row {
			e := v[j] - s - m
			if e < slack[j] {
				slack[j] = e
			}
			if e < emin {
				emin = e
			}
		}
		slack[x] = saved
		delta[i] = -emin
	}
	for i, dl := range delta {
		if dl == 0 || rowsol[i] < 0 {
			continue
		}
		if x := rowsol[i]; dl <= slack[x] {
			v[x] -= dl
		} else {
			colsol[x] = -1
			rowsol[i] = -1
			a.free[numfree] = i
			numfree++
			// Make the freed column as cheap as the kept rows allow, which shortens the
			// searches that will end there.
			if slack[x] > 0 {
				v[x] -= slack[x]
			}
		}
	}
	if numfree == 0 {
		return
	}
	numfree = a.augmentingRowReduction(score, numfree)
	if !a.augment(score, numfree, switchable) {
		// The previous potentials were within the largest violation of optimal.
		a.auction(score, slices.Max(delta))
		a.solveWarm(score, false)
	}
}

// augmentingRowReduction runs two passes of LAPJV's augmenting row reduction over the free rows
// a.free[:numfree] and returns the new number of free rows (stored back in a.free).
func (a *Assigner) augmentingRowReduction(score []float64, numfree int) int {
	n := a.n
	v, rowsol, colsol, free := a.v, a.rowsol, a.colsol, a.free
	budget := n + arrScanFactor*numfree
	for pass := 0; pass < 2 && numfree > 0; pass++ {
		k, prvnumfree := 0, numfree
		numfree = 0
		for k < prvnumfree {
			if budget == 0 {
				// Keep the unprocessed rows free for the augmentation phase.
				numfree += copy(free[numfree:], free[k:prvnumfree])
				return numfree
			}
			budget--
			i := free[k]
			k++
			row := score[i*n : i*n+n]
			row = row[:len(v)]
			// Smallest (umin at j1) and second smallest (usubmin at j2) reduced cost of row i.
			umin, usubmin := v[0]-row[0], math.Inf(1)
			j1, j2 := 0, -1
			for j := 1; j < len(row); j++ {
				h := v[j] - row[j]
				if h < usubmin {
					if h >= umin {
						usubmin, j2 = h, j
					} else {
						usubmin, j2 = umin, j1
						umin, j1 = h, j
					}
				}
			}
			i0 := colsol[j1]
			strict := umin < usubmin
			if strict {
				// Raise column j1's potential until it ties with the row's second best column.
				v[j1] += usubmin - umin
			} else if i0 >= 0 {
				j1 = j2
				i0 = colsol[j2]
			}
			rowsol[i] = j1
			colsol[j1] = i
			if i0 >= 0 {
				rowsol[i0] = -1
				if strict {
					// Re-process the evicted row immediately.
					k--
					free[k] = i0
				} else {
					free[numfree] = i0
					numfree++
				}
			}
		}
	}
	return numfree
}

// augment assigns each row in a.free[:numfree] by a Dijkstra shortest augmenting path search,
// and reports whether it did. With switchable it gives up, leaving the remaining rows free and
// the state consistent, when the row scans of the last switchSample searches, extrapolated to
// the rows left, project a total above switchScans*n: then the auction is cheaper (see auction).
//
// Each step of the search scans the whole row of the newly reached row contiguously, relaxing
// the distances and tracking the next closest column in the same pass. A column whose distance
// is final ("scanned") is masked by setting its potential and distance to +Inf for the rest of the
// search, so the scan needs no per-column branch on its state; its true potential is kept in
// a.scanV and restored (with the dual update) when the path is found.
func (a *Assigner) augment(score []float64, numfree int, switchable bool) bool {
	n := a.n
	v, rowsol := a.v, a.rowsol
	d, pred, colsol := a.d[:len(v)], a.pred[:len(v)], a.colsol[:len(v)]
	inf := math.Inf(1)
	scans, windowStart := 0, 0
	for f := 0; f < numfree; f++ {
		if switchable && f > 0 && f%switchSample == 0 {
			// Searches grow longer as free columns run out: project with the latest rate.
			rate := (scans - windowStart) / switchSample
			if scans+rate*(numfree-f) > switchScans*n {
				return false
			}
			windowStart = scans
		}
		freerow := a.free[f]
		row := score[freerow*n : freerow*n+n]
		row = row[:len(v)]
		lowest, jmin := inf, -1
		for j, x := range row {
			dj := v[j] - x
			d[j] = dj
			pred[j] = freerow
			if dj <= lowest && (dj < lowest || colsol[j] < 0) {
				lowest, jmin = dj, j
			}
		}
		nscan := 0
		for colsol[jmin] >= 0 {
			// Column jmin is reached at its final distance lowest: mask it and scan its row.
			j1, dmin := jmin, lowest
			a.scanJ[nscan] = j1
			a.scanV[nscan] = v[j1]
			a.scanD[nscan] = dmin
			nscan++
			scans++
			i := colsol[j1]
			rowi := score[i*n : i*n+n]
			rowi = rowi[:len(v)]
			h := v[j1] - rowi[j1] - dmin
			v[j1], d[j1] = inf, inf
			lowest, jmin = inf, -1
			for j, x := range rowi {
				dj := d[j]
				if v2 := v[j] - x - h; v2 < dj {
					d[j] = v2
					pred[j] = i
					dj = v2
				}
				if dj <= lowest && (dj < lowest || colsol[j] < 0) {
					lowest, jmin = dj, j
				}
			}
		}
		// Restore and update the potentials of the scanned columns.
		for k := 0; k < nscan; k++ {
			v[a.scanJ[k]] = a.scanV[k] - (a.scanD[k] - lowest)
		}
		// Flip the augmenting path ending at the free column jmin.
		for endofpath := jmin; ; {
			i := pred[endofpath]
			colsol[endofpath] = i
			j := endofpath
			endofpath = rowsol[i]
			rowsol[i] = j
			if i == freerow {
				break
			}
		}
	}
	return true
}

// Parameters of the switch from augmentation to the auction.
const (
	// switchSample: the projection is made every switchSample augmentations.
	switchSample = 16
	// auctionTheta is the factor by which ε shrinks between auction phases.
	auctionTheta = 8
	// auctionBids bounds the bids of one auction phase, in units of n, against price wars.
	auctionBids = 256
)

// switchScans: augmentation gives up when its projected row scans exceed switchScans*n, a few
// times what the auction typically needs (10n-40n bids of one row scan each). A variable so that
// tests can force either path.
var switchScans = 24

// auction runs Bertsekas' forward auction with ε-scaling from the current potentials v, which
// act as the column prices. In each phase every row starts unassigned; an unassigned row i bids
// for its best column j1 (the largest score[i][j] - v[j]), raising v[j1] by the margin over its
// second best column plus ε, and takes j1 from its previous owner, who bids again. A phase ends
// when every row is assigned, each within ε of its best column; ε starts at a quarter of the
// score spread, or at eps0 if that is smaller (after a warm start the potentials are that close
// to optimal already), and shrinks by auctionTheta down to spread/(n*2^20). The result is an assignment
// and potentials that are optimal up to the final ε, which solveWarm then makes exact (it checks
// every row against its best column and repairs or re-assigns the few that are not tight). On
// matrices where many rows want the same columns (low-rank score matrices: a few rows with large
// slabs dominate every column) the shortest-path searches of augmentation grow long, while the
// auction's bids stay near one row scan each: 10n-40n scans in all instead of hundreds of n. A
// phase that exceeds auctionBids*n bids (a price war between near-ties) stops the auction with
// rows unassigned, which solveWarm assigns by augmentation.
func (a *Assigner) auction(score []float64, eps0 float64) {
	n := a.n
	v, rowsol, colsol := a.v, a.rowsol, a.colsol
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range score {
		lo, hi = min(lo, x), max(hi, x)
	}
	spread := hi - lo
	if !(spread > 0) {
		return // every assignment is optimal: solveWarm finishes at once
	}
	a.auctions++
	final := spread / (float64(n) * (1 << 20))
	for eps := max(min(spread/4, eps0), final); ; eps = max(eps/auctionTheta, final) {
		for i := range rowsol {
			rowsol[i], colsol[i] = -1, -1
		}
		free := a.free[:0]
		for i := n - 1; i >= 0; i-- {
			free = append(free, i)
		}
		for bids := 0; len(free) > 0; bids++ {
			if bids > auctionBids*n {
				return
			}
			i := free[len(free)-1]
			free = free[:len(free)-1]
			row := score[i*n : i*n+n]
			row = row[:len(v)]
			w1, w2, j1 := math.Inf(-1), math.Inf(-1), 0
			for j, x := range row {
				if w := x - v[j]; w > w2 {
					if w > w1 {
						w1, w2, j1 = w, w1, j
					} else {
						w2 = w
					}
				}
			}
			p := v[j1] + (w1 - w2) + eps
			if p <= v[j1] { // the raise is below the price's resolution
				p = math.Nextafter(v[j1], math.Inf(1))
			}
			v[j1] = p
			if o := colsol[j1]; o >= 0 {
				rowsol[o] = -1
				free = append(free, o)
			}
			colsol[j1], rowsol[i] = i, j1
		}
		if eps <= final {
			return
		}
	}
}
