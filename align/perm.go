package align

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/ltransfer/ltransfer/params"
)

// Perm holds one permutation per group, in Spec order: p[g][i] is the input index that output
// index i of group g takes (see Apply).
type Perm [][]int

// Identity returns the identity permutation of every group of s. A group with Size < 0 gets an
// empty permutation (such a spec does not validate).
func Identity(s Spec) Perm {
	p := make(Perm, len(s.Groups))
	for g, gr := range s.Groups {
		p[g] = make([]int, max(gr.Size, 0))
		for i := range p[g] {
			p[g][i] = i
		}
	}
	return p
}

// Random returns a uniformly random permutation of every group of s drawn from rng, group by
// group in Spec order. A nil rng uses the math/rand/v2 top-level generator (not reproducible).
func Random(s Spec, rng *rand.Rand) Perm {
	p := make(Perm, len(s.Groups))
	for g, gr := range s.Groups {
		size := max(gr.Size, 0)
		if rng != nil {
			p[g] = rng.Perm(size)
		} else {
			p[g] = rand.Perm(size)
		}
	}
	return p
}

// Validate checks that p has one entry per group of s and that each is a permutation of
// 0..Size-1. The error names the offending group and the problem.
func (p Perm) Validate(s Spec) error {
	if err := p.validate(s); err != nil {
		return fmt.Errorf("align: perm: %w", err)
	}
	return nil
}

// validate is Validate without the package prefix.
func (p Perm) validate(s Spec) error {
	if len(p) != len(s.Groups) {
		return fmt.Errorf("has %d groups, spec has %d", len(p), len(s.Groups))
	}
	for g, q := range p {
		if len(q) != s.Groups[g].Size {
			return fmt.Errorf("%s: length %d, want size %d", s.groupLabel(g), len(q), s.Groups[g].Size)
		}
		if err := checkPerm(q); err != nil {
			return fmt.Errorf("%s: %w", s.groupLabel(g), err)
		}
	}
	return nil
}

// checkPerm reports whether q is a permutation of 0..len(q)-1.
func checkPerm(q []int) error {
	seen := make([]bool, len(q))
	for i, x := range q {
		if x < 0 || x >= len(q) {
			return fmt.Errorf("entry %d = %d out of range [0, %d)", i, x, len(q))
		}
		if seen[x] {
			return fmt.Errorf("value %d appears twice", x)
		}
		seen[x] = true
	}
	return nil
}

// Inverse returns the permutation r with r[g][p[g][i]] = i, so that Apply(p.Inverse(), ·)
// undoes Apply(p, ·). It returns nil if some group of p is not a permutation of 0..len-1.
func (p Perm) Inverse() Perm {
	r := make(Perm, len(p))
	for g, q := range p {
		if checkPerm(q) != nil {
			return nil
		}
		r[g] = make([]int, len(q))
		for i, x := range q {
			r[g][x] = i
		}
	}
	return r
}

// Compose returns r = p∘q in the sense of Apply: Apply(p.Compose(q), x) == Apply(p, Apply(q, x)),
// that is q is applied first and r[g][i] = q[g][p[g][i]]. It returns nil if p and q differ in
// the number of groups or a group's length, or if a group of either is not a permutation.
func (p Perm) Compose(q Perm) Perm {
	if len(p) != len(q) {
		return nil
	}
	r := make(Perm, len(p))
	for g := range p {
		if len(p[g]) != len(q[g]) || checkPerm(p[g]) != nil || checkPerm(q[g]) != nil {
			return nil
		}
		r[g] = make([]int, len(p[g]))
		for i, x := range p[g] {
			r[g][i] = q[g][x]
		}
	}
	return r
}

// IsIdentity reports whether every group of p maps each index to itself.
func (p Perm) IsIdentity() bool {
	for _, q := range p {
		for i, x := range q {
			if x != i {
				return false
			}
		}
	}
	return true
}

// clone returns a deep copy of p.
func (p Perm) clone() Perm {
	r := make(Perm, len(p))
	for g, q := range p {
		r[g] = slices.Clone(q)
	}
	return r
}

