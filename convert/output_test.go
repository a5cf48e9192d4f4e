package convert

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/internal/testenv"
)

// TestWriterFiles gives a Writer steps with known accuracies, for every choice of files to keep,
// overwriting one parameter buffer between steps as Transfer does, and checks the folder
// afterwards: the step files hold their steps, best.onnx the first of the most accurate steps,
// final.onnx the last, and nothing else is left (no hidden files).
func TestWriterFiles(t *testing.T) {
	m, err := graph.Load(testenv.Fixture("mlp", "seed1", "ckpt_000.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	accs := []float64{0.2, 0.5, 0.4, 0.5, 0.3} // best: step 1
	work := m.Params.Clone()
	stepValue := func(step int) float32 { return float32(step) + 0.5 }
	for mask := range 8 {
		steps, best, final := mask&1 != 0, mask&2 != 0, mask&4 != 0
		dir := t.TempDir()
		w := &Writer{Dir: dir, Model: m, SaveSteps: steps, SaveBest: best, SaveFinal: final}
		stopped := &Writer{Dir: t.TempDir(), Model: m, SaveSteps: steps, SaveBest: best, SaveFinal: final}
		for step, acc := range accs {
			for _, p := range work {
				p.Data[0] = stepValue(step)
			}
			if err := w.Step(step, acc, work); err != nil {
				t.Fatalf("steps %v best %v final %v: step %d: %v", steps, best, final, step, err)
			}
			if step < 3 {
				if err := stopped.Step(step, acc, work); err != nil {
					t.Fatal(err)
				}
			}
		}
		// A transfer stopped after step 2 keeps its step files and nothing hidden.
		if err := stopped.Discard(); err != nil {
			t.Fatal(err)
		}
		if entries, err := os.ReadDir(stopped.Dir); err != nil || (steps && len(entries) != 3) || (!steps && len(entries) != 0) {
			t.Errorf("steps %v best %v final %v: a stopped Writer left %v (%v)", steps, best, final, entries, err)
		}
		if err := w.Finish(); err != nil {
			t.Fatalf("steps %v best %v final %v: %v", steps, best, final, err)
		}
		want := map[string]int{}
		if steps {
			for step := range accs {
				want[fmt.Sprintf("step_%03d.onnx", step)] = step
			}
		}
		if best {
			want["best.onnx"] = 1
		}
		if final {
			want["final.onnx"] = len(accs) - 1
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		var wantNames []string
		for name := range want {
			wantNames = append(wantNames, name)
		}
		slices.Sort(wantNames)
		if !slices.Equal(names, wantNames) {
			t.Fatalf("steps %v best %v final %v: the folder holds %v, want %v", steps, best, final, names, wantNames)
		}
		if got := slices.Sorted(slices.Values(w.Files)); !slices.Equal(got, wantNames) {
			t.Errorf("steps %v best %v final %v: Files lists %v, want %v", steps, best, final, w.Files, wantNames)
		}
		for name, step := range want {
			saved, err := graph.Load(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			for pname, p := range saved.Params {
				if p.Data[0] != stepValue(step) || !slices.Equal(p.Data[1:], m.Params[pname].Data[1:]) {
					t.Fatalf("steps %v best %v final %v: %s holds %v..., want step %d's", steps, best, final, name, p.Data[:min(3, len(p.Data))], step)
				}
			}
		}
	}
}
