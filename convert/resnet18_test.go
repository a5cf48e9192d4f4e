package convert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/internal/testenv"
)

// The short ResNet-18 run of TestResNet18TrajectoryBothExports: PyTorch steps, checkpoints after
// the init, batch size and validation images with PyTorch's logits. A ResNet-18 gradient takes
// seconds in the Go engine: everything is small enough to keep the test near two minutes.
const (
	r18Steps       = 10
	r18Checkpoints = 2
	r18Batch       = 16
	r18RefImages   = 16
)

const python = "/usr/bin/python3" // Debian's, which sees python3-torch

// needTorch skips (fails when CI is set) unless python3 with torch, torchvision and onnx runs.
func needTorch(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import torch, torchvision, onnx").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("%s cannot import torch, torchvision and onnx (%v: %s): apt-get install python3-torch python3-torchvision python3-onnx python3-numpy", python, err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (CI is set, so this test must run)", msg)
		}
		t.Skip(msg)
	}
}

// resnet18Trajectory returns the folder that testdata/gen/make_resnet18_trajectory.py writes,
// built once into the user's cache folder under a name that hashes the generator scripts and
// the settings, so that a changed script builds a new one.
func resnet18Trajectory(t *testing.T) string {
	t.Helper()
	needTorch(t)
	args := []string{"--steps", fmt.Sprint(r18Steps), "--checkpoints", fmt.Sprint(r18Checkpoints),
		"--batch", fmt.Sprint(r18Batch), "--ref-images", fmt.Sprint(r18RefImages)}
	h := sha256.New()
	for _, f := range []string{"make_resnet18_trajectory.py", "torchvision_models.py", "make_fixtures.py"} {
		b, err := os.ReadFile(testenv.Fixture("gen", f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	h.Write([]byte(strings.Join(args, " ")))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = t.TempDir()
	}
	dir := filepath.Join(cache, "ltransfer", "resnet18-trajectory-"+hex.EncodeToString(h.Sum(nil))[:12])
	if _, err := os.Stat(filepath.Join(dir, "reference.json")); err == nil {
		return dir
	}
	mnistDir, err := dataset.ModuleMNIST()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".resnet18-trajectory-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	cmd := exec.Command(python, append([]string{testenv.Fixture("gen", "make_resnet18_trajectory.py"), "--out", tmp, "--mnist", mnistDir}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, out)
	}
	t.Logf("PyTorch trained and exported the ResNet-18 trajectory in %.1f s", time.Since(start).Seconds())
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it private
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another test process may have built it at the same time.
		if _, statErr := os.Stat(filepath.Join(dir, "reference.json")); statErr != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// onnxFacts runs the onnx package on files: onnx.checker (full_check) must accept each, and it
// returns, per file, its node count and how many nodes are Identity.
func onnxFacts(t *testing.T, files ...string) map[string][2]int {
	t.Helper()
	const script = `
import json, sys, onnx
out = {}
for f in sys.argv[1:]:
    onnx.checker.check_model(f, full_check=True)
    g = onnx.load(f).graph
    out[f] = [len(g.node), sum(n.op_type == "Identity" for n in g.node)]
print(json.dumps(out))
`
	out, err := exec.Command(python, append([]string{"-c", script}, files...)...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("onnx checker: %v\n%s", err, msg)
	}
	facts := map[string][2]int{}
	if err := json.Unmarshal(out, &facts); err != nil {
		t.Fatalf("onnx facts %q: %v", out, err)
	}
	return facts
}

// TestResNet18TrajectoryBothExports is the paper's architecture end to end: a torchvision
// ResNet-18 (CIFAR stem, one input channel) trained briefly by PyTorch on MNIST and exported the
// default way (eval mode: BatchNorm fused, equal initializers deduplicated through Identity) and
// in training mode (BatchNorm kept). For each export: the trajectory loads; init and trained
// checkpoints have the same parameters after untying and the same 12 permutation groups (4
// residual streams and 8 inner block groups); every checkpoint and seed 2's init compute
// PyTorch's logits; GMT and naive transfer seed 1's run onto seed 2's init; and best.onnx passes
// onnx.checker and computes in ONNX Runtime what ltransfer computes.
func TestResNet18TrajectoryBothExports(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and transfers a ResNet-18")
	}
	node := ortNode(t)
	dir := resnet18Trajectory(t)
	var ref struct {
		Logits map[string][]float64 `json:"logits"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	train, val := testenv.MNIST(t, 512, r18RefImages)
	raw := filepath.Join(t.TempDir(), "val.f32")
	ortWriteExamples(t, val, raw)

	ckpt := func(mode, seed string, i int) string {
		return filepath.Join(dir, mode, seed, fmt.Sprintf("ckpt_%03d.onnx", i))
	}
	// The eval-mode init really is deduplicated (what this test is about), its trained
	// checkpoints are not; training-mode exports are not deduplicated.
	facts := onnxFacts(t, ckpt("eval", "seed1", 0), ckpt("eval", "seed1", r18Checkpoints), ckpt("train", "seed1", 0))
	if f := facts[ckpt("eval", "seed1", 0)]; f[1] == 0 {
		t.Errorf("the eval-mode init has no Identity nodes (%d nodes): the exporter did not deduplicate", f[0])
	}
	if f := facts[ckpt("eval", "seed1", r18Checkpoints)]; f[1] != 0 {
		t.Errorf("the trained eval-mode checkpoint has %d Identity nodes", f[1])
	}
	t.Logf("files as exported (nodes, Identity nodes): %v", facts)

	for _, mode := range []struct {
		name      string
		trainable int // by hand: 20 Conv weights, 20 fused Conv biases or 20+20 BN affine, fc
	}{{"eval", 20 + 20 + 2}, {"train", 20 + 40 + 2}} {
		t.Run(mode.name, func(t *testing.T) {
			start := time.Now()
			src, err := LoadTrajectory(filepath.Join(dir, mode.name, "seed1"))
			if err != nil {
				t.Fatal(err)
			}
			init, err := graph.Load(ckpt(mode.name, "seed2", 0))
			if err != nil {
				t.Fatal(err)
			}
			if err := src.CheckInit(init); err != nil {
				t.Fatal(err)
			}
			// Sets, not lists: a deduplicated file orders its untied copies after their source.
			want := slices.Sorted(slices.Values(src.Checkpoints[0].Trainable()))
			if len(want) != mode.trainable {
				t.Errorf("%d trainable parameters, want %d: %v", len(want), mode.trainable, want)
			}
			models := append(slices.Clone(src.Checkpoints), init)
			names := append(slices.Clone(src.Paths), init.Path)
			for i, m := range models {
				if got := slices.Sorted(slices.Values(m.Trainable())); !slices.Equal(got, want) {
					t.Errorf("%s: trainable parameters %v, the first checkpoint has %v", names[i], got, want)
				}
				spec, _, err := graph.Symmetries(m)
				if err != nil {
					t.Fatal(err)
				}
				if len(spec.Groups) != 12 {
					t.Errorf("%s: %d permutation groups, want 12", names[i], len(spec.Groups))
				}
				key := strings.TrimSuffix(filepath.ToSlash(strings.TrimPrefix(names[i], filepath.Join(dir, mode.name)+string(filepath.Separator))), ".onnx")
				compareLogits(t, m, val, ref.Logits[key], key)
			}
			t.Logf("loaded and checked %d files in %.1f s", len(models), time.Since(start).Seconds())

			for _, method := range []string{"gmt", "naive"} {
				start := time.Now()
				out := t.TempDir()
				job := Job{Trajectory: []string{src.Paths[0], src.Paths[len(src.Paths)-1]}, Init: init.Path, Out: out,
					Save: map[string]bool{"best": true},
					Options: Options{Method: method, Steps: 2, Schedule: Cosine, Batch: 4, GradBatches: 1, NormBatches: 1,
						Seed: 1, Train: train, Val: val}}
				rep, err := job.Run(context.Background())
				if err != nil {
					t.Fatalf("%s: %v", method, err)
				}
				if len(rep.Groups) != 12 || len(rep.DroppedGroups) > 0 {
					t.Errorf("%s: the transfer permuted %d groups, want 12; its self-check dropped %+v", method, len(rep.Groups), rep.DroppedGroups)
				}
				best := filepath.Join(out, "best.onnx")
				onnxFacts(t, best)
				m, err := graph.Load(best)
				if err != nil {
					t.Fatal(err)
				}
				if got := slices.Sorted(slices.Values(m.Trainable())); !slices.Equal(got, want) {
					t.Errorf("%s: best.onnx has parameters %v, want %v", method, got, want)
				}
				preds := make([]int, val.Len())
				if _, err := Evaluate(m, nil, val, val.Len(), preds); err != nil {
					t.Fatal(err)
				}
				ortCompare(t, node, m, method+"/best.onnx", val, raw, preds)
				var acc []float64
				for _, s := range rep.Steps {
					acc = append(acc, s.Accuracy)
				}
				t.Logf("%s: validation accuracy per step %v, in %.1f s", method, acc, time.Since(start).Seconds())
			}
		})
	}
}

// compareLogits checks m's evaluation-mode logits on the examples of val against PyTorch's.
func compareLogits(t *testing.T, m *graph.Model, val dataset.Source, want []float64, name string) {
	t.Helper()
	if len(want) == 0 {
		t.Errorf("%s: no PyTorch logits in reference.json", name)
		return
	}
	got, err := ortGoLogits(m, val, firstN(val.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d logits, PyTorch has %d", name, len(got), len(want))
	}
	// As for ONNX Runtime (ortLogitTol): float32 on both sides, summed in other orders.
	var worst float64
	for i, w := range want {
		d := math.Abs(float64(got[i]) - w)
		worst = max(worst, d)
		if d > ortLogitTol*(1+math.Abs(w)) {
			t.Errorf("%s: logit %d = %g, PyTorch %g", name, i, got[i], w)
			return
		}
	}
	t.Logf("%s: logits within %.2g of PyTorch's", name, worst)
}
