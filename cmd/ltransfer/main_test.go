package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/graph"
)

func fixture(parts ...string) string {
	return filepath.Join(append([]string{"..", "..", "testdata"}, parts...)...)
}

func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"ltransfer"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestInspectJSON(t *testing.T) {
	code, out, stderr := runCLI("inspect", fixture("cnn", "seed1", "ckpt_000.onnx"), "--json")
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

func TestPermuteWritesAnEquivalentModel(t *testing.T) {
	in := fixture("cnn", "seed1", "ckpt_002.onnx")
	out := filepath.Join(t.TempDir(), "permuted.onnx")
	if code, _, stderr := runCLI("permute", in, "--seed", "5", "-o", out); code != 0 { // as README writes it
		t.Fatalf("exit %d: %s", code, stderr)
	}
	a, err := graph.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := graph.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.Params["conv2.weight"].Data, b.Params["conv2.weight"].Data) {
		t.Error("the permuted model has the same conv2 weights")
	}
	x := make([]float32, 4*28*28)
	for i := range x {
		x[i] = float32(i%29) / 29
	}
	var logits [2][]float32
	for i, m := range []*graph.Model{a, b} {
		s, err := graph.NewSession(m, 4)
		if err != nil {
			t.Fatal(err)
		}
		if logits[i], err = s.Logits(x); err != nil {
			t.Fatal(err)
		}
	}
	for i := range logits[0] {
		if d := logits[0][i] - logits[1][i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("logit %d differs by %g", i, d)
		}
	}
	if code, _, _ := runCLI("permute", "-o", in, in); code != 2 {
		t.Errorf("overwriting the input: exit %d, want 2", code)
	}
}

func TestInspectJSONHasGroups(t *testing.T) {
	code, out, stderr := runCLI("inspect", "--json", "--verify", fixture("mlp", "seed1", "ckpt_000.onnx"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Groups []struct {
			Name    string `json:"name"`
			Size    int    `json:"size"`
			Members []struct {
				Param string `json:"param"`
				Axis  int    `json:"axis"`
				Block int    `json:"block"`
			} `json:"members"`
		} `json:"groups"`
		Unpermuted []struct {
			Param  string `json:"param"`
			Axis   int    `json:"axis"`
			Reason string `json:"reason"`
		} `json:"unpermuted"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Groups) != 1 || got.Groups[0].Size != 256 || len(got.Groups[0].Members) != 3 || len(got.Unpermuted) == 0 {
		t.Errorf("groups %+v, unpermuted %+v", got.Groups, got.Unpermuted)
	}
}
