package align

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

// naiveScore computes the score matrix of group g element by element: for every member
// (P, axis, block) and every element of the target tensor at axis position l = i*block+r, it
// multiplies by the element of the source (with the other groups permuted by pi and group g
// left alone) at the same position but axis position j*block+r.
//
// It also returns the same sum over the absolute values of the products, which bounds the
// rounding error of computing the entries in float32 (see TestBuildScoreMatchesNaive).
func naiveScore(t *testing.T, s Spec, g int, pi Perm, pairs []weightedPair) (score, abs []float64) {
	t.Helper()
	n := s.Groups[g].Size
	others := pi.clone()
	for i := range others[g] {
		others[g][i] = i
	}
	score, abs = make([]float64, n*n), make([]float64, n*n)
	for _, p := range pairs {
		ps := mustApply(t, others, s, p.source)
		for _, m := range s.Groups[g].Members {
			tt, ss := p.target[m.Param], ps[m.Param]
			st := strides(tt.Shape)
			for e, v := range tt.Data {
				l := (e / st[m.Axis]) % tt.Shape[m.Axis]
				i, r := l/m.Block, l%m.Block
				base := e - l*st[m.Axis]
				for j := 0; j < n; j++ {
					x := p.w * float64(v) * float64(ss.Data[base+(j*m.Block+r)*st[m.Axis]])
					score[i*n+j] += x
					abs[i*n+j] += math.Abs(x)
				}
			}
		}
	}
	return score, abs
}

// randLowRank returns a random rank-r matrix of the given shape, held as factors.
func randLowRank(rng *rand.Rand, rows, cols, r int) *LowRank {
	l := &LowRank{Shape: []int{rows, cols}, Rank: r, U: make([]float32, r*rows), V: make([]float32, r*cols)}
	for _, f := range [][]float32{l.U, l.V} {
		for i := range f {
			f[i] = float32(rng.NormFloat64())
		}
	}
	return l
}

// absDense returns |U|^T |V|, the elementwise bound of the products that make up U^T V.
func absDense(l *LowRank) *params.Tensor {
	a := &LowRank{Shape: l.Shape, Rank: l.Rank, U: make([]float32, len(l.U)), V: make([]float32, len(l.V))}
	for i, v := range l.U {
		a.U[i] = float32(math.Abs(float64(v)))
	}
	for i, v := range l.V {
		a.V[i] = float32(math.Abs(float64(v)))
	}
	return a.Dense()
}

