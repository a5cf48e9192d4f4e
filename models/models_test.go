package models

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/graph"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func build(t testing.TB, spec string, seed uint64) *graph.Model {
	t.Helper()
	a, err := Parse(spec)
	must(t, err)
	m, err := New(a, seed)
	must(t, err)
	return m
}

// builtins are small instances of every architecture and option, with their input and output.
var builtins = []struct {
	spec    string
	in      []int
	classes int
}{
	{"mlp:784,64,10", []int{1, 28, 28}, 10},
	{"mlp:784,32,16,10;act=tanh;bias=false", []int{1, 28, 28}, 10},
	{"mlp:20,8,3;act=sigmoid", []int{20}, 3},
	{"mlp:48,12,5;act=none;in=3x4x4", []int{3, 4, 4}, 5},
	{"convnet:8,16;in=1x28x28;classes=10", []int{1, 28, 28}, 10},
	{"convnet:4,4,8;in=3x9x9;classes=5;pool=1;head=gap", []int{3, 9, 9}, 5},
	{"resnet:8,16;blocks=1;in=1x28x28;classes=10", []int{1, 28, 28}, 10},
	{"resnet:4,8,8;blocks=2,1,1;in=3x12x12;classes=7", []int{3, 12, 12}, 7},
}

func finite(v []float32) bool {
	return !slices.ContainsFunc(v, func(x float32) bool { return math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) })
}

// TestBuiltinsRun loads every built-in model into the engine and runs it at batch 4: the logits
// have the declared shape and are finite, the loss is finite and positive, and every trainable
// parameter gets a finite, nonzero gradient (so every layer is wired into the output).
func TestBuiltinsRun(t *testing.T) {
	const batch = 4
	for _, c := range builtins {
		t.Run(c.spec, func(t *testing.T) {
			m := build(t, c.spec, 1)
			if m.Input.Name != InputName || !slices.Equal(m.Input.Shape, append([]int{-1}, c.in...)) {
				t.Errorf("input %s %v, want %s %v", m.Input.Name, m.Input.Shape, InputName, append([]int{-1}, c.in...))
			}
			if m.Output.Name != OutputName || !slices.Equal(m.Output.Shape, []int{-1, c.classes}) {
				t.Errorf("output %s %v, want %s [-1 %d]", m.Output.Name, m.Output.Shape, OutputName, c.classes)
			}
			s, err := graph.NewSession(m, batch)
			must(t, err)
			rng := rand.New(rand.NewPCG(5, 6))
			x := make([]float32, batch*s.ExampleSize())
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			labels := []int64{0, 1, 2, int64(c.classes - 1)}
			logits, err := s.Logits(x)
			must(t, err)
			if len(logits) != batch*c.classes || !finite(logits) {
				t.Fatalf("logits: %d values (want %d), finite %v", len(logits), batch*c.classes, finite(logits))
			}
			loss, grads, err := s.LossAndGrad(x, labels)
			must(t, err)
			if math.IsNaN(loss) || math.IsInf(loss, 0) || loss <= 0 {
				t.Errorf("loss %g", loss)
			}
			for _, name := range m.Trainable() {
				g := grads[name]
				if g == nil || !finite(g.Data) || !slices.ContainsFunc(g.Data, func(v float32) bool { return v != 0 }) {
					t.Errorf("gradient of %s is missing, not finite or zero", name)
				}
			}
		})
	}
}

// TestBuiltinSymmetries checks the groups graph.Symmetries derives: one per hidden layer of an
// MLP, one per convolution of a ConvNet (the last one reaching the head's weight in blocks of
// H*W after Flatten, whole columns after GlobalAveragePool).
func TestBuiltinSymmetries(t *testing.T) {
	bn := func(name string) string {
		return fmt.Sprintf("%[1]s.weight/0 %[1]s.bias/0 %[1]s.running_mean/0 %[1]s.running_var/0", name)
	}
	cases := []struct {
		spec string
		want []string // "size: members" per group, in order
	}{
		{"mlp:784,64,32,10", []string{
			"64: fc1.weight/0 fc1.bias/0 fc2.weight/1",
			"32: fc2.weight/0 fc2.bias/0 fc3.weight/1",
		}},
		{"mlp:784,32,10;act=none;bias=false", []string{"32: fc1.weight/0 fc2.weight/1"}},
		{"mlp:784,10", nil},
		{"convnet:8,16;in=1x28x28;classes=10", []string{
			"8: conv1.weight/0 " + bn("bn1") + " conv2.weight/1",
			"16: conv2.weight/0 " + bn("bn2") + " fc.weight/1x196",
		}},
		{"convnet:4,4,8;in=3x9x9;classes=5;pool=1;head=gap", []string{
			"4: conv1.weight/0 " + bn("bn1") + " conv2.weight/1",
			"4: conv2.weight/0 " + bn("bn2") + " conv3.weight/1",
			"8: conv3.weight/0 " + bn("bn3") + " fc.weight/1",
		}},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			spec, _, err := graph.Symmetries(build(t, c.spec, 1))
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
		})
	}
}

