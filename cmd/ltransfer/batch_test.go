package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"github.com/ltransfer/ltransfer/convert/batch"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
)

// shardVariables are the environment variables that choose a shard.
var shardVariables = []string{"LTRANSFER_SHARD_INDEX", "LTRANSFER_SHARD_COUNT", "JOB_COMPLETION_INDEX",
	"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP", "SLURM_ARRAY_TASK_COUNT"}

// clearShardEnv empties the shard variables for the test, in case the tests run under a
// scheduler themselves (an empty variable counts as unset). It also checks that the command is
// there.
func clearShardEnv(t *testing.T) {
	t.Helper()
	if !slices.ContainsFunc(newApp(nil, nil).Commands, func(c *cli.Command) bool { return c.Name == "batch" }) {
		t.Fatal("the batch command is not registered: add batchCommand() to the commands in main.go")
	}
	for _, v := range shardVariables {
		t.Setenv(v, "")
	}
}

// batchManifest writes a manifest of jobs transferring the mlp fixture on real MNIST, with the
// given settings, and returns its path.
func batchManifest(t *testing.T, dir, settings string, jobs ...string) string {
	t.Helper()
	mnist, err := dataset.ModuleMNIST()
	if err != nil {
		t.Fatal(err)
	}
	abs := func(parts ...string) string {
		p, err := filepath.Abs(fixture(parts...))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	text := fmt.Sprintf(`defaults:
  data: mnist:%s
  mean: 0.1307
  std: 0.3081
  method: naive
  bn_batches: 1
  trajectory: [%s, %s]
  init: %s
%s
jobs:
`, mnist, abs("mlp", "seed1", "ckpt_000.onnx"), abs("mlp", "seed1", "ckpt_001.onnx"), abs("mlp", "seed2", "ckpt_000.onnx"), settings)
	for _, j := range jobs {
		text += "  - " + j + "\n"
	}
	path := filepath.Join(dir, "batch.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const cheapSettings = "  steps: 1\n  batch: 32\n  limit: 64\n  val_limit: 64\n  save: final"

func readBatchReport(t *testing.T, path string) batch.Report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r batch.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

func batchStatuses(r batch.Report) map[string]batch.JobStatus {
	s := map[string]batch.JobStatus{}
	for _, j := range r.Jobs {
		s[j.ID] = j.Status
	}
	return s
}

func TestBatchCommand(t *testing.T) {
	clearShardEnv(t)
	dir := t.TempDir()
	path := batchManifest(t, dir, cheapSettings, "{id: a, out: out/a}", "{id: b, out: out/b, seed: 2}",
		"{id: broken, out: out/broken, init: missing.onnx}", "{id: ev, kind: eval, models: [out/a/final.onnx, out/b/final.onnx], out: ev.json}")
	code, stdout, stderr := runCLI("batch", "--parallel", "2", path)
	if code != 1 || !strings.Contains(stderr, "1 of 4 jobs failed") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^a\s+transfer\s+ok\s+[0-9.]+\s+\S+out/a$`),
		regexp.MustCompile(`(?m)^broken\s+transfer\s+failed\s+[0-9.]+\s+batch: .*job "broken": .*missing\.onnx`),
		regexp.MustCompile(`(?m)^ev\s+eval\s+ok\s`),
	} {
		if !want.MatchString(stdout) {
			t.Errorf("the summary has no line matching %s:\n%s", want, stdout)
		}
	}
	want := map[string]batch.JobStatus{"a": batch.StatusOK, "b": batch.StatusOK, "broken": batch.StatusFailed, "ev": batch.StatusOK}
	if got := batchStatuses(readBatchReport(t, filepath.Join(dir, "batch-report.json"))); !sameStatuses(got, want) {
		t.Errorf("batch-report.json: %v, want %v", got, want)
	}

	// A rerun skips what is done and prints the report as JSON when asked.
	report := filepath.Join(dir, "rerun.json")
	code, stdout, stderr = runCLI("batch", "--json", "--quiet", "--report", report, path)
	if code != 1 || stderr == "" {
		t.Fatalf("rerun: exit %d, stderr:\n%s", code, stderr)
	}
	var printed batch.Report
	if err := json.Unmarshal([]byte(stdout), &printed); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	want = map[string]batch.JobStatus{"a": batch.StatusSkipped, "b": batch.StatusSkipped, "broken": batch.StatusFailed, "ev": batch.StatusSkipped}
	if got := batchStatuses(printed); !sameStatuses(got, want) || !sameStatuses(batchStatuses(readBatchReport(t, report)), want) {
		t.Errorf("rerun: %v, want %v", got, want)
	}

	// --force redoes the jobs; without the broken one, the batch succeeds.
	path = batchManifest(t, dir, cheapSettings, "{id: a, out: out/a}", "{id: b, out: out/b, seed: 2}")
	if code, _, stderr := runCLI("batch", "--force", "-q", path); code != 0 {
		t.Fatalf("forced: exit %d, stderr:\n%s", code, stderr)
	}
	want = map[string]batch.JobStatus{"a": batch.StatusOK, "b": batch.StatusOK}
	if got := batchStatuses(readBatchReport(t, filepath.Join(dir, "batch-report.json"))); !sameStatuses(got, want) {
		t.Errorf("forced: %v, want %v", got, want)
	}
}

func sameStatuses(a, b map[string]batch.JobStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestBatchUsage(t *testing.T) {
	dir := t.TempDir()
	good := batchManifest(t, dir, cheapSettings, "{id: a, out: out/a}")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("jobs:\n  - {id: x, out: o, trajectory: t, init: i.onnx, data: 'mnist:d', stesp: 2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"no manifest", nil, nil, 2, "one manifest"},
		{"two manifests", nil, []string{good, good}, 2, "one manifest"},
		{"missing manifest", nil, []string{filepath.Join(dir, "none.yaml")}, 1, "none.yaml"},
		{"unknown field", nil, []string{bad}, 2, `job "x": field "stesp": unknown field`},
		{"no parallelism", nil, []string{"--parallel", "0", good}, 2, "--parallel"},
		{"index without count", nil, []string{"--shard-index", "1", good}, 2, "needs --shard-count"},
		{"index too big", nil, []string{"--shard-index", "3", "--shard-count", "3", good}, 2, "index 3 of 3"},
		{"count without index", nil, []string{"--shard-count", "3", good}, 2, "JOB_COMPLETION_INDEX"},
		{"kubernetes without count", map[string]string{"JOB_COMPLETION_INDEX": "1"}, []string{good}, 2, "shard count"},
		{"slurm list", map[string]string{"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "3"}, []string{good}, 2, "--array=0-N"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clearShardEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, _, stderr := runCLI(append([]string{"batch"}, c.args...)...)
			if code != c.code || !strings.Contains(stderr, c.stderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, c.code, c.stderr)
			}
		})
	}
}

// TestBatchShardsFromFlagsAndSchedulers lists the shards of a manifest with --dry-run, chosen by
// flags, by a Kubernetes index and by a Slurm array starting at 1: each way, the shards
// partition the jobs the same way.
func TestBatchShardsFromFlagsAndSchedulers(t *testing.T) {
	dir := t.TempDir()
	var jobs, ids []string
	for i := range 12 {
		jobs = append(jobs, fmt.Sprintf("{id: j%d, out: out/j%d}", i, i))
		ids = append(ids, fmt.Sprintf("j%d", i))
	}
	path := batchManifest(t, dir, cheapSettings, jobs...)
	const n = 3
	list := func(env map[string]string, args ...string) []string {
		t.Helper()
		clearShardEnv(t)
		for k, v := range env {
			t.Setenv(k, v)
		}
		code, stdout, stderr := runCLI(append(append([]string{"batch", "--dry-run"}, args...), path)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
			got = append(got, strings.Fields(line)[0])
		}
		return got
	}
	var union []string
	for i := range n {
		byFlags := list(nil, "--shard-index", strconv.Itoa(i), "--shard-count", strconv.Itoa(n))
		byEnvFlags := list(map[string]string{"LTRANSFER_SHARD_INDEX": strconv.Itoa(i), "LTRANSFER_SHARD_COUNT": strconv.Itoa(n)})
		byKubernetes := list(map[string]string{"JOB_COMPLETION_INDEX": strconv.Itoa(i)}, "--shard-count", strconv.Itoa(n))
		bySlurm := list(map[string]string{"SLURM_ARRAY_TASK_ID": strconv.Itoa(i + 1), "SLURM_ARRAY_TASK_MIN": "1",
			"SLURM_ARRAY_TASK_MAX": strconv.Itoa(n), "SLURM_ARRAY_TASK_COUNT": strconv.Itoa(n)})
		if !slices.Equal(byFlags, byKubernetes) || !slices.Equal(byFlags, bySlurm) || !slices.Equal(byFlags, byEnvFlags) {
			t.Errorf("shard %d: flags %v, variables %v, Kubernetes %v, Slurm %v", i, byFlags, byEnvFlags, byKubernetes, bySlurm)
		}
		union = append(union, byFlags...)
	}
	slices.Sort(union)
	slices.Sort(ids)
	if !slices.Equal(union, ids) {
		t.Errorf("the shards list %v, want every job once: %v", union, ids)
	}
	if all := list(nil); len(all) != len(ids) {
		t.Errorf("without shards: %v", all)
	}
}

// buildLtransfer builds the command into a temporary folder.
func buildLtransfer(t *testing.T) string {
	t.Helper()
	clearShardEnv(t)
	bin := filepath.Join(t.TempDir(), "ltransfer")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// batchChild is a running ltransfer process whose stderr is read line by line.
type batchChild struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr strings.Builder
}

func startBatch(t *testing.T, ctx context.Context, bin string, args ...string) *batchChild {
	t.Helper()
	c := &batchChild{cmd: exec.CommandContext(ctx, bin, args...), lines: make(chan string, 1024)}
	for _, kv := range os.Environ() {
		if !slices.ContainsFunc(shardVariables, func(v string) bool { return strings.HasPrefix(kv, v+"=") }) {
			c.cmd.Env = append(c.cmd.Env, kv)
		}
	}
	pipe, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.lines)
		s := bufio.NewScanner(pipe)
		for s.Scan() {
			c.lines <- s.Text()
		}
	}()
	return c
}

// waitFor reads stderr until a line matches (true) or the process ends (false).
func (c *batchChild) waitFor(match func(string) bool) bool {
	for line := range c.lines {
		c.stderr.WriteString(line + "\n")
		if match(line) {
			return true
		}
	}
	return false
}

// wait reads the rest of stderr and waits for the process; it returns the exit code (-1 when a
// signal ended it).
func (c *batchChild) wait() int {
	c.waitFor(func(string) bool { return false })
	err := c.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		return -2
	}
	return 0
}

// checkBatchOutputs checks that every ONNX and JSON file under dir parses, and returns the
// temporary files of atomic writes there.
func checkBatchOutputs(t *testing.T, dir string) (temps []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		switch {
		case strings.HasPrefix(name, ".") && (strings.Contains(name, ".tmp-") || strings.HasPrefix(name, ".write-test-")):
			temps = append(temps, p)
		case strings.HasSuffix(name, ".onnx"):
			if _, err := graph.Load(p); err != nil {
				t.Errorf("a corrupt model: %v", err)
			}
		case strings.HasSuffix(name, ".json"):
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			var v any
			if err := json.Unmarshal(data, &v); err != nil {
				t.Errorf("a corrupt JSON file %s: %v", p, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return temps
}

// completeJobs returns the jobs whose outputs were complete: report.json and batch-job.json, which
// the batch writes last, are there.
func completeJobs(dir string, ids []string) map[string]bool {
	done := map[string]bool{}
	for _, id := range ids {
		_, err1 := os.Stat(filepath.Join(dir, "out", id, "report.json"))
		_, err2 := os.Stat(filepath.Join(dir, "out", id, "batch-job.json"))
		done[id] = err1 == nil && err2 == nil
	}
	return done
}

// TestBatchBinary runs the built command on a manifest and stops it: with SIGKILL at several
// moments, after which every file left parses and a rerun completes, skipping the jobs that
// had finished; and with SIGINT and SIGTERM, which stop it cleanly.
func TestBatchBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command and runs batches")
	}
	bin := buildLtransfer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ids := []string{"a", "b", "c", "d"}
	var jobs []string
	for i, id := range ids {
		jobs = append(jobs, fmt.Sprintf("{id: %s, out: out/%s, seed: %d}", id, id, i+1))
	}
	// Enough work per job that the kills land inside transfers and between their writes.
	const settings = "  steps: 3\n  batch: 64\n  limit: 512\n  val_limit: 1000\n  save: steps,best,final"

	t.Run("kill", func(t *testing.T) {
		dir := t.TempDir()
		path := batchManifest(t, dir, settings, jobs...)
		moments := []struct {
			name  string
			match func(string) bool
		}{
			{"at start", nil},
			{"in the first transfer", func(l string) bool { return strings.HasPrefix(l, "a: step 1/") }},
			{"after a job", func(l string) bool { return strings.Contains(l, ": ok in ") }},
			{"in a later transfer", func(l string) bool { return strings.Contains(l, ": step 2/") }},
			{"while writing", func(l string) bool { return strings.Contains(l, ": step 3/") }},
		}
		for _, m := range moments {
			c := startBatch(t, ctx, bin, "batch", "-v", path)
			if m.match != nil && !c.waitFor(m.match) {
				t.Logf("%s: the batch ended first:\n%s", m.name, c.stderr.String())
			}
			c.cmd.Process.Kill()
			c.wait()
			temps := checkBatchOutputs(t, dir)
			if t.Failed() {
				t.Fatalf("after a kill %s (temporary files %v); stderr:\n%s", m.name, temps, c.stderr.String())
			}
			t.Logf("killed %s: complete %v, %d temporary files", m.name, completeJobs(dir, ids), len(temps))
		}
		done := completeJobs(dir, ids)
		c := startBatch(t, ctx, bin, "batch", path)
		if code := c.wait(); code != 0 {
			t.Fatalf("the rerun: exit %d:\n%s", code, c.stderr.String())
		}
		rep := readBatchReport(t, filepath.Join(dir, "batch-report.json"))
		skipped := 0
		for _, j := range rep.Jobs {
			want := batch.StatusOK
			if done[j.ID] {
				want = batch.StatusSkipped
				skipped++
			}
			if j.Status != want {
				t.Errorf("job %s: %s, want %s", j.ID, j.Status, want)
			}
		}
		if skipped == 0 {
			t.Errorf("no job had finished before the rerun: the kills came too early to test resuming")
		}
		if temps := checkBatchOutputs(t, dir); len(temps) > 0 {
			t.Errorf("temporary files after the rerun: %v", temps)
		}
		for _, id := range ids {
			for _, f := range []string{"step_000.onnx", "step_003.onnx", "best.onnx", "final.onnx", "perm.json"} {
				if _, err := os.Stat(filepath.Join(dir, "out", id, f)); err != nil {
					t.Error(err)
				}
			}
		}
	})

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := batchManifest(t, dir, settings, jobs...)
			c := startBatch(t, ctx, bin, "batch", "-v", path)
			if !c.waitFor(func(l string) bool { return strings.HasPrefix(l, "b: step 1/") }) {
				t.Fatalf("no step 1 of job b:\n%s", c.stderr.String())
			}
			start := time.Now()
			if err := c.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			code := c.wait()
			t.Logf("stopped %v after the signal", time.Since(start).Round(time.Millisecond))
			if code != 1 || !strings.Contains(c.stderr.String(), "interrupted") {
				t.Errorf("exit %d, want 1 and a word about the interruption; stderr:\n%s", code, c.stderr.String())
			}
			if temps := checkBatchOutputs(t, dir); len(temps) > 0 {
				t.Errorf("temporary files left: %v", temps)
			}
			rep := readBatchReport(t, filepath.Join(dir, "batch-report.json"))
			got := batchStatuses(rep)
			if !rep.Interrupted || got["a"] != batch.StatusOK || got["c"] != batch.StatusCancelled || got["d"] != batch.StatusCancelled {
				t.Errorf("report after %v: interrupted %v, statuses %v", sig, rep.Interrupted, got)
			}
			c = startBatch(t, ctx, bin, "batch", path)
			if code := c.wait(); code != 0 {
				t.Fatalf("the rerun: exit %d:\n%s", code, c.stderr.String())
			}
			got = batchStatuses(readBatchReport(t, filepath.Join(dir, "batch-report.json")))
			if got["a"] != batch.StatusSkipped || got["c"] != batch.StatusOK || got["d"] != batch.StatusOK {
				t.Errorf("rerun: %v", got)
			}
		})
	}
}

// TestBatchExamples checks the example files: the manifest parses, and the Kubernetes Job and
// the Slurm script run `ltransfer batch` with as many shards as they start processes.
func TestBatchExamples(t *testing.T) {
	m, err := batch.LoadManifest(filepath.Join("examples", "ensemble.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Jobs) < 2 {
		t.Errorf("the ensemble has %d jobs", len(m.Jobs))
	}
	for _, j := range m.Jobs {
		if j.Kind != batch.KindTransfer {
			t.Errorf("job %s is a %s: jobs of different shards cannot wait for each other", j.ID, j.Kind)
		}
	}

	data, err := os.ReadFile(filepath.Join("examples", "k8s-indexed-job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var job struct {
		Kind string
		Spec struct {
			CompletionMode string `yaml:"completionMode"`
			Completions    int
			Parallelism    int
			Template       struct {
				Spec struct {
					Containers []struct {
						Command []string
						Args    []string
					}
				}
			}
		}
	}
	if err := yaml.Unmarshal(data, &job); err != nil {
		t.Fatal(err)
	}
	s := job.Spec
	if job.Kind != "Job" || s.CompletionMode != "Indexed" || s.Completions < 2 || s.Parallelism < 1 || s.Parallelism > s.Completions || len(s.Template.Spec.Containers) != 1 {
		t.Fatalf("not an Indexed Job with completions and parallelism: %+v", job)
	}
	args := append(s.Template.Spec.Containers[0].Command, s.Template.Spec.Containers[0].Args...)
	i := slices.Index(args, "--shard-count")
	if !slices.Contains(args, "batch") || i < 0 || i+1 >= len(args) || args[i+1] != strconv.Itoa(s.Completions) || !strings.HasSuffix(args[len(args)-1], ".yaml") {
		t.Errorf("the container should run ltransfer batch --shard-count %d MANIFEST.yaml: %q", s.Completions, args)
	}

	script, err := os.ReadFile(filepath.Join("examples", "slurm-array.sbatch"))
	if err != nil {
		t.Fatal(err)
	}
	array := regexp.MustCompile(`(?m)^#SBATCH --array=(\d+)-(\d+)\s*$`).FindSubmatch(script)
	if array == nil || !regexp.MustCompile(`(?m)^[^#]*ltransfer batch .*manifest\.yaml`).Match(script) {
		t.Errorf("the script should have #SBATCH --array=A-B and run ltransfer batch manifest.yaml:\n%s", script)
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		if out, err := exec.Command(bash, "-n", filepath.Join("examples", "slurm-array.sbatch")).CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v\n%s", err, out)
		}
	}
}
