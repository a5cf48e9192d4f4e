package main

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/graph"
)

// TestHostileInput runs ltransfer transfer on each kind of broken input of issue 6 and checks the
// exit code, the exact error and that nothing was written.
func TestHostileInput(t *testing.T) {
	e := newTransferEnv(t)
	good, err := os.ReadFile(e.first)
	if err != nil {
		t.Fatal(err)
	}
	// 4 KiB of seeded pseudo-random bytes: one generator for the whole file.
	random := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	empty := e.writeFile(t, "empty.onnx", nil)
	truncated := e.writeFile(t, "truncated.onnx", good[:len(good)/3])
	noise := e.writeFile(t, "random.onnx", random)
	nan := e.withParam(t, e.last, "nan.onnx", "fc1.weight", 1234, float32(math.NaN()))
	inf := e.withParam(t, e.last, "inf.onnx", "fc2.bias", 3, float32(math.Inf(-1)))
	outFile := e.writeFile(t, "out-is-a-file", []byte("x"))
	images16 := e.npz(t, "images16.npz", 40, []int{1, 16, 16}, func(i int) int64 { return int64(i % 10) })
	labels20 := e.npz(t, "labels20.npz", 40, []int{1, 28, 28}, func(i int) int64 { return int64(i % 20) })
	cases := []struct {
		name       string
		overrides  []string
		trajectory []string
		want       string
	}{
		{"empty ONNX file", nil, []string{empty, e.last}, empty + ": empty file: not a valid ONNX model"},
		{"truncated ONNX file", nil, []string{e.first, truncated}, truncated + ": not a valid ONNX model: protobuf:"},
		{"random bytes", []string{"--init=" + noise}, nil, noise + ": not a valid ONNX model"},
		{"NaN in a checkpoint", nil, []string{e.first, nan}, nan + `: parameter "fc1.weight" has the non-finite value NaN at index 1234 (--allow-nonfinite to go on)`},
		{"Inf in the initialization", []string{"--init=" + inf}, nil, inf + `: parameter "fc2.bias" has the non-finite value -Inf at index 3`},
		{"checkpoints of different architectures", nil, []string{e.first, fixture("cnn", "seed1", "ckpt_001.onnx")}, "trajectory checkpoints differ"},
		{"an init that does not fit", []string{"--init=" + fixture("linear512", "seed2", "ckpt_000.onnx")}, nil, "does not fit the trajectory: architecture mismatch"},
		{"images of another size", []string{"--data=npz:" + images16, "--mean=", "--std="}, nil, `the data's examples have shape [1 16 16] (256 values), the model's input "input" needs [1 28 28] (784 values)`},
		{"labels out of range", []string{"--data=npz:" + labels20, "--mean=", "--std=", "--limit=40", "--val-limit=40"}, nil, "is outside the model's 10 classes"},
		{"a missing data file", []string{"--data=npz:" + filepath.Join(e.dir, "missing.npz")}, nil, filepath.Join(e.dir, "missing.npz") + ": no such file"},
		{"a trajectory of one checkpoint", nil, []string{e.first}, "a trajectory needs at least 2 checkpoints (a start and an end), got 1"},
		{"an output path that is a file", []string{"--out=" + outFile}, nil, "the output path " + outFile + " is a file, not a folder"},
		{"an output folder that is not writable", []string{"--out=/proc/self/ltransfer-out"}, nil, "/proc/self/ltransfer-out"},
		{"the output folder is the trajectory's", []string{"--out=" + filepath.Dir(e.first)}, nil, "holds the input"},
		{"init and init seed", []string{"--init-seed=3"}, nil, "exactly one of --init FILE.onnx and --init-seed N"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(e.dir, "out-"+strings.ReplaceAll(c.name, " ", "-"))
			code, stderr := e.transfer(t, out, c.overrides, c.trajectory...)
			if code == 0 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want an error saying %q", code, stderr, c.want)
			}
			if _, err := os.Stat(filepath.Join(out, "final.onnx")); err == nil {
				t.Error("wrote final.onnx despite the error")
			}
		})
	}
}

// TestAllowNonFinite checks that --allow-nonfinite lets a naive transfer of a checkpoint with a
// NaN through, the NaN landing where the method puts it, and that a matching method then fails
// naming the step.
func TestAllowNonFinite(t *testing.T) {
	e := newTransferEnv(t)
	nan := e.withParam(t, e.last, "nan.onnx", "fc2.weight", 7, float32(math.NaN()))
	out := filepath.Join(e.dir, "naive")
	if code, stderr := e.transfer(t, out, []string{"--allow-nonfinite"}, e.first, nan); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	final, err := graph.Load(filepath.Join(out, "final.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range final.Params["fc2.weight"].Data {
		if math.IsNaN(float64(v)) != (i == 7) {
			t.Fatalf("fc2.weight[%d] = %v: the naive transfer puts the NaN at index 7 and only there", i, v)
		}
	}
	report, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil || !bytes.Contains(report, []byte(`"loss":null`)) && !bytes.Contains(report, []byte(`"loss": null`)) {
		t.Errorf("report.json (%v) should hold the NaN loss as null:\n%.400s", err, report)
	}
	code, stderr := e.transfer(t, filepath.Join(e.dir, "gmt"), []string{"--allow-nonfinite", "--method=gmt"}, e.first, nan)
	if code == 0 || !strings.Contains(stderr, "step 1") {
		t.Errorf("gmt on a NaN checkpoint: exit %d, stderr %q", code, stderr)
	}
}
