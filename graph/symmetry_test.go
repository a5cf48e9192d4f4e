package graph

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ltransfer/ltransfer/align"
)

// TestSymmetriesOfFixtures checks the derived groups against the architectures' known
// symmetries: one group per hidden layer, the residual stream of a stage shared by its blocks,
// and the flattened convolution features permuted in blocks of H*W.
func TestSymmetriesOfFixtures(t *testing.T) {
	cases := []struct {
		model string
		want  []string // "size: members" per group, in order
	}{
		{"mlp/seed1/ckpt_000.onnx", []string{"256: fc1.weight/0 fc1.bias/0 fc2.weight/1"}},
		{"linear512/seed1/ckpt_000.onnx", []string{"512: fc1.weight/0 fc2.weight/1"}},
		{"cnn/seed1/ckpt_000.onnx", []string{
			"8: conv1.weight/0 conv1.bias/0 bn1.weight/0 bn1.bias/0 bn1.running_mean/0 bn1.running_var/0 conv2.weight/1",
			"16: conv2.weight/0 conv2.bias/0 bn2.weight/0 bn2.bias/0 bn2.running_mean/0 bn2.running_var/0 fc.weight/1x49",
		}},
		// A depthwise convolution carries its input's channel group through.
		{"depthwise/model.onnx", []string{
			"6: conv1.weight/0 conv1.bias/0 dw.weight/0 dw.bias/0 pw.weight/1",
			"8: pw.weight/0 pw.bias/0 fc.weight/1",
		}},
	}
	for _, c := range cases {
		t.Run(c.model, func(t *testing.T) {
			m, err := Load(testdataPath(c.model))
			must(t, err)
			spec, unpermuted, err := Symmetries(m)
			must(t, err)
			var got []string
			for _, g := range spec.Groups {
				s := fmt.Sprintf("%d:", g.Size)
				for _, mb := range g.Members {
					s += fmt.Sprintf(" %s/%d", mb.Param, mb.Axis)
					if mb.Block != 1 {
						s += fmt.Sprintf("x%d", mb.Block)
					}
				}
				got = append(got, s)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("groups\n got %q\nwant %q", got, c.want)
			}
			for _, u := range unpermuted {
				t.Logf("unpermuted %s/%d: %s", u.Param, u.Axis, u.Reason)
			}
		})
	}
}

func TestSymmetriesOfResNetShareTheResidualStream(t *testing.T) {
	m, err := Load(testdataPath("resnet", "seed1", "ckpt_000.onnx"))
	must(t, err)
	spec, _, err := Symmetries(m)
	must(t, err)
	groupOf := map[string]int{}
	var sizes []int
	for i, g := range spec.Groups {
		sizes = append(sizes, g.Size)
		for _, mb := range g.Members {
			groupOf[fmt.Sprintf("%s/%d", mb.Param, mb.Axis)] = i
		}
	}
	// stem, block a (conv1), block b (conv1), stage 2 stream, block c (conv1)
	if fmt.Sprint(sizes) != "[8 8 16 16 16]" {
		t.Fatalf("group sizes %v", sizes)
	}
	same := func(members ...string) {
		t.Helper()
		for _, mb := range members[1:] {
			gi, ok1 := groupOf[members[0]]
			gj, ok2 := groupOf[mb]
			if !ok1 || !ok2 || gi != gj {
				t.Errorf("%s and %s should share a group", members[0], mb)
			}
		}
	}
	// Stage 1: the stem's channels are the residual stream of block a, read by block b.
	same("conv1.weight/0", "block_a.conv2.weight/0", "block_a.bn2.weight/0", "block_a.conv1.weight/1", "block_b.conv1.weight/1", "block_b.proj_conv.weight/1")
	// Stage 2: block b's output, its shortcut projection and block c's output, read by the head.
	same("block_b.conv2.weight/0", "block_b.proj_conv.weight/0", "block_b.proj_bn.weight/0", "block_c.conv2.weight/0", "block_c.conv1.weight/1", "fc.weight/1")
	if groupOf["conv1.weight/0"] == groupOf["block_a.conv1.weight/0"] {
		t.Error("block a's inner channels joined the residual stream")
	}
}

