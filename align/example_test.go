package align_test

import (
	"fmt"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/params"
)

func ExampleAssign() {
	score := []float64{
		1, 5, 3,
		4, 2, 6,
		7, 1, 2,
	}
	perm, total := align.Assign(3, score)
	fmt.Println(perm, total)
	// Output: [1 2 0] 18
}

func ExampleMatcher() {
	// A one-hidden-layer network W1[3,2] -> W2[2,3]: the hidden axis (rows of W1, columns of W2)
	// is one permutation group.
	spec := align.Spec{Groups: []align.Group{{
		Name: "hidden", Size: 3,
		Members: []align.Member{{Param: "W1", Axis: 0, Block: 1}, {Param: "W2", Axis: 1, Block: 1}},
	}}}
	source := params.Set{
		"W1": {Shape: []int{3, 2}, Data: []float32{1, 0, 0, 2, 3, 3}},
		"W2": {Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
	}
	// The target is the same network with its hidden units reordered.
	target, err := align.Perm{{2, 0, 1}}.Apply(spec, source)
	if err != nil {
		panic(err)
	}
	m := align.NewMatcher(spec, align.MatcherOptions{Seed: 1})
	if err := m.Add(1, target, source); err != nil {
		panic(err)
	}
	pi, res, err := m.Solve(nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(pi, res.Objective, res.Improved)
	// Output: [[2 0 1]] 0 true
}
