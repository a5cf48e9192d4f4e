package align

import (
	"math"
	"math/rand/v2"
	"testing"
)

// naiveScore computes the score matrix of group g element by element: for every member
// (P, axis, block) and every element of the target tensor at axis position l = i*block+r, it
// multiplies by the element of the source (with the other groups permuted by pi and group g
// left alone) at the same position but axis position j*block+r.
func naiveScore(t *testing.T, s Spec, g int, pi Perm, pairs []weightedPair) []float64 {
	t.Helper()
	n := s.Groups[g].Size
	others := pi.clone()
	for i := range others[g] {
		others[g][i] = i
	}
	out := make([]float64, n*n)
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
					out[i*n+j] += p.w * float64(v) * float64(ss.Data[base+(j*m.Block+r)*st[m.Axis]])
				}
			}
		}
	}
	return out
}

func TestBuildScoreMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	// A spec mixing a 4-D conv weight permuted on both channel axes by different groups, a
	// Flatten block member and odd sizes (exercising the kernel's edges).
	s := Spec{Groups: []Group{
		{Name: "c1", Size: 5, Members: []Member{{"K1", 0, 1}, {"k1", 0, 1}, {"K2", 1, 1}}},
		{Name: "c2", Size: 7, Members: []Member{{"K2", 0, 1}, {"D", 1, 6}}},
		{Name: "h", Size: 3, Members: []Member{{"D", 0, 1}, {"E", 1, 1}}},
	}}
	mk := func() Params {
		return Params{
			"K1": randTensor(rng, 5, 2, 3, 3),
			"k1": randTensor(rng, 5),
			"K2": randTensor(rng, 7, 5, 3, 3),
			"D":  randTensor(rng, 3, 42),
			"E":  randTensor(rng, 4, 3),
		}
	}
	pairs := []weightedPair{{1, mk(), mk()}, {0.25, mk(), mk()}, {3, mk(), mk()}}
	for _, panel := range []int{1 << 22, 1} { // one panel; one panel per member block
		saved := panelElems
		panelElems = panel
		m := newMatcher(t, s, MatcherOptions{}, pairs)
		for trial := 0; trial < 3; trial++ {
			pi := Random(s, rng)
			var ws scoreWork
			for g, gr := range s.Groups {
				got := make([]float64, gr.Size*gr.Size)
				m.buildScore(g, pi, got, &ws)
				want := naiveScore(t, s, g, pi, pairs)
				for k := range want {
					if math.Abs(got[k]-want[k]) > 1e-9*(1+math.Abs(want[k])) {
						t.Fatalf("panel %d group %d entry %d: got %v, want %v", panel, g, k, got[k], want[k])
					}
				}
			}
		}
		panelElems = saved
	}
}

func TestAddABt(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, c := range []struct{ n, k, ld int }{{1, 1, 1}, {3, 5, 7}, {6, 300, 300}, {37, 513, 520}, {70, 3, 3}} {
		a, b := make([]float64, c.n*c.ld), make([]float64, c.n*c.ld)
		for i := range a {
			a[i], b[i] = rng.NormFloat64(), rng.NormFloat64()
		}
		got := make([]float64, c.n*c.n)
		for i := range got {
			got[i] = float64(i)
		}
		addABt(got, a, b, c.n, c.k, c.ld)
		for i := 0; i < c.n; i++ {
			for j := 0; j < c.n; j++ {
				want := float64(i*c.n + j)
				for x := 0; x < c.k; x++ {
					want += a[i*c.ld+x] * b[j*c.ld+x]
				}
				if d := got[i*c.n+j] - want; math.Abs(d) > 1e-9*(1+math.Abs(want)) {
					t.Fatalf("n=%d k=%d: c[%d][%d] = %v, want %v", c.n, c.k, i, j, got[i*c.n+j], want)
				}
			}
		}
	}
}
