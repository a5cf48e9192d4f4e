package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
)

// torchPython is Debian's python3 with torch, torchvision and onnx: the test fails without it in
// CI (.ci/run installs it) and skips elsewhere.
func torchPython(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import torch, torchvision, onnx").CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s with torch, torchvision and onnx is required in CI: %v\n%s", py, err, out)
		}
		t.Skipf("%s with torch, torchvision and onnx not available: %v", py, err)
	}
	return py
}

// readmeBlock returns the first fenced code block of the given language after the heading.
func readmeBlock(t *testing.T, heading, lang string) string {
	t.Helper()
	text, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(text)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no heading %q", heading)
	}
	s = s[i:]
	start := strings.Index(s, "\n```"+lang+"\n")
	if start < 0 {
		t.Fatalf("README.md: no %s block after %q", lang, heading)
	}
	s = s[start+len("\n```"+lang+"\n"):]
	end := strings.Index(s, "\n```")
	if end < 0 {
		t.Fatalf("README.md: the %s block after %q is not closed", lang, heading)
	}
	return s[:end+1]
}

// quickStartHarness runs README's snippet (snippet.py), then checks what a user relies on and
// prints it as JSON: the last checkpoint holds the model's state under its state-dict names
// (BatchNorm's running statistics included); exporting does not change the model; and PyTorch's
// own accuracy and loss on the test set of the last checkpoint loaded back as README says.
const quickStartHarness = `
import copy, json, runpy
import numpy as np, onnx, torch
from onnx import numpy_helper
from torchvision import datasets, transforms

g = runpy.run_path("snippet.py", run_name="__main__")
model, save_onnx, normalize = g["model"], g["save_onnx"], g["normalize"]
state = {k: v.clone() for k, v in model.state_dict().items()}
inits = {i.name: numpy_helper.to_array(i) for i in onnx.load("run1/ckpt_003.onnx").graph.initializer}
differ = [k for k, v in state.items() if k in inits and not np.array_equal(inits[k], v.numpy())]
missing = [k for k in state if k not in inits and not k.endswith("num_batches_tracked")]
model.train()
save_onnx(model, "again.onnx")
moved = [k for k, v in model.state_dict().items() if not torch.equal(v, state[k])]

fresh = copy.deepcopy(model)
for p in fresh.state_dict().values():
    p.zero_()
fresh.load_state_dict({i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load("run1/ckpt_003.onnx").graph.initializer}, strict=False)
fresh.eval()
test = datasets.MNIST("data", train=False, transform=transforms.Compose([transforms.ToTensor(), normalize]))
correct, loss, n = 0, 0.0, 0
with torch.no_grad():
    for x, y in torch.utils.data.DataLoader(test, batch_size=100):
        logits = fresh(x)
        correct += int((logits.argmax(1) == y).sum())
        loss += float(torch.nn.functional.cross_entropy(logits.double(), y, reduction="sum"))
        n += len(y)
print(json.dumps({"differ": differ, "missing": missing, "moved": moved, "correct": correct, "loss": loss / n, "n": n}))
`

