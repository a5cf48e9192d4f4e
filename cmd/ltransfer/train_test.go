package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/convert/train"
	"github.com/ltransfer/ltransfer/internal/testenv"
)

// TestTrainCommand trains the mlp fixture's initialization for two epochs on 1280 real MNIST
// images, checks the JSON report and the files, and hands the folder to `ltransfer transfer` as
// a source trajectory.
func TestTrainCommand(t *testing.T) {
	data := testenv.MNISTSpec(t)
	out := filepath.Join(t.TempDir(), "run")
	code, stdout, stderr := runCLI("train", "--model", fixture("mlp", "seed1", "ckpt_000.onnx"), "--data", data,
		"--mean", "0.1307", "--std", "0.3081", "--limit", "1280", "--val-limit", "500", "--epochs", "2", "--batch", "64",
		"--lr", "0.02", "--weight-decay", "5e-4", "--schedule", "cosine", "--eval-every", "10", "--out", out, "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep train.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not the report: %v\n%s", err, stdout)
	}
	if stderr != "" {
		t.Errorf("--quiet printed %q", stderr)
	}
	if rep.Settings.Epochs != 2 || rep.Settings.Schedule != train.Cosine || rep.Settings.WeightDecay != 5e-4 ||
		rep.Settings.Data != data || rep.StepsPerEpoch != 20 || len(rep.Evals) != 5 || len(rep.Epochs) != 2 {
		t.Errorf("report %s", stdout)
	}
	if acc := rep.Epochs[1].Accuracy; acc < 0.8 {
		t.Errorf("validation accuracy %.4f after two epochs, want above 0.8", acc)
	}
	saved, err := os.ReadFile(filepath.Join(out, "train.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file train.Report
	if err := json.Unmarshal(saved, &file); err != nil || file.Epochs[1] != rep.Epochs[1] {
		t.Errorf("train.json (%v) differs from the printed report:\n%s", err, saved)
	}

	transferred := filepath.Join(t.TempDir(), "transfer")
	code, _, stderr = runCLI("transfer", "--init", fixture("mlp", "seed2", "ckpt_000.onnx"), "--method", "naive",
		"--steps", "2", "--data", data, "--mean", "0.1307", "--std", "0.3081", "--limit", "256", "--val-limit", "256",
		"--out", transferred, "--quiet", out)
	if code != 0 {
		t.Fatalf("transfer of the trained folder: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(transferred, "step_004.onnx")); err != nil {
		t.Errorf("transfer over ckpt_000..002 with 2 steps each: %v", err)
	}
}

func TestTrainExitCodes(t *testing.T) {
	if code, stdout, _ := runCLI("train", "--help"); code != 0 || !strings.Contains(stdout, "--every-steps") {
		t.Errorf("help: exit %d:\n%s", code, stdout)
	}
	model := fixture("mlp", "seed1", "ckpt_000.onnx")
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	data := testenv.MNISTSpec(t)
	base := []string{"train", "--model", model, "--data", data, "--out", filepath.Join(t.TempDir(), "out")}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"train", "--data", data, "--out", "x"}, 2, "--model is required"},
		{[]string{"train", "--model", model, "--data", data}, 2, "--out is required"},
		{[]string{"train", "--model", model, "--out", "x"}, 2, "--data is required"},
		{append(base, "--epochs", "0"), 2, "0 epochs"},
		{append(base, "--lr", "-1"), 2, "learning rate"},
		{append(base, "--momentum", "1"), 2, "momentum"},
		{append(base, "--schedule", "step"), 2, "unknown learning-rate schedule"},
		{append(base, "--batch", "x"), 2, "invalid value"},
		{append(base, "--no-such-flag"), 2, "no-such-flag"},
		{append(base, "extra"), 2, "no arguments"},
		{[]string{"train", "--model", "missing.onnx", "--data", data, "--out", "x"}, 1, "missing.onnx"},
		{[]string{"train", "--model", model, "--data", data, "--limit", "10", "--out", file}, 1, "is a file"},
	} {
		code, _, stderr := runCLI(c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, want %d with %q; stderr:\n%s", c.args[1:], code, c.code, c.want, stderr)
		}
	}
}

// TestTrainProgress checks the human output when stderr is not a terminal: a line per
// evaluation after a step (the end of each epoch here) and the summary.
func TestTrainProgress(t *testing.T) {
	code, stdout, stderr := runCLI("train", "--model", fixture("mlp", "seed1", "ckpt_000.onnx"), "--data", testenv.MNISTSpec(t),
		"--limit", "8", "--val-limit", "8", "--batch", "4", "--epochs", "2", "--out", filepath.Join(t.TempDir(), "out"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if stdout != "" || len(lines) != 3 || !strings.HasPrefix(lines[0], "train epoch 1 step 2/4  lr 0.01  loss ") ||
		!strings.Contains(lines[1], "epoch 2 step 4/4") || !strings.Contains(lines[1], "val acc") ||
		!strings.HasPrefix(lines[2], "train: 4 steps, validation accuracy ") {
		t.Errorf("stdout %q, stderr:\n%s", stdout, stderr)
	}
}
