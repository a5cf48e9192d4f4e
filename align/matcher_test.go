package align

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

// weightedPair is one (w, target, source) input of a Matcher.
type weightedPair struct {
	w              float64
	target, source params.Set
}

// directObjective computes sum_p w_p ||target_p - Apply(pi, source_p)||^2 over the parameters
// named by the spec, independently of the Matcher's code path.
func directObjective(t *testing.T, s Spec, pi Perm, pairs []weightedPair) float64 {
	t.Helper()
	names := map[string]bool{}
	for _, g := range s.Groups {
		for _, m := range g.Members {
			names[m.Param] = true
		}
	}
	total := 0.0
	for _, p := range pairs {
		ps := mustApply(t, pi, s, p.source)
		for name := range names {
			for i, v := range p.target[name].Data {
				d := float64(v) - float64(ps[name].Data[i])
				total += p.w * d * d
			}
		}
	}
	return total
}

func newMatcher(t *testing.T, s Spec, opt MatcherOptions, pairs []weightedPair) *Matcher {
	t.Helper()
	m := NewMatcher(s, opt)
	for _, p := range pairs {
		if err := m.Add(p.w, p.target, p.source); err != nil {
			t.Fatal(err)
		}
	}
	if m.Len() != len(pairs) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(pairs))
	}
	return m
}

func TestMatcherRecoversPlanted(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	cases := []struct {
		name   string
		spec   Spec
		params func() params.Set
		pairs  int
	}{
		{"mlp", mlpSpec(12, 9), func() params.Set { return mlpParams(rng, 16, 12, 9, 4) }, 1},
		{"mlp-3-pairs", mlpSpec(10, 10), func() params.Set { return mlpParams(rng, 6, 10, 10, 3) }, 3},
		{"conv-block", convSpec(8), func() params.Set { return convParams(rng, 8) }, 1},
		{"offsets-repeats", segSpec(), func() params.Set { return segParams(rng) }, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for trial := 0; trial < 5; trial++ {
				planted := Random(c.spec, rng)
				var pairs []weightedPair
				for k := 0; k < c.pairs; k++ {
					src := c.params()
					pairs = append(pairs, weightedPair{float64(k + 1), mustApply(t, planted, c.spec, src), src})
				}
				m := newMatcher(t, c.spec, MatcherOptions{Seed: uint64(trial)}, pairs)
				pi, res, err := m.Solve(nil)
				if err != nil {
					t.Fatal(err)
				}
				for g := range planted {
					if !slices.Equal(pi[g], planted[g]) {
						t.Fatalf("trial %d group %d: got %v, planted %v", trial, g, pi[g], planted[g])
					}
				}
				if res.Objective != 0 || !res.Improved || res.Sweeps < 1 {
					t.Fatalf("trial %d: result %+v, want objective 0, improved", trial, res)
				}
				// Starting at the answer: nothing to improve, one sweep.
				pi2, res2, err := m.Solve(planted)
				if err != nil {
					t.Fatal(err)
				}
				if res2.Objective != 0 || res2.Improved || res2.Sweeps != 1 || !slices.Equal(pi2[0], planted[0]) {
					t.Fatalf("warm at the answer: %+v", res2)
				}
			}
		})
	}
}

func TestMatcherMonotone(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	s := mlpSpec(24, 20)
	var pairs []weightedPair
	for k := 0; k < 2; k++ {
		pairs = append(pairs, weightedPair{0.5 + float64(k), mlpParams(rng, 8, 24, 20, 5), mlpParams(rng, 8, 24, 20, 5)})
	}
	start := directObjective(t, s, Identity(s), pairs)
	full := newMatcher(t, s, MatcherOptions{Seed: 7}, pairs)
	_, final, err := full.Solve(nil)
	if err != nil {
		t.Fatal(err)
	}
	if final.Sweeps < 2 {
		t.Fatalf("expected several sweeps on random data, got %+v", final)
	}
	// Runs capped at k sweeps are prefixes of the full run (same seed), so their objectives
	// trace the objective after each sweep.
	prev := start
	for k := 1; k <= final.Sweeps; k++ {
		m := newMatcher(t, s, MatcherOptions{Seed: 7, MaxSweeps: k}, pairs)
		pi, res, err := m.Solve(nil)
		if err != nil {
			t.Fatal(err)
		}
		direct := directObjective(t, s, pi, pairs)
		if math.Abs(direct-res.Objective) > 1e-9*direct {
			t.Fatalf("sweep %d: Result.Objective %v, direct %v", k, res.Objective, direct)
		}
		if res.Objective > prev {
			t.Fatalf("objective rose from %v to %v at sweep %d", prev, res.Objective, k)
		}
		if res.Sweeps != k || !res.Improved {
			t.Fatalf("sweep %d: %+v", k, res)
		}
		prev = res.Objective
	}
	if prev != final.Objective {
		t.Fatalf("capped run ended at %v, full run at %v", prev, final.Objective)
	}
	if final.Objective >= start {
		t.Fatalf("no improvement: %v -> %v", start, final.Objective)
	}
}