// TestBuildScoreMatchesNaive compares buildScore with naiveScore on dense and low-rank operands,
// with the workspace sizes forced small so that several panels, row blocks and inner chunks are
// used. The products are float32: each entry is a sum of float32 dot products of at most
// min(chunkCols, panel columns) terms (here at most 400: 4 pairs of at most 82 columns), and
// for factored members of two more float32 products whose lengths are the other axis and the
// rank (at most 64 together). The rounding error of a float32 sum of L products is at most about
// L*2^-24 times the sum of their absolute values, so we allow twice that with L = 400+64 (for
// low-rank operands the absolute sum is taken over the expanded |U|^T |V|, which bounds the
// factored products' terms).
func TestBuildScoreMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	// A spec mixing a 4-D conv weight permuted on both channel axes by different groups, a
	// Flatten block member and odd sizes (exercising the kernel's edges).
	s := Spec{Groups: []Group{
		{Name: "c1", Size: 5, Members: []Member{{Param: "K1", Axis: 0, Block: 1}, {Param: "k1", Axis: 0, Block: 1}, {Param: "K2", Axis: 1, Block: 1}}},
		{Name: "c2", Size: 7, Members: []Member{{Param: "K2", Axis: 0, Block: 1}, {Param: "D", Axis: 1, Block: 6}}},
		{Name: "h", Size: 3, Members: []Member{{Param: "D", Axis: 0, Block: 1}, {Param: "E", Axis: 1, Block: 1}, {Param: "F", Axis: 0, Block: 1}}},
	}}
	mk := func() params.Set {
		return params.Set{
			"K1": randTensor(rng, 5, 2, 3, 3),
			"k1": randTensor(rng, 5),
			"K2": randTensor(rng, 7, 5, 3, 3),
			"D":  randTensor(rng, 3, 42),
			"E":  randTensor(rng, 4, 3),
			"F":  randTensor(rng, 3, 40),
		}
	}
	// Low-rank operands: D (rank 2 < 3 rows, factored with block 6 and its rows permuted by h
	// for the c2 member), F (rank 2 < 40 columns: factored), E (rank 5 >= both sides: expanded).
	lowRank := func() map[string]*LowRank {
		return map[string]*LowRank{"D": randLowRank(rng, 3, 42, 2), "E": randLowRank(rng, 4, 3, 5), "F": randLowRank(rng, 3, 40, 2)}
	}
	dense := func(o Operand) params.Set {
		p := params.Set{}
		for k, v := range o.Params {
			p[k] = v
		}
		for k, v := range o.LowRank {
			p[k] = v.Dense()
		}
		return p
	}
	bound := func(o Operand) params.Set {
		p := params.Set{}
		for k, v := range o.Params {
			a := &params.Tensor{Shape: v.Shape, Data: make([]float32, len(v.Data))}
			for i, x := range v.Data {
				a.Data[i] = float32(math.Abs(float64(x)))
			}
			p[k] = a
		}
		for k, v := range o.LowRank {
			p[k] = absDense(v)
		}
		return p
	}
	split := func(p params.Set, low map[string]*LowRank) Operand {
		o := Operand{Params: params.Set{}, LowRank: low}
		for k, v := range p {
			if low[k] == nil {
				o.Params[k] = v
			}
		}
		return o
	}
	type opPair struct {
		w              float64
		target, source Operand
	}
	pairs := []opPair{
		{1, split(mk(), nil), split(mk(), nil)},
		{0.25, split(mk(), lowRank()), split(mk(), lowRank())}, // factored
		{3, split(mk(), lowRank()), split(mk(), nil)},          // low rank against dense: expanded
		{0.25, split(mk(), lowRank()), split(mk(), lowRank())}, // back to the weight of pair 1
	}
	var exact, abs []weightedPair
	for _, p := range pairs {
		exact = append(exact, weightedPair{p.w, dense(p.target), dense(p.source)})
		abs = append(abs, weightedPair{p.w, bound(p.target), bound(p.source)})
	}
	saved := []int{panelElems, blockElems, chunkCols}
	defer func() { panelElems, blockElems, chunkCols = saved[0], saved[1], saved[2] }()
	for _, sizes := range [][3]int{{1 << 22, 1 << 21, 1024}, {1, 1, 7}, {60, 20, 3}} {
		panelElems, blockElems, chunkCols = sizes[0], sizes[1], sizes[2]
		m := NewMatcher(s, MatcherOptions{})
		for _, p := range pairs {
			if err := m.AddOperands(p.w, p.target, p.source); err != nil {
				t.Fatal(err)
			}
		}
		for trial := 0; trial < 3; trial++ {
			pi := Random(s, rng)
			for g, gr := range s.Groups {
				// From scratch, and as the sum of two partial builds (the score cache's path).
				full := make([]float64, gr.Size*gr.Size)
				m.buildScore(g, pi, full, 0)
				parts := make([]float64, gr.Size*gr.Size)
				m.buildScore(g, pi, parts, 0)
				clear(parts)
				m.pairs = m.pairs[:2]
				m.buildScore(g, pi, parts, 0)
				m.pairs = m.pairs[:len(pairs)]
				m.buildScore(g, pi, parts, 2)
				want, _ := naiveScore(t, s, g, pi, exact)
				_, absSum := naiveScore(t, s, g, pi, abs)
				for k := range want {
					tol := 2 * float64(min(chunkCols, 400)+64) * 0x1p-24 * absSum[k]
					if math.Abs(full[k]-want[k]) > tol || math.Abs(parts[k]-want[k]) > tol {
						t.Fatalf("sizes %v group %d entry %d: got %v (in parts %v), want %v ± %v", sizes, g, k, full[k], parts[k], want[k], tol)
					}
				}
			}
		}
	}
}

