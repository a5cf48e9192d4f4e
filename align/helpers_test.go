package align

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// randTensor returns a tensor of the given shape with standard normal entries.
func randTensor(rng *rand.Rand, shape ...int) *Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	t := &Tensor{Shape: shape, Data: make([]float32, n)}
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}

// mlpSpec returns the spec of an MLP W1[h1,in], b1[h1], W2[h2,h1], b2[h2], W3[out,h2].
func mlpSpec(h1, h2 int) Spec {
	return Spec{Groups: []Group{
		{Name: "h1", Size: h1, Members: []Member{{"W1", 0, 1}, {"b1", 0, 1}, {"W2", 1, 1}}},
		{Name: "h2", Size: h2, Members: []Member{{"W2", 0, 1}, {"b2", 0, 1}, {"W3", 1, 1}}},
	}}
}

// mlpParams returns random MLP parameters matching mlpSpec, plus an untouched output bias b3.
func mlpParams(rng *rand.Rand, in, h1, h2, out int) Params {
	return Params{
		"W1": randTensor(rng, h1, in),
		"b1": randTensor(rng, h1),
		"W2": randTensor(rng, h2, h1),
		"b2": randTensor(rng, h2),
		"W3": randTensor(rng, out, h2),
		"b3": randTensor(rng, out),
	}
}

// convSpec returns the spec of a conv layer C1[c,1,3,3] with bias bc[c] followed by a Flatten of
// a c x 2 x 2 map into a dense layer D[10, c*4]: axis 1 of D moves in blocks of 4.
func convSpec(c int) Spec {
	return Spec{Groups: []Group{
		{Name: "c", Size: c, Members: []Member{{"C1", 0, 1}, {"bc", 0, 1}, {"D", 1, 4}}},
	}}
}

// convParams returns random parameters matching convSpec.
func convParams(rng *rand.Rand, c int) Params {
	return Params{
		"C1": randTensor(rng, c, 1, 3, 3),
		"bc": randTensor(rng, c),
		"D":  randTensor(rng, 10, c*4),
	}
}

// paramsEqual reports whether a and b hold the same names with equal shapes and data.
func paramsEqual(a, b Params) bool {
	if len(a) != len(b) {
		return false
	}
	for name, t := range a {
		u, ok := b[name]
		if !ok || !slices.Equal(t.Shape, u.Shape) || !slices.Equal(t.Data, u.Data) {
			return false
		}
	}
	return true
}

// mustApply applies p and fails the test on error.
func mustApply(t *testing.T, p Perm, s Spec, params Params) Params {
	t.Helper()
	out, err := p.Apply(s, params)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
