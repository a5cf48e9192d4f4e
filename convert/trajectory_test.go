package convert

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/params"
)

// dedupNet writes a 4-4-4-3 network of Gemm and Relu layers, with a BatchNormalization exported
// in training mode after fc1 (the written files are then an inference-mode copy of the
// initialization). With shared, its two hidden biases are one initializer "b" that fc1 and fc2
// both read, as an exporter may write equal biases; otherwise fc2 reads its own "fc2.bias".
// Untied at load, the shared form names fc2's copy "b@fc2:2", not "fc2.bias".
func dedupNet(t *testing.T, path string, shared bool, values map[string][]float32) {
	t.Helper()
	b := graph.NewBuilder("dedup", 13)
	b.Input("x", []int{-1, 4})
	b.Output("y", []int{-1, 3})
	shapes := map[string][]int{"w1": {4, 4}, "w2": {4, 4}, "w3": {3, 4}, "b3": {3}, "b": {4}}
	for _, name := range []string{"w1", "w2", "w3", "b3", "b"} {
		b.Initializer(name, &params.Tensor{Shape: shapes[name], Data: values[name]})
	}
	for name, v := range map[string]float32{"bn.weight": 1, "bn.bias": 0, "bn.running_mean": 0, "bn.running_var": 1} {
		b.Initializer(name, &params.Tensor{Shape: []int{4}, Data: []float32{v, v, v, v}})
	}
	bias2 := "fc2.bias"
	if shared {
		bias2 = "b"
	} else {
		b.Initializer(bias2, &params.Tensor{Shape: []int{4}, Data: values[bias2]})
	}
	for _, err := range []error{
		b.Node("Gemm", "fc1", []string{"x", "w1", "b"}, []string{"h1"}, graph.Attr{Name: "transB", Value: int64(1)}),
		b.Node("BatchNormalization", "bn", []string{"h1", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"},
			[]string{"n1", "bn.mean_out", "bn.var_out"}, graph.Attr{Name: "training_mode", Value: int64(1)}),
		b.Node("Relu", "relu1", []string{"n1"}, []string{"a1"}),
		b.Node("Gemm", "fc2", []string{"a1", "w2", bias2}, []string{"h2"}, graph.Attr{Name: "transB", Value: int64(1)}),
		b.Node("Relu", "relu2", []string{"h2"}, []string{"a2"}),
		b.Node("Gemm", "fc3", []string{"a2", "w3", "b3"}, []string{"y"}, graph.Attr{Name: "transB", Value: int64(1)}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// vectors is a small in-memory data set of 4 features and 3 classes.
type vectors struct{}

func (vectors) Len() int     { return 12 }
func (vectors) Shape() []int { return []int{4} }
func (vectors) Batch(idx []int, x []float32, y []int64) error {
	for i, e := range idx {
		for j := range 4 {
			x[i*4+j] = float32(math.Cos(float64(3*e + j)))
		}
		y[i] = int64(e % 3)
	}
	return nil
}

// TestTransferOntoDeduplicatedInit transfers a run whose checkpoints hold separate biases onto an
// initialization whose equal biases were deduplicated: the initialization takes the run's
// parameter names, and the written file holds theta2_0 + (theta1_1 - theta1_0) under them (the
// naive method, one step).
func TestTransferOntoDeduplicatedInit(t *testing.T) {
	dir := t.TempDir()
	values := func(phase float64) map[string][]float32 {
		v := map[string][]float32{}
		for name, n := range map[string]int{"w1": 16, "w2": 16, "w3": 12, "b3": 3, "b": 4, "fc2.bias": 4} {
			v[name] = make([]float32, n)
			for i := range v[name] {
				v[name][i] = float32(0.5 * math.Sin(phase+float64(i)+float64(len(name))))
			}
		}
		return v
	}
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	theta0, theta1, init := values(0), values(1), values(2)
	dedupNet(t, filepath.Join(run, "ckpt_000.onnx"), false, theta0)
	dedupNet(t, filepath.Join(run, "ckpt_001.onnx"), false, theta1)
	dedupNet(t, filepath.Join(dir, "init.onnx"), true, init)

	out := filepath.Join(dir, "out")
	job := Job{Trajectory: []string{run}, Init: filepath.Join(dir, "init.onnx"), Out: out, Save: map[string]bool{"final": true},
		Options: Options{Method: "naive", Steps: 1, Schedule: Uniform, Batch: 4, GradBatches: 1, NormBatches: 1,
			Train: vectors{}, Val: vectors{}}}
	if _, err := job.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	final, err := graph.Load(filepath.Join(out, "final.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := final.Params["b@fc2:2"]; ok {
		t.Error("final.onnx keeps the initialization's own name b@fc2:2 for fc2's bias")
	}
	// The initialization's fc2 bias is its shared "b".
	initOf := map[string]string{"fc2.bias": "b"}
	for _, name := range []string{"w1", "w2", "w3", "b3", "b", "fc2.bias"} {
		got, ok := final.Params[name]
		if !ok {
			t.Errorf("final.onnx has no parameter %q", name)
			continue
		}
		from := name
		if s, ok := initOf[name]; ok {
			from = s
		}
		for i, g := range got.Data {
			want := float64(init[from][i]) + float64(theta1[name][i]) - float64(theta0[name][i])
			// float32 sums of three values below 1.5.
			if math.Abs(float64(g)-want) > 1e-6 {
				t.Errorf("%s[%d] = %g, want theta2_0 + theta1_1 - theta1_0 = %g", name, i, g, want)
				break
			}
		}
	}
}
