package graph

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

func TestFanInOfFixtures(t *testing.T) {
	cases := []struct {
		model string
		want  map[string]int // parameter -> fan-in; -1: no fan-in (ErrNoFanIn)
	}{
		{"mlp/seed1/ckpt_000.onnx", map[string]int{"fc1.weight": 784, "fc1.bias": 784, "fc2.weight": 256, "fc2.bias": 256}},
		// Linear(bias=False) exported as Transpose then MatMul: the [out, in] weight's second axis.
		{"linear512/seed1/ckpt_000.onnx", map[string]int{"fc1.weight": 784, "fc2.weight": 512}},
		{"cnn/seed1/ckpt_000.onnx", map[string]int{
			"conv1.weight": 1 * 9, "conv1.bias": 9, "conv2.weight": 8 * 9, "conv2.bias": 72, "fc.weight": 784, "fc.bias": 784,
			"bn1.weight": -1, "bn1.bias": -1, "bn2.running_mean": -1, "bn2.running_var": -1,
		}},
		{"resnet/seed1/ckpt_000.onnx", map[string]int{
			"conv1.weight": 9, "block_a.conv1.weight": 72, "block_b.conv1.weight": 72, "block_b.conv2.weight": 144,
			"block_b.proj_conv.weight": 8, "block_c.conv1.weight": 144, "fc.weight": 16, "fc.bias": 16,
			"block_b.proj_bn.weight": -1, "block_c.bn2.running_var": -1,
		}},
		// BatchNorm folded into the convs: the names are torch's value names, the fan-ins the same.
		{"cnn-eval/model.onnx", map[string]int{"onnx::Conv_28": 9, "onnx::Conv_29": 9, "onnx::Conv_31": 72, "onnx::Conv_32": 72, "fc.weight": 784}},
	}
	for _, c := range cases {
		t.Run(c.model, func(t *testing.T) {
			m, err := Load(testdataPath(c.model))
			must(t, err)
			for name, want := range c.want {
				got, err := m.FanIn(name)
				switch {
				case want < 0 && !errors.Is(err, ErrNoFanIn):
					t.Errorf("FanIn(%q) = %d, %v; want an error wrapping ErrNoFanIn", name, got, err)
				case want >= 0 && (err != nil || got != want):
					t.Errorf("FanIn(%q) = %d, %v; want %d", name, got, err, want)
				}
			}
			if _, err := m.FanIn("no.such.param"); err == nil {
				t.Error("FanIn of an unknown name succeeded")
			}
		})
	}
}

// TestFanInBoundsPyTorchInit checks the fan-ins against PyTorch itself: every ckpt_000 holds
// PyTorch's default initialization, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, so
// every value must lie within the bound, and a tensor of n >= 64 values must come close to it
// (all n below 0.8 of the bound has probability 0.8^n <= 7e-7): a fan-in too small by a factor of
// 1.6 or more breaks the first check, one too large by 1.6 or more breaks the second.
func TestFanInBoundsPyTorchInit(t *testing.T) {
	for _, model := range []string{"mlp/seed1/ckpt_000.onnx", "mlp/seed2/ckpt_000.onnx", "linear512/seed1/ckpt_000.onnx", "cnn/seed1/ckpt_000.onnx", "resnet/seed1/ckpt_000.onnx"} {
		t.Run(model, func(t *testing.T) {
			m, err := Load(testdataPath(model))
			must(t, err)
			checked := 0
			for _, info := range m.Infos {
				if info.Role != RoleWeight && info.Role != RoleBias {
					continue
				}
				f, err := m.FanIn(info.Name)
				must(t, err)
				bound := 1 / math.Sqrt(float64(f))
				var top float64
				for _, v := range m.Params[info.Name].Data {
					top = math.Max(top, math.Abs(float64(v)))
				}
				if top > bound*(1+1e-6) {
					t.Errorf("%s: max |value| %g exceeds 1/sqrt(%d) = %g", info.Name, top, f, bound)
				}
				if n := len(m.Params[info.Name].Data); n >= 64 && top < 0.8*bound {
					t.Errorf("%s: max |value| %g of %d values is below 0.8/sqrt(%d) = %g", info.Name, top, n, f, 0.8*bound)
				}
				checked++
			}
			if checked == 0 {
				t.Fatal("no weights or biases")
			}
		})
	}
}

