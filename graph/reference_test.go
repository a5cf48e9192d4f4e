package graph

import (
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
	"github.com/ltransfer/ltransfer/params"
)

// fixtures maps each reference file in testdata/ref to the model PyTorch computed it on.
var fixtures = []struct {
	name  string
	model string
	grads bool
	// lowRank are the weights whose gradient LossAndFactoredGrad factors at the reference batch.
	lowRank []string
}{
	{"mlp", "mlp/seed1/ckpt_005.onnx", true, []string{"fc1.weight"}},
	{"linear512", "linear512/seed1/ckpt_010.onnx", true, []string{"fc1.weight"}},
	{"cnn", "cnn/seed1/ckpt_002.onnx", true, nil},
	{"resnet", "resnet/seed1/ckpt_002.onnx", true, nil},
	{"cnn-eval", "cnn-eval/model.onnx", false, nil},
	{"depthwise", "depthwise/model.onnx", true, nil},
}

// loadFixture loads the model of the named fixture.
func loadFixture(t *testing.T, name string) *Model {
	t.Helper()
	for _, f := range fixtures {
		if f.name == name {
			m, err := Load(testdataPath(f.model))
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
	t.Fatalf("no fixture %q", name)
	return nil
}

func testdataPath(parts ...string) string {
	return filepath.Join(append([]string{"..", "testdata"}, parts...)...)
}

// reference is what testdata/gen/make_fixtures.py saved from PyTorch for one fixed batch.
type reference struct {
	input  []float32
	labels []int64
	logits []float32
	loss   float32
	grads  map[string][]float32
	all    map[string][]float32 // every float tensor of the file, by name
}

func loadReference(t *testing.T, name string) reference {
	t.Helper()
	return readReference(t, testdataPath("ref", name+".pb"))
}

// readReference reads a reference file written by make_fixtures.write_ref or
// torchvision_models.write_reference.
func readReference(t *testing.T, path string) reference {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g onnxpb.GraphProto
	if err := proto.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	ref := reference{grads: map[string][]float32{}, all: map[string][]float32{}}
	for _, tp := range g.Initializer {
		if tp.GetDataType() == int32(onnxpb.TensorProto_FLOAT) {
			ref.all[tp.GetName()] = floatsOf(tp)
		}
		switch n := tp.GetName(); {
		case n == "input":
			ref.input = floatsOf(tp)
		case n == "labels":
			if ref.labels, err = int64sOf(tp); err != nil {
				t.Fatal(err)
			}
		case n == "logits":
			ref.logits = floatsOf(tp)
		case n == "loss":
			ref.loss = floatsOf(tp)[0]
		case len(n) > 5 && n[:5] == "grad/":
			ref.grads[n[5:]] = floatsOf(tp)
		}
	}
	return ref
}

// TestMatchesPyTorch checks the Gorgonia engine against PyTorch on every fixture: evaluation
// logits within 1e-4 absolute, the training-mode loss within 1e-5 and every parameter gradient
// within 1e-4 absolute or 1e-3 relative. Both sides compute in float32, so the differences are
// accumulation-order noise, orders of magnitude below these bounds.
func TestMatchesPyTorch(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			m, err := Load(testdataPath(fx.model))
			if err != nil {
				t.Fatal(err)
			}
			ref := loadReference(t, fx.name)
			s, err := NewSession(m, len(ref.labels))
			if err != nil {
				t.Fatal(err)
			}
			logits, err := s.Logits(ref.input)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(logits, ref.logits); d > 1e-4 {
				t.Errorf("logits differ from PyTorch by %g", d)
			}
			if !fx.grads {
				return
			}
			loss, grads, err := s.LossAndGrad(ref.input, ref.labels)
			if err != nil {
				t.Fatal(err)
			}
			checkGrads(t, "dense", loss, grads, ref)
			// The factored gradients, expanded, are the same gradients.
			loss, op, err := s.LossAndFactoredGrad(ref.input, ref.labels)
			if err != nil {
				t.Fatal(err)
			}
			expanded := params.Set{}
			for name, g := range op.Params {
				expanded[name] = g
			}
			for name, l := range op.LowRank {
				if _, dup := expanded[name]; dup {
					t.Errorf("%q is both dense and low rank", name)
				}
				expanded[name] = l.Dense()
			}
			checkGrads(t, "factored", loss, expanded, ref)
			// The 784-wide first layers are factored at a batch of 32; the 10-row outputs are not.
			for _, name := range fx.lowRank {
				if op.LowRank[name] == nil || op.LowRank[name].Rank != len(ref.labels) {
					t.Errorf("%q is not factored with rank %d", name, len(ref.labels))
				}
			}
			if len(op.LowRank) != len(fx.lowRank) {
				t.Errorf("factored %d weights, want %v", len(op.LowRank), fx.lowRank)
			}
			// Nor is the dense gradient of a factored weight computed: the factored program has
			// no buffer that could hold it.
			for name := range op.LowRank {
				for _, size := range s.factored.vm.sizes {
					if size >= len(m.Params[name].Data) {
						t.Errorf("the factored program has a buffer of %d values, as large as %q", size, name)
					}
				}
			}
		})
	}
}

