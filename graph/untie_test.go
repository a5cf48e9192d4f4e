package graph

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
	"github.com/ltransfer/ltransfer/params"
)

// dedupMLP builds a 4-4-4-4-3 MLP of Gemm and Relu layers the way torch.onnx.export writes a
// model whose first three biases are equal: one initializer "b", read directly by fc1 and fc3
// and through an Identity (output "fc2.bias") by fc2. With shared false it writes the same
// network with a separate tensor per layer, named as the trained checkpoint of such a run is:
// "b", "fc2.bias" and "fc3.bias".
func dedupMLP(t *testing.T, shared bool) *Builder {
	t.Helper()
	b := NewBuilder("dedup", 13)
	b.Input("x", []int{-1, 4})
	b.Output("y", []int{-1, 3})
	for i, name := range []string{"w1", "w2", "w3"} {
		b.Initializer(name, &params.Tensor{Shape: []int{4, 4}, Data: wave(16, 0.4, float64(i))})
	}
	b.Initializer("w4", &params.Tensor{Shape: []int{3, 4}, Data: wave(12, 0.6, 3)})
	b.Initializer("b4", &params.Tensor{Shape: []int{3}, Data: wave(3, 0.1, 4)})
	bias := wave(4, 0.2, 5)
	b.Initializer("b", &params.Tensor{Shape: []int{4}, Data: bias})
	biases := []string{"b", "fc2.bias", "b"}
	if shared {
		must(t, b.Node("Identity", "Identity_0", []string{"b"}, []string{"fc2.bias"}))
	} else {
		b.Initializer("fc2.bias", &params.Tensor{Shape: []int{4}, Data: bias})
		b.Initializer("fc3.bias", &params.Tensor{Shape: []int{4}, Data: bias})
		biases[2] = "fc3.bias"
	}
	in := "x"
	for i, w := range []string{"w1", "w2", "w3"} {
		h, a := "h"+string(rune('1'+i)), "a"+string(rune('1'+i))
		must(t, b.Node("Gemm", "fc"+string(rune('1'+i)), []string{in, w, biases[i]}, []string{h}, Attr{"transB", int64(1)}))
		must(t, b.Node("Relu", "relu"+string(rune('1'+i)), []string{h}, []string{a}))
		in = a
	}
	must(t, b.Node("Gemm", "fc4", []string{in, "w4", "b4"}, []string{"y"}, Attr{"transB", int64(1)}))
	return b
}

func wave(n int, scale, phase float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(scale * math.Sin(1.3*float64(i)+phase))
	}
	return v
}

// dedupLogits computes dedupMLP's output in float64 from the builder's own tensors, by hand.
func dedupLogits(x []float64, p map[string][]float32) []float64 {
	layer := func(in []float64, w, b []float32, relu bool) []float64 {
		out := make([]float64, len(b))
		for o := range out {
			s := float64(b[o])
			for i, v := range in {
				s += float64(w[o*len(in)+i]) * v
			}
			if relu {
				s = max(s, 0)
			}
			out[o] = s
		}
		return out
	}
	h := x
	for _, w := range []string{"w1", "w2", "w3"} {
		h = layer(h, p[w], p["b"], true)
	}
	return layer(h, p["w4"], p["b4"], false)
}

