package train

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/internal/testenv"
	"github.com/ltransfer/ltransfer/params"
)

// refTensor is one initializer of a reference file: float32 or int64 values.
type refTensor struct {
	dims   []int
	floats []float32
	ints   []int64
}

// readRef reads a reference file of testdata/gen/make_train_reference.py: a serialized
// onnx.GraphProto whose initializers (field 5) are TensorProtos with dims (1), data_type (2),
// name (8) and raw_data (9), as numpy_helper.from_array writes them. The protobuf types of the
// graph package are internal to it, so the few fields are decoded here with protowire.
func readRef(t *testing.T, name string) map[string]refTensor {
	t.Helper()
	data, err := os.ReadFile(testenv.Fixture("ref", "train", name))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]refTensor{}
	fields := func(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64)) {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				t.Fatalf("%s: bad tag", name)
			}
			b = b[n:]
			var v []byte
			var x uint64
			switch typ {
			case protowire.BytesType:
				v, n = protowire.ConsumeBytes(b)
			case protowire.VarintType:
				x, n = protowire.ConsumeVarint(b)
			default:
				n = protowire.ConsumeFieldValue(num, typ, b)
			}
			if n < 0 {
				t.Fatalf("%s: bad field %d", name, num)
			}
			b = b[n:]
			f(num, typ, v, x)
		}
	}
	fields(data, func(num protowire.Number, _ protowire.Type, v []byte, _ uint64) {
		if num != 5 {
			return
		}
		var tensor refTensor
		var tname string
		var dtype uint64
		var raw []byte
		fields(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) {
			switch {
			case num == 1 && typ == protowire.VarintType:
				tensor.dims = append(tensor.dims, int(x))
			case num == 1: // packed dims
				for len(v) > 0 {
					d, n := protowire.ConsumeVarint(v)
					tensor.dims = append(tensor.dims, int(d))
					v = v[n:]
				}
			case num == 2:
				dtype = x
			case num == 8:
				tname = string(v)
			case num == 9:
				raw = v
			}
		})
		switch dtype {
		case 1: // FLOAT
			for i := 0; i+4 <= len(raw); i += 4 {
				tensor.floats = append(tensor.floats, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
			}
		case 7: // INT64
			for i := 0; i+8 <= len(raw); i += 8 {
				tensor.ints = append(tensor.ints, int64(binary.LittleEndian.Uint64(raw[i:])))
			}
		default:
			t.Fatalf("%s: tensor %q has data type %d, want raw FLOAT or INT64", name, tname, dtype)
		}
		out[tname] = tensor
	})
	return out
}

// maxDiff returns max |a_i - b_i|.
func maxDiff(a, b []float32) float64 {
	var d float64
	for i, v := range a {
		d = math.Max(d, math.Abs(float64(v)-float64(b[i])))
	}
	return d
}