func TestMatcherDeterministicAndWarmUntouched(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	s := mlpSpec(16, 12)
	pairs := []weightedPair{{1, mlpParams(rng, 5, 16, 12, 3), mlpParams(rng, 5, 16, 12, 3)}}
	warm := Random(s, rng)
	saved := warm.clone()
	m := newMatcher(t, s, MatcherOptions{Seed: 3}, pairs)
	p1, r1, err := m.Solve(warm)
	if err != nil {
		t.Fatal(err)
	}
	p2, r2, err := m.Solve(warm)
	if err != nil {
		t.Fatal(err)
	}
	if r1 != r2 || !slices.Equal(p1[0], p2[0]) || !slices.Equal(p1[1], p2[1]) {
		t.Fatalf("two solves differ: %+v vs %+v", r1, r2)
	}
	if !slices.Equal(warm[0], saved[0]) || !slices.Equal(warm[1], saved[1]) {
		t.Fatal("Solve modified warm")
	}
	if r1.Objective > directObjective(t, s, warm, pairs) {
		t.Fatal("result worse than the warm start")
	}
}

func TestMatcherErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	s := mlpSpec(4, 3)
	good := mlpParams(rng, 2, 4, 3, 2)
	nan := mlpParams(rng, 2, 4, 3, 2)
	nan["W2"].Data[5] = float32(math.NaN())
	wrongIn := mlpParams(rng, 3, 4, 3, 2)
	missing := mlpParams(rng, 2, 4, 3, 2)
	delete(missing, "b2")
	cases := []struct {
		name           string
		w              float64
		target, source params.Set
		want           string
	}{
		{"negative weight", -1, good, good, "align: matcher: add: weight -1, want finite and >= 0"},
		{"nan weight", math.NaN(), good, good, "weight NaN"},
		{"inf weight", math.Inf(1), good, good, "weight +Inf"},
		{"missing target", 1, missing, good, `align: matcher: add: target: group 1 ("h2"): member 1 (param "b2", axis 0): no such parameter`},
		{"missing source", 1, good, missing, `align: matcher: add: source: group 1 ("h2")`},
		{"shape mismatch", 1, good, wrongIn, `parameter "W1": target shape [4 2] != source shape [4 3]`},
		{"nan value", 1, good, nan, `align: matcher: add: source parameter "W2": element 5 is NaN`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := NewMatcher(s, MatcherOptions{})
			err := m.Add(c.w, c.target, c.source)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
			if m.Len() != 0 {
				t.Fatal("failed Add counted")
			}
		})
	}

	m := NewMatcher(s, MatcherOptions{})
	if _, _, err := m.Solve(nil); err == nil || !strings.Contains(err.Error(), "no pairs") {
		t.Fatalf("empty matcher: %v", err)
	}
	if err := m.Add(1, good, good); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(1, wrongIn, wrongIn); err == nil || !strings.Contains(err.Error(), "of the first pair") {
		t.Fatalf("shape differing from first pair: %v", err)
	}
	if _, _, err := m.Solve(Perm{{0, 1, 2, 3}}); err == nil || !strings.Contains(err.Error(), "align: matcher: solve: warm: has 1 groups") {
		t.Fatalf("bad warm: %v", err)
	}

	// Scores that overflow float64 are reported, not solved.
	big := params.Set{"v": {Shape: []int{2}, Data: []float32{3e38, 3e38}}}
	mo := NewMatcher(Spec{Groups: []Group{{Name: "o", Size: 2, Members: []Member{{Param: "v", Axis: 0, Block: 1}}}}}, MatcherOptions{})
	if err := mo.Add(1e300, big, big); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mo.Solve(nil); err == nil ||
		!strings.Contains(err.Error(), `align: matcher: solve: group 0 ("o"): score matrix: score[0][0] = +Inf is not finite`) {
		t.Fatalf("overflow: %v", err)
	}

	// A parameter with two axes in one group makes the subproblem quadratic: rejected.
	sq := Spec{Groups: []Group{{Name: "r", Size: 3, Members: []Member{{Param: "R", Axis: 0, Block: 1}, {Param: "R", Axis: 1, Block: 1}}}}}
	rp := params.Set{"R": randTensor(rng, 3, 3)}
	if err := sq.Validate(rp); err != nil {
		t.Fatalf("Validate should accept the spec (Apply handles it): %v", err)
	}
	mq := NewMatcher(sq, MatcherOptions{})
	if err := mq.Add(1, rp, rp); err == nil || !strings.Contains(err.Error(), `parameter "R" has two members (axis 0 offset 0, axis 1 offset 0) in the group`) {
		t.Fatalf("quadratic spec: %v", err)
	}
	if _, _, err := mq.Solve(nil); err == nil || !strings.Contains(err.Error(), "align: matcher: solve: spec:") {
		t.Fatalf("quadratic spec solve: %v", err)
	}
}