// Apply returns a new parameter set where, for every member axis, the positions of output element i
// take those of input element p[g][i] (see Member): with Block b (and Offset 0, Repeat 1),
// positions i*b..i*b+b-1 of the axis take positions p[g][i]*b..p[g][i]*b+b-1 of the input, in
// order; positions no member owns keep their values. Every parameter named by the spec gets a new
// tensor (fresh Shape and Data); parameters the spec does not name are shared: the result holds
// the same *params.Tensor pointer as ps. ps itself is not modified. It fails if s does not
// validate against ps or p does not validate against s.
func (p Perm) Apply(s Spec, ps params.Set) (params.Set, error) {
	if err := s.validate(ps); err != nil {
		return nil, fmt.Errorf("align: apply: spec: %w", err)
	}
	if err := p.validate(s); err != nil {
		return nil, fmt.Errorf("align: apply: perm: %w", err)
	}
	out := make(params.Set, len(ps))
	for name, t := range ps {
		out[name] = t
	}
	for name, axes := range s.paramAxes() {
		t := ps[name]
		data := make([]float32, len(t.Data))
		gather(data, t.Data, 0, p.offsetTables(t.Shape, axes, -1))
		out[name] = &params.Tensor{Shape: slices.Clone(t.Shape), Data: data}
	}
	return out, nil
}

// ApplyInto is Apply writing into dst instead of new tensors: for every parameter of src, dst
// must hold a tensor of the same shape, which receives the permuted values (parameters the spec
// does not name are copied unchanged). dst's tensors must not share memory with src's. It
// fails, leaving dst unchanged, under the conditions of Apply or when dst lacks a parameter or
// has another shape.
func (p Perm) ApplyInto(s Spec, dst, src params.Set) error {
	if err := s.validate(src); err != nil {
		return fmt.Errorf("align: apply: spec: %w", err)
	}
	if err := p.validate(s); err != nil {
		return fmt.Errorf("align: apply: perm: %w", err)
	}
	for name, t := range src {
		d := dst[name]
		if d == nil || !slices.Equal(d.Shape, t.Shape) || len(d.Data) != len(t.Data) {
			return fmt.Errorf("align: apply: destination parameter %q is missing or not shaped %v", name, t.Shape)
		}
	}
	axes := s.paramAxes()
	for name, t := range src {
		if ax, ok := axes[name]; ok {
			gather(dst[name].Data, t.Data, 0, p.offsetTables(t.Shape, ax, -1))
		} else {
			copy(dst[name].Data, t.Data)
		}
	}
	return nil
}

// axisPerm records that positions of one axis of a parameter are permuted by a group, through
// the index map of a Member.
type axisPerm struct {
	axis, group, block, offset, repeat int
}

// pos returns the axis position of copy-and-block index s (0 <= s < repeat*block) of group
// element i in a group of n elements: offset + (r*n + i)*block + b with r, b = s/block, s%block.
func (ap axisPerm) pos(n, i, s int) int {
	return ap.offset + ((s/ap.block)*n+i)*ap.block + s%ap.block
}

// paramAxes maps every parameter named by s to its permuted axes, in spec order.
func (s Spec) paramAxes() map[string][]axisPerm {
	m := make(map[string][]axisPerm)
	for g, gr := range s.Groups {
		for _, mem := range gr.Members {
			m[mem.Param] = append(m[mem.Param], axisPerm{mem.Axis, g, mem.Block, mem.Offset, mem.copies()})
		}
	}
	return m
}

// identityTables returns, for each axis of a row-major tensor of the given shape, the offset of
// each position along that axis (position times stride), the gather tables of an unpermuted copy.
func identityTables(shape []int) [][]int {
	st := strides(shape)
	tabs := make([][]int, len(shape))
	for d, n := range shape {
		tabs[d] = make([]int, n)
		for x := range tabs[d] {
			tabs[d][x] = x * st[d]
		}
	}
	return tabs
}

// offsetTables returns, for each axis of a tensor of the given shape, the source offset of each
// output position when the axes listed in axes are permuted by p. The axis skip (if >= 0) is left
// unpermuted.
func (p Perm) offsetTables(shape []int, axes []axisPerm, skip int) [][]int {
	st := strides(shape)
	tabs := identityTables(shape)
	for _, ap := range axes {
		if ap.axis == skip {
			continue
		}
		q, t := p[ap.group], tabs[ap.axis]
		for i, qi := range q {
			for s := 0; s < ap.repeat*ap.block; s++ {
				t[ap.pos(len(q), i, s)] = ap.pos(len(q), qi, s) * st[ap.axis]
			}
		}
	}
	return tabs
}
