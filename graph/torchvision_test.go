package graph

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests of this file compare the engine with PyTorch on real torchvision graphs and on one
// tiny network per operator. The references are PyTorch's passes in float64 (see
// write_reference in testdata/gen/torchvision_models.py), so they are exact to float32's
// resolution; the engine computes in float32. Measures:
//
//   - logits: max_i |z_i - z_i'| / max_i |z_i'| over the batch, z' PyTorch's. Relative to the
//     largest logit, so that logits near zero do not make the ratio meaningless. Float32 rounding
//     in a different order leaves ~1e-6 of the scale after 50 layers; the bound is 1e-4.
//   - loss: |L - L'| / max(1, |L'|) <= 1e-5.
//   - gradients and BatchNorm statistics: per tensor, max_i |g_i - g_i'| / max_i |g_i'| (the
//     absolute difference for a tensor that is all but zero, max |g'| < 1e-6). The bound is
//     1e-3, or 10 times PyTorch's own float32 error on the tensor when that is larger (the
//     reference records it as torch32/<name>): some tensors are ill-conditioned for any float32
//     computation. The gradient of a BatchNorm bias that feeds, through a convolution, another
//     BatchNorm is zero up to rounding (the second one removes any constant shift), so its
//     float32 value is noise for PyTorch too; a BatchNorm over a few values amplifies rounding.
//     Where an activation input lies within float32 rounding of a ReLU, ReLU6 or hard-activation
//     kink, either side is right, and the bound adds how far the other side moves the gradient
//     (the reference's flip envelope).
const (
	logitTol = 1e-4
	lossTol  = 1e-5
	gradTol  = 1e-3
)

// bound returns the tolerance for the named gradient ("grad/NAME") or statistic
// ("stats/NAME") of ref: gradTol or 10 times PyTorch's float32 error, plus the gradient's flip
// envelope (flip/grad/NAME, how far it moves when the activation inputs nearest to a kink are
// rounded to its other side; see flip_envelope in testdata/gen/torchvision_models.py).
func (ref reference) bound(name string) float64 {
	b := gradTol
	if e, ok := ref.all["torch32/"+name]; ok && len(e) == 1 {
		b = math.Max(gradTol, 10*float64(e[0]))
	}
	if e, ok := ref.all["flip/"+name]; ok && len(e) == 1 {
		b += float64(e[0])
	}
	return b
}

// refDiff returns max |a - b| / max |b|, or max |a - b| when max |b| < 1e-6.
func refDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d, scale float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
		scale = math.Max(scale, math.Abs(float64(b[i])))
	}
	if math.IsNaN(d) {
		return math.Inf(1)
	}
	if scale < 1e-6 {
		return d
	}
	return d / scale
}

// checkLogits compares the evaluation logits of model with the reference, returning the
// relative difference.
func checkLogits(t *testing.T, m *Model, ref reference) float64 {
	t.Helper()
	s, err := NewSession(m, len(ref.labels))
	if err != nil {
		t.Fatal(err)
	}
	logits, err := s.Logits(ref.input)
	if err != nil {
		t.Fatal(err)
	}
	d := refDiff(logits, ref.logits)
	if d > logitTol {
		t.Errorf("logits differ from PyTorch by %.3g relative (bound %g)", d, logitTol)
	}
	return d
}

// gradCheck summarises how far the engine's gradients are from PyTorch's.
type gradCheck struct {
	maxDiff float64 // the largest relative difference of a tensor bounded by gradTol
	loose   int     // tensors with a wider bound than gradTol (see bound)
	global  float64 // ||g - g'|| / ||g'|| over all parameters
}

func (c gradCheck) String() string {
	return fmt.Sprintf("gradients: max rel diff %.2g (%d tensors with a wider bound: PyTorch's float32 error, kink flips), global %.2g", c.maxDiff, c.loose, c.global)
}

