package batch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/internal/testenv"
	"github.com/ltransfer/ltransfer/models"
)

// batchEnv is what the batch tests' manifests refer to: real MNIST and the mlp fixture, by
// absolute paths.
type batchEnv struct {
	mnist    string // the data spec
	traj     []string
	init     string
	otherDir string // another fixture folder of the same architecture
}

func newBatchEnv(t *testing.T) batchEnv {
	t.Helper()
	dir, err := dataset.ModuleMNIST()
	if err != nil {
		t.Fatal(err)
	}
	abs := func(parts ...string) string {
		p, err := filepath.Abs(testenv.Fixture(parts...))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return batchEnv{
		mnist:    "mnist:" + dir,
		traj:     []string{abs("mlp", "seed1", "ckpt_000.onnx"), abs("mlp", "seed1", "ckpt_001.onnx")},
		init:     abs("mlp", "seed2", "ckpt_000.onnx"),
		otherDir: abs("mlp", "seed2"),
	}
}

// local copies the fixture files into dir and returns the environment with paths relative to
// a manifest in dir, so that the jobs' identities, and so their shards, do not depend on where
// the repository is.
func (e batchEnv) local(t *testing.T, dir string) batchEnv {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, "fixtures"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyTo := func(from, name string) string {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "fixtures", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return "fixtures/" + name
	}
	e.traj = []string{copyTo(e.traj[0], "first.onnx"), copyTo(e.traj[1], "last.onnx")}
	e.init = copyTo(e.init, "init.onnx")
	return e
}

// cheapDefaults are defaults under which a transfer of the mlp takes a fraction of a second:
// naive, one interpolation step, few examples, only final.onnx saved. Each override, "field:
// value", replaces a default.
func (e batchEnv) cheapDefaults(overrides ...string) string {
	fields := []string{"data: " + e.mnist, "mean: 0.1307", "std: 0.3081", "method: naive", "steps: 1",
		"bn_batches: 1", "batch: 32", "limit: 64", "val_limit: 64", "save: final",
		fmt.Sprintf("trajectory: [%s, %s]", e.traj[0], e.traj[1]), "init: " + e.init}
	for _, o := range overrides {
		name, _, _ := strings.Cut(o, ":")
		fields = slices.DeleteFunc(fields, func(f string) bool { return strings.HasPrefix(f, name+":") })
		fields = append(fields, o)
	}
	return "defaults:\n  " + strings.Join(fields, "\n  ") + "\n"
}

// writeManifest writes a manifest file into dir and returns its path.
func writeManifest(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadManifest(t *testing.T, path string) *Manifest {
	t.Helper()
	m, err := LoadManifest(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// statuses maps job ids to their status in a report.
func statuses(rep *Report) map[string]JobStatus {
	s := map[string]JobStatus{}
	for _, j := range rep.Jobs {
		s[j.ID] = j.Status
	}
	return s
}

// runAllOK runs the manifest at path, fails the test if a job fails, and returns the statuses.
func runAllOK(t *testing.T, path string, opt Options) map[string]JobStatus {
	t.Helper()
	rep, err := Run(context.Background(), loadManifest(t, path), opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range rep.Jobs {
		if j.Status == StatusFailed {
			t.Fatalf("job %s failed: %s", j.ID, j.Error)
		}
	}
	return statuses(rep)
}

// tempFiles lists the temporary files of atomic writes under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n := d.Name(); strings.HasPrefix(n, ".") && (strings.Contains(n, ".tmp-") || strings.HasPrefix(n, ".write-test-")) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestParseManifestErrors(t *testing.T) {
	const job = "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o}\n"
	cases := []struct {
		name, manifest string
		job, field     string
		msg            string
	}{
		{"unknown field", "jobs:\n  - {id: a, trajectory: t, init: i.onnx, data: 'mnist:d', out: o, stpes: 3}\n", "a", "stpes", "unknown field"},
		{"unknown field of a job without id", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o}\n  - {out: p, sead: 2}\n", "p", "sead", "unknown field"},
		{"unknown default", "defaults: {metod: gmt}\n" + job, "defaults", "metod", "unknown field"},
		{"unknown top level", "default: {}\n" + job, "", "default", "unknown top-level field"},
		{"no jobs", "defaults: {}\n", "", "jobs", "at least one job"},
		{"wrong kind", "jobs:\n  - {kind: train, out: o}\n", "o", "kind", `"train", want eval, init or transfer`},
		{"field of another kind", "jobs:\n  - {id: e, kind: eval, models: m.onnx, data: 'mnist:d', out: o.json, method: gmt}\n", "e", "method", "not used by eval jobs"},
		{"missing init", "jobs:\n  - {trajectory: t, data: 'mnist:d', out: o}\n", "o", "init", "transfer jobs need exactly one of init and init_seed"},
		{"missing out", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d'}\n", "jobs[0]", "out", "required"},
		{"missing data", "jobs:\n  - {kind: eval, models: [m.onnx], out: o.json}\n", "o.json", "data", "required"},
		{"wrong type", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o, steps: ten}\n", "o", "steps", `want an integer, got "ten"`},
		{"wrong list type", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o, mean: [a]}\n", "o", "mean", "want a number or a list of numbers"},
		{"negative seed", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o, seed: -1}\n", "o", "seed", "want an integer ≥ 0"},
		{"bad method", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o, method: gtm}\n", "o", "method", `"gtm"`},
		{"oracle without target", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o, method: oracle}\n", "o", "target", "required by method oracle"},
		{"bad schedule", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o, schedule: linear}\n", "o", "schedule", `"linear"`},
		{"bad save", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o, save: 'best,last'}\n", "o", "save", `"last"`},
		{"zero steps", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o, steps: 0}\n", "o", "steps", "at least 1"},
		{"bad split", "jobs:\n  - {kind: eval, models: m.onnx, data: 'mnist:d', out: o.json, split: dev}\n", "o.json", "split", `"dev"`},
		{"bad data", "jobs:\n  - {trajectory: t, init: i.onnx, data: mnist, out: o}\n", "o", "data", "want mnist:DIR"},
		{"relabel without classes", "jobs:\n  - {trajectory: t, init: i.onnx, data: 'mnist:d', out: o, relabel: true}\n", "o", "relabel", "needs classes"},
		{"same output", "jobs:\n  - {id: a, trajectory: t, init: i.onnx, data: 'mnist:d', out: o}\n  - {id: b, trajectory: t, init: j.onnx, data: 'mnist:d', out: ./o/}\n", "", "out", `jobs "a" and "b" both write`},
		{"same id", "jobs:\n  - {id: a, trajectory: t, init: i.onnx, data: 'mnist:d', out: o}\n  - {id: a, trajectory: t, init: i.onnx, data: 'mnist:d', out: p}\n", "", "id", `jobs[0] and jobs[1] have the same id "a"`},
		{"cycle", "defaults: {data: 'mnist:d', init: i.onnx}\njobs:\n  - {id: a, trajectory: b/final.onnx, out: a}\n  - {id: b, trajectory: a, out: b}\n", "a", "", `"a" reads the output of "b", which reads the output of "a"`},
		{"not a mapping", "jobs:\n  - just a string\n", "jobs[0]", "", "want a mapping"},
		{"key twice", "jobs:\n  - {out: o, out: p}\n", "", "", `line 2: "out" is given twice`},
		{"wrong type in defaults", "defaults: {steps: ten}\n" + job, "defaults", "steps", `want an integer, got "ten"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseManifest("/runs/m.yaml", []byte(c.manifest))
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Fatalf("error %v, want a *ManifestError", err)
			}
			if me.Job != c.job || me.Field != c.field || !strings.Contains(err.Error(), c.msg) ||
				!strings.HasPrefix(err.Error(), "batch: /runs/m.yaml:") {
				t.Errorf("got %q (job %q, field %q), want job %q, field %q and %q", err, me.Job, me.Field, c.job, c.field, c.msg)
			}
		})
	}
}

func TestParseManifestLineNumbers(t *testing.T) {
	_, err := ParseManifest("m.yaml", []byte("defaults:\n  data: 'mnist:d'\njobs:\n  - id: a\n    trajectory: t\n    init: i.onnx\n    out: o\n  - id: b\n    trajectory: t\n    init: i.onnx\n    out: p\n    stesp: 1\n"))
	if err == nil || !strings.HasPrefix(err.Error(), `batch: m.yaml:8: job "b": field "stesp": unknown field`) {
		t.Errorf("got %v", err)
	}
}

func TestParseManifestDefaultsAndPaths(t *testing.T) {
	m, err := ParseManifest(filepath.FromSlash("/runs/batch.yaml"), []byte(`
defaults:
  data: mnist:data/mnist
  val_data: mnist:/abs/mnist
  method: fgmt
  models: [ignored-by-transfers.onnx]
  mean: 0.5
jobs:
  - trajectory: traj
    init: inits/s2.onnx
    out: out/s2
  - id: s3
    trajectory: [traj/a.onnx, traj/b.onnx]
    init: /elsewhere/s3.onnx
    out: out/s3
    method: gmt
    save: [best, final]
    mean: [0.1, 0.2]
  - kind: eval
    models: out/s2/final.onnx
    out: evals/s2.json
`))
	if err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string { return filepath.FromSlash(p) }
	a, b, e := m.Jobs[0], m.Jobs[1], m.Jobs[2]
	if a.ID != "out/s2" || a.Out != abs("/runs/out/s2") || a.spec.Init != abs("/runs/inits/s2.onnx") ||
		!slices.Equal(a.spec.Trajectory, []string{abs("/runs/traj")}) || a.spec.Method != "fgmt" ||
		a.spec.Data != "mnist:"+abs("/runs/data/mnist") || a.spec.ValData != "mnist:"+abs("/abs/mnist") ||
		!slices.Equal(a.spec.Mean, floatList{0.5}) || !slices.Equal(a.spec.Save, stringList{"steps", "best", "final"}) ||
		a.spec.Steps != 10 || a.spec.Batch != 128 || a.spec.NormBatches != 20 || a.spec.Seed != 1 || a.spec.Schedule != "cosine" {
		t.Errorf("first job %+v", a.spec)
	}
	if b.ID != "s3" || b.spec.Init != abs("/elsewhere/s3.onnx") || b.spec.Method != "gmt" ||
		!slices.Equal(b.spec.Trajectory, []string{abs("/runs/traj/a.onnx"), abs("/runs/traj/b.onnx")}) ||
		!slices.Equal(b.spec.Save, stringList{"best", "final"}) || !slices.Equal(b.spec.Mean, floatList{0.1, 0.2}) {
		t.Errorf("second job %+v", b.spec)
	}
	if e.Kind != KindEval || e.Out != abs("/runs/evals/s2.json") || e.spec.Batch != 256 || e.spec.Split != "val" ||
		!slices.Equal(e.spec.Models, []string{abs("/runs/out/s2/final.onnx")}) || e.spec.Method != "" {
		t.Errorf("eval job %+v", e.spec)
	}
	if !slices.Equal(e.after, []*Job{a}) || len(a.after) != 0 {
		t.Errorf("the eval should wait for the first transfer only: %v", e.after)
	}
	if !slices.Equal(m.order, []*Job{a, b, e}) {
		t.Errorf("order %v", m.order)
	}
}

func TestParseManifestJSONAndYAMLAgree(t *testing.T) {
	yamlText := `
defaults:
  data: &data mnist:data
  seed: 18446744073709551615
jobs:
  - &transfer {trajectory: t, init: i.onnx, out: o, classes: [3, 5], relabel: true, id: 2024-01-02}
  - <<: *transfer
    id: p
    out: p
  - data: *data
    kind: eval
    models: [o/final.onnx, o/best.onnx]
    out: e.json
`
	jsonText := `{"defaults": {"data": "mnist:data", "seed": 18446744073709551615},
 "jobs": [{"trajectory": "t", "init": "i.onnx", "out": "o", "classes": [3, 5], "relabel": true, "id": "2024-01-02"},
          {"trajectory": "t", "init": "i.onnx", "out": "p", "classes": [3, 5], "relabel": true, "id": "p"},
          {"kind": "eval", "models": ["o/final.onnx", "o/best.onnx"], "out": "e.json", "data": "mnist:data"}]}`
	y, err := ParseManifest("m.yaml", []byte(yamlText))
	if err != nil {
		t.Fatal(err)
	}
	j, err := ParseManifest("m.json", []byte(jsonText))
	if err != nil {
		t.Fatal(err)
	}
	if len(y.Jobs) != 3 || len(j.Jobs) != 3 {
		t.Fatalf("%d and %d jobs", len(y.Jobs), len(j.Jobs))
	}
	for i := range y.Jobs {
		a, b := y.Jobs[i], j.Jobs[i]
		if a.ID != b.ID || a.Out != b.Out || a.identity != b.identity || !slices.Equal(a.inputs(), b.inputs()) || string(a.spec.settings()) != string(b.spec.settings()) {
			t.Errorf("job %d: YAML %+v, JSON %+v", i, a.spec, b.spec)
		}
	}
	if y.Jobs[0].ID != "2024-01-02" || y.Jobs[0].spec.Seed != 1<<64-1 {
		t.Errorf("a YAML date or a big seed was changed: %q %d", y.Jobs[0].ID, y.Jobs[0].spec.Seed)
	}
	if _, err := ParseManifest("m.toml", []byte(jsonText)); err == nil {
		t.Error("a .toml manifest was accepted")
	}
	if _, err := ParseManifest("m.json", []byte(jsonText+"{}")); err == nil {
		t.Error("data after the JSON object was accepted")
	}
}

func TestShardFromEnv(t *testing.T) {
	cases := []struct {
		name  string
		env   map[string]string
		count int
		want  Shard
		ok    bool
		err   string
	}{
		{"no scheduler", nil, 0, Shard{}, false, ""},
		{"kubernetes", map[string]string{"JOB_COMPLETION_INDEX": "3"}, 4, Shard{3, 4}, true, ""},
		{"kubernetes without count", map[string]string{"JOB_COMPLETION_INDEX": "3"}, 0, Shard{}, true, "shard count"},
		{"kubernetes index too big", map[string]string{"JOB_COMPLETION_INDEX": "4"}, 4, Shard{}, true, "index 4 of 4"},
		{"slurm from 0", map[string]string{"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "5"}, 0, Shard{2, 5}, true, ""},
		{"slurm from 1", map[string]string{"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "5"}, 0, Shard{0, 5}, true, ""},
		{"slurm last from 1", map[string]string{"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "5"}, 0, Shard{4, 5}, true, ""},
		{"slurm with a step", map[string]string{"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "3"}, 0, Shard{2, 3}, true, ""},
		{"slurm count given", map[string]string{"SLURM_ARRAY_TASK_ID": "2"}, 3, Shard{2, 3}, true, ""},
		{"slurm without count", map[string]string{"SLURM_ARRAY_TASK_ID": "2"}, 0, Shard{}, true, "SLURM_ARRAY_TASK_COUNT is not set"},
		{"slurm list", map[string]string{"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, 0, Shard{}, true, "--array=0-N"},
		{"slurm garbage", map[string]string{"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "3"}, 0, Shard{}, true, "not an integer"},
		{"kubernetes first", map[string]string{"JOB_COMPLETION_INDEX": "1", "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"}, 2, Shard{1, 2}, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }
			s, ok, err := ShardFromEnv(lookup, c.count)
			if ok != c.ok || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) || (err == nil && s != c.want) {
				t.Errorf("got %+v, %v, %v; want %+v, %v, error with %q", s, ok, err, c.want, c.ok, c.err)
			}
		})
	}
}

// cheapJobs returns a manifest of n cheap transfer jobs, in the given order of their numbers.
func (e batchEnv) cheapJobs(order []int) string {
	var b strings.Builder
	b.WriteString(e.cheapDefaults())
	b.WriteString("jobs:\n")
	for _, i := range order {
		fmt.Fprintf(&b, "  - {out: out/job%02d, seed: %d}\n", i, i+1)
	}
	return b.String()
}

// TestShardsRunEveryJobOnce runs a manifest of ten jobs as n concurrent shards, as n processes
// would, for several n: together they run every job exactly once.
func TestShardsRunEveryJobOnce(t *testing.T) {
	e := newBatchEnv(t)
	const jobs = 10
	order := make([]int, jobs)
	for i := range order {
		order[i] = i
	}
	for _, n := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			dir := t.TempDir()
			path := writeManifest(t, dir, "batch.yaml", e.local(t, dir).cheapJobs(order))
			reports := make([]*Report, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					m, err := LoadManifest(path)
					if err != nil {
						errs[i] = err
						return
					}
					reports[i], errs[i] = Run(context.Background(), m, Options{Shard: Shard{Index: i, Count: n}})
				})
			}
			wg.Wait()
			runs := map[string]int{}
			busy := 0
			for i, rep := range reports {
				if errs[i] != nil {
					t.Fatalf("shard %d: %v", i, errs[i])
				}
				if len(rep.Jobs) > 0 {
					busy++
				}
				for _, j := range rep.Jobs {
					if j.Status != StatusOK {
						t.Errorf("shard %d: job %s: %s %s", i, j.ID, j.Status, j.Error)
					}
					runs[j.ID]++
				}
			}
			for i := range jobs {
				id := fmt.Sprintf("out/job%02d", i)
				if runs[id] != 1 {
					t.Errorf("job %s ran %d times", id, runs[id])
				}
				for _, f := range []string{"final.onnx", "report.json", "perm.json", batchJobFile} {
					if _, err := os.Stat(filepath.Join(dir, id, f)); err != nil {
						t.Error(err)
					}
				}
			}
			if len(runs) != jobs {
				t.Errorf("%d jobs ran, want %d: %v", len(runs), jobs, runs)
			}
			if n > 1 && busy < 2 {
				t.Errorf("only %d of %d shards had jobs: the hash does not spread them", busy, n)
			}
		})
	}
}

// TestShardsStableUnderShuffle checks that a job's shard depends on the job, not on its place in
// the manifest or on the other jobs.
func TestShardsStableUnderShuffle(t *testing.T) {
	// Only parsed: the files need not exist.
	e := batchEnv{mnist: "mnist:data", traj: []string{"run/first.onnx", "run/last.onnx"}, init: "init.onnx"}
	order := make([]int, 40)
	for i := range order {
		order[i] = i
	}
	base, err := ParseManifest("a/batch.yaml", []byte(e.cheapJobs(order)))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 5 {
		shuffled := slices.Clone(order)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		shuffled = shuffled[:30+trial] // and some jobs removed
		// The same manifest elsewhere: identities use paths as written.
		m, err := ParseManifest("elsewhere/b/batch.yaml", []byte(e.cheapJobs(shuffled)))
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range m.Jobs {
			k := base.Jobs[slices.IndexFunc(base.Jobs, func(b *Job) bool { return b.ID == j.ID })]
			for n := 1; n <= 7; n++ {
				if j.Shard(n) != k.Shard(n) {
					t.Fatalf("job %s: shard %d of %d after shuffling, %d before", j.ID, j.Shard(n), n, k.Shard(n))
				}
			}
		}
	}
	counts := make([]int, 5)
	for _, j := range base.Jobs {
		counts[j.Shard(5)]++
	}
	for i, c := range counts {
		if c == 0 {
			t.Errorf("no job in shard %d of 5: %v", i, counts)
		}
	}
}

// TestBatchResume runs a manifest, changes one thing at a time, and checks which jobs a rerun
// redoes.
func TestBatchResume(t *testing.T) {
	e := newBatchEnv(t)
	dir := t.TempDir()
	init := filepath.Join(dir, "init.onnx")
	copyFile := func(from, to string) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(e.init, init)
	manifest := func(limit, steps int) string {
		return e.cheapDefaults(fmt.Sprintf("limit: %d", limit)) + fmt.Sprintf(`jobs:
  - {id: a, out: out/a, steps: %d}
  - {id: b, out: out/b, init: init.onnx}
  - {id: c, out: out/c, trajectory: %s}
  - {id: e, kind: eval, models: [out/a/final.onnx, out/b/final.onnx], out: evals/ab.json}
`, steps, filepath.Dir(e.traj[0]))
	}
	path := writeManifest(t, dir, "batch.yaml", manifest(64, 1))
	run := func(force bool) map[string]JobStatus {
		t.Helper()
		return runAllOK(t, path, Options{Force: force, Parallel: 2})
	}
	all := func(s JobStatus) map[string]JobStatus {
		return map[string]JobStatus{"a": s, "b": s, "c": s, "e": s}
	}
	if got := run(false); !sameStatuses(got, all(StatusOK)) {
		t.Fatalf("first run: %v", got)
	}
	steps := []struct {
		name   string
		change func()
		redo   []string
	}{
		{"nothing changed", func() {}, nil},
		{"an input file changed", func() { copyFile(filepath.Join(e.otherDir, "ckpt_001.onnx"), init) }, []string{"b", "e"}},
		{"a setting changed", func() { writeManifest(t, dir, "batch.yaml", manifest(64, 2)) }, []string{"a"}}, // naive's final point does not depend on steps: e's inputs are the same
		{"the preprocessing changed", func() { writeManifest(t, dir, "batch.yaml", manifest(96, 2)) }, []string{"a", "b", "c", "e"}},
		{"an output deleted", func() { os.Remove(filepath.Join(dir, "out", "c", "final.onnx")) }, []string{"c"}},
		{"a report corrupted", func() {
			os.WriteFile(filepath.Join(dir, "out", "c", "report.json"), []byte("{not json"), 0o644)
		}, []string{"c"}},
		{"killed before the record", func() { os.Remove(filepath.Join(dir, "out", "c", batchJobFile)) }, []string{"c"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.change()
			want := all(StatusSkipped)
			for _, id := range s.redo {
				want[id] = StatusOK
			}
			if got := run(false); !sameStatuses(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
	if got := run(true); !sameStatuses(got, all(StatusOK)) {
		t.Errorf("forced: %v", got)
	}
}

func sameStatuses(a, b map[string]JobStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestBatchIsolatesFailures checks that a failing job is reported with its error and the others
// run, and that a job reading a failed job's output fails without running.
func TestBatchIsolatesFailures(t *testing.T) {
	e := newBatchEnv(t)
	dir := t.TempDir()
	path := writeManifest(t, dir, "batch.yaml", e.cheapDefaults()+`jobs:
  - {id: missing, out: out/missing, init: nowhere.onnx}
  - {id: good, out: out/good}
  - {id: eval-missing, kind: eval, models: out/missing/final.onnx, out: evals/missing.json}
  - {id: eval-good, kind: eval, models: [out/good/final.onnx], out: evals/good.json}
  - {id: wrong-data, out: out/wrong, data: 'npz:nothing.npz'}
`)
	rep, err := Run(context.Background(), loadManifest(t, path), Options{Parallel: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]JobStatus{"missing": StatusFailed, "good": StatusOK, "eval-missing": StatusFailed, "eval-good": StatusOK, "wrong-data": StatusFailed}
	if got := statuses(rep); !sameStatuses(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	errs := map[string]string{}
	for _, j := range rep.Jobs {
		errs[j.ID] = j.Error
	}
	if e := errs["missing"]; !strings.HasPrefix(e, `batch: `+path+`: job "missing": `) || !strings.Contains(e, "nowhere.onnx") {
		t.Errorf("error of the failed job: %q", e)
	}
	if e := errs["eval-missing"]; !strings.Contains(e, `reads the output of job "missing", which failed`) {
		t.Errorf("error of the dependent job: %q", e)
	}
	if e := errs["wrong-data"]; !strings.Contains(e, "nothing.npz") {
		t.Errorf("error of the job with missing data: %q", e)
	}
	if rep.Count(StatusFailed) != 3 || rep.Count(StatusOK) != 2 {
		t.Errorf("counts %d failed, %d ok", rep.Count(StatusFailed), rep.Count(StatusOK))
	}
	var ev EvalReport
	if err := readJSON(filepath.Join(dir, "evals", "good.json"), &ev); err != nil {
		t.Fatal(err)
	}
	sum, err := convert.HashFile(filepath.Join(dir, "out", "good", "final.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	var tr convert.Report
	if err := readJSON(filepath.Join(dir, "out", "good", "report.json"), &tr); err != nil {
		t.Fatal(err)
	}
	last := tr.Steps[len(tr.Steps)-1]
	if len(ev.Models) != 1 || ev.Models[0].SHA256 != sum || ev.Examples != 64 || ev.Models[0].Accuracy != last.Accuracy {
		t.Errorf("eval %+v; want the final model's hash %s and its transfer accuracy %v on 64 examples", ev, sum, last.Accuracy)
	}
}

// TestBatchWaitsForOtherShards checks that a job reading the output of a job of another shard
// fails with a clear error while that output is missing, and runs once it is there.
func TestBatchWaitsForOtherShards(t *testing.T) {
	e := newBatchEnv(t)
	dir := t.TempDir()
	// Find a transfer and an eval of it in different shards of 2.
	var text string
	var m *Manifest
	for i := 0; m == nil || m.Jobs[0].Shard(2) == m.Jobs[1].Shard(2); i++ {
		if i == 64 { // each try has even odds
			t.Fatal("a transfer and its eval are always in the same shard of 2")
		}
		text = e.cheapDefaults() + fmt.Sprintf("jobs:\n  - {id: t, out: out/t%d}\n  - {id: e, kind: eval, models: out/t%d/final.onnx, out: e.json}\n", i, i)
		var err error
		if m, err = ParseManifest(filepath.Join(dir, "batch.yaml"), []byte(text)); err != nil {
			t.Fatal(err)
		}
	}
	path := writeManifest(t, dir, "batch.yaml", text)
	evalShard := Shard{Index: m.Jobs[1].Shard(2), Count: 2}
	rep, err := Run(context.Background(), loadManifest(t, path), Options{Shard: evalShard})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Jobs) != 1 || rep.Jobs[0].Status != StatusFailed || !strings.Contains(rep.Jobs[0].Error, `an output of job "t" of shard`) {
		t.Fatalf("eval before its transfer: %+v", rep.Jobs)
	}
	if _, err := Run(context.Background(), loadManifest(t, path), Options{Shard: Shard{Index: 1 - evalShard.Index, Count: 2}}); err != nil {
		t.Fatal(err)
	}
	rep, err = Run(context.Background(), loadManifest(t, path), Options{Shard: evalShard})
	if err != nil || rep.Jobs[0].Status != StatusOK {
		t.Fatalf("eval after its transfer: %v %+v", err, rep.Jobs)
	}
}

// TestBatchInterrupt cancels a batch in the middle of a transfer: the transfer is stopped at
// the end of its step, no job starts after it, no temporary file stays, and a rerun completes.
func TestBatchInterrupt(t *testing.T) {
	e := newBatchEnv(t)
	dir := t.TempDir()
	path := writeManifest(t, dir, "batch.yaml", e.cheapDefaults("steps: 4", "save: steps,best,final")+`jobs:
  - {id: a, out: out/a}
  - {id: b, out: out/b}
  - {id: c, out: out/c}
`)
	reportPath := filepath.Join(dir, "batch-report.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var steps []int
	rep, err := Run(ctx, loadManifest(t, path), Options{Report: reportPath, Progress: func(ev Event) {
		if ev.Step != nil {
			steps = append(steps, ev.Step.Step)
			if ev.Job.ID == "b" && ev.Step.Step == 1 {
				cancel()
			}
		}
	}})
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want ErrInterrupted and context.Canceled", err)
	}
	want := map[string]JobStatus{"a": StatusOK, "b": StatusCancelled, "c": StatusCancelled}
	if got := statuses(rep); !sameStatuses(got, want) || !rep.Interrupted {
		t.Fatalf("got %v (interrupted %v), want %v", got, rep.Interrupted, want)
	}
	if len(steps) != 5+2 {
		t.Errorf("steps reported %v: b should stop after its step 1", steps)
	}
	if tmp := tempFiles(t, dir); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "b", "report.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stopped job has a report: %v", err)
	}
	for _, f := range []string{"step_000.onnx", "step_001.onnx"} {
		if _, err := graph.Load(filepath.Join(dir, "out", "b", f)); err != nil {
			t.Errorf("a step the stopped job finished: %v", err)
		}
	}
	var onDisk Report
	if err := readJSON(reportPath, &onDisk); err != nil || !onDisk.Interrupted || !sameStatuses(statuses(&onDisk), want) {
		t.Errorf("batch-report.json: %v %+v", err, onDisk)
	}
	rep, err = Run(context.Background(), loadManifest(t, path), Options{})
	want = map[string]JobStatus{"a": StatusSkipped, "b": StatusOK, "c": StatusOK}
	if got := statuses(rep); err != nil || !sameStatuses(got, want) {
		t.Errorf("rerun: %v, %v; want %v", err, got, want)
	}
}

func TestBatchReportWrittenAtomically(t *testing.T) {
	e := newBatchEnv(t)
	dir := t.TempDir()
	path := writeManifest(t, dir, "batch.json", fmt.Sprintf(`{"defaults": {"data": %q, "limit": 64, "val_limit": 64},
 "jobs": [{"kind": "eval", "models": [%q], "out": "e.json"}]}`, e.mnist, e.init))
	reportPath := filepath.Join(dir, "reports", "r.json")
	if _, err := Run(context.Background(), loadManifest(t, path), Options{Report: reportPath}); err == nil {
		t.Fatal("a report in a missing folder was accepted")
	}
	if err := os.Mkdir(filepath.Dir(reportPath), 0o755); err != nil {
		t.Fatal(err)
	}
	var pending []JobStatus
	_, err := Run(context.Background(), loadManifest(t, path), Options{Report: reportPath, ReportInterval: time.Nanosecond, Progress: func(ev Event) {
		var r Report
		if err := readJSON(reportPath, &r); err != nil {
			t.Error(err)
		}
		pending = append(pending, r.Jobs[0].Status)
	}})
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := readJSON(reportPath, &r); err != nil {
		t.Fatal(err)
	}
	// The report on disk says pending while the job runs, and its outcome once it has ended.
	if !slices.Equal(pending, []JobStatus{StatusPending, StatusOK}) || r.Jobs[0].Status != StatusOK || r.Schema != Schema || r.Shard != (Shard{0, 1}) {
		t.Errorf("statuses seen %v, final report %+v", pending, r)
	}
	if tmp := tempFiles(t, dir); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	var raw map[string]any
	data, _ := os.ReadFile(reportPath)
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema_version", "manifest", "shard", "jobs", "interrupted", "seconds"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("batch-report.json has no %q", k)
		}
	}
}

func ExampleParseManifest() {
	m, err := ParseManifest("runs/ensemble.yaml", []byte(`
defaults:
  trajectory: seed1          # relative to runs/
  data: mnist:/data/mnist
  mean: 0.1307
  std: 0.3081
  method: fgmt
jobs:
  - {init: inits/seed2.onnx, out: out/seed2}
  - {init: inits/seed3.onnx, out: out/seed3}
  - {init: inits/seed4.onnx, out: out/seed4, method: gmt}
  - kind: eval
    models: [out/seed2/final.onnx, out/seed3/final.onnx, out/seed4/final.onnx]
    out: evals/ensemble.json
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, j := range m.Jobs {
		fmt.Printf("%-18s %-8s %-24s shard %d of 5\n", j.ID, j.Kind, filepath.ToSlash(j.Out), j.Shard(5))
	}
	// Output:
	// out/seed2          transfer runs/out/seed2           shard 2 of 5
	// out/seed3          transfer runs/out/seed3           shard 0 of 5
	// out/seed4          transfer runs/out/seed4           shard 3 of 5
	// evals/ensemble.json eval     runs/evals/ensemble.json shard 0 of 5
}

// TestBatchInitJobs checks init jobs (a built-in architecture, an ONNX model redrawn) and
// transfers from an init job's output and from init_seed: what they write, that a second run
// skips them all, and that a changed seed redoes the job and the transfer that reads it.
func TestBatchInitJobs(t *testing.T) {
	e := newBatchEnv(t)
	dir := t.TempDir()
	e = e.local(t, dir)
	manifest := func(seed int) string {
		return e.cheapDefaults() + fmt.Sprintf(`jobs:
  - {kind: init, model: "mlp:784,32,10;act=tanh", init_seed: 7, out: inits/tiny.onnx}
  - {kind: init, from: %s, init_seed: %d, out: inits/redrawn.onnx}
  - {id: from-file, out: out/file, init: inits/redrawn.onnx}
  - {id: from-seed, out: out/seed, init_seed: %d}
`, e.traj[0], seed, seed)
	}
	path := writeManifest(t, dir, "batch.yaml", manifest(5))
	run := func() map[string]JobStatus {
		t.Helper()
		return runAllOK(t, path, Options{})
	}
	ids := []string{"inits/tiny.onnx", "inits/redrawn.onnx", "from-file", "from-seed"}
	want := func(ok ...string) map[string]JobStatus {
		m := map[string]JobStatus{}
		for _, id := range ids {
			m[id] = StatusSkipped
			if slices.Contains(ok, id) {
				m[id] = StatusOK
			}
		}
		return m
	}
	if got := run(); !sameStatuses(got, want(ids...)) {
		t.Fatalf("first run: %v", got)
	}

	// The files are what ltransfer init writes, and init_seed draws the same initialization.
	arch, err := models.Parse("mlp:784,32,10;act=tanh")
	if err != nil {
		t.Fatal(err)
	}
	tiny, err := models.New(arch, 7)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, filepath.Join(dir, "inits", "tiny.onnx"), func() ([]byte, error) { return tiny.Encode(nil) })
	first, err := graph.Load(filepath.Join(dir, e.traj[0]))
	if err != nil {
		t.Fatal(err)
	}
	drawn, err := models.Reinit(first, 5)
	if err != nil {
		t.Fatal(err)
	}
	sameBytes(t, filepath.Join(dir, "inits", "redrawn.onnx"), func() ([]byte, error) { return first.Encode(drawn) })
	sameBytes(t, filepath.Join(dir, "out", "seed", "init.onnx"), func() ([]byte, error) { return first.Encode(drawn) })
	for name, wantSeed := range map[string]bool{"file": false, "seed": true} {
		var rep convert.Report
		if err := readJSON(filepath.Join(dir, "out", name, "report.json"), &rep); err != nil {
			t.Fatal(err)
		}
		roles := map[string]int{}
		for _, in := range rep.Inputs {
			roles[in.Role]++
		}
		if got := rep.Settings.InitSeed != nil && *rep.Settings.InitSeed == 5; got != wantSeed || (roles["init"] == 1) == wantSeed {
			t.Errorf("out/%s: init_seed %v and inputs %v", name, rep.Settings.InitSeed, roles)
		}
	}
	finals := func() [2][]byte {
		var f [2][]byte
		for i, name := range []string{"file", "seed"} {
			data, err := os.ReadFile(filepath.Join(dir, "out", name, "final.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			f[i] = data
		}
		return f
	}
	if f := finals(); string(f[0]) != string(f[1]) {
		t.Error("a transfer from init_seed differs from the same transfer from the file an init job drew")
	}

	if got := run(); !sameStatuses(got, want()) {
		t.Errorf("second run: %v", got)
	}
	writeManifest(t, dir, "batch.yaml", manifest(6))
	if got := run(); !sameStatuses(got, want("inits/redrawn.onnx", "from-file", "from-seed")) {
		t.Errorf("after a seed change: %v", got)
	}
}

// sameBytes fails unless the file at path holds the bytes that encode returns.
func sameBytes(t *testing.T, path string, encode func() ([]byte, error)) {
	t.Helper()
	have, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(have) != string(want) {
		t.Errorf("%s: %d bytes differ from the %d expected", path, len(have), len(want))
	}
}

// TestBatchTargetPathsWithCommas runs the oracle with its target trajectory given once as a
// folder and once as files, every path holding a comma: the paths reach the transfer whole,
// and report.json records each target checkpoint with its SHA-256.
func TestBatchTargetPathsWithCommas(t *testing.T) {
	e := newBatchEnv(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "target,run")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, name := range []string{"ckpt,000.onnx", "ckpt,001.onnx"} {
		data, err := os.ReadFile(testenv.Fixture("mlp", "seed2", fmt.Sprintf("ckpt_%03d.onnx", i)))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(target, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		want = append(want, hex.EncodeToString(sum[:]))
	}
	path := writeManifest(t, dir, "batch.yaml", e.cheapDefaults("method: oracle")+`jobs:
  - {id: folder, out: out/folder, target: "target,run"}
  - {id: files, out: out/files, target: ["target,run/ckpt,000.onnx", "target,run/ckpt,001.onnx"]}
`)
	runAllOK(t, path, Options{})
	for _, id := range []string{"folder", "files"} {
		var rep convert.Report
		if err := readJSON(filepath.Join(dir, "out", id, "report.json"), &rep); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, in := range rep.Inputs {
			if in.Role == "target" {
				got = append(got, in.SHA256)
				if !strings.Contains(filepath.Base(in.Path), ",") {
					t.Errorf("%s: target input %s", id, in.Path)
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: target checkpoints hashed %v, want %v", id, got, want)
		}
	}
}