func TestMatcherEmptyGroupAndExtraParams(t *testing.T) {
	// A group without members keeps its permutation; parameters outside the spec are ignored.
	rng := rand.New(rand.NewPCG(19, 20))
	s := mlpSpec(5, 4)
	s.Groups = append(s.Groups, Group{Name: "unused", Size: 3})
	src := mlpParams(rng, 3, 5, 4, 2)
	planted := Random(s, rng)
	tgt := mustApply(t, planted, s, src)
	tgt["b3"] = randTensor(rng, 2) // differs from the source, but not in the spec
	m := newMatcher(t, s, MatcherOptions{}, []weightedPair{{1, tgt, src}})
	pi, res, err := m.Solve(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pi[2], []int{0, 1, 2}) || !slices.Equal(pi[0], planted[0]) || res.Objective != 0 {
		t.Fatalf("got %v, %+v", pi, res)
	}
}

// lowRankOperand returns o with the named 2-D parameters replaced by random rank-r factors, and
// the dense parameter set those factors expand to.
func lowRankOperand(rng *rand.Rand, p params.Set, r int, names ...string) (Operand, params.Set) {
	o := Operand{Params: params.Set{}, LowRank: map[string]*LowRank{}}
	dense := params.Set{}
	for name, t := range p {
		o.Params[name], dense[name] = t, t
	}
	for _, name := range names {
		l := randLowRank(rng, p[name].Shape[0], p[name].Shape[1], r)
		delete(o.Params, name)
		o.LowRank[name], dense[name] = l, l.Dense()
	}
	return o, dense
}

func TestMatcherLowRankMatchesDense(t *testing.T) {
	// The same pairs given dense and as low-rank factors (W2 is permuted on both axes, by h2 on
	// its rows and h1 on its columns) give the same permutation and objective, and a planted
	// permutation is recovered through the factored scores.
	// The offsets-and-repeats spec gives the factored scores members that own part of an axis.
	rng := rand.New(rand.NewPCG(41, 42))
	for trial := 0; trial < 6; trial++ {
		s, draw := mlpSpec(30, 24), func() (Operand, params.Set) {
			return lowRankOperand(rng, mlpParams(rng, 40, 30, 24, 5), 3, "W1", "W2")
		}
		if trial%2 == 1 {
			s, draw = segSpec(), func() (Operand, params.Set) { return lowRankOperand(rng, segParams(rng), 1, "R", "Wa") }
		}
		var ops [2][]Operand
		var dense [2][]params.Set
		planted := Random(s, rng)
		for k := 0; k < 3; k++ {
			src, srcDense := draw()
			tgtDense := mustApply(t, planted, s, srcDense)
			tgt := Operand{Params: params.Set{}, LowRank: map[string]*LowRank{}}
			for name := range src.Params {
				tgt.Params[name] = tgtDense[name]
			}
			for name, l := range src.LowRank {
				// Permuting rows permutes the columns of U, permuting columns those of V.
				u, v := permutedFactors(t, s, planted, name, l)
				tgt.LowRank[name] = &LowRank{Shape: l.Shape, Rank: l.Rank, U: u, V: v}
				if d := tgt.LowRank[name].Dense(); !closeData(d.Data, tgtDense[name].Data, 1e-5) {
					t.Fatalf("permuted factors of %s do not expand to the permuted matrix", name)
				}
			}
			ops[0], ops[1] = append(ops[0], tgt), append(ops[1], src)
			dense[0], dense[1] = append(dense[0], tgtDense), append(dense[1], srcDense)
		}
		mf, md := NewMatcher(s, MatcherOptions{Seed: 1}), NewMatcher(s, MatcherOptions{Seed: 1})
		for k := range ops[0] {
			if err := mf.AddOperands(float64(k+1), ops[0][k], ops[1][k]); err != nil {
				t.Fatal(err)
			}
			if err := md.Add(float64(k+1), dense[0][k], dense[1][k]); err != nil {
				t.Fatal(err)
			}
		}
		pf, rf, err := mf.Solve(nil)
		if err != nil {
			t.Fatal(err)
		}
		pd, rd, err := md.Solve(nil)
		if err != nil {
			t.Fatal(err)
		}
		for g := range planted {
			if !slices.Equal(pf[g], planted[g]) || !slices.Equal(pd[g], planted[g]) {
				t.Fatalf("trial %d group %d: factored %v, dense %v, planted %v", trial, g, pf[g], pd[g], planted[g])
			}
		}
		// The factored objective is ||T||^2 + ||S||^2 - 2<T, pi(S)> from float32 factor
		// products: zero up to their rounding relative to the norms.
		if rd.Objective != 0 || math.Abs(rf.Objective) > 1e-5*mf.scale {
			t.Fatalf("objectives: factored %v (scale %v), dense %v", rf.Objective, mf.scale, rd.Objective)
		}
	}
}

