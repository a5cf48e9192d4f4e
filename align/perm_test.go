package align

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

func TestIdentityRandom(t *testing.T) {
	s := mlpSpec(5, 7)
	id := Identity(s)
	if !id.IsIdentity() || id.Validate(s) != nil || len(id[0]) != 5 || len(id[1]) != 7 {
		t.Fatalf("Identity = %v", id)
	}
	p := Random(s, rand.New(rand.NewPCG(1, 2)))
	q := Random(s, rand.New(rand.NewPCG(1, 2)))
	if err := p.Validate(s); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p[0], q[0]) || !slices.Equal(p[1], q[1]) {
		t.Fatal("Random is not reproducible for a seeded generator")
	}
	if p.IsIdentity() {
		t.Fatal("random permutation of 5 and 7 elements is the identity (seed-dependent, unlikely)")
	}
	if err := Random(s, nil).Validate(s); err != nil {
		t.Fatalf("Random with nil rng: %v", err)
	}
}

func TestPermValidate(t *testing.T) {
	s := mlpSpec(3, 2)
	cases := []struct {
		name string
		p    Perm
		want string
	}{
		{"group count", Perm{{0, 1, 2}}, "has 1 groups, spec has 2"},
		{"length", Perm{{0, 1}, {0, 1}}, `group 0 ("h1"): length 2, want size 3`},
		{"range", Perm{{0, 1, 2}, {0, 2}}, `group 1 ("h2"): entry 1 = 2 out of range [0, 2)`},
		{"negative", Perm{{0, -1, 2}, {0, 1}}, `group 0 ("h1"): entry 1 = -1 out of range`},
		{"duplicate", Perm{{1, 1, 0}, {0, 1}}, `group 0 ("h1"): value 1 appears twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.p.Validate(s)
			if err == nil || !strings.HasPrefix(err.Error(), "align: perm: ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
	if err := (Perm{{2, 0, 1}, {1, 0}}).Validate(s); err != nil {
		t.Fatalf("valid perm: %v", err)
	}
}

func TestInverseCompose(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := mlpSpec(6, 4)
	for trial := 0; trial < 20; trial++ {
		p, q := Random(s, rng), Random(s, rng)
		if !p.Compose(p.Inverse()).IsIdentity() || !p.Inverse().Compose(p).IsIdentity() {
			t.Fatalf("p∘p⁻¹ is not the identity for %v", p)
		}
		r := p.Compose(q)
		for g := range p {
			for i := range p[g] {
				if r[g][i] != q[g][p[g][i]] {
					t.Fatalf("Compose convention broken at group %d index %d", g, i)
				}
			}
		}
		// (p∘q)⁻¹ = q⁻¹∘p⁻¹ in the Apply sense.
		lhs, rhs := r.Inverse(), q.Inverse().Compose(p.Inverse())
		for g := range lhs {
			if !slices.Equal(lhs[g], rhs[g]) {
				t.Fatalf("(pq)^-1 != q^-1 p^-1")
			}
		}
	}
	// Invalid input gives nil rather than a panic.
	bad := Perm{{0, 0}}
	if bad.Inverse() != nil || bad.Compose(Perm{{1, 0}}) != nil || (Perm{{1, 0}}).Compose(bad) != nil {
		t.Fatal("invalid permutation accepted")
	}
	if (Perm{{1, 0}}).Compose(Perm{{1, 0}, {0}}) != nil || (Perm{{1, 0}}).Compose(Perm{{0, 1, 2}}) != nil {
		t.Fatal("mismatched shapes accepted")
	}
}

func TestApplySemantics(t *testing.T) {
	// W[3,2] rows permuted by group g (size 3), v[3] too; b[2] untouched.
	s := Spec{Groups: []Group{{Name: "g", Size: 3, Members: []Member{{Param: "W", Axis: 0, Block: 1}, {Param: "v", Axis: 0, Block: 1}}}}}
	b := &params.Tensor{Shape: []int{2}, Data: []float32{7, 8}}
	ps := params.Set{
		"W": {Shape: []int{3, 2}, Data: []float32{0, 1, 10, 11, 20, 21}},
		"v": {Shape: []int{3}, Data: []float32{0, 1, 2}},
		"b": b,
	}
	out := mustApply(t, Perm{{2, 0, 1}}, s, ps)
	if want := []float32{20, 21, 0, 1, 10, 11}; !slices.Equal(out["W"].Data, want) {
		t.Fatalf("W = %v, want %v (output row i takes input row p[i])", out["W"].Data, want)
	}
	if want := []float32{2, 0, 1}; !slices.Equal(out["v"].Data, want) {
		t.Fatalf("v = %v, want %v", out["v"].Data, want)
	}
	if out["b"] != b {
		t.Fatal("untouched parameter is not shared")
	}
	if out["W"] == ps["W"] || ps["W"].Data[0] != 0 {
		t.Fatal("touched parameter shared or input modified")
	}
	out["W"].Shape[0] = 99
	if ps["W"].Shape[0] != 3 {
		t.Fatal("result shares its Shape slice with the input")
	}
}

func TestApplyBlock(t *testing.T) {
	// D[2, 6] axis 1 in blocks of 3 (group size 2), C[2] axis 0.
	s := Spec{Groups: []Group{{Name: "c", Size: 2, Members: []Member{{Param: "C", Axis: 0, Block: 1}, {Param: "D", Axis: 1, Block: 3}}}}}
	ps := params.Set{
		"C": {Shape: []int{2}, Data: []float32{0, 1}},
		"D": {Shape: []int{2, 6}, Data: []float32{0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15}},
	}
	out := mustApply(t, Perm{{1, 0}}, s, ps)
	if want := []float32{3, 4, 5, 0, 1, 2, 13, 14, 15, 10, 11, 12}; !slices.Equal(out["D"].Data, want) {
		t.Fatalf("D = %v, want %v", out["D"].Data, want)
	}
	if want := []float32{1, 0}; !slices.Equal(out["C"].Data, want) {
		t.Fatalf("C = %v, want %v", out["C"].Data, want)
	}
}

func TestApplyOffsetRepeat(t *testing.T) {
	// X[7]: group a (3) at offset 0, group b (2) at offset 3 in blocks of 2. Y[8]: group t (2)
	// in 3 copies from offset 1; positions 0 and 7 belong to no group.
	s := Spec{Groups: []Group{
		{Name: "a", Size: 3, Members: []Member{{Param: "X", Axis: 0, Block: 1}}},
		{Name: "b", Size: 2, Members: []Member{{Param: "X", Axis: 0, Block: 2, Offset: 3}}},
		{Name: "t", Size: 2, Members: []Member{{Param: "Y", Axis: 0, Block: 1, Offset: 1, Repeat: 3}}},
	}}
	ps := params.Set{
		"X": {Shape: []int{7}, Data: []float32{0, 1, 2, 3, 4, 5, 6}},
		"Y": {Shape: []int{8}, Data: []float32{0, 1, 2, 3, 4, 5, 6, 7}},
	}
	out := mustApply(t, Perm{{2, 0, 1}, {1, 0}, {1, 0}}, s, ps)
	if want := []float32{2, 0, 1, 5, 6, 3, 4}; !slices.Equal(out["X"].Data, want) {
		t.Fatalf("X = %v, want %v", out["X"].Data, want)
	}
	if want := []float32{0, 2, 1, 4, 3, 6, 5, 7}; !slices.Equal(out["Y"].Data, want) {
		t.Fatalf("Y = %v, want %v", out["Y"].Data, want)
	}
}

func TestApplyProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cases := []struct {
		name   string
		spec   Spec
		params params.Set
	}{
		{"mlp", mlpSpec(6, 5), mlpParams(rng, 4, 6, 5, 3)},
		{"conv-block", convSpec(5), convParams(rng, 5)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for trial := 0; trial < 10; trial++ {
				p, q := Random(c.spec, rng), Random(c.spec, rng)
				x := c.params
				back := mustApply(t, p.Inverse(), c.spec, mustApply(t, p, c.spec, x))
				if !paramsEqual(back, x) {
					t.Fatal("Apply(p⁻¹, Apply(p, x)) != x")
				}
				lhs := mustApply(t, p.Compose(q), c.spec, x)
				rhs := mustApply(t, p, c.spec, mustApply(t, q, c.spec, x))
				if !paramsEqual(lhs, rhs) {
					t.Fatal("Apply(p∘q, x) != Apply(p, Apply(q, x))")
				}
				if !paramsEqual(mustApply(t, Identity(c.spec), c.spec, x), x) {
					t.Fatal("identity changed the parameters")
				}
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	s := mlpSpec(4, 3)
	ps := mlpParams(rng, 2, 4, 3, 2)
	if _, err := Identity(s).Apply(mlpSpec(5, 3), ps); err == nil || !strings.Contains(err.Error(), "align: apply: spec: ") {
		t.Fatalf("bad spec: %v", err)
	}
	if _, err := (Perm{{0, 1, 2, 2}, {0, 1, 2}}).Apply(s, ps); err == nil ||
		!strings.Contains(err.Error(), `align: apply: perm: group 0 ("h1"): value 2 appears twice`) {
		t.Fatalf("bad perm: %v", err)
	}
}

func TestApplyInto(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	s := convSpec(5)
	src := convParams(rng, 5)
	src["other"] = randTensor(rng, 3)
	p := Random(s, rng)
	want := mustApply(t, p, s, src)
	dst := params.Set{}
	for name, x := range src {
		dst[name] = &params.Tensor{Shape: slices.Clone(x.Shape), Data: make([]float32, len(x.Data))}
	}
	if err := p.ApplyInto(s, dst, src); err != nil {
		t.Fatal(err)
	}
	if !paramsEqual(dst, want) {
		t.Fatal("ApplyInto differs from Apply")
	}
	delete(dst, "other")
	if err := p.ApplyInto(s, dst, src); err == nil || !strings.Contains(err.Error(), `destination parameter "other" is missing`) {
		t.Fatalf("missing destination: %v", err)
	}
}