// TestUpdateScoreMatchesNaive moves one group's permutation by a swap (a few moved positions:
// the update path) and by a fresh random permutation (often a build from scratch), updates
// every neighbour's score from the score under the permutation before, and compares with
// naiveScore under the permutation after. The update adds float32 products of the target with
// float32 differences of source elements, whose terms are bounded by those of the two full
// scores: the tolerance of TestBuildScoreMatchesNaive over the sum of both absolute sums. When
// the update declines, the score must be untouched.
func TestUpdateScoreMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	s := Spec{Groups: []Group{
		{Name: "c1", Size: 5, Members: []Member{{Param: "K1", Axis: 0, Block: 1}, {Param: "k1", Axis: 0, Block: 1}, {Param: "K2", Axis: 1, Block: 1}}},
		{Name: "c2", Size: 7, Members: []Member{{Param: "K2", Axis: 0, Block: 1}, {Param: "D", Axis: 1, Block: 6}}},
		{Name: "h", Size: 3, Members: []Member{{Param: "D", Axis: 0, Block: 1}, {Param: "E", Axis: 1, Block: 1}}},
	}}
	mk := func() params.Set {
		return params.Set{"K1": randTensor(rng, 5, 2, 3, 3), "k1": randTensor(rng, 5), "K2": randTensor(rng, 7, 5, 3, 3),
			"D": randTensor(rng, 3, 42), "E": randTensor(rng, 4, 3)}
	}
	var exact, abs []weightedPair
	for _, w := range []float64{1, 0.25, 3, 0.25} {
		p := weightedPair{w, mk(), mk()}
		exact = append(exact, p)
		a := weightedPair{w, params.Set{}, params.Set{}}
		for _, side := range []struct{ from, to params.Set }{{p.target, a.target}, {p.source, a.source}} {
			for k, v := range side.from {
				b := &params.Tensor{Shape: v.Shape, Data: make([]float32, len(v.Data))}
				for i, x := range v.Data {
					b.Data[i] = float32(math.Abs(float64(x)))
				}
				side.to[k] = b
			}
		}
		abs = append(abs, a)
	}
	saved := []int{panelElems, blockElems, chunkCols}
	defer func() { panelElems, blockElems, chunkCols = saved[0], saved[1], saved[2] }()
	panelElems, blockElems, chunkCols = 60, 20, 3
	m := NewMatcher(s, MatcherOptions{})
	for _, p := range exact {
		if err := m.Add(p.w, p.target, p.source); err != nil {
			t.Fatal(err)
		}
	}
	updated := 0
	for trial := 0; trial < 20; trial++ {
		before := Random(s, rng)
		after := before.clone()
		h := rng.IntN(len(s.Groups))
		if trial%2 == 0 {
			q := after[h]
			i, j := rng.IntN(len(q)), rng.IntN(len(q))
			q[i], q[j] = q[j], q[i]
		} else {
			after[h] = Random(s, rng)[h]
		}
		for g, gr := range s.Groups {
			if g == h {
				continue
			}
			n := gr.Size
			score := make([]float64, n*n)
			m.buildScore(g, before, score, 0)
			kept := append([]float64(nil), score...)
			if !m.updateScore(g, before, after, score, len(exact)) {
				if !slices.Equal(score, kept) {
					t.Fatalf("trial %d group %d: declined update changed the score", trial, g)
				}
				continue
			}
			updated++
			want, _ := naiveScore(t, s, g, after, exact)
			_, absBefore := naiveScore(t, s, g, before, abs)
			_, absAfter := naiveScore(t, s, g, after, abs)
			for k := range want {
				tol := 2 * float64(min(chunkCols, 400)+64) * 0x1p-24 * (absBefore[k] + absAfter[k])
				if math.Abs(score[k]-want[k]) > tol {
					t.Fatalf("trial %d: group %d moved by group %d: entry %d: got %v, want %v ± %v", trial, g, h, k, score[k], want[k], tol)
				}
			}
		}
	}
	if updated < 10 {
		t.Fatalf("only %d of the scores were updated, want the swaps' updates to be taken", updated)
	}
}

func TestAddABt(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	saved := []int{blockElems, chunkCols}
	defer func() { blockElems, chunkCols = saved[0], saved[1] }()
	for _, c := range []struct{ n, k, ld, block, chunk int }{
		{1, 1, 1, 1 << 21, 1024}, {3, 5, 7, 1, 2}, {6, 300, 300, 12, 64}, {37, 513, 520, 100, 1024}, {70, 3, 3, 1 << 21, 1},
	} {
		blockElems, chunkCols = c.block, c.chunk
		a, b := make([]float32, c.n*c.ld), make([]float32, c.n*c.ld)
		for i := range a {
			a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
		}
		got := make([]float64, c.n*c.n)
		for i := range got {
			got[i] = float64(i)
		}
		var work []float32
		addABt(got, 0.5, a, b, c.n, c.k, c.ld, &work)
		for i := 0; i < c.n; i++ {
			for j := 0; j < c.n; j++ {
				want, abs := 0.0, 0.0
				for x := 0; x < c.k; x++ {
					p := float64(a[i*c.ld+x]) * float64(b[j*c.ld+x])
					want += p
					abs += math.Abs(p)
				}
				want = float64(i*c.n+j) + 0.5*want
				// float32 dot products of at most min(k, chunk) terms: see TestBuildScoreMatchesNaive.
				tol := 2 * float64(min(c.k, c.chunk)) * 0x1p-24 * abs
				if d := got[i*c.n+j] - want; math.Abs(d) > tol {
					t.Fatalf("n=%d k=%d: c[%d][%d] = %v, want %v ± %v", c.n, c.k, i, j, got[i*c.n+j], want, tol)
				}
			}
		}
	}
}