// checkTraining compares the loss, the gradient of every parameter and the BatchNorm statistics
// of one batch with the reference.
func checkTraining(t *testing.T, m *Model, ref reference) gradCheck {
	t.Helper()
	s, err := NewSession(m, len(ref.labels))
	if err != nil {
		t.Fatal(err)
	}
	loss, grads, err := s.LossAndGrad(ref.input, ref.labels)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(loss-float64(ref.loss)) / math.Max(1, math.Abs(float64(ref.loss))); d > lossTol {
		t.Errorf("loss %g, PyTorch %g", loss, ref.loss)
	}
	if len(grads) != len(ref.grads) {
		t.Errorf("%d gradients, PyTorch has %d", len(grads), len(ref.grads))
	}
	var worst gradCheck
	var diff, norm float64
	for name, want := range ref.grads {
		g, ok := grads[name]
		if !ok {
			t.Errorf("no gradient for %q", name)
			continue
		}
		d, bound := refDiff(g.Data, want), ref.bound("grad/"+name)
		if d > bound {
			t.Errorf("gradient of %q differs from PyTorch by %.3g relative (bound %.3g)", name, d, bound)
		}
		if bound == gradTol {
			worst.maxDiff = math.Max(worst.maxDiff, d)
		} else {
			worst.loose++
		}
		for i, w := range want {
			diff += math.Pow(float64(g.Data[i]-w), 2)
			norm += math.Pow(float64(w), 2)
		}
	}
	worst.global = math.Sqrt(diff / norm)
	stats, err := s.NormStats(oneBatch(ref.input))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, want := range ref.all {
		name, ok := strings.CutPrefix(name, "stats/")
		if !ok {
			continue
		}
		n++
		got, ok := stats[name]
		if !ok {
			t.Errorf("no BatchNorm statistic %q", name)
			continue
		}
		if d, bound := refDiff(got.Data, want), ref.bound("stats/"+name); d > bound {
			t.Errorf("BatchNorm statistic %q differs from PyTorch by %.3g relative (bound %.3g)", name, d, bound)
		}
	}
	if n == 0 && m.hasOp("BatchNormalization") {
		t.Error("the reference has no BatchNorm statistics")
	}
	return worst
}

// TestOperatorsMatchPyTorch runs every per-operator fixture of testdata/ops (a convolution,
// BatchNorm, the operator and a linear classifier, exported in training mode at several opsets
// by testdata/gen/torchvision_models.py --ops) and compares evaluation logits, the training
// loss, every gradient and the BatchNorm statistics with PyTorch's.
func TestOperatorsMatchPyTorch(t *testing.T) {
	files, err := filepath.Glob(testdataPath("ops", "*.onnx"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata/ops: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".onnx")
		t.Run(name, func(t *testing.T) {
			m, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			ref := readReference(t, strings.TrimSuffix(f, ".onnx")+".ref.pb")
			if s := exampleSpread(ref.logits, len(ref.labels)); s < 1e-3 {
				t.Fatalf("the reference logits hardly depend on the input (spread %.2g)", s)
			}
			checkLogits(t, m, ref)
			checkTraining(t, m, ref)
		})
	}
}

// torchvisionFamilies are the families of issue 12, each exported at one opset (spread over
// 11-17). grads marks those whose training-mode export is checked too; heavy and heavyGrads what
// runs only with LTRANSFER_TORCHVISION_HEAVY=1, to keep CI within its budget: VGG-11-BN and
// AlexNet (224x224 inputs, 129M and 57M parameters), and the gradients of GoogLeNet,
// DenseNet-121 and EfficientNet-B0, whose float64 references take minutes on two cores.
// RegNet-Y's gradients are not compared: its float32 forward pass (PyTorch's as the engine's)
// is 1e-5 of the scale from float64 at the logits, and 48 ReLU inputs of the reference batch lie
// within 1e-5 of the kink; the side each lands on is rounding, and moves its gradients by
// percents, beyond what the flip envelope of the 4 nearest inputs covers. (On three other
// batches, 4 of seed 1, 8 of seed 0 and 3 of seed 2, they matched within 1e-3.)
var torchvisionFamilies = []struct {
	name                     string
	opset                    int
	grads, heavy, heavyGrads bool
}{
	{"resnet18", 13, true, false, false},
	{"resnet50", 17, false, false, false},
	{"resnext50_32x4d", 11, false, false, false},
	{"regnet_y_400mf", 14, false, false, false},
	{"vgg11_bn", 13, false, true, false},
	{"alexnet", 12, false, true, false},
	{"squeezenet1_0", 11, true, false, false},
	{"googlenet", 17, true, false, true},
	{"densenet121", 15, true, false, true},
	{"mobilenet_v2", 16, true, false, false},
	{"mobilenet_v3_small", 13, true, false, false},
	{"shufflenet_v2_x0_5", 11, true, false, false},
	{"efficientnet_b0", 17, true, false, true},
	{"mnasnet0_5", 12, true, false, false},
}