// checkGrads compares a loss and gradients with PyTorch's, within the bounds of TestMatchesPyTorch.
func checkGrads(t *testing.T, kind string, loss float64, grads params.Set, ref reference) {
	t.Helper()
	if d := math.Abs(loss - float64(ref.loss)); d > 1e-5 {
		t.Errorf("%s: loss %g, PyTorch %g", kind, loss, ref.loss)
	}
	if len(grads) != len(ref.grads) {
		t.Errorf("%s: %d gradients, PyTorch has %d", kind, len(grads), len(ref.grads))
	}
	for name, want := range ref.grads {
		g, ok := grads[name]
		if !ok {
			t.Errorf("%s: no gradient for %q", kind, name)
			continue
		}
		for i := range want {
			diff := math.Abs(float64(g.Data[i] - want[i]))
			if diff > 1e-4 && diff > 1e-3*math.Abs(float64(want[i])) {
				t.Errorf("%s: gradient of %q differs at %d: %g, PyTorch %g", kind, name, i, g.Data[i], want[i])
				break
			}
		}
	}
}

// TestSessionLeavesParamsUntouched runs every program of a session twice on every fixture and
// checks that the parameters bound to the graphs (which all programs share) still hold the
// model's values and that the second runs give bit-identical results: no operator computes in
// place on a parameter.
func TestSessionLeavesParamsUntouched(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			m, err := Load(testdataPath(fx.model))
			if err != nil {
				t.Fatal(err)
			}
			ref := loadReference(t, fx.name)
			s, err := NewSession(m, len(ref.labels))
			if err != nil {
				t.Fatal(err)
			}
			run := func() [][]float32 {
				var out [][]float32
				logits, err := s.Logits(ref.input)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, logits)
				if !fx.grads {
					return out
				}
				for _, factored := range []bool{false, true} {
					var g params.Set
					if factored {
						_, op, err := s.LossAndFactoredGrad(ref.input, ref.labels)
						if err != nil {
							t.Fatal(err)
						}
						g = op.Params
						for _, name := range slices.Sorted(maps.Keys(op.LowRank)) {
							out = append(out, op.LowRank[name].U, op.LowRank[name].V)
						}
					} else if _, g, err = s.LossAndGrad(ref.input, ref.labels); err != nil {
						t.Fatal(err)
					}
					for _, name := range slices.Sorted(maps.Keys(g)) {
						out = append(out, g[name].Data)
					}
				}
				stats, err := s.NormStats(func() ([]float32, bool) { return nil, false })
				if m.hasOp("BatchNormalization") {
					if err == nil {
						t.Fatal("NormStats without batches succeeded")
					}
				} else if err != nil {
					t.Fatal(err)
				} else {
					for _, name := range slices.Sorted(maps.Keys(stats)) {
						out = append(out, stats[name].Data)
					}
				}
				return out
			}
			first, second := run(), run()
			for i := range first {
				if !slices.Equal(first[i], second[i]) {
					t.Fatalf("output %d differs between two runs", i)
				}
			}
			for name, p := range m.Params {
				if !slices.Equal(s.params[name].Data, p.Data) {
					t.Errorf("parameter %q changed", name)
				}
			}
		})
	}
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// TestNormStatsMatchPyTorch recomputes the BatchNorm running statistics of the cnn and resnet
// fixtures over two batches of 16 reference images and compares them with PyTorch's, which
// testdata/gen/make_bnstats_reference.py computed with momentum=None (the plain average of the
// batch means and unbiased variances). The statistics are averages of a few thousand float32
// products, so 1e-4 (absolute, or relative for large variances) is float32 noise with margin.
func TestNormStatsMatchPyTorch(t *testing.T) {
	for _, name := range []string{"cnn", "resnet"} {
		t.Run(name, func(t *testing.T) {
			m := loadFixture(t, name)
			ref := loadReference(t, name)
			want := loadReference(t, name+"-bnstats")
			if len(want.all) == 0 {
				t.Fatal("no reference statistics")
			}
			half := len(ref.input) / 2
			next := func() func() ([]float32, bool) {
				batches := [][]float32{ref.input[:half], ref.input[half:]}
				return func() ([]float32, bool) {
					if len(batches) == 0 {
						return nil, false
					}
					b := batches[0]
					batches = batches[1:]
					return b, true
				}
			}
			s, err := NewSession(m, 16)
			if err != nil {
				t.Fatal(err)
			}
			copied, err := s.NormStats(next())
			if err != nil {
				t.Fatal(err)
			}
			// UpdateNormStats, in the session's own parameters.
			var inPlace params.Set
			if err := s.UpdateNormStats(next()); err != nil {
				t.Fatal(err)
			}
			if err := s.UpdateParams(func(p params.Set) error { inPlace = p; return nil }); err != nil {
				t.Fatal(err)
			}
			for pname, w := range want.all {
				for _, got := range []params.Set{copied, inPlace} {
					checkStats(t, pname, got[pname].Data, w, m.Params[pname].Data)
				}
			}
		})
	}
}

// checkStats compares recomputed BatchNorm statistics g with PyTorch's w; they must differ from
// the checkpoint's, old.
func checkStats(t *testing.T, pname string, g, w, old []float32) {
	t.Helper()
	for i := range w {
		diff := math.Abs(float64(g[i] - w[i]))
		if diff > 1e-4 && diff > 1e-4*math.Abs(float64(w[i])) {
			t.Errorf("%s[%d] = %g, PyTorch %g", pname, i, g[i], w[i])
			break
		}
	}
	if slices.Equal(g, old) {
		t.Errorf("%s unchanged from the checkpoint", pname)
	}
}
