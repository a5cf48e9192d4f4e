package convert

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/internal/testenv"
)

// ortLogitTol bounds |ONNX Runtime − ltransfer| for a logit z, as ortLogitTol·(1+|z|). Both
// compute in float32 but sum in different orders, and ONNX Runtime folds BatchNormalization into
// the Conv before it; measured differences stay below 2e-5. 1e-4 leaves room for other CPUs'
// kernels, while a wrong parameter or running statistic moves logits by far more (running
// BatchNorm on batch statistics moved them by up to 3.8).
const ortLogitTol = 1e-4

const (
	ortExamples    = 1000 // validation images every written file predicts
	ortLogitChecks = 100  // of which the first ones also have their logits compared
)

// TestExportedFilesRunInONNXRuntime checks that the files a transfer writes are ONNX that another
// runtime runs as ltransfer does, not only files ltransfer's own decoder accepts: short transfers
// on the MLP and on the BatchNorm fixtures (cnn, resnet) write their step, best and final files,
// and ONNX Runtime (onnxruntime-node, driven by testdata/ort/predict.js) must predict on 1000
// validation images what `ltransfer eval` (Evaluate) predicts.
func TestExportedFilesRunInONNXRuntime(t *testing.T) {
	node := ortNode(t)
	train, val := testenv.MNIST(t, 2048, ortExamples)
	// The transfer's per-step scores only choose best.onnx; fewer images keep it short.
	transferVal, err := dataset.Subset(val, firstN(256))
	if err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(t.TempDir(), "val.f32")
	ortWriteExamples(t, val, raw)

	short := Options{Method: "fgmt", Steps: 2, Schedule: Cosine, Batch: 64, GradBatches: 1, NormBatches: 2,
		Seed: 3, Train: train, Val: transferVal}
	cases := []struct {
		name       string
		trajectory []string
		init       string
	}{
		{"mlp", []string{testenv.Fixture("mlp", "seed1", "ckpt_000.onnx"), testenv.Fixture("mlp", "seed1", "ckpt_005.onnx")},
			testenv.Fixture("mlp", "seed2", "ckpt_000.onnx")},
		// No second seed ships for the BatchNorm fixtures; transferring onto the source's own
		// initialization still rewrites every parameter and running statistic.
		{"cnn", []string{testenv.Fixture("cnn", "seed1")}, testenv.Fixture("cnn", "seed1", "ckpt_000.onnx")},
		{"resnet", []string{testenv.Fixture("resnet", "seed1")}, testenv.Fixture("resnet", "seed1", "ckpt_000.onnx")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			job := Job{Trajectory: c.trajectory, Init: c.init, Out: out,
				Save: map[string]bool{"steps": true, "best": true, "final": true}, Options: short}
			rep, err := job.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var files []string
			for _, f := range rep.Files {
				if strings.HasSuffix(f, ".onnx") {
					files = append(files, f)
				}
			}
			if want := len(rep.Steps) + 2; len(files) != want { // every step, best and final
				t.Fatalf("transfer wrote %v, want %d ONNX files", files, want)
			}
			// best.onnx and final.onnx repeat a step's bytes, and ltransfer's predictions are a
			// function of the bytes: evaluate each distinct file once.
			evaluated := map[string][]int{}
			for _, f := range files {
				path := filepath.Join(out, f)
				sum, err := HashFile(path)
				if err != nil {
					t.Fatal(err)
				}
				m, err := graph.Load(path)
				if err != nil {
					t.Fatal(err)
				}
				preds, ok := evaluated[sum]
				if !ok {
					preds = make([]int, val.Len())
					if _, err := Evaluate(m, nil, val, 100, preds); err != nil {
						t.Fatal(err)
					}
					evaluated[sum] = preds
				}
				ortCompare(t, node, m, f, val, raw, preds)
			}
		})
	}
}

