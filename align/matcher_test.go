package align

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// weightedPair is one (w, target, source) input of a Matcher.
type weightedPair struct {
	w              float64
	target, source Params
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
		params func() Params
		pairs  int
	}{
		{"mlp", mlpSpec(12, 9), func() Params { return mlpParams(rng, 16, 12, 9, 4) }, 1},
		{"mlp-3-pairs", mlpSpec(10, 10), func() Params { return mlpParams(rng, 6, 10, 10, 3) }, 3},
		{"conv-block", convSpec(8), func() Params { return convParams(rng, 8) }, 1},
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
		target, source Params
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
	big := Params{"v": {Shape: []int{2}, Data: []float32{3e38, 3e38}}}
	mo := NewMatcher(Spec{Groups: []Group{{Name: "o", Size: 2, Members: []Member{{"v", 0, 1}}}}}, MatcherOptions{})
	if err := mo.Add(1e300, big, big); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mo.Solve(nil); err == nil ||
		!strings.Contains(err.Error(), `align: matcher: solve: group 0 ("o"): score matrix: score[0][0] = +Inf is not finite`) {
		t.Fatalf("overflow: %v", err)
	}

	// A parameter with two axes in one group makes the subproblem quadratic: rejected.
	sq := Spec{Groups: []Group{{Name: "r", Size: 3, Members: []Member{{"R", 0, 1}, {"R", 1, 1}}}}}
	rp := Params{"R": randTensor(rng, 3, 3)}
	if err := sq.Validate(rp); err != nil {
		t.Fatalf("Validate should accept the spec (Apply handles it): %v", err)
	}
	mq := NewMatcher(sq, MatcherOptions{})
	if err := mq.Add(1, rp, rp); err == nil || !strings.Contains(err.Error(), `parameter "R" has axes 0 and 1 in the group`) {
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