// TestQuickStart runs README's "Transfer your own PyTorch run" as a user would: the Python
// snippet (on the first 1024 training and 500 test images of MNIST, put where torchvision looks
// for its download), then ltransfer eval with README's preprocessing flags against PyTorch's own
// evaluation, then README's transfer command on the snippet's checkpoints.
func TestQuickStart(t *testing.T) {
	py := torchPython(t)
	snippet := readmeBlock(t, "### Exporting a trajectory from PyTorch", "python")
	transferLine := readmeBlock(t, "### Transferring it", "sh")
	dir := t.TempDir()
	writeSmallMNIST(t, filepath.Join(dir, "data", "MNIST", "raw"), 1024, 500)
	for name, text := range map[string]string{"snippet.py": snippet, "harness.py": quickStartHarness} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "harness.py")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=2", "PYTHONWARNINGS=ignore")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	t.Logf("the snippet and PyTorch's checks: %.1fs", time.Since(start).Seconds())
	if err != nil {
		t.Fatalf("README's snippet: %v\n%s", err, stderr.String())
	}
	var torch struct {
		Differ, Missing, Moved []string
		Correct, N             int
		Loss                   float64
	}
	if err := json.Unmarshal(out, &torch); err != nil {
		t.Fatalf("harness printed %q: %v", out, err)
	}
	if len(torch.Differ)+len(torch.Missing)+len(torch.Moved) > 0 {
		t.Errorf("checkpoint and model differ in %v, miss %v; exporting moved %v", torch.Differ, torch.Missing, torch.Moved)
	}
	if torch.N != 500 || torch.Correct < 300 {
		t.Errorf("PyTorch: %d of %d test images right after 3 epochs", torch.Correct, torch.N)
	}
	t.Chdir(dir)

	// ltransfer reads the checkpoint as PyTorch does when given README's --mean and --std.
	code, stdout, errOut := runCLI("eval", filepath.Join("run1", "ckpt_003.onnx"), "--data", "mnist:data/MNIST/raw",
		"--mean", "0.1307", "--std", "0.3081", "--split", "test", "--json")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, errOut)
	}
	var evals []struct {
		Accuracy, Loss float64
		Examples       int
	}
	if err := json.Unmarshal([]byte(stdout), &evals); err != nil || len(evals) != 1 {
		t.Fatalf("eval printed %s (%v)", stdout, err)
	}
	// float32 sums in another order: one borderline image may flip; the mean loss agrees to 1e-4.
	if got := int(math.Round(evals[0].Accuracy * 500)); got < torch.Correct-1 || got > torch.Correct+1 ||
		math.Abs(evals[0].Loss-torch.Loss) > 1e-4*torch.Loss {
		t.Errorf("ltransfer eval: %d right, loss %.6f; PyTorch: %d right, loss %.6f", got, evals[0].Loss, torch.Correct, torch.Loss)
	}

	// README's transfer command, with 2 points per segment instead of 10 and BatchNorm statistics
	// from 4 batches instead of 20 (the 922 training images are 8 batches) to keep the test short.
	args := ltransferArgs(shellWords(strings.TrimSpace(transferLine)))
	if len(args) == 0 || args[0] != "transfer" {
		t.Fatalf("README's quick start shows %q, not an ltransfer transfer command", transferLine)
	}
	start = time.Now()
	code, _, errOut = runCLI(append(args, "--steps", "2", "--bn-batches", "4", "-q")...)
	t.Logf("ltransfer transfer: %.1fs", time.Since(start).Seconds())
	if code != 0 {
		t.Fatalf("ltransfer %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	var rep convert.Report
	data, err := os.ReadFile(filepath.Join("transferred", "report.json"))
	if err == nil {
		err = json.Unmarshal(data, &rep)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Steps) != 7 || len(rep.Groups) != 2 || rep.Steps[rep.BestStep].Accuracy <= rep.InitScore.Accuracy {
		t.Errorf("report: %d steps, groups %+v, best %d of %+v, init %+v", len(rep.Steps), rep.Groups, rep.BestStep, rep.Steps, rep.InitScore)
	}
	// best.onnx keeps the checkpoints' parameter names, so it loads back into the PyTorch model.
	best, err := graph.Load(filepath.Join("transferred", "best.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	last, err := graph.Load(filepath.Join("run1", "ckpt_003.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(best.Params)), slices.Sorted(maps.Keys(last.Params)); !slices.Equal(got, want) {
		t.Errorf("best.onnx has the parameters %q, the checkpoints %q", got, want)
	}
}

// writeSmallMNIST writes the first nTrain training and nTest test images and labels of the
// GoMNIST module's MNIST into dir as uncompressed IDX files, under the names torchvision's
// MNIST download leaves in data/MNIST/raw.
func writeSmallMNIST(t *testing.T, dir string, nTrain, nTest int) {
	t.Helper()
	src, err := dataset.ModuleMNIST()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		n    int
	}{
		{"train-images-idx3-ubyte", nTrain}, {"train-labels-idx1-ubyte", nTrain},
		{"t10k-images-idx3-ubyte", nTest}, {"t10k-labels-idx1-ubyte", nTest},
	} {
		gz, err := os.Open(filepath.Join(src, f.name+".gz"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := gzip.NewReader(gz)
		if err != nil {
			t.Fatal(err)
		}
		all, err := io.ReadAll(r)
		gz.Close()
		if err != nil {
			t.Fatal(err)
		}
		// IDX: magic (its last byte the number of dimensions), the dimensions, the bytes.
		dims := int(all[3])
		header, item := 4+4*dims, 1
		for d := 1; d < dims; d++ {
			item *= int(binary.BigEndian.Uint32(all[4+4*d:]))
		}
		out := append([]byte(nil), all[:header+f.n*item]...)
		binary.BigEndian.PutUint32(out[4:], uint32(f.n))
		if err := os.WriteFile(filepath.Join(dir, f.name), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
