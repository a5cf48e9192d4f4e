package graph

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/params"
)

// Dropped is a group that failed the self-check: permuting it alone changed the outputs.
type Dropped struct {
	Group   string  `json:"group"`
	MaxDiff float64 `json:"max_diff"`
}

// VerifySymmetries checks the promise of a spec on the model itself: permuting groups by random
// permutations must leave the evaluation outputs on a random batch unchanged (within 1e-4
// relative to the outputs' scale). It permutes all the groups at once; when the outputs change it
// splits the groups in two halves and checks each (with new permutations), down to single groups,
// which are dropped from the returned spec (identity is always a correct symmetry) and reported;
// groups that change the outputs only together (each half passing alone) are all dropped.
// A spec whose groups are all correct costs one evaluation, and k wrong groups about 2k log2(n).
func VerifySymmetries(m *Model, spec align.Spec, seed uint64) (align.Spec, []Dropped, error) {
	s, err := NewSession(m, 8)
	if err != nil {
		return spec, nil, err
	}
	return s.VerifySymmetries(spec, seed)
}

// VerifySymmetries is VerifySymmetries of the session's model on a random batch of the
// session's size, run in the session itself (a transfer checks its spec without a second copy
// of the model and its activations). The session's parameters are the model's own afterwards.
func (s *Session) VerifySymmetries(spec align.Spec, seed uint64) (align.Spec, []Dropped, error) {
	m := s.m
	if err := s.SetParams(m.Params); err != nil {
		return spec, nil, err
	}
	defer func() { _ = s.SetParams(m.Params) }() // shapes checked above: cannot fail
	rng := rand.New(rand.NewPCG(seed, 0x7665726966))
	x := make([]float32, s.batch*s.ExampleSize())
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
	// diff returns the largest change of the outputs when the groups gs are permuted.
	diff := func(gs []int) (float64, error) {
		perm := align.Identity(spec)
		for _, g := range gs {
			perm[g] = rng.Perm(spec.Groups[g].Size)
		}
		// Permuted straight into the session's parameters: no copy of the model is made.
		if err := s.UpdateParams(func(p params.Set) error { return perm.ApplyInto(spec, p, m.Params) }); err != nil {
			return 0, fmt.Errorf("graph: %s: %w", m.Path, err)
		}
		got, err := s.Logits(x)
		if err != nil {
			return 0, err
		}
		d := 0.0
		for i := range got {
			d = math.Max(d, math.Abs(float64(got[i]-want[i])))
		}
		return d, nil
	}
	bad := map[int]float64{}
	// check finds the wrong groups among gs and reports whether there were any.
	var check func(gs []int) (bool, error)
	check = func(gs []int) (bool, error) {
		if len(gs) == 0 {
			return false, nil
		}
		d, err := diff(gs)
		if err != nil || d <= 1e-4*(1+scale) {
			return false, err
		}
		if len(gs) > 1 {
			lo, err := check(gs[:len(gs)/2])
			if err != nil {
				return false, err
			}
			hi, err := check(gs[len(gs)/2:])
			if err != nil || lo || hi {
				return true, err
			}
		}
		for _, g := range gs {
			bad[g] = d
		}
		return true, nil
	}
	all := make([]int, len(spec.Groups))
	for g := range all {
		all[g] = g
	}
	if _, err := check(all); err != nil {
		return spec, nil, err
	}
	var kept align.Spec
	var dropped []Dropped
	for g, gr := range spec.Groups {
		if d, ok := bad[g]; ok {
			dropped = append(dropped, Dropped{Group: gr.Name, MaxDiff: d})
			continue
		}
		kept.Groups = append(kept.Groups, gr)
	}
	return kept, dropped, nil
}
