package align

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

// randTensor returns a tensor of the given shape with standard normal entries.
func randTensor(rng *rand.Rand, shape ...int) *params.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	t := &params.Tensor{Shape: shape, Data: make([]float32, n)}
	for i := range t.Data {
		t.Data[i] = float32(rng.NormFloat64())
	}
	return t
}

// mlpSpec returns the spec of an MLP W1[h1,in], b1[h1], W2[h2,h1], b2[h2], W3[out,h2].
func mlpSpec(h1, h2 int) Spec {
	return Spec{Groups: []Group{
		{Name: "h1", Size: h1, Members: []Member{{Param: "W1", Axis: 0, Block: 1}, {Param: "b1", Axis: 0, Block: 1}, {Param: "W2", Axis: 1, Block: 1}}},
		{Name: "h2", Size: h2, Members: []Member{{Param: "W2", Axis: 0, Block: 1}, {Param: "b2", Axis: 0, Block: 1}, {Param: "W3", Axis: 1, Block: 1}}},
	}}
}

// mlpParams returns random MLP parameters matching mlpSpec, plus an untouched output bias b3.
func mlpParams(rng *rand.Rand, in, h1, h2, out int) params.Set {
	return params.Set{
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
		{Name: "c", Size: c, Members: []Member{{Param: "C1", Axis: 0, Block: 1}, {Param: "bc", Axis: 0, Block: 1}, {Param: "D", Axis: 1, Block: 4}}},
	}}
}

// convParams returns random parameters matching convSpec.
func convParams(rng *rand.Rand, c int) params.Set {
	return params.Set{
		"C1": randTensor(rng, c, 1, 3, 3),
		"bc": randTensor(rng, c),
		"D":  randTensor(rng, 10, c*4),
	}
}

// segSpec returns a spec whose members use offsets and repeats: Wa[3,4] and Wb[2,3] are two
// layers concatenated into the columns of R[6,7] (a at offset 0; b at offset 3 in blocks of 2,
// as after a Flatten), and the rows of R are a grouped convolution's input: a group of 2 repeated
// in 3 copies, whose weight K[4,2] holds one copy on its columns.
func segSpec() Spec {
	return Spec{Groups: []Group{
		{Name: "a", Size: 3, Members: []Member{{Param: "Wa", Axis: 0, Block: 1}, {Param: "R", Axis: 1, Block: 1}}},
		{Name: "b", Size: 2, Members: []Member{{Param: "Wb", Axis: 0, Block: 1}, {Param: "R", Axis: 1, Block: 2, Offset: 3}}},
		{Name: "t", Size: 2, Members: []Member{{Param: "R", Axis: 0, Block: 1, Repeat: 3}, {Param: "K", Axis: 1, Block: 1}}},
	}}
}

// segParams returns random parameters matching segSpec.
func segParams(rng *rand.Rand) params.Set {
	return params.Set{"Wa": randTensor(rng, 3, 4), "Wb": randTensor(rng, 2, 3), "R": randTensor(rng, 6, 7), "K": randTensor(rng, 4, 2)}
}

// paramsEqual reports whether a and b hold the same names with equal shapes and data.
func paramsEqual(a, b params.Set) bool {
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
func mustApply(t *testing.T, p Perm, s Spec, ps params.Set) params.Set {
	t.Helper()
	out, err := p.Apply(s, ps)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