// permutedFactors returns the factors of pi applied to the low-rank parameter name.
func permutedFactors(t *testing.T, s Spec, pi Perm, name string, l *LowRank) (u, v []float32) {
	t.Helper()
	tabs := pi.offsetTables(l.Shape, s.paramAxes()[name], -1)
	u, v = make([]float32, len(l.U)), make([]float32, len(l.V))
	for r := 0; r < l.Rank; r++ {
		for i, off := range tabs[0] {
			u[r*l.Shape[0]+i] = l.U[r*l.Shape[0]+off/l.Shape[1]]
		}
		for j, off := range tabs[1] {
			v[r*l.Shape[1]+j] = l.V[r*l.Shape[1]+off]
		}
	}
	return u, v
}

// closeData reports whether a and b agree within tol relative to the largest magnitude.
func closeData(a, b []float32, tol float64) bool {
	scale := 0.0
	for _, x := range b {
		scale = max(scale, math.Abs(float64(x)))
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > tol*scale {
			return false
		}
	}
	return true
}

// TestMatcherScoreCacheBound solves one problem keeping every group's score matrix (the default
// bound) and keeping only as much as the largest group's (each build releases the other group's
// matrix): the same permutations and objective, and the matrices kept within each bound.
func TestMatcherScoreCacheBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(47, 48))
	s := mlpSpec(20, 16)
	var pairs []weightedPair
	for range 3 {
		pairs = append(pairs, weightedPair{1, mlpParams(rng, 12, 20, 16, 4), mlpParams(rng, 12, 20, 16, 4)})
	}
	saved := cacheElems
	defer func() { cacheElems = saved }()
	var perms []Perm
	var results []Result
	for _, c := range []struct{ bound, kept int }{{saved, 20*20 + 16*16}, {1, 20 * 20}} {
		cacheElems = c.bound
		m := newMatcher(t, s, MatcherOptions{Seed: 7}, pairs)
		pi, res, err := m.Solve(nil)
		if err != nil {
			t.Fatal(err)
		}
		kept := 0
		for _, sc := range m.caches {
			kept += cap(sc.score)
		}
		if kept > c.kept {
			t.Errorf("bound %d: %d score elements kept, want at most %d", c.bound, kept, c.kept)
		}
		perms, results = append(perms, pi), append(results, res)
	}
	if !slices.EqualFunc(perms[0], perms[1], slices.Equal) || math.Abs(results[0].Objective-results[1].Objective) > 1e-9*results[0].Objective {
		t.Fatalf("all kept: %v %+v; one kept: %v %+v", perms[0], results[0], perms[1], results[1])
	}
}