// TestUntieDeduplicatedInitializers loads a file whose equal biases were deduplicated (shared
// through an Identity and read by two nodes) and checks that each layer gets a tensor of its
// own, named as the exporter names it in an undeduplicated checkpoint, that the network still
// computes what the file describes, that the hidden layers keep their own permutation groups,
// and that the written file holds every parameter separately.
func TestUntieDeduplicatedInitializers(t *testing.T) {
	b := dedupMLP(t, true)
	m, err := b.Model()
	must(t, err)
	for _, n := range m.Nodes {
		if n.Op == "Identity" {
			t.Errorf("node %q (Identity) of an initializer is still in the graph", n.Name)
		}
	}
	wantBiases := []string{"b", "fc2.bias", "b@fc3:2"}
	for i, n := range m.Nodes[:6:6] {
		if i%2 == 0 && n.Inputs[2] != wantBiases[i/2] {
			t.Errorf("node %q reads bias %q, want %q", n.Name, n.Inputs[2], wantBiases[i/2])
		}
	}
	if got, want := m.Trainable(), []string{"w1", "w2", "w3", "w4", "b4", "b", "fc2.bias", "b@fc3:2"}; !slices.Equal(got, want) {
		t.Errorf("trainable parameters %v, want %v", got, want)
	}
	for _, name := range wantBiases {
		if info, _ := m.Info(name); info.Role != RoleBias {
			t.Errorf("%s has role %q, want bias", name, info.Role)
		}
	}
	// The copies are separate tensors: changing one changes no other.
	m.Params["fc2.bias"].Data[0] += 1
	if m.Params["b"].Data[0] == m.Params["fc2.bias"].Data[0] || m.Params["b@fc3:2"].Data[0] == m.Params["fc2.bias"].Data[0] {
		t.Fatal("untied biases share their data")
	}
	m.Params["fc2.bias"].Data[0] -= 1

	ref := map[string][]float32{}
	for _, tp := range b.pb.Graph.Initializer {
		ref[tp.GetName()] = floatsOf(tp)
	}
	x := wave(8, 1.5, 0.7)
	s, err := NewSession(m, 2)
	must(t, err)
	logits, err := s.Logits(x)
	must(t, err)
	for r := range 2 {
		in := make([]float64, 4)
		for i := range in {
			in[i] = float64(x[r*4+i])
		}
		// Both sides are float32 sums of 4 products of values below 2: 1e-5 is ample.
		for j, w := range dedupLogits(in, ref) {
			if g := float64(logits[r*3+j]); math.Abs(g-w) > 1e-5 {
				t.Errorf("example %d logit %d = %g, want %g", r, j, g, w)
			}
		}
	}

	spec, _, err := Symmetries(m)
	must(t, err)
	if len(spec.Groups) != 3 {
		t.Errorf("%d groups, want one per hidden layer (3): %+v", len(spec.Groups), spec.Groups)
	}

	out := filepath.Join(t.TempDir(), "untied.onnx")
	// Parameters under a name the model does not have (the deduplicated file's reading of
	// fc3's bias) are refused, not silently dropped.
	if err := m.Save(out, params.Set{"fc3.bias": m.Params["b"]}); err == nil || !strings.Contains(err.Error(), `"fc3.bias"`) {
		t.Errorf("saving a parameter the model lacks: %v, want an error naming it", err)
	}
	must(t, m.Save(out, nil))
	back, err := Load(out)
	must(t, err)
	if len(back.Nodes) != len(m.Nodes) || len(back.Params) != len(m.Params) {
		t.Errorf("written file has %d nodes and %d parameters, want %d and %d", len(back.Nodes), len(back.Params), len(m.Nodes), len(m.Params))
	}
	names := map[string]bool{}
	for _, tp := range back.proto.Graph.Initializer {
		names[tp.GetName()] = true
	}
	for name, p := range m.Params {
		if !names[name] || !slices.Equal(back.Params[name].Data, p.Data) {
			t.Errorf("written file: initializer %q missing or changed", name)
		}
	}
}