// ortCompare runs model m (written as name) in ONNX Runtime on the examples of data, stored
// preprocessed in raw, and compares with ltransfer's predictions preds: all must be equal but for
// at most one near-tie, and the logits of the first ortLogitChecks examples and of (up to ten)
// disagreeing ones must be within ortLogitTol.
func ortCompare(t *testing.T, node string, m *graph.Model, name string, data dataset.Source, raw string, preds []int) {
	t.Helper()
	// ONNX Runtime honours the flag and normalises with the batch's own statistics, so its
	// predictions would depend on which images share a batch; ltransfer evaluates with the
	// running statistics.
	for _, nd := range m.Nodes {
		if nd.Op == "BatchNormalization" && nd.Attrs["training_mode"] == int64(1) {
			t.Errorf("%s: node %q (BatchNormalization) has training_mode=1: ONNX Runtime normalises with batch statistics, `ltransfer eval` with running statistics", name, nd.Name)
			break
		}
	}
	got, logits := ortRun(t, node, m, data, raw)
	n := data.Len()
	classes := len(logits) / n

	var diff []int
	for i := range n {
		if got[i] != preds[i] {
			diff = append(diff, i)
		}
	}
	if len(diff) > 1 {
		t.Errorf("%s: %d of %d predictions differ from ltransfer's (examples %v)", name, len(diff), n, diff[:min(len(diff), 10)])
	}
	head := min(ortLogitChecks, n)
	check := slices.Concat(firstN(head), diff[:min(len(diff), 10)])
	want, err := ortGoLogits(m, data, check)
	if err != nil {
		t.Fatal(err)
	}
	var maxDiff float64
	far := 0
	for k, i := range check {
		for j := range classes {
			w, g := float64(want[k*classes+j]), float64(logits[i*classes+j])
			maxDiff = max(maxDiff, math.Abs(g-w))
			if math.Abs(g-w) > ortLogitTol*(1+math.Abs(w)) {
				far++
			}
		}
	}
	if far > 0 {
		t.Errorf("%s: %d logits differ by more than %g relative (max |difference| %.3g)", name, far, ortLogitTol, maxDiff)
	}
	// With logits this close a prediction can only flip where ltransfer's two candidate logits
	// tie within twice the tolerance: one such flip in 1000 is rounding.
	if len(diff) == 1 {
		i, row := diff[0], want[head*classes:][:classes]
		a, b := float64(row[got[i]]), float64(row[preds[i]])
		if math.Abs(a-b) > 2*ortLogitTol*(1+math.Abs(b)) {
			t.Errorf("%s: example %d: ONNX Runtime predicts %d, ltransfer %d, and ltransfer's logits %.6g and %.6g are no tie", name, i, got[i], preds[i], a, b)
		}
	}
	t.Logf("%s: %d/%d predictions equal; max |logit difference| %.2g over %d examples", name, n-len(diff), n, maxDiff, len(check))
}

// ortRun runs predict.js on model m and returns ONNX Runtime's predictions and logits.
func ortRun(t *testing.T, node string, m *graph.Model, data dataset.Source, raw string) ([]int, []float32) {
	t.Helper()
	shape := strconv.Itoa(data.Len())
	for _, d := range data.Shape() {
		shape += "," + strconv.Itoa(d)
	}
	logitsFile := filepath.Join(t.TempDir(), "logits.f32")
	cmd := exec.Command(node, testenv.Fixture("ort", "predict.js"), "--model", m.Path, "--data", raw, "--shape", shape,
		"--input", m.Input.Name, "--output", m.Output.Name, "--logits", logitsFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v: %s", m.Path, err, stderr.Bytes())
	}
	var preds []int
	if err := json.Unmarshal(stdout, &preds); err != nil {
		t.Fatalf("%s: predict.js printed %q: %v", m.Path, stdout, err)
	}
	b, err := os.ReadFile(logitsFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(preds) != data.Len() || len(b) == 0 || len(b)%(4*data.Len()) != 0 {
		t.Fatalf("%s: ONNX Runtime gave %d predictions and %d bytes of logits for %d examples", m.Path, len(preds), len(b), data.Len())
	}
	logits := make([]float32, len(b)/4)
	for i := range logits {
		logits[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return preds, logits
}

// ortGoLogits returns ltransfer's evaluation-mode logits, as Evaluate computes them, for the
// examples of data at idx, in one batch.
func ortGoLogits(m *graph.Model, data dataset.Source, idx []int) ([]float32, error) {
	s, err := graph.NewSession(m, len(idx))
	if err != nil {
		return nil, err
	}
	x, y := make([]float32, len(idx)*s.ExampleSize()), make([]int64, len(idx))
	if err := data.Batch(idx, x, y); err != nil {
		return nil, err
	}
	return s.Logits(x)
}

// ortNode returns the node executable after checking that onnxruntime-node is installed under
// testdata/ort. CI must run this test, so there a missing install fails; elsewhere it skips.
func ortNode(t *testing.T) string {
	t.Helper()
	const install = "npm ci --ignore-scripts --prefix testdata/ort"
	missing := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (CI is set, so this check must run)", msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("Node.js not found (%v): install Node.js 20 or later, then run %q at the repository root", err, install)
	}
	if _, err := os.Stat(testenv.Fixture("ort", "node_modules", "onnxruntime-node", "package.json")); err != nil {
		missing("onnxruntime-node is not installed: run %q at the repository root", install)
	}
	return node
}

// ortWriteExamples writes every example of data, preprocessed, to path as little-endian float32
// values, the input format of predict.js.
func ortWriteExamples(t *testing.T, data dataset.Source, path string) {
	t.Helper()
	size := 1
	for _, d := range data.Shape() {
		size *= d
	}
	x, y := make([]float32, data.Len()*size), make([]int64, data.Len())
	if err := data.Batch(firstN(data.Len()), x, y); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 4*len(x))
	for _, v := range x {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// firstN returns the positions 0 … n-1.
func firstN(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}
