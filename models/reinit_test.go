package models

import (
	"bytes"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/params"
)

func testdataPath(parts ...string) string {
	return filepath.Join(append([]string{"..", "testdata"}, parts...)...)
}

// checkUniform tests data against U(-b, b), b = 1/sqrt(fanIn). Every value must lie within
// float32(b) (a hard bound: rounding to float32 is monotone). For n values the sample mean has
// standard deviation b/sqrt(3n), and the sample variance, whose mean is b^2/3, has relative
// standard deviation sqrt((mu4/sigma^4 - 1)/n) = sqrt(0.8/n) (a uniform's fourth moment is
// b^4/5 = 1.8 sigma^4); each of 10 equal bins holds n/10 values with binomial deviation
// sqrt(0.09 n). The tolerances are 6 of those standard deviations, so a correct draw fails each
// with probability about 2e-9. For scale: at the smallest n checked (4096) a fan-in 10% off moves
// the variance by 6.5 deviations, and a normal draw of the same variance overfills each of the
// two middle bins by 7.6 (besides crossing the bound); at n = 802816 (an fc1.weight of
// 1024 x 784) these are 91 and 106 deviations.
func checkUniform(t *testing.T, name string, data []float32, fanIn int) {
	t.Helper()
	b := 1 / math.Sqrt(float64(fanIn))
	n := float64(len(data))
	var sum, sumSq float64
	bins := make([]float64, 10)
	for _, v := range data {
		x := float64(v)
		if math.Abs(x) > float64(float32(b)) {
			t.Fatalf("%s: value %g outside ±1/sqrt(%d) = ±%g", name, x, fanIn, b)
		}
		sum += x
		sumSq += x * x
		bins[min(int((x+b)/(2*b)*10), 9)]++
	}
	if len(data) < 4096 {
		return // the bound alone
	}
	mean := sum / n
	variance := sumSq/n - mean*mean
	want := b * b / 3
	if tol := 6 * b / math.Sqrt(3*n); math.Abs(mean) > tol {
		t.Errorf("%s: mean %g, want 0 ± %g", name, mean, tol)
	}
	if tol := 6 * math.Sqrt(0.8/n); math.Abs(variance/want-1) > tol {
		t.Errorf("%s: variance %g, want (1/sqrt(%d))^2/3 = %g within a relative %g", name, variance, fanIn, want, tol)
	}
	for i, c := range bins {
		if tol := 6 * math.Sqrt(0.09*n); math.Abs(c-n/10) > tol {
			t.Errorf("%s: bin %d of 10 holds %g values, want %g ± %g", name, i, c, n/10, tol)
		}
	}
}

// TestInitDistributions checks the drawn values of large layers of each kind against PyTorch's
// default laws (see checkUniform for the tolerances), and BatchNorm's constants.
func TestInitDistributions(t *testing.T) {
	cases := []struct {
		spec  string
		fanIn map[string]int // every weight and bias, by fan-in
	}{
		{"mlp:784,1024,10", map[string]int{"fc1.weight": 784, "fc1.bias": 784, "fc2.weight": 1024, "fc2.bias": 1024}},
		{"convnet:32,64;in=3x8x8;classes=10", map[string]int{"conv1.weight": 3 * 9, "conv2.weight": 32 * 9, "fc.weight": 64 * 4 * 4, "fc.bias": 64 * 4 * 4}},
		{"resnet:16,64;blocks=1;in=3x8x8;classes=10", map[string]int{
			"conv1.weight": 27, "layer1.0.conv1.weight": 144, "layer1.0.conv2.weight": 144,
			"layer2.0.conv1.weight": 144, "layer2.0.conv2.weight": 576, "layer2.0.downsample.0.weight": 16,
			"fc.weight": 64, "fc.bias": 64,
		}},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			m := build(t, c.spec, 11)
			for _, info := range m.Infos {
				data := m.Params[info.Name].Data
				switch info.Role {
				case graph.RoleWeight, graph.RoleBias:
					f, ok := c.fanIn[info.Name]
					if !ok {
						t.Fatalf("%s (%s): no expected fan-in", info.Name, info.Role)
					}
					checkUniform(t, info.Name, data, f)
				case graph.RoleNormScale, graph.RoleRunningVar:
					if slices.ContainsFunc(data, func(v float32) bool { return v != 1 }) {
						t.Errorf("%s (%s) is not all 1", info.Name, info.Role)
					}
				case graph.RoleNormBias, graph.RoleRunningMean:
					if slices.ContainsFunc(data, func(v float32) bool { return v != 0 }) {
						t.Errorf("%s (%s) is not all 0", info.Name, info.Role)
					}
				default:
					t.Errorf("%s has role %s", info.Name, info.Role)
				}
			}
		})
	}
}

// TestSeeds checks that a seed determines the model file byte for byte and that another seed
// draws every weight and bias anew.
func TestSeeds(t *testing.T) {
	for _, spec := range []string{"mlp:784,64,10", "convnet:8,16;in=1x28x28", "resnet:8,16;blocks=1;in=1x28x28"} {
		t.Run(spec, func(t *testing.T) {
			encode := func(seed uint64) ([]byte, *graph.Model) {
				m := build(t, spec, seed)
				data, err := m.Encode(nil)
				must(t, err)
				return data, m
			}
			a, ma := encode(7)
			b, _ := encode(7)
			c, mc := encode(8)
			if !bytes.Equal(a, b) {
				t.Error("the same seed gave different files")
			}
			for _, info := range ma.Infos {
				if info.Role != graph.RoleWeight && info.Role != graph.RoleBias {
					continue
				}
				x, y := ma.Params[info.Name].Data, mc.Params[info.Name].Data
				for i := range x {
					if x[i] == y[i] {
						t.Errorf("%s[%d] is %g for seeds 7 and 8", info.Name, i, x[i])
						break
					}
				}
			}
			if bytes.Equal(a, c) {
				t.Error("seeds 7 and 8 gave the same file")
			}
		})
	}
}