// TestAdoptNamesAcrossDeduplication matches a deduplicated checkpoint with an undeduplicated
// one of the same network, in both orders: the second takes the first one's names, and its
// written file uses them.
func TestAdoptNamesAcrossDeduplication(t *testing.T) {
	for _, first := range []bool{true, false} {
		a, err := dedupMLP(t, first).Model()
		must(t, err)
		b, err := dedupMLP(t, !first).Model()
		must(t, err)
		must(t, SameArchitecture(a, b))
		must(t, b.AdoptNames(a))
		if !slices.Equal(a.Trainable(), b.Trainable()) {
			t.Errorf("shared=%v first: names %v, then %v", first, a.Trainable(), b.Trainable())
		}
		for i := range a.Nodes {
			if !slices.Equal(a.Nodes[i].Inputs, b.Nodes[i].Inputs) {
				t.Errorf("node %q reads %v, then %v", a.Nodes[i].Name, a.Nodes[i].Inputs, b.Nodes[i].Inputs)
			}
		}
		out := filepath.Join(t.TempDir(), "renamed.onnx")
		must(t, b.Save(out, nil))
		back, err := Load(out)
		must(t, err)
		if !slices.Equal(back.Trainable(), a.Trainable()) {
			t.Errorf("written file names %v, want %v", back.Trainable(), a.Trainable())
		}
	}
}

func TestSameArchitectureComparesWiring(t *testing.T) {
	a, err := dedupMLP(t, true).Model()
	must(t, err)
	// fc3 reads fc1's output: the same operators and shapes, wired differently.
	other := dedupMLP(t, true)
	other.pb.Graph.Node[5].Input[0] = "a1" // fc3 (after Identity, fc1, relu1, fc2, relu2)
	b, err := other.Model()
	must(t, err)
	if err := SameArchitecture(a, b); err == nil || !strings.Contains(err.Error(), `"fc3"`) {
		t.Errorf("rewired fc3: %v, want an error naming node fc3", err)
	}
	// A parameter where the other has a computed value.
	c := tinyMLP(t, "Relu")
	d := tinyMLP(t, "Relu")
	d.pb.Graph.Node[2].Input[2] = "h"
	mc, err := c.Model()
	must(t, err)
	md, err := d.Model()
	must(t, err)
	if err := SameArchitecture(mc, md); err == nil || !strings.Contains(err.Error(), `parameter "b2"`) || !strings.Contains(err.Error(), `value "h"`) {
		t.Errorf("bias replaced by a value: %v", err)
	}
	if err := md.AdoptNames(mc); err == nil {
		t.Error("AdoptNames accepted another architecture")
	}
}

// TestUntieChainsAndListedInitializers covers an Identity of an Identity and a file that lists
// its initializers as graph inputs (IR version 3): the copies are listed too, and the data input
// stays the data input.
func TestUntieChainsAndListedInitializers(t *testing.T) {
	b := dedupMLP(t, true)
	g := b.pb.Graph
	// fc2 reads Identity(Identity(b)) instead of Identity(b).
	must(t, b.Node("Identity", "Identity_1", []string{"fc2.bias"}, []string{"fc2.bias.copy"}))
	last := g.Node[len(g.Node)-1]
	g.Node = append([]*onnxpb.NodeProto{g.Node[0], last}, g.Node[1:len(g.Node)-1]...)
	for _, n := range g.Node {
		if n.GetName() == "fc2" {
			n.Input[2] = "fc2.bias.copy"
		}
	}
	for _, init := range g.Initializer {
		g.Input = append(g.Input, valueInfoProto(init.GetName(), nil))
	}
	m, err := b.Model()
	must(t, err)
	if m.Input.Name != "x" {
		t.Errorf("data input %q, want x", m.Input.Name)
	}
	if got, want := m.Trainable(), []string{"w1", "w2", "w3", "w4", "b4", "b", "fc2.bias.copy", "b@fc3:2"}; !slices.Equal(got, want) {
		t.Errorf("trainable parameters %v, want %v", got, want)
	}
	listed := map[string]bool{}
	for _, v := range m.proto.Graph.Input {
		listed[v.GetName()] = true
	}
	for _, name := range m.Trainable() {
		if !listed[name] {
			t.Errorf("initializer %q is not listed as a graph input as the others are", name)
		}
	}
	if len(m.proto.Graph.Input) != len(m.Params)+1 {
		t.Errorf("%d graph inputs, want the data input and %d initializers", len(m.proto.Graph.Input), len(m.Params))
	}
}
