package convert

import (
	"fmt"
	"math"
	"slices"

	"github.com/ltransfer/ltransfer/align"
)

// clone returns a deep copy of p.
func clone(p align.Params) align.Params {
	out := make(align.Params, len(p))
	for name, t := range p {
		out[name] = &align.Tensor{Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
	}
	return out
}

// combine returns a + s*(b - c) elementwise over the parameters of a (b and c must hold them
// with the same shapes); it computes in float64 and rounds once.
func combine(a align.Params, s float64, b, c align.Params) (align.Params, error) {
	out := make(align.Params, len(a))
	for name, ta := range a {
		tb, tc := b[name], c[name]
		if tb == nil || tc == nil || len(tb.Data) != len(ta.Data) || len(tc.Data) != len(ta.Data) {
			return nil, fmt.Errorf("convert: parameter %q is missing or has another size", name)
		}
		d := make([]float32, len(ta.Data))
		for i := range d {
			d[i] = float32(float64(ta.Data[i]) + s*(float64(tb.Data[i])-float64(tc.Data[i])))
		}
		out[name] = &align.Tensor{Shape: slices.Clone(ta.Shape), Data: d}
	}
	return out, nil
}

// diff returns b - c over the parameters of b.
func diff(b, c align.Params) (align.Params, error) {
	return combine(zeros(b), 1, b, c)
}

// zeros returns zero tensors shaped like p.
func zeros(p align.Params) align.Params {
	out := make(align.Params, len(p))
	for n, t := range p {
		out[n] = &align.Tensor{Shape: slices.Clone(t.Shape), Data: make([]float32, len(t.Data))}
	}
	return out
}

// subset returns the parameters of p named in names (sharing their tensors).
func subset(p align.Params, names []string) align.Params {
	out := make(align.Params, len(names))
	for _, n := range names {
		out[n] = p[n]
	}
	return out
}

// addInto adds s*b to a in place.
func addInto(a align.Params, s float32, b align.Params) {
	for name, t := range a {
		for i, v := range b[name].Data {
			t.Data[i] += s * v
		}
	}
}

// checkFinite returns an error naming the first parameter with a NaN or infinite value.
func checkFinite(p align.Params, names []string, where string) error {
	for _, n := range names {
		for i, v := range p[n].Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("convert: %s: parameter %q has the non-finite value %v at index %d", where, n, v, i)
			}
		}
	}
	return nil
}

// restrict returns the spec with only the members whose parameter is in keep: the groups (and so
// the meaning of a Perm) stay the same.
func restrict(s align.Spec, keep []string) align.Spec {
	var out align.Spec
	for _, g := range s.Groups {
		ng := align.Group{Name: g.Name, Size: g.Size}
		for _, m := range g.Members {
			if slices.Contains(keep, m.Param) {
				ng.Members = append(ng.Members, m)
			}
		}
		out.Groups = append(out.Groups, ng)
	}
	return out
}
