package graph

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/ltransfer/ltransfer/align"
)

// Dropped is a group that failed the self-check: permuting it alone changed the outputs.
type Dropped struct {
	Group   string  `json:"group"`
	MaxDiff float64 `json:"max_diff"`
}

// VerifySymmetries checks the promise of a spec on the model itself: it permutes each group
// alone by a random permutation and compares the evaluation outputs on a random batch with the
// unpermuted model's. A group that changes an output by more than 1e-4 relative to the output's
// scale is dropped from the returned spec (identity is always a correct symmetry) and reported.
func VerifySymmetries(m *Model, spec align.Spec, seed uint64) (align.Spec, []Dropped, error) {
	const batch = 8
	s, err := NewSession(m, batch)
	if err != nil {
		return spec, nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x7665726966))
	x := make([]float32, batch*s.ExampleSize())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	want, err := s.Logits(x)
	if err != nil {
		return spec, nil, err
	}
	scale := 0.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	var kept align.Spec
	var dropped []Dropped
	for gi, g := range spec.Groups {
		perm := align.Identity(spec)
		perm[gi] = rng.Perm(g.Size)
		permuted, err := perm.Apply(spec, m.Params)
		if err != nil {
			return spec, nil, fmt.Errorf("graph: %s: group %q: %w", m.Path, g.Name, err)
		}
		if err := s.SetParams(permuted); err != nil {
			return spec, nil, err
		}
		got, err := s.Logits(x)
		if err != nil {
			return spec, nil, err
		}
		var diff float64
		for i := range got {
			diff = math.Max(diff, math.Abs(float64(got[i]-want[i])))
		}
		if diff > 1e-4*(1+scale) {
			dropped = append(dropped, Dropped{Group: g.Name, MaxDiff: diff})
			continue
		}
		kept.Groups = append(kept.Groups, g)
	}
	return kept, dropped, nil
}