// TestTorchvisionFamiliesMatchPyTorch loads every family exported the default way (eval mode)
// and compares its logits with PyTorch's; for the families marked grads, the training-mode
// export's loss, gradients and BatchNorm statistics too. The exports are built by
// testdata/gen/torchvision_models.py into a cache folder (see torchvisionCache).
func TestTorchvisionFamiliesMatchPyTorch(t *testing.T) {
	dir := torchvisionCache(t)
	heavy := os.Getenv("LTRANSFER_TORCHVISION_HEAVY") != ""
	for _, fam := range torchvisionFamilies {
		t.Run(fam.name, func(t *testing.T) {
			if fam.heavy && !heavy {
				t.Skip("a heavy family, too slow for CI: set LTRANSFER_TORCHVISION_HEAVY=1 to check it")
			}
			grads := fam.grads && (heavy || !fam.heavyGrads)
			if fam.grads && !grads {
				t.Log("gradients not checked, too slow for CI: set LTRANSFER_TORCHVISION_HEAVY=1 to check them")
			}
			start := time.Now()
			files := torchvisionFiles(t, dir, fam.name, fam.opset, grads)
			gen := time.Since(start)
			start = time.Now()
			ref := readReference(t, files.ref)
			if s := exampleSpread(ref.logits, len(ref.labels)); s < 1e-3 {
				t.Fatalf("the reference logits hardly depend on the input (spread %.2g): the comparison would test nothing", s)
			}
			m, err := Load(files.eval)
			if err != nil {
				t.Fatal(err)
			}
			d := checkLogits(t, m, ref)
			report := fmt.Sprintf("opset %d: logits rel diff %.2g", fam.opset, d)
			if grads {
				m, err := Load(files.train)
				if err != nil {
					t.Fatal(err)
				}
				report += fmt.Sprintf(", train logits rel diff %.2g", checkLogits(t, m, ref))
				margin := math.NaN()
				if v, ok := ref.all["kink_margin"]; ok {
					margin = float64(v[0])
				}
				report += fmt.Sprintf(", %v, kink margin %.2g", checkTraining(t, m, ref), margin)
			}
			t.Logf("%s; generation %v, test %v", report, gen.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		})
	}
}

// torchvisionBatch is the batch of the family references: 4, because BatchNorm over batch 2 and
// the last stage's 2x2 positions is so ill-conditioned on some families that PyTorch's own
// float32 gradients are 10% off (RegNet-Y at batch 2; 7e-5 at batch 4), and the test would
// then check little.
const torchvisionBatch = 4

// exampleSpread returns max |z_0 - z_i| / max |z| over the logits of a batch: how much they
// depend on the input.
func exampleSpread(logits []float32, batch int) float64 {
	k := len(logits) / batch
	var d, scale float64
	for i, v := range logits {
		d = math.Max(d, math.Abs(float64(v-logits[i%k])))
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	return d / math.Max(scale, 1e-30)
}

// pythonTorch is the interpreter with Debian's torch, torchvision and onnx.
const pythonTorch = "/usr/bin/python3"

var torchCheck struct {
	once sync.Once
	err  error
}

// requireTorch skips the test when PyTorch is missing, or fails it when env CI is set.
func requireTorch(t *testing.T) {
	t.Helper()
	torchCheck.once.Do(func() {
		out, err := exec.Command(pythonTorch, "-c", "import torch, torchvision, onnx").CombinedOutput()
		if err != nil {
			torchCheck.err = fmt.Errorf("%v: %s", err, out)
		}
	})
	if torchCheck.err != nil {
		msg := fmt.Sprintf("%s cannot import torch, torchvision and onnx (apt-get install python3-torch python3-torchvision python3-onnx): %v", pythonTorch, torchCheck.err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// torchvisionCache returns the folder that holds the exports of the current
// testdata/gen/torchvision_models.py: os.UserCacheDir()/ltransfer/torchvision/HASH, HASH the
// script's SHA-256, so that a changed script builds everything again.
func torchvisionCache(t *testing.T) string {
	t.Helper()
	requireTorch(t)
	script, err := os.ReadFile(testdataPath("gen", "torchvision_models.py"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(script)
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "ltransfer", "torchvision", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// familyFiles are the files of one family in the cache.
type familyFiles struct {
	eval, train, ref string
}

// torchvisionFiles returns the family's exports at opset (and its training-mode export when
// train is set) and its reference at batch torchvisionBatch, building what the cache lacks. Files are built in
// a temporary folder and renamed into place, so that an interrupted run leaves nothing half
// written.
func torchvisionFiles(t *testing.T, dir, family string, opset int, train bool) familyFiles {
	t.Helper()
	key := fmt.Sprintf("%s-opset%d", family, opset)
	f := familyFiles{
		eval:  filepath.Join(dir, key+".onnx"),
		train: filepath.Join(dir, key+"-train.onnx"),
		ref:   filepath.Join(dir, key+".ref.pb"),
	}
	moves := map[string]string{family + ".onnx": f.eval, family + ".ref.pb": f.ref}
	mode := "eval"
	if train {
		moves[family+"-train.onnx"] = f.train
		mode = "both"
	}
	missing := false
	for _, p := range moves {
		if _, err := os.Stat(p); err != nil {
			missing = true
		}
	}
	if !missing {
		return f
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(pythonTorch, testdataPath("gen", "torchvision_models.py"), "--out", tmp, "--families", family,
		"--mode", mode, "--opset", fmt.Sprint(opset), "--batch", fmt.Sprint(torchvisionBatch), "--reference")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, tail(out))
	}
	for from, to := range moves {
		if err := os.Rename(filepath.Join(tmp, from), to); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// tail returns the last lines of a command's output.
func tail(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}