// TestTrainerMatchesPyTorch takes the SGD steps of testdata/gen/make_train_reference.py (lr
// 0.01, momentum 0.9, weight decay 5e-4, batches of 32 of the first 320 MNIST training images, in
// order) from the mlp and cnn initializations and compares every parameter and BatchNorm running
// statistic with PyTorch's, and every step's loss within 1e-4.
//
// Both sides compute in float32 and differ in the order of their sums: the gradients differ by
// about 1e-7 relative, but the first convolution's weight gradient (up to 0.65) by up to 5e-5, as
// it sums 25088 terms that BatchNorm's backward pass makes cancel (PyTorch's own float32 gradient
// differs from its float64 one by 3e-5 there). For the mlp this leaves the parameters within 1e-4 after
// ten steps (measured: 2e-8). For the cnn it does until a max-pool window's two largest inputs
// are closer than that noise: then the implementations route the window's gradient to different
// inputs, and the runs drift apart. PyTorch's own float32 and float64 runs first disagree on one
// window at step 6 and end 3.7e-4 apart; its float32 runs on 1 and 2 threads end 3.7e-4 apart.
// So the cnn is compared within 1e-5 after five steps, before any such window, and after ten
// steps within 1e-4 or, where that is larger, twice the float32-float64 spread of PyTorch's
// result for that tensor.
func TestTrainerMatchesPyTorch(t *testing.T) {
	batches := readRef(t, "batches.pb")
	input, labels := batches["input"].floats, batches["labels"].ints
	if dims := batches["input"].dims; len(labels) != 320 || fmt.Sprint(dims) != "[320 1 28 28]" || len(input) != 320*784 {
		t.Fatalf("batches.pb holds %d labels and input %v of %d values, want 320 and [320 1 28 28]", len(labels), dims, len(input))
	}
	for _, name := range []string{"mlp", "cnn"} {
		t.Run(name, func(t *testing.T) {
			ref := readRef(t, name+".pb")
			m, err := graph.Load(testenv.Fixture(name, "seed1", "ckpt_000.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			tr, err := NewTrainer(m, nil, 0.9, 5e-4)
			if err != nil {
				t.Fatal(err)
			}
			// compare checks every tensor against PyTorch's "prefix/<name>" within bound(name).
			compare := func(prefix string, bound func(string) float64) {
				got := tr.Params()
				var worst, moved float64
				for _, info := range m.Infos {
					want, ok := ref[prefix+"/"+info.Name]
					if !ok || !slices.Equal(want.dims, info.Shape) || len(want.floats) != len(got[info.Name].Data) {
						t.Fatalf("no PyTorch value %s/%s of shape %v", prefix, info.Name, info.Shape)
					}
					d := maxDiff(got[info.Name].Data, want.floats)
					t.Logf("%s %-18s max |Go - PyTorch| %.2g", prefix, info.Name, d)
					if b := bound(info.Name); d > b {
						t.Errorf("%s %q differs from PyTorch by %.3g, more than %.3g", prefix, info.Name, d, b)
					}
					worst = math.Max(worst, d)
					moved = math.Max(moved, maxDiff(want.floats, m.Params[info.Name].Data))
				}
				t.Logf("%s: max |Go - PyTorch| %.2g over all tensors, which moved by up to %.2g", prefix, worst, moved)
				if moved < 1e-2 {
					t.Errorf("%s: the parameters moved by at most %g: the reference does not test training", prefix, moved)
				}
			}
			for i := range 10 {
				loss, err := tr.Step(input[i*32*784:(i+1)*32*784], labels[i*32:(i+1)*32], 0.01)
				if err != nil {
					t.Fatal(err)
				}
				if want := float64(ref["loss"].floats[i]); math.Abs(loss-want) > 1e-4 {
					t.Errorf("step %d: loss %.7f, PyTorch %.7f", i, loss, want)
				}
				if name == "cnn" && i == 4 {
					compare("param_step5", func(string) float64 { return 1e-5 })
				}
			}
			compare("param", func(p string) float64 {
				if name == "mlp" {
					return 1e-4
				}
				return math.Max(1e-4, 2*maxDiff(ref["param/"+p].floats, ref["param_float64/"+p].floats))
			})
		})
	}
}

func TestLRSchedule(t *testing.T) {
	for _, c := range []struct {
		s        Schedule
		step     int
		want     float64
		describe string
	}{
		{Constant, 3, 0.1, "constant"},
		{Cosine, 0, 0.1, "cosine starts at the base rate"},
		{Cosine, 1, 0.1 * (1 + math.Sqrt2/2) / 2, "cosine after an eighth of a turn"},
		{Cosine, 2, 0.05, "cosine halfway"},
		{Cosine, 3, 0.1 * (1 - math.Sqrt2/2) / 2, "cosine at the last step"},
	} {
		if got := c.s.rate(0.1, c.step, 4); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("%s: rate(step %d of 4) = %v, want %v", c.describe, c.step, got, c.want)
		}
	}
	if _, err := ParseSchedule("linear"); err == nil || !strings.HasPrefix(err.Error(), "train: ") {
		t.Errorf("unknown schedule: error %v", err)
	}
}

func TestTrainOptionsCheck(t *testing.T) {
	good := Options{Epochs: 1, Batch: 32, LR: 0.01, Momentum: 0.9, Schedule: Constant, Out: "out"}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		change func(*Options)
		want   string
	}{
		{func(o *Options) { o.Epochs = 0 }, "epochs"},
		{func(o *Options) { o.Batch = 0 }, "batch size"},
		{func(o *Options) { o.LR = 0 }, "learning rate"},
		{func(o *Options) { o.LR = math.NaN() }, "learning rate"},
		{func(o *Options) { o.Momentum = 1 }, "momentum"},
		{func(o *Options) { o.WeightDecay = -1 }, "weight decay"},
		{func(o *Options) { o.Schedule = "step" }, "schedule"},
		{func(o *Options) { o.EverySteps = -1 }, "checkpoint interval"},
		{func(o *Options) { o.EvalEvery = -1 }, "evaluation interval"},
		{func(o *Options) { o.Out = "" }, "output folder"},
	} {
		o := good
		c.change(&o)
		err := o.Check()
		if err == nil || !strings.HasPrefix(err.Error(), "train: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one about the %s", o, err, c.want)
		}
	}
}

