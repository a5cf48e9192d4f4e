package convert

import (
	"fmt"
	"slices"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/params"
)

// combine returns a + s*(b - c) elementwise over the parameters of a (b and c must hold them
// with the same shapes); it computes in float64 and rounds once.
func combine(a params.Set, s float64, b, c params.Set) (params.Set, error) {
	out := make(params.Set, len(a))
	for name, ta := range a {
		tb, tc := b[name], c[name]
		if tb == nil || tc == nil || len(tb.Data) != len(ta.Data) || len(tc.Data) != len(ta.Data) {
			return nil, fmt.Errorf("convert: parameter %q is missing or has another size", name)
		}
		d := make([]float32, len(ta.Data))
		for i := range d {
			d[i] = float32(float64(ta.Data[i]) + s*(float64(tb.Data[i])-float64(tc.Data[i])))
		}
		out[name] = &params.Tensor{Shape: slices.Clone(ta.Shape), Data: d}
	}
	return out, nil
}

// diff returns b - c over the parameters of b.
func diff(b, c params.Set) (params.Set, error) {
	return combine(b.ZerosLike(), 1, b, c)
}

// addInto adds s*b to a in place.
func addInto(a params.Set, s float32, b params.Set) {
	for name, t := range a {
		for i, v := range b[name].Data {
			t.Data[i] += s * v
		}
	}
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
