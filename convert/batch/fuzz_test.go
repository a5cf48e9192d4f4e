package batch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzManifest feeds arbitrary manifests, as JSON and as YAML, to the manifest parser: it must
// return a manifest or a *ManifestError, never panic or hang (aliases of aliases included), and
// a manifest it returns must hold jobs with unique ids and outputs, each in one shard, every job
// in the run order once and after the jobs whose outputs it reads. The seed corpus is
// testdata/manifests, the example in cmd/ltransfer/examples and testdata/fuzz/FuzzManifest.
func FuzzManifest(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "manifests", "*"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed manifests in testdata/manifests (%v)", err)
	}
	paths = append(paths, filepath.Join("..", "..", "cmd", "ltransfer", "examples", "ensemble.yaml"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, strings.HasSuffix(p, ".json"))
	}
	f.Add([]byte("a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\ndefaults: {classes: [*c, *c]}\njobs: [{out: o}]\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, isJSON bool) {
		path := "/m/manifest.yaml"
		if isJSON {
			path = "/m/manifest.json"
		}
		m, err := ParseManifest(path, data)
		if err != nil {
			var me *ManifestError
			if !errors.As(err, &me) || me.Path != path {
				t.Fatalf("error %q is not a *ManifestError naming the manifest", err)
			}
			return
		}
		ids, outs := map[string]bool{}, map[string]bool{}
		for _, j := range m.Jobs {
			if ids[j.ID] || outs[absPath(j.Out)] {
				t.Fatalf("job %q: a second job with its id or output %s", j.ID, j.Out)
			}
			ids[j.ID], outs[absPath(j.Out)] = true, true
			if s := j.Shard(7); s < 0 || s >= 7 {
				t.Fatalf("job %q in shard %d of 7", j.ID, s)
			}
		}
		if len(m.order) != len(m.Jobs) {
			t.Fatalf("%d jobs, %d in the run order", len(m.Jobs), len(m.order))
		}
		for i, j := range m.order {
			for _, k := range j.after {
				if slices.Index(m.order, k) >= i {
					t.Fatalf("job %q runs before %q, whose output it reads", j.ID, k.ID)
				}
			}
		}
	})
}

// TestSeedManifests checks that the seed manifests parse (so the fuzzer starts from valid
// manifests of every kind and YAML feature) and that manifests whose aliases expand without
// bound or refer to themselves are refused.
func TestSeedManifests(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "manifests", "*"))
	for _, p := range paths {
		m, err := LoadManifest(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Jobs) < 3 {
			t.Errorf("%s: %d jobs", p, len(m.Jobs))
		}
	}
	laughs := "defaults:\n  classes: &a0 [1, 1, 1, 1]\n"
	for i := 1; i < 12; i++ { // a list of 4 lists of 4 lists ... of 4^11 values in all
		laughs += fmt.Sprintf("  x%d: &a%d [*a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1)
	}
	_, err := ParseManifest("/m/laughs.yaml", []byte(laughs+"jobs: [{out: o}]\n"))
	if err == nil || !strings.Contains(err.Error(), "expands to more than") {
		t.Errorf("a manifest of 4^11 values: %v", err)
	}
	// Found by FuzzManifest: an anchor whose node holds an alias to itself.
	_, err = ParseManifest("/m/cycle.yaml", []byte("defaults: &d {classes: [*d]}\njobs: [{out: o}]\n"))
	if err == nil || !strings.Contains(err.Error(), "line 1: an alias refers to a node that contains it") {
		t.Errorf("a manifest whose anchor contains its alias: %v", err)
	}
}