// TestNewDrawsAsReinit checks that a built-in model holds exactly what Reinit draws for it.
func TestNewDrawsAsReinit(t *testing.T) {
	m := build(t, "resnet:4,8;blocks=1;in=1x8x8;classes=3", 21)
	p, err := Reinit(m, 21)
	must(t, err)
	for name, want := range p {
		if !slices.Equal(m.Params[name].Data, want.Data) {
			t.Errorf("%s differs from Reinit's draw", name)
		}
	}
}

// TestReinitFixtures reinitializes trained PyTorch models: names and shapes stay, every weight
// and bias is drawn anew within its bound, BatchNorm goes back to 1, 0, 0, 1, the model with the
// new values saves, loads as the same architecture and runs. For resnet, the BatchNorm values
// equal those of its ckpt_000, PyTorch's own initialization.
func TestReinitFixtures(t *testing.T) {
	for _, c := range []struct{ model, init string }{
		{"mlp/seed1/ckpt_005.onnx", ""},
		{"linear512/seed1/ckpt_010.onnx", ""},
		{"cnn/seed1/ckpt_002.onnx", ""},
		{"resnet/seed1/ckpt_002.onnx", "resnet/seed1/ckpt_000.onnx"},
		{"cnn-eval/model.onnx", ""},
	} {
		t.Run(c.model, func(t *testing.T) {
			m, err := graph.Load(testdataPath(c.model))
			must(t, err)
			p, err := Reinit(m, 3)
			must(t, err)
			if len(p) != len(m.Params) {
				t.Errorf("%d parameters, the model has %d", len(p), len(m.Params))
			}
			for _, info := range m.Infos {
				got, old := p[info.Name], m.Params[info.Name]
				if got == nil || !slices.Equal(got.Shape, info.Shape) || len(got.Data) != len(old.Data) {
					t.Fatalf("%s: missing or reshaped", info.Name)
				}
				switch info.Role {
				case graph.RoleWeight, graph.RoleBias:
					f, err := m.FanIn(info.Name)
					must(t, err)
					checkUniform(t, info.Name, got.Data, f)
					if slices.Equal(got.Data, old.Data) {
						t.Errorf("%s is unchanged", info.Name)
					}
				case graph.RoleNormScale, graph.RoleRunningVar, graph.RoleNormBias, graph.RoleRunningMean:
					want := float32(0)
					if info.Role == graph.RoleNormScale || info.Role == graph.RoleRunningVar {
						want = 1
					}
					if slices.ContainsFunc(got.Data, func(v float32) bool { return v != want }) {
						t.Errorf("%s (%s) is not all %g", info.Name, info.Role, want)
					}
					if slices.Equal(got.Data, old.Data) {
						t.Errorf("%s already held %g: the fixture does not test the reset", info.Name, want)
					}
				}
			}
			if c.init != "" {
				init, err := graph.Load(testdataPath(c.init))
				must(t, err)
				for _, info := range init.Infos {
					if info.Role != graph.RoleWeight && info.Role != graph.RoleBias && !slices.Equal(p[info.Name].Data, init.Params[info.Name].Data) {
						t.Errorf("%s differs from PyTorch's initial value", info.Name)
					}
				}
			}
			path := filepath.Join(t.TempDir(), "reinit.onnx")
			must(t, m.Save(path, p))
			back, err := graph.Load(path)
			must(t, err)
			must(t, graph.SameArchitecture(m, back))
			for name, want := range p {
				if !slices.Equal(back.Params[name].Data, want.Data) {
					t.Errorf("%s did not survive Save and Load", name)
				}
			}
			s, err := graph.NewSession(back, 2)
			must(t, err)
			logits, err := s.Logits(make([]float32, 2*s.ExampleSize()))
			must(t, err)
			if !finite(logits) {
				t.Error("logits not finite")
			}
		})
	}
}

// TestReinitNamesWhatItCannotDraw: a parameter added to the network input is a bias (graph's
// role) of no layer, so it has no fan-in, and Reinit must say which.
func TestReinitNamesWhatItCannotDraw(t *testing.T) {
	b := graph.NewBuilder("shift", Opset)
	b.Input("x", []int{-1, 4})
	b.Output("y", []int{-1, 2})
	b.Initializer("shift", &params.Tensor{Shape: []int{4}, Data: make([]float32, 4)})
	b.Initializer("fc.weight", &params.Tensor{Shape: []int{2, 4}, Data: make([]float32, 8)})
	must(t, b.Node("Add", "add", []string{"x", "shift"}, []string{"h"}))
	must(t, b.Node("Gemm", "fc", []string{"h", "fc.weight"}, []string{"y"}, graph.Attr{Name: "transB", Value: int64(1)}))
	m, err := b.Model()
	must(t, err)
	_, err = Reinit(m, 1)
	if err == nil || !errors.Is(err, graph.ErrNoFanIn) || !strings.HasPrefix(err.Error(), "models: ") || !strings.Contains(err.Error(), `"shift"`) {
		t.Fatalf("got %v, want a models: error naming \"shift\" and wrapping graph.ErrNoFanIn", err)
	}
}