// TestResNetSymmetriesShareStageStreams checks that the residual stream of a stage (stem or
// first block's output, every block's conv2, bn2 and projection, the next readers) is one group,
// and every block's inner channels are another.
func TestResNetSymmetriesShareStageStreams(t *testing.T) {
	spec, _, err := graph.Symmetries(build(t, "resnet:8,16;blocks=2,2;in=1x16x16;classes=10", 1))
	must(t, err)
	groupOf := map[string]int{}
	var sizes []int
	for i, g := range spec.Groups {
		sizes = append(sizes, g.Size)
		for _, mb := range g.Members {
			groupOf[fmt.Sprintf("%s/%d", mb.Param, mb.Axis)] = i
		}
	}
	// stage 1 stream, layer1.0 inner, layer1.1 inner, layer2.0 inner, stage 2 stream, layer2.1 inner
	if fmt.Sprint(sizes) != "[8 8 8 16 16 16]" {
		t.Fatalf("group sizes %v", sizes)
	}
	same := func(members ...string) int {
		t.Helper()
		g, ok := groupOf[members[0]]
		if !ok {
			t.Fatalf("%s is in no group", members[0])
		}
		for _, mb := range members[1:] {
			if h, ok := groupOf[mb]; !ok || h != g {
				t.Errorf("%s and %s should share a group", members[0], mb)
			}
		}
		return g
	}
	stream1 := same("conv1.weight/0", "bn1.weight/0", "layer1.0.conv1.weight/1", "layer1.0.conv2.weight/0", "layer1.0.bn2.bias/0",
		"layer1.1.conv1.weight/1", "layer1.1.conv2.weight/0", "layer2.0.conv1.weight/1", "layer2.0.downsample.0.weight/1")
	stream2 := same("layer2.0.conv2.weight/0", "layer2.0.downsample.0.weight/0", "layer2.0.downsample.1.running_var/0",
		"layer2.1.conv1.weight/1", "layer2.1.conv2.weight/0", "layer2.1.bn2.weight/0", "fc.weight/1")
	inner := map[int]bool{stream1: true, stream2: true}
	for _, block := range []string{"layer1.0", "layer1.1", "layer2.0", "layer2.1"} {
		g := same(block+".conv1.weight/0", block+".bn1.weight/0", block+".conv2.weight/1")
		if inner[g] {
			t.Errorf("%s's inner channels share a group with another block or a stream", block)
		}
		inner[g] = true
	}
}

// TestPermutingBuiltinsKeepsLogits checks the symmetry groups by the property they promise:
// permuting a built-in model by a random permutation of its spec leaves its logits unchanged.
func TestPermutingBuiltinsKeepsLogits(t *testing.T) {
	for _, c := range builtins {
		t.Run(c.spec, func(t *testing.T) {
			m := build(t, c.spec, 2)
			spec, _, err := graph.Symmetries(m)
			must(t, err)
			s, err := graph.NewSession(m, 4)
			must(t, err)
			rng := rand.New(rand.NewPCG(8, 9))
			x := make([]float32, 4*s.ExampleSize())
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			before, err := s.Logits(x)
			must(t, err)
			permuted, err := align.Random(spec, rng).Apply(spec, m.Params)
			must(t, err)
			must(t, s.SetParams(permuted))
			after, err := s.Logits(x)
			must(t, err)
			for i := range before {
				if d := math.Abs(float64(before[i] - after[i])); d > 1e-4 {
					t.Fatalf("permuting changed logit %d by %g", i, d)
				}
			}
		})
	}
}
