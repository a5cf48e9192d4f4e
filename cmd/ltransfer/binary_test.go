package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/graph"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// builtBinary builds the ltransfer command as `go install` does (with VCS stamping when the
// checkout allows it, and this test's BLAS build), once per test run.
func builtBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ltransfer-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ltransfer")
		args := []string{"build", "-buildvcs=auto", "-o", binPath}
		if graph.BLAS == "openblas" {
			args = append(args, "-tags", "openblas")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(builtBinary(t), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(out))
	build := "pure Go build"
	if graph.BLAS == "openblas" {
		build = "OpenBLAS build"
	}
	// The go command stamps a version from VCS tags (a pseudo-version without one) in a checkout.
	if !regexp.MustCompile(`^ltransfer version (\(devel\)|v\S+), revision `).MatchString(line) || !strings.Contains(line, build) {
		t.Errorf("--version printed %q, want the version, revision and %s", line, build)
	}
	// The go command stamps the revision when the module's folder holds the .git folder of a
	// Git checkout (not a worktree's .git file).
	want := "unknown"
	if st, err := os.Stat("../../.git"); err == nil && st.IsDir() {
		head, err := exec.Command("git", "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		want = strings.TrimSpace(string(head))
	}
	if !strings.Contains(line, "revision "+want) {
		t.Errorf("--version printed %q, want revision %s", line, want)
	}
}

// TestDemoRunsAnywhere runs the built binary's demo from an empty folder: the checkpoints come
// from inside the binary, MNIST from the GoMNIST module.
func TestDemoRunsAnywhere(t *testing.T) {
	bin := builtBinary(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "demo", "--methods", "naive,fgmt", "--steps", "2", "--json", "-q")
	cmd.Dir = dir
	cmd.Stderr = new(strings.Builder)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, cmd.Stderr)
	}
	var rows []demoRow
	if err := json.Unmarshal(out, &rows); err != nil || len(rows) != 2 {
		t.Fatalf("demo printed %q (%v)", out, err)
	}
	version, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// The inputs are the repository's fixtures, byte for byte.
	want := map[string]string{
		filepath.Join("ltransfer-demo", "inputs", "source", "ckpt_000.onnx"): fixture("mlp", "seed1", "ckpt_000.onnx"),
		filepath.Join("ltransfer-demo", "inputs", "source", "ckpt_005.onnx"): fixture("mlp", "seed1", "ckpt_005.onnx"),
		filepath.Join("ltransfer-demo", "inputs", "init.onnx"):               fixture("mlp", "seed2", "ckpt_000.onnx"),
	}
	for _, row := range rows {
		if row.Final < 0.8 {
			t.Errorf("%s: final accuracy %.4f", row.Method, row.Final)
		}
		var rep convert.Report
		data, err := os.ReadFile(filepath.Join(dir, row.OutputDir, "report.json"))
		if err == nil {
			err = json.Unmarshal(data, &rep)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Inputs) != 3 || rep.Version != strings.TrimPrefix(strings.TrimSpace(string(version)), "ltransfer version ") {
			t.Errorf("%s: report inputs %+v, version %q; --version %q", row.Method, rep.Inputs, rep.Version, version)
		}
		for _, in := range rep.Inputs {
			fx, ok := want[in.Path]
			if !ok {
				t.Errorf("%s: unexpected input %s", row.Method, in.Path)
				continue
			}
			data, err := os.ReadFile(fx)
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != in.SHA256 {
				t.Errorf("%s: %s differs from %s", row.Method, in.Path, fx)
			}
		}
		if _, err := graph.Load(filepath.Join(dir, row.OutputDir, "best.onnx")); err != nil {
			t.Error(err)
		}
	}
}

// TestBashCompletion asks the binary for completions as urfave/cli's bash_autocomplete script
// does (urfave/cli reads the flag being completed from os.Args, hence the binary).
func TestBashCompletion(t *testing.T) {
	bin := builtBinary(t)
	out, err := exec.Command(bin, "--generate-bash-completion").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"demo", "transfer", "batch"} {
		if !slices.Contains(strings.Fields(string(out)), c) {
			t.Errorf("commands completed as %q, want %s among them", out, c)
		}
	}
	out, err = exec.Command(bin, "permute", "m.onnx", "--se", "--generate-bash-completion").Output()
	if err != nil || strings.TrimSpace(string(out)) != "--seed" {
		t.Errorf("permute's flags completed as %q (%v), want --seed", out, err)
	}
}