// TestPermutingBySpecKeepsOutputs checks the promise of a spec: permuting a model by a random
// permutation of its derived groups leaves its evaluation logits and its training loss unchanged.
func TestPermutingBySpecKeepsOutputs(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			m, err := Load(testdataPath(fx.model))
			must(t, err)
			spec, _, err := Symmetries(m)
			must(t, err)
			if len(spec.Groups) == 0 {
				t.Fatal("no groups")
			}
			ref := loadReference(t, fx.name)
			s, err := NewSession(m, len(ref.labels))
			must(t, err)
			before, err := s.Logits(ref.input)
			must(t, err)
			lossBefore, _, err := s.LossAndGrad(ref.input, ref.labels)
			must(t, err)
			perm := align.Random(spec, rand.New(rand.NewPCG(7, uint64(len(fx.name)))))
			permuted, err := perm.Apply(spec, m.Params)
			must(t, err)
			changed := 0
			for name, p := range permuted {
				if !slices.Equal(p.Data, m.Params[name].Data) {
					changed++
				}
			}
			if changed == 0 {
				t.Fatal("the permutation changed no parameter")
			}
			must(t, s.SetParams(permuted))
			after, err := s.Logits(ref.input)
			must(t, err)
			if d := maxAbsDiff(before, after); d > 1e-4 {
				t.Errorf("permuting changed the logits by %g", d)
			}
			lossAfter, _, err := s.LossAndGrad(ref.input, ref.labels)
			must(t, err)
			if math.Abs(lossAfter-lossBefore) > 1e-5 {
				t.Errorf("permuting changed the loss from %g to %g", lossBefore, lossAfter)
			}
		})
	}
}

// TestVerifyDropsABrokenGroup checks the self-check: a group that permutes a layer's outputs
// without the next layer's inputs changes the model, and is dropped; the derived group is kept.
func TestVerifyDropsABrokenGroup(t *testing.T) {
	m, err := Load(testdataPath("mlp", "seed1", "ckpt_005.onnx"))
	must(t, err)
	spec, _, err := Symmetries(m)
	must(t, err)
	kept, dropped, err := VerifySymmetries(m, spec, 1)
	must(t, err)
	if len(kept.Groups) != 1 || len(dropped) != 0 {
		t.Errorf("the derived spec: kept %d groups, dropped %v", len(kept.Groups), dropped)
	}
	broken := align.Group{Name: "broken", Size: 256, Members: []align.Member{{Param: "fc1.weight", Axis: 0, Block: 1}, {Param: "fc1.bias", Axis: 0, Block: 1}}}
	kept, dropped, err = VerifySymmetries(m, align.Spec{Groups: []align.Group{broken}}, 1)
	must(t, err)
	if len(kept.Groups) != 0 || len(dropped) != 1 || dropped[0].Group != "broken" || dropped[0].MaxDiff <= 0 {
		t.Errorf("a broken group: kept %v, dropped %v", kept.Groups, dropped)
	}
	// Among correct groups (those of the structures fixture), the broken ones are found.
	sm, err := Load(testdataPath("symmetry", "structures.onnx"))
	must(t, err)
	sspec, _, err := Symmetries(sm)
	must(t, err)
	mixed := align.Spec{Groups: slices.Clone(sspec.Groups)}
	for _, i := range []int{3, 11} { // a concatenated branch and the SE hidden units, one member only
		g := mixed.Groups[i]
		g.Name, g.Members = "broken "+g.Name, g.Members[:1]
		mixed.Groups[i] = g
	}
	kept, dropped, err = VerifySymmetries(sm, mixed, 2)
	must(t, err)
	if len(kept.Groups) != len(sspec.Groups)-2 || len(dropped) != 2 || dropped[0].Group != mixed.Groups[3].Name || dropped[1].Group != mixed.Groups[11].Name {
		t.Errorf("two broken groups among %d: kept %d, dropped %v", len(mixed.Groups), len(kept.Groups), dropped)
	}
}

// TestMatcherRecoversAPermutedFixture permutes each trained fixture by a random permutation of
// its derived spec and matches the copy back to the original by weights: the matcher must find
// exactly that permutation.
func TestMatcherRecoversAPermutedFixture(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			m, err := Load(testdataPath(fx.model))
			must(t, err)
			spec, _, err := Symmetries(m)
			must(t, err)
			perm := align.Random(spec, rand.New(rand.NewPCG(11, 13)))
			permuted, err := perm.Apply(spec, m.Params)
			must(t, err)
			matcher := align.NewMatcher(spec, align.MatcherOptions{Seed: 1})
			must(t, matcher.Add(1, permuted, m.Params))
			got, res, err := matcher.Solve(nil)
			must(t, err)
			for g := range spec.Groups {
				if !slices.Equal(got[g], perm[g]) {
					t.Errorf("group %q not recovered (objective %g)", spec.Groups[g].Name, res.Objective)
				}
			}
		})
	}
}