func TestMatcherIncrementalAndReset(t *testing.T) {
	// Solving after each added pair (the score matrix kept between solves and only the new
	// pairs summed in) gives what a fresh matcher gives on the same pairs; after Reset the
	// matcher behaves as a fresh one (its assignments warm-started).
	rng := rand.New(rand.NewPCG(43, 44))
	for _, s := range []Spec{{Groups: mlpSpec(40, 30).Groups[:1]}, mlpSpec(20, 16)} {
		var pairs []weightedPair
		for k := 0; k < 4; k++ {
			pairs = append(pairs, weightedPair{1, mlpParams(rng, 12, 40, 30, 4), mlpParams(rng, 12, 40, 30, 4)})
			if len(s.Groups) == 2 {
				pairs[k] = weightedPair{1, mlpParams(rng, 12, 20, 16, 4), mlpParams(rng, 12, 20, 16, 4)}
			}
		}
		inc := NewMatcher(s, MatcherOptions{Seed: 5})
		warm := Identity(s)
		for k, p := range pairs {
			if err := inc.Add(p.w, p.target, p.source); err != nil {
				t.Fatal(err)
			}
			got, gr, err := inc.Solve(warm)
			if err != nil {
				t.Fatal(err)
			}
			want, wr, err := newMatcher(t, s, MatcherOptions{Seed: 5}, pairs[:k+1]).Solve(warm)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, want, slices.Equal) || math.Abs(gr.Objective-wr.Objective) > 1e-9*wr.Objective {
				t.Fatalf("%d groups, %d pairs: incremental %v %+v, fresh %v %+v", len(s.Groups), k+1, got, gr, want, wr)
			}
			warm = got
		}
		inc.Reset()
		if inc.Len() != 0 {
			t.Fatal("Reset kept pairs")
		}
		last := newMatcher(t, s, MatcherOptions{Seed: 5}, pairs[2:])
		for _, p := range pairs[2:] {
			if err := inc.Add(p.w, p.target, p.source); err != nil {
				t.Fatal(err)
			}
		}
		got, _, err := inc.Solve(nil)
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := last.Solve(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("after Reset: %v, fresh %v", got, want)
		}
		if tm := inc.Timing(); tm.Score <= 0 || tm.Assign <= 0 {
			t.Fatalf("timing %+v", tm)
		}
	}
}

func TestAddOperandsErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(45, 46))
	s := mlpSpec(4, 3)
	good, _ := lowRankOperand(rng, mlpParams(rng, 2, 4, 3, 2), 2, "W2")
	both := Operand{Params: mlpParams(rng, 2, 4, 3, 2), LowRank: good.LowRank}
	badShape, _ := lowRankOperand(rng, mlpParams(rng, 2, 4, 3, 2), 2, "W2")
	badShape.LowRank["W2"] = &LowRank{Shape: []int{3, 4}, Rank: 2, U: make([]float32, 5), V: make([]float32, 8)}
	nan, _ := lowRankOperand(rng, mlpParams(rng, 2, 4, 3, 2), 2, "W2")
	nan.LowRank["W2"].V[3] = float32(math.Inf(1))
	for _, c := range []struct {
		name   string
		source Operand
		want   string
	}{
		{"both", both, `source: group 0 ("h1"): member 2 (param "W2", axis 1): given both dense and low rank`},
		{"factor sizes", badShape, "factors have 5 and 8 values, want 6 and 8"},
		{"non-finite", nan, `source parameter "W2": factor V element 3 is +Inf`},
	} {
		m := NewMatcher(s, MatcherOptions{})
		if err := m.AddOperands(1, good, c.source); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

func TestObjectiveLowRankForms(t *testing.T) {
	// The matching objective of a pair is the same whichever side is held as factors (computed
	// on the factors, or by expanding the low-rank side against the dense one), up to the
	// float32 rounding of the factor products relative to the norms.
	rng := rand.New(rand.NewPCG(47, 48))
	s := mlpSpec(12, 9)
	to, td := lowRankOperand(rng, mlpParams(rng, 10, 12, 9, 3), 2, "W1", "W2")
	so, sd := lowRankOperand(rng, mlpParams(rng, 10, 12, 9, 3), 3, "W1", "W2")
	dense := func(p params.Set) Operand { return Operand{Params: p} }
	for trial := 0; trial < 3; trial++ {
		pi := Random(s, rng)
		want := directObjective(t, s, pi, []weightedPair{{2, td, sd}})
		for _, c := range []struct {
			name           string
			target, source Operand
		}{{"factored", to, so}, {"target factored", to, dense(sd)}, {"source factored", dense(td), so}} {
			m := NewMatcher(s, MatcherOptions{})
			if err := m.AddOperands(2, c.target, c.source); err != nil {
				t.Fatal(err)
			}
			if got := m.objective(pi); math.Abs(got-want) > 1e-5*m.scale {
				t.Errorf("%s: objective %v, direct %v", c.name, got, want)
			}
		}
	}
}