// TestFanInLayouts covers layouts the fixtures lack: Gemm with transB=0 ([in, out]), a plain
// MatMul weight ([in, out]) with its bias added by Add, a weight read through Identity and a
// default Transpose, a grouped convolution, a weight two layers disagree about (read through
// Transpose nodes: an initializer read by two layers would be untied at load), and one read
// through Flatten, which FanIn does not follow.
func TestFanInLayouts(t *testing.T) {
	zeros := func(shape ...int) *params.Tensor {
		return &params.Tensor{Shape: shape, Data: make([]float32, params.Size(shape))}
	}
	b := NewBuilder("layouts", 13)
	b.Input("x", []int{-1, 4, 5, 5})
	b.Output("y", []int{-1, 3})
	b.Initializer("conv.weight", zeros(6, 2, 3, 3))
	b.Initializer("gemm.weight", zeros(150, 7)) // [in, out]
	b.Initializer("mm.weight", zeros(7, 5))     // [in, out]
	b.Initializer("mm.bias", zeros(5))
	b.Initializer("t.weight", zeros(3, 5)) // [out, in], read through Identity "tw" and Transpose
	b.Initializer("shared", zeros(3, 5))
	b.Initializer("flat.weight", zeros(3, 1, 5))
	for _, err := range []error{
		b.Node("Conv", "conv", []string{"x", "conv.weight"}, []string{"c"}, Attr{"group", int64(2)}, Attr{"kernel_shape", []int64{3, 3}}),
		b.Node("Flatten", "flat", []string{"c"}, []string{"f"}),
		b.Node("Gemm", "gemm", []string{"f", "gemm.weight"}, []string{"g"}),
		b.Node("MatMul", "mm", []string{"g", "mm.weight"}, []string{"h"}),
		b.Node("Add", "mm_bias", []string{"mm.bias", "h"}, []string{"hb"}),
		b.Node("Identity", "id", []string{"t.weight"}, []string{"tw"}),
		b.Node("Transpose", "tr", []string{"tw"}, []string{"twt"}),
		b.Node("MatMul", "last", []string{"hb", "twt"}, []string{"y"}),
		b.Node("Transpose", "st", []string{"shared"}, []string{"sT"}),
		b.Node("Gemm", "shared1", []string{"hb", "sT"}, []string{"s1"}), // [in, out]: fan-in 5
		b.Node("Transpose", "stt", []string{"sT"}, []string{"sTT"}),
		b.Node("MatMul", "shared2", []string{"s1", "sTT"}, []string{"s2"}), // [in, out]: fan-in 3
		b.Node("Flatten", "fw", []string{"flat.weight"}, []string{"fwf"}),
		b.Node("Gemm", "flat", []string{"hb", "fwf"}, []string{"s3"}, Attr{"transB", int64(1)}),
	} {
		must(t, err)
	}
	m, err := b.Model()
	must(t, err)
	// Untied at load, the weight read through the Identity takes the Identity's output name.
	for name, want := range map[string]int{"conv.weight": 2 * 9, "gemm.weight": 150, "mm.weight": 7, "mm.bias": 7, "tw": 5} {
		if got, err := m.FanIn(name); err != nil || got != want {
			t.Errorf("FanIn(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	if got, err := m.FanIn("shared"); err == nil {
		t.Errorf("FanIn of a weight read as [out, in] and as [in, out] = %d, want an error", got)
	} else {
		t.Log(err)
	}
	if _, err := m.FanIn("flat.weight"); !errors.Is(err, ErrNoFanIn) || !strings.Contains(err.Error(), `node "fw" (Flatten)`) {
		t.Errorf("FanIn of a weight read through Flatten: %v, want ErrNoFanIn naming the Flatten", err)
	}
}