// TestTrainMNIST trains the mlp fixture's initialization for one epoch on 6400 real MNIST
// images and checks what the run promises: validation accuracy far above chance (the
// initialization has 10.4%), ckpt_000 (the initialization itself) and ckpt_001 written as a
// trajectory LoadTrajectory accepts, the last checkpoint scoring what train.json says, and
// train.json holding the settings, the evaluations at steps 0, 50 and 100, and the epoch.
func TestTrainMNIST(t *testing.T) {
	train, val := testenv.MNIST(t, 6400, 2000)
	m, err := graph.Load(testenv.Fixture("mlp", "seed1", "ckpt_000.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	var calls []Progress
	opt := Options{Epochs: 1, Batch: 64, LR: 0.01, Momentum: 0.9, WeightDecay: 5e-4, Schedule: Cosine,
		Seed: 1, EvalEvery: 50, Out: out, Train: train, Val: val, Data: "mnist",
		Progress: func(p Progress) { calls = append(calls, p) }}
	rep, err := Run(context.Background(), m, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 100 || calls[99].Step != 100 || calls[99].Steps != 100 || calls[0].Epoch != 1 || calls[49].Eval == nil || calls[48].Eval != nil {
		t.Errorf("progress calls: %d, last %+v", len(calls), calls[len(calls)-1])
	}
	if calls[0].LR != 0.01 || calls[99].LR >= 1e-4 {
		t.Errorf("cosine learning rates: first %g, last %g", calls[0].LR, calls[99].LR)
	}
	final := rep.Epochs[0].Accuracy
	t.Logf("validation accuracy %.4f -> %.4f, train loss %.4f, %.1fs", rep.Evals[0].Accuracy, final, rep.Epochs[0].TrainLoss, rep.Seconds)
	if rep.Evals[0].Accuracy > 0.2 || final < 0.85 {
		t.Errorf("validation accuracy went from %.4f to %.4f, want from chance to above 0.85", rep.Evals[0].Accuracy, final)
	}

	traj, err := convert.LoadTrajectory(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(traj.Paths) != 2 || filepath.Base(traj.Paths[0]) != "ckpt_000.onnx" || filepath.Base(traj.Paths[1]) != "ckpt_001.onnx" {
		t.Fatalf("trajectory %v", traj.Paths)
	}
	for name, p := range traj.Checkpoints[0].Params {
		for i, v := range p.Data {
			if v != m.Params[name].Data[i] {
				t.Fatalf("ckpt_000 %q[%d] = %v, the initialization has %v", name, i, v, m.Params[name].Data[i])
			}
		}
	}
	score, err := convert.Evaluate(traj.Checkpoints[1], nil, val, 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	if score != rep.Epochs[0].Score {
		t.Errorf("ckpt_001 scores %+v, train.json says %+v", score, rep.Epochs[0].Score)
	}

	data, err := os.ReadFile(filepath.Join(out, "train.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file Report
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	var steps []int
	for _, e := range file.Evals {
		steps = append(steps, e.Step)
	}
	if file.Schema != Schema || file.Settings.LR != 0.01 || file.Settings.Schedule != Cosine || file.StepsPerEpoch != 100 ||
		fmt.Sprint(steps) != "[0 50 100]" || file.Evals[1].Epoch != 0.5 || len(file.Epochs) != 1 ||
		fmt.Sprint(file.Files) != "[ckpt_000.onnx ckpt_001.onnx train.json]" {
		t.Errorf("train.json:\n%s", data)
	}

	// The folder now holds a trajectory: training into it again is refused.
	if _, err := Run(context.Background(), m, nil, opt); err == nil || !strings.Contains(err.Error(), "already holds ONNX files") {
		t.Errorf("training into a used folder: %v", err)
	}
}

// TestTrainEverySteps fine-tunes the trained cnn checkpoint (BatchNorm included) for ten steps
// with a checkpoint every four: ckpt_001 after step 4, ckpt_002 after 8 and ckpt_003 after the
// last, partial interval; the last checkpoint is the Trainer's final state and its running
// statistics moved.
func TestTrainEverySteps(t *testing.T) {
	train, val := testenv.MNIST(t, 600, 200)
	m, err := graph.Load(testenv.Fixture("cnn", "seed1", "ckpt_002.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	rep, err := Run(context.Background(), m, nil, Options{Epochs: 1, Batch: 64, LR: 0.01, Momentum: 0.9, Schedule: Constant,
		Seed: 3, EverySteps: 4, Out: out, Train: train, Val: val})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rep.Files); got != "[ckpt_000.onnx ckpt_001.onnx ckpt_002.onnx ckpt_003.onnx train.json]" {
		t.Fatalf("files %s", got)
	}
	last, err := graph.Load(filepath.Join(out, "ckpt_003.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if last.Params["bn1.running_mean"].Data[0] == m.Params["bn1.running_mean"].Data[0] {
		t.Error("the BatchNorm running mean did not move")
	}
	if rep.Epochs[0].Accuracy < 0.9 {
		t.Errorf("fine-tuned accuracy %.4f, want the trained checkpoint's level (above 0.9)", rep.Epochs[0].Accuracy)
	}
}

// TestTrainStopsWhenCancelled cancels a run's context at its step 3, which writes a checkpoint
// (one every three steps): the run stops before step 4 with an error wrapping
// context.Canceled, and the folder holds the checkpoints written so far, each complete, and no
// later one.
func TestTrainStopsWhenCancelled(t *testing.T) {
	train, val := testenv.MNIST(t, 640, 64)
	m, err := graph.Load(testenv.Fixture("mlp", "seed1", "ckpt_000.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := t.TempDir()
	_, err = Run(ctx, m, nil, Options{Epochs: 1, Batch: 64, LR: 0.01, Schedule: Constant, Seed: 1, EverySteps: 3, Out: out,
		Train: train, Val: val, Progress: func(p Progress) {
			if p.Step == 3 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "step 4") {
		t.Errorf("error %v, want one wrapping context.Canceled that names step 4", err)
	}
	files, err := convert.TrajectoryFiles(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(files); got != fmt.Sprint([]string{filepath.Join(out, "ckpt_000.onnx"), filepath.Join(out, "ckpt_001.onnx")}) {
		t.Errorf("checkpoints %s, want ckpt_000 and ckpt_001", got)
	}
	if _, err := convert.LoadTrajectory(out); err != nil {
		t.Errorf("the checkpoints written before the stop: %v", err)
	}
}

func TestTrainRefuses(t *testing.T) {
	m, err := graph.Load(testenv.Fixture("mlp", "seed1", "ckpt_000.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	src := &memorySource{x: make([]float32, 4*784), y: make([]int64, 4)}
	opt := Options{Epochs: 1, Batch: 2, LR: 0.01, Schedule: Constant, Out: file, Train: src, Val: src}
	if _, err := Run(context.Background(), m, nil, opt); err == nil || !strings.Contains(err.Error(), "is a file") {
		t.Errorf("output path is a file: %v", err)
	}
	opt.Out = filepath.Dir(m.Path)
	if _, err := Run(context.Background(), m, nil, opt); err == nil || !strings.Contains(err.Error(), "holds the input") {
		t.Errorf("output folder holds the initialization: %v", err)
	}
	opt.Out, opt.Val = t.TempDir(), nil
	if _, err := Run(context.Background(), m, nil, opt); err == nil || !strings.Contains(err.Error(), "validation data") {
		t.Errorf("no validation data: %v", err)
	}
	if _, err := NewTrainer(m, params.Set{}, 0.9, 0); err == nil || !strings.Contains(err.Error(), "fc1.weight") {
		t.Errorf("incomplete initialization: %v", err)
	}
	bad := m.Params["fc2.bias"].Data[3]
	m.Params["fc2.bias"].Data[3] = float32(math.Inf(1))
	if _, err := NewTrainer(m, nil, 0.9, 0); err == nil || !strings.Contains(err.Error(), `"fc2.bias" has the non-finite value`) {
		t.Errorf("infinite initialization: %v", err)
	}
	m.Params["fc2.bias"].Data[3] = bad
	tr, err := NewTrainer(m, nil, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	src.x[5] = float32(math.NaN())
	if _, err := tr.Step(src.x, src.y, 0.01); err == nil || !strings.Contains(err.Error(), "train: the training loss is NaN") {
		t.Errorf("NaN input: %v", err)
	}
}

// memorySource is a Source over examples held in memory.
type memorySource struct {
	x []float32
	y []int64
}

func (s *memorySource) Len() int     { return len(s.y) }
func (s *memorySource) Shape() []int { return []int{1, 28, 28} }
func (s *memorySource) Batch(idx []int, x []float32, y []int64) error {
	for i, k := range idx {
		copy(x[i*784:(i+1)*784], s.x[k*784:(k+1)*784])
		y[i] = s.y[k]
	}
	return nil
}

// linearMLP builds the paper's 784-hidden-10 linear MLP without biases, as
// torch.onnx.export writes it (Flatten, Transpose, MatMul), with PyTorch's default
// initialization bounds; graph's benchmarks build the same network.
func linearMLP(tb testing.TB, hidden int) *graph.Model {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	uniform := func(shape []int, bound float64) *params.Tensor {
		t := &params.Tensor{Shape: shape, Data: make([]float32, shape[0]*shape[1])}
		for i := range t.Data {
			t.Data[i] = float32((2*rng.Float64() - 1) * bound)
		}
		return t
	}
	b := graph.NewBuilder("linear", 13)
	b.Input("input", []int{-1, 1, 28, 28})
	b.Output("logits", []int{-1, 10})
	b.Initializer("fc1.weight", uniform([]int{hidden, 784}, 1/28.0))
	b.Initializer("fc2.weight", uniform([]int{10, hidden}, 1/math.Sqrt(float64(hidden))))
	for _, err := range []error{
		b.Node("Flatten", "flatten", []string{"input"}, []string{"flat"}),
		b.Node("Transpose", "t1", []string{"fc1.weight"}, []string{"w1t"}),
		b.Node("MatMul", "fc1", []string{"flat", "w1t"}, []string{"h"}),
		b.Node("Transpose", "t2", []string{"fc2.weight"}, []string{"w2t"}),
		b.Node("MatMul", "fc2", []string{"h", "w2t"}, []string{"logits"}),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	m, err := b.Model()
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// BenchmarkTrainEpoch times one epoch of training on the 54000 MNIST training images at batch
// 128 (422 steps, the last of 112 images): the seeded shuffle, loading every batch and an SGD
// step (lr 0.01, momentum 0.9, weight decay 5e-4), for the 784-4096-10 linear MLP and for the
// cnn fixture. `make_train_reference.py --bench` times the same epoch in PyTorch. Run it with
// -benchtime 1x: an epoch takes many seconds.
func BenchmarkTrainEpoch(b *testing.B) {
	train, _ := testenv.MNIST(b, 0, 1)
	cnn, err := graph.Load(testenv.Fixture("cnn", "seed1", "ckpt_000.onnx"))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		m    *graph.Model
	}{{"mlp784-4096-10", linearMLP(b, 4096)}, {"cnn", cnn}} {
		b.Run(c.name, func(b *testing.B) {
			tr, err := NewTrainer(c.m, nil, 0.9, 5e-4)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				batches, err := dataset.Batches(dataset.Shuffle(train.Len(), 1, uint64(i)), 128)
				if err != nil {
					b.Fatal(err)
				}
				for _, idx := range batches {
					x, y, err := tr.r.Load(train, idx)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := tr.Step(x, y, 0.01); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
