package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func fixture(parts ...string) string {
	return filepath.Join(append([]string{"..", "..", "testdata"}, parts...)...)
}

func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(append([]string{"ltransfer"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestInspectJSON(t *testing.T) {
	code, out, stderr := runCLI("inspect", "--json", fixture("cnn", "seed1", "ckpt_000.onnx"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Opset   int64            `json:"opset"`
		Inputs  []map[string]any `json:"inputs"`
		Outputs []map[string]any `json:"outputs"`
		Ops     map[string]int   `json:"ops"`
		Params  []struct {
			Name      string `json:"name"`
			Shape     []int  `json:"shape"`
			Trainable bool   `json:"trainable"`
		} `json:"params"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if got.Opset != 15 || got.Ops["BatchNormalization"] != 2 || got.Ops["Conv"] != 2 || len(got.Inputs) != 1 || len(got.Outputs) != 1 {
		t.Errorf("unexpected summary %+v", got)
	}
	trainable := map[string]bool{}
	for _, p := range got.Params {
		trainable[p.Name] = p.Trainable
	}
	if !trainable["conv1.weight"] || !trainable["bn1.weight"] || trainable["bn1.running_mean"] || trainable["bn2.running_var"] {
		t.Errorf("trainable flags wrong: %v", trainable)
	}
}

func TestInspectTable(t *testing.T) {
	code, out, _ := runCLI("inspect", fixture("mlp", "seed1", "ckpt_000.onnx"))
	if code != 0 || !strings.Contains(out, "fc1.weight") || !strings.Contains(out, "[256 x 784]") || !strings.Contains(out, "203530") {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
}

func TestExitCodes(t *testing.T) {
	if code, _, _ := runCLI("inspect"); code != 2 {
		t.Errorf("missing argument: exit %d, want 2", code)
	}
	if code, _, _ := runCLI("inspect", "--no-such-flag", "x.onnx"); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code, _, _ := runCLI("no-such-command"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	code, _, stderr := runCLI("inspect", filepath.Join(t.TempDir(), "missing.onnx"))
	if code != 1 || !strings.Contains(stderr, "missing.onnx") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
}
