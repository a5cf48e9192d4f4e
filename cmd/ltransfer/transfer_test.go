package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/internal/testenv"
	"github.com/ltransfer/ltransfer/models"
)

// transferEnv is a transfer of the mlp fixture that runs in a fraction of a second, and a
// folder for the files that tests derive from it.
type transferEnv struct {
	dir         string
	first, last string // the source trajectory
	init        string
	data        string
}

func newTransferEnv(t *testing.T) transferEnv {
	t.Helper()
	return transferEnv{dir: t.TempDir(), first: fixture("mlp", "seed1", "ckpt_000.onnx"), last: fixture("mlp", "seed1", "ckpt_001.onnx"),
		init: fixture("mlp", "seed2", "ckpt_000.onnx"), data: testenv.MNISTSpec(t)}
}

// transfer runs ltransfer transfer with the environment's files; each override "--flag=value"
// replaces that flag, and args after the flags are the trajectory (the fixture's two
// checkpoints when none are given).
func (e transferEnv) transfer(t *testing.T, out string, overrides []string, trajectory ...string) (int, string) {
	t.Helper()
	flags := map[string]string{"--init": e.init, "--method": "naive", "--steps": "1", "--bn-batches": "1", "--batch": "32",
		"--data": e.data, "--mean": "0.1307", "--std": "0.3081", "--limit": "64", "--val-limit": "64", "--save": "final", "--out": out}
	var bools []string
	for _, o := range overrides {
		name, value, ok := strings.Cut(o, "=")
		switch {
		case !ok:
			bools = append(bools, name)
		case value == "":
			delete(flags, name)
		default:
			flags[name] = value
		}
	}
	args := []string{"transfer", "--quiet"}
	for name, value := range flags {
		args = append(args, name, value)
	}
	args = append(args, bools...)
	if len(trajectory) == 0 {
		trajectory = []string{e.first, e.last}
	}
	code, _, stderr := runCLI(append(args, trajectory...)...)
	return code, stderr
}

// writeFile writes data to a new file in the environment's folder and returns its path.
func (e transferEnv) writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// withParam writes a copy of the model at path with one parameter entry replaced.
func (e transferEnv) withParam(t *testing.T, path, name, param string, index int, v float32) string {
	t.Helper()
	m, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m.Params[param].Data[index] = v // m was loaded for this copy alone
	out := filepath.Join(e.dir, name)
	if err := m.Save(out, m.Params); err != nil {
		t.Fatal(err)
	}
	return out
}

// npz writes an NPZ file of n examples of the given shape (uint8 images) with labels from
// label(i).
func (e transferEnv) npz(t *testing.T, name string, n int, shape []int, label func(int) int64) string {
	t.Helper()
	size := 1
	dims := fmt.Sprint(n)
	for _, d := range shape {
		size *= d
		dims += fmt.Sprintf(", %d", d)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]byte, n*size)
	for i := range x {
		x[i] = byte(rng.IntN(256))
	}
	y := make([]byte, 8*n)
	for i := range n {
		binary.LittleEndian.PutUint64(y[8*i:], uint64(label(i)))
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, member := range []struct {
		name, descr, shape string
		data               []byte
	}{{"x.npy", "|u1", "(" + dims + ")", x}, {"y.npy", "<i8", fmt.Sprintf("(%d,)", n), y}} {
		w, err := zw.Create(member.name)
		if err != nil {
			t.Fatal(err)
		}
		header := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", member.descr, member.shape)
		header += strings.Repeat(" ", 63-(10+len(header))%64) + "\n"
		w.Write([]byte("\x93NUMPY\x01\x00"))
		binary.Write(w, binary.LittleEndian, uint16(len(header)))
		w.Write([]byte(header))
		w.Write(member.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return e.writeFile(t, name, buf.Bytes())
}

// TestTransferInitSeed checks that --init-seed transfers onto the first checkpoint redrawn from
// the seed, writes it as init.onnx and records the seed in report.json.
func TestTransferInitSeed(t *testing.T) {
	e := newTransferEnv(t)
	out := filepath.Join(e.dir, "out")
	if code, stderr := e.transfer(t, out, []string{"--init=", "--init-seed=9", "--save=best,final"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	first, err := graph.Load(e.first)
	if err != nil {
		t.Fatal(err)
	}
	drawn, err := models.Reinit(first, 9)
	if err != nil {
		t.Fatal(err)
	}
	want, err := first.Encode(drawn)
	if err != nil {
		t.Fatal(err)
	}
	if have, err := os.ReadFile(filepath.Join(out, "init.onnx")); err != nil || !bytes.Equal(have, want) {
		t.Errorf("init.onnx (%v) is not the first checkpoint redrawn from seed 9", err)
	}
	data, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep convert.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Settings.InitSeed == nil || *rep.Settings.InitSeed != 9 || len(rep.Inputs) != 2 || rep.Files[0] != "init.onnx" {
		t.Errorf("report: init_seed %v, inputs %v, files %v", rep.Settings.InitSeed, rep.Inputs, rep.Files)
	}
}

// TestTransferInterrupted runs the transfer command with a context that a signal has ended, as
// main's signal.NotifyContext ends it: the transfer stops before its first step, and the
// command exits with status 1, saying that it was interrupted, by what and where, and writes
// no model.
func TestTransferInterrupted(t *testing.T) {
	e := newTransferEnv(t)
	out := filepath.Join(e.dir, "out")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("interrupt signal received"))
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"ltransfer", "transfer", "--quiet", "--init", e.init, "--method", "naive", "--steps", "1",
		"--bn-batches", "1", "--batch", "32", "--data", e.data, "--mean", "0.1307", "--std", "0.3081", "--limit", "64",
		"--val-limit", "64", "--out", out, e.first, e.last}, &stdout, &stderr)
	want := "ltransfer: interrupted (interrupt signal received): convert: stopped before step 0: context canceled\n"
	if code != 1 || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), want)
	}
	if models, _ := filepath.Glob(filepath.Join(out, "*.onnx")); len(models) > 0 {
		t.Errorf("models written: %v", models)
	}
}
