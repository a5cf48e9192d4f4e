package align

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

func TestSpecValidate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	ps := mlpParams(rng, 5, 4, 3, 2)
	ps["bad"] = &params.Tensor{Shape: []int{4, 2}, Data: make([]float32, 7)}
	ps["nil"] = nil
	ps["D"] = randTensor(rng, 10, 12)
	good := mlpSpec(4, 3)
	if err := good.Validate(ps); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	if err := convSpec(3).Validate(params.Set{"C1": randTensor(rng, 3, 1, 3, 3), "bc": randTensor(rng, 3), "D": ps["D"]}); err != nil {
		t.Fatalf("valid block spec: %v", err)
	}
	if err := segSpec().Validate(segParams(rng)); err != nil {
		t.Fatalf("valid offset and repeat spec: %v", err)
	}
	one := func(size int, members ...Member) Spec {
		return Spec{Groups: []Group{{Name: "g", Size: size, Members: members}}}
	}
	cases := []struct {
		name string
		spec Spec
		want string
	}{
		{"missing param", one(4, Member{Param: "nope", Axis: 0, Block: 1}), `group 0 ("g"): member 0 (param "nope", axis 0): no such parameter`},
		{"nil tensor", one(4, Member{Param: "nil", Axis: 0, Block: 1}), `param "nil", axis 0): no such parameter`},
		{"bad data", one(4, Member{Param: "bad", Axis: 0, Block: 1}), "shape [4 2] needs 8 values, data has 7"},
		{"axis too big", one(4, Member{Param: "W1", Axis: 2, Block: 1}), "axis out of range for shape [4 5]"},
		{"axis negative", one(4, Member{Param: "W1", Axis: -1, Block: 1}), "axis out of range"},
		{"block zero", one(4, Member{Param: "W1", Axis: 0, Block: 0}), "block 0, offset 0, repeat 0, want block >= 1"},
		{"offset negative", one(4, Member{Param: "W1", Axis: 0, Block: 1, Offset: -1}), "offset -1"},
		{"repeat negative", one(4, Member{Param: "W1", Axis: 0, Block: 1, Repeat: -2}), "repeat -2"},
		{"too long", one(5, Member{Param: "W1", Axis: 0, Block: 1}), "axis length 4 < size 5 * block 1 * repeat 1"},
		{"block too long", one(4, Member{Param: "D", Axis: 1, Block: 4}), "axis length 12 < size 4 * block 4 * repeat 1"},
		{"repeat too long", one(2, Member{Param: "D", Axis: 1, Block: 2, Repeat: 4}), "axis length 12 < size 2 * block 2 * repeat 4"},
		{"offset too far", one(2, Member{Param: "D", Axis: 1, Block: 2, Repeat: 2, Offset: 5}), "offset 5 + size 2 * block 2 * repeat 2 exceeds axis length 12"},
		{"huge block", one(2, Member{Param: "D", Axis: 1, Block: 1 << 62}), "axis length 12 < size 2"},
		{"size zero", one(0), `group 0 ("g"): size 0, want >= 1`},
		{"twice in group", one(4, Member{Param: "W1", Axis: 0, Block: 1}, Member{Param: "W1", Axis: 0, Block: 1}), `member 1 (param "W1", axis 0): positions 0..3 already permuted by group 0 ("g")`},
		{"overlapping slices", Spec{Groups: []Group{
			{Name: "a", Size: 5, Members: []Member{{Param: "D", Axis: 1, Block: 1}}},
			{Name: "b", Size: 2, Members: []Member{{Param: "D", Axis: 1, Block: 1, Offset: 4}}},
		}}, `group 1 ("b"): member 0 (param "D", axis 1): positions 4..5 already permuted by group 0 ("a")`},
		{"two groups", Spec{Groups: []Group{
			{Name: "a", Size: 4, Members: []Member{{Param: "b1", Axis: 0, Block: 1}}},
			{Name: "b", Size: 4, Members: []Member{{Param: "b1", Axis: 0, Block: 1}}},
		}}, `group 1 ("b"): member 0 (param "b1", axis 0): positions 0..3 already permuted by group 0 ("a")`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.spec.Validate(ps)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "align: spec: ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
}
