package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestBenchChild runs one case of the benchmark in-process (the parent runs each case as such a
// child): the cnn fixture onto its redrawn initialization with FGMT, one step, and reads its
// JSON result.
func TestBenchChild(t *testing.T) {
	var out, errOut bytes.Buffer
	app := &cli.App{Name: "ltransfer", Writer: &out, ErrWriter: &errOut, Commands: []*cli.Command{benchCommand()}}
	err := app.Run([]string{"ltransfer", "bench", "--child", "--models", "cnn", "--methods", "fgmt", "--steps", "1",
		"--fixtures", fixture(), "--quiet"})
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var r benchResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if r.Model != "cnn" || r.Method != "fgmt" || r.Steps != 1 || len(r.Accuracies) != 2 || r.BufferBytes <= 0 || r.Seconds <= 0 {
		t.Errorf("result %+v", r)
	}
	if err := app.Run([]string{"ltransfer", "bench", "--child", "--models", "vgg"}); err == nil {
		t.Error("an unknown model was accepted")
	}
}

// TestBenchPassChild times each pass of the resnet fixture in-process, as the parent of
// --passes runs them, and checks the JSON result; an unknown pass is refused.
func TestBenchPassChild(t *testing.T) {
	model := filepath.Join(fixture(), "resnet", "seed1", "ckpt_000.onnx")
	for _, pass := range benchPasses {
		var out, errOut bytes.Buffer
		app := &cli.App{Name: "ltransfer", Writer: &out, ErrWriter: &errOut, Commands: []*cli.Command{benchCommand()}}
		err := app.Run([]string{"ltransfer", "bench", "--child", "--pass", pass, "--passes", model, "--batch", "4", "--runs", "2"})
		if err != nil {
			t.Fatalf("%s: %v\n%s", pass, err, errOut.String())
		}
		var r passResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%s: not JSON: %v\n%s", pass, err, out.String())
		}
		if r.Pass != pass || r.Batch != 4 || r.MinSeconds <= 0 || r.MedianSeconds < r.MinSeconds || r.CPUSeconds <= 0 || r.PeakRSSBytes <= 0 {
			t.Errorf("%s: result %+v", pass, r)
		}
	}
	app := &cli.App{Name: "ltransfer", Writer: &bytes.Buffer{}, ErrWriter: &bytes.Buffer{}, Commands: []*cli.Command{benchCommand()}}
	err := app.Run([]string{"ltransfer", "bench", "--child", "--pass", "backward", "--passes", model})
	if err == nil || !strings.Contains(err.Error(), `unknown pass "backward"`) {
		t.Errorf("an unknown pass gave %v", err)
	}
}
