package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/ltransfer/ltransfer/convert"
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
	var r convert.BenchResult
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
