package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/models"
)

func TestInitBuiltin(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	for _, c := range []struct{ file, seed string }{{"a.onnx", "1"}, {"b.onnx", "1"}, {"c.onnx", "2"}} {
		if code, stderr := runInitCLI("--model", "mlp:784,32,10;act=none", "--seed", c.seed, "-o", path(c.file)); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	}
	a, err := os.ReadFile(path("a.onnx"))
	initMust(t, err)
	b, err := os.ReadFile(path("b.onnx"))
	initMust(t, err)
	c, err := os.ReadFile(path("c.onnx"))
	initMust(t, err)
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Errorf("same seed equal files: %v (want true), other seed equal: %v (want false)", bytes.Equal(a, b), bytes.Equal(a, c))
	}
	m, err := graph.Load(path("a.onnx"))
	initMust(t, err)
	if got := m.Trainable(); !slices.Equal(got, []string{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) || m.ParamCount() != 784*32+32+32*10+10 {
		t.Errorf("trainable %v, %d values", got, m.ParamCount())
	}
	if m.OpCounts()["Relu"] != 0 {
		t.Error("act=none was ignored")
	}
}

func TestInitFrom(t *testing.T) {
	src := filepath.Join("..", "..", "testdata", "cnn", "seed1", "ckpt_002.onnx")
	out := filepath.Join(t.TempDir(), "init.onnx")
	if code, stderr := runInitCLI("--from", src, "--seed", "5", "-o", out); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	m, err := graph.Load(src)
	initMust(t, err)
	got, err := graph.Load(out)
	initMust(t, err)
	initMust(t, graph.SameArchitecture(m, got))
	want, err := models.Reinit(m, 5)
	initMust(t, err)
	for name, w := range want {
		if !slices.Equal(got.Params[name].Data, w.Data) {
			t.Errorf("%s is not Reinit's draw for seed 5", name)
		}
	}
}

func TestInitUsage(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "model.onnx")
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "mlp", "seed1", "ckpt_000.onnx"))
	initMust(t, err)
	initMust(t, os.WriteFile(src, data, 0o644))
	out := filepath.Join(dir, "out.onnx")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--seed", "1", "-o", out}, 2, "exactly one of --model"},
		{[]string{"--model", "mlp:784,10", "--from", src, "--seed", "1", "-o", out}, 2, "exactly one of --model"},
		{[]string{"--model", "mlp:784,10", "-o", out}, 2, "--seed"},
		{[]string{"--model", "mlp:784,10", "--seed", "1"}, 2, "-o"},
		{[]string{"--model", "mlp:784,10", "--seed", "-1", "-o", out}, 2, "seed"},
		{[]string{"--model", "mlp:784;act=gelu", "--seed", "1", "-o", out}, 2, "--model: models: mlp"},
		{[]string{"--model", "mlp:784,10", "--seed", "1", "-o", out, "extra"}, 2, "no arguments"},
		{[]string{"--from", src, "--seed", "1", "-o", src}, 2, "is the input model"},
		{[]string{"--from", src, "--seed", "1", "-o", dir + "/./sub/../model.onnx"}, 2, "is the input model"},
		{[]string{"--from", filepath.Join(dir, "missing.onnx"), "--seed", "1", "-o", out}, 1, "missing.onnx"},
		{[]string{"--model", "mlp:784,10", "--seed", "1", "-o", filepath.Join(dir, "no", "such", "dir.onnx")}, 1, "dir.onnx"},
	}
	initMust(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	for _, c := range cases {
		code, stderr := runInitCLI(c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("init %q: exit %d, %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.want)
		}
	}
	after, err := os.ReadFile(src)
	initMust(t, err)
	if !bytes.Equal(after, data) {
		t.Error("the input model was changed")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed init wrote %s", out)
	}
}

func initMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// runInitCLI runs `ltransfer init` with args and returns the exit code and stderr.
func runInitCLI(args ...string) (int, string) {
	code, _, stderr := runCLI(append([]string{"init"}, args...)...)
	return code, stderr
}
