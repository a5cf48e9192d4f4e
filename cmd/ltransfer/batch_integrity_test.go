package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ltransfer/ltransfer/convert/batch"
)

// listFiles returns every path under dir, relative to it.
func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var all []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		all = append(all, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// TestBatchRefusesOverlaps runs manifests whose jobs would write over each other's files, or
// outside the manifest's folder: each is refused with exit 2 before anything is written, and
// the message names the manifest, the line and the jobs.
func TestBatchRefusesOverlaps(t *testing.T) {
	clearShardEnv(t)
	elsewhere := t.TempDir()
	const tiny = `"mlp:784,16,10"`
	cases := []struct {
		name string
		jobs []string
		want []string // in the message, besides the manifest
	}{
		{"an output inside another", []string{"{id: a, init_seed: 4, out: out/a}",
			"{id: redraw, kind: init, from: runs/seed1/ckpt_000.onnx, init_seed: 9, out: out/a/final.onnx}"},
			[]string{`:16: job "redraw": field "out"`, `the output of job "a" (line 15)`}},
		{"an output holding another", []string{"{id: deep, kind: init, model: " + tiny + ", init_seed: 1, out: out/a/b/c.onnx}",
			"{id: a, init_seed: 4, out: out/a}"},
			[]string{`:15: job "deep"`, `inside out/a, the output of job "a" (line 16)`}},
		{"a checkpoint added to a trajectory", []string{"{id: t, trajectory: runs/seed1, out: out/t}",
			"{id: extra, kind: init, model: " + tiny + ", init_seed: 1, out: runs/seed1/ckpt_009.onnx}"},
			[]string{`:16: job "extra"`, `the trajectory of job "t" (line 15)`}},
		{"a checkpoint overwritten", []string{"{id: over, kind: init, model: " + tiny + ", init_seed: 1, out: runs/seed1/ckpt_003.onnx}",
			"{id: t, trajectory: runs/seed1, out: out/t}"},
			[]string{`:15: job "over"`, `the trajectory of job "t" (line 16)`}},
		{"an eval over the model it reads", []string{"{id: ev, kind: eval, models: [inits/seed2.onnx], out: inits/seed2.onnx}"},
			[]string{`:15: job "ev"`, "is also its models"}},
		{"an eval's JSON as another job's init", []string{"{id: t, init: inits/seed2.onnx, out: out/t}",
			"{id: ev, kind: eval, models: [m.onnx], out: inits/seed2.onnx}"},
			[]string{`:16: job "ev"`, `the init of job "t" (line 15)`}},
		{"a model written over the data", []string{"{id: t, data: 'npz:data/train.npz', out: out/t}",
			"{id: d, kind: init, model: " + tiny + ", init_seed: 1, out: data/train.npz}"},
			[]string{`:16: job "d"`, `the data of job "t" (line 15)`}},
		{"an init redrawing into itself", []string{"{id: self, kind: init, from: inits/a.onnx, init_seed: 1, out: inits/a.onnx}"},
			[]string{`:15: job "self"`, "is also its from"}},
		{"a transfer reading inside its output", []string{"{id: own, init: out/own/init.onnx, out: out/own}"},
			[]string{`:15: job "own"`, "holds its own init"}},
		{"an output holding the manifest", []string{"{id: here, init_seed: 1, out: .}"},
			[]string{`:15: job "here"`, "would write over the manifest"}},
		{"a relative path leaving the folder", []string{"{id: up, kind: init, model: " + tiny + ", init_seed: 1, out: ../../../etc/x.onnx}"},
			[]string{`:15: job "up": field "out"`, "outside the manifest's folder", "--allow-outside"}},
		{"an absolute path elsewhere", []string{"{id: abs, kind: init, model: " + tiny + ", init_seed: 1, out: " + filepath.Join(elsewhere, "x.onnx") + "}"},
			[]string{`:15: job "abs": field "out"`, "outside the manifest's folder"}},
		{"a symbolic link pointing out", []string{"{id: link, kind: init, model: " + tiny + ", init_seed: 1, out: link/x.onnx}"},
			[]string{`:15: job "link": field "out"`, "outside the manifest's folder"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Symlink(elsewhere, filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			path := batchManifest(t, dir, cheapSettings, c.jobs...)
			before := listFiles(t, dir)
			code, _, stderr := runCLI("batch", "-q", path)
			if code != 2 || !strings.Contains(stderr, path+":") {
				t.Fatalf("exit %d, want 2 and a message naming %s; stderr:\n%s", code, path, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("the message has no %q:\n%s", w, stderr)
				}
			}
			if after := listFiles(t, dir); !slices.Equal(before, after) {
				t.Errorf("files written before the refusal: %v, before %v", after, before)
			}
			if entries, _ := os.ReadDir(elsewhere); len(entries) > 0 {
				t.Errorf("files written outside: %v", entries)
			}
		})
	}

	// Reading another job's output is a dependency, not an overlap.
	dir := t.TempDir()
	path := batchManifest(t, dir, cheapSettings, "{id: draw, kind: init, from: runs/seed1/ckpt_000.onnx, init_seed: 2, out: inits/seed2.onnx}",
		"{id: t, init: inits/seed2.onnx, out: out/t}", "{id: ev, kind: eval, models: [out/t/final.onnx], out: evals/t.json}")
	if code, _, stderr := runCLI("batch", "--dry-run", path); code != 0 {
		t.Errorf("a manifest of dependencies: exit %d:\n%s", code, stderr)
	}

	// --allow-outside lifts the confinement, and the job writes there.
	out := filepath.Join(elsewhere, "allowed", "x.onnx")
	path = batchManifest(t, dir, cheapSettings, "{id: abs, kind: init, model: "+tiny+", init_seed: 1, out: "+out+"}")
	if code, _, stderr := runCLI("batch", "-q", "--allow-outside", path); code != 0 {
		t.Fatalf("--allow-outside: exit %d:\n%s", code, stderr)
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("--allow-outside: %v", err)
	}
}

// TestBatchManifestLimits checks that a manifest past each size limit gets its own message, and
// that a plain manifest of more than 2^20 values, which no alias expands, is accepted.
func TestBatchManifestLimits(t *testing.T) {
	clearShardEnv(t)
	dir := t.TempDir()
	write := func(name string, fill func(*bytes.Buffer)) string {
		var b bytes.Buffer
		fill(&b)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	large := write("large.yaml", func(b *bytes.Buffer) {
		b.WriteString("jobs:\n")
		for i := 0; b.Len() <= 32<<20; i++ {
			fmt.Fprintf(b, "  - {kind: init, model: \"mlp:784,16,10\", init_seed: %d, out: inits/%d.onnx}  # padding padding padding\n", i, i)
		}
	})
	many := write("many.yaml", func(b *bytes.Buffer) {
		b.WriteString("jobs:\n")
		for i := range 100_001 {
			fmt.Fprintf(b, "  - {out: o/%d}\n", i)
		}
	})
	laughs := write("laughs.yaml", func(b *bytes.Buffer) {
		b.WriteString("defaults:\n  classes: &a0 [1, 1, 1, 1]\n")
		for i := 1; i < 12; i++ {
			fmt.Fprintf(b, "  x%d: &a%d [*a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1)
		}
		b.WriteString("jobs: [{out: o}]\n")
	})
	// 1,200,000 values written out: more than the old limit of 2^20 on all values.
	plain := write("plain.yaml", func(b *bytes.Buffer) {
		b.WriteString("defaults: {data: 'mnist:d', trajectory: t, init: i.onnx}\njobs:\n")
		for i := range 100 {
			fmt.Fprintf(b, "  - out: o/%d\n    classes: [", i)
			for k := range 12_000 {
				if k > 0 {
					b.WriteString(",")
				}
				fmt.Fprint(b, k%10)
			}
			b.WriteString("]\n")
		}
	})
	for _, c := range []struct {
		path string
		want string
	}{
		{large, ": too large: 335"},
		{many, ": field \"jobs\": too large: 100001 jobs, more than the 100000"},
		{laughs, "expands to more than 1048576 values through its aliases"},
	} {
		start := time.Now()
		code, _, stderr := runCLI("batch", "--dry-run", c.path)
		if code != 2 || !strings.Contains(stderr, c.path) || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", filepath.Base(c.path), code, stderr, c.want)
		}
		t.Logf("%s refused in %v", filepath.Base(c.path), time.Since(start).Round(time.Millisecond))
	}
	if code, _, stderr := runCLI("batch", "--dry-run", plain); code != 0 {
		t.Errorf("a plain manifest of 1.2 million values: exit %d:\n%s", code, stderr)
	}
}

// TestBatchTempsGoneAfterKill kills a batch with SIGKILL while it writes its report, then while
// it writes a job's file, each write slowed (LTRANSFER_TEST_WRITE_DELAY) so that the temporary
// files are there at the kill; a rerun leaves none.
func TestBatchTempsGoneAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command and runs batches")
	}
	bin := buildLtransfer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	path := batchManifest(t, dir, cheapSettings, `{id: i, kind: init, model: "mlp:784,16,10", init_seed: 1, out: inits/i.onnx}`)
	killWhen := func(glob string) {
		t.Helper()
		t.Setenv("LTRANSFER_TEST_WRITE_DELAY", "2s")
		c := startBatch(t, ctx, bin, "batch", path)
		var found []string
		for deadline := time.Now().Add(20 * time.Second); len(found) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			found, _ = filepath.Glob(filepath.Join(dir, glob))
		}
		c.cmd.Process.Kill()
		c.wait()
		if len(found) == 0 {
			t.Fatalf("no %s appeared before the kill:\n%s", glob, c.stderr.String())
		}
	}
	killWhen(".batch-report.json.tmp-*")
	killWhen("inits/.i.onnx.tmp-*")
	t.Setenv("LTRANSFER_TEST_WRITE_DELAY", "")
	c := startBatch(t, ctx, bin, "batch", path)
	if code := c.wait(); code != 0 {
		t.Fatalf("the rerun: exit %d:\n%s", code, c.stderr.String())
	}
	if temps := checkBatchOutputs(t, dir); len(temps) > 0 {
		t.Errorf("temporary files after the rerun: %v", temps)
	}
	for _, glob := range []string{".*.lock", "*/.*.lock"} {
		if names, _ := filepath.Glob(filepath.Join(dir, glob)); len(names) > 0 {
			t.Errorf("lock files after the rerun: %v", names)
		}
	}
}

// TestBatchConcurrentRuns starts two processes on one manifest and folder at about the same
// time, 20 times, with every write slowed between writing and renaming: neither may fail a job
// that succeeds alone, every file must be whole and equal to a lone run's, and no temporary
// file may remain.
func TestBatchConcurrentRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command and runs batches")
	}
	bin := buildLtransfer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	jobs := []string{
		`{id: i1, kind: init, model: "mlp:784,16,10", init_seed: 1, out: inits/i1.onnx}`,
		`{id: i2, kind: init, model: "mlp:784,16,10", init_seed: 2, out: inits/i2.onnx}`,
		"{id: redraw, kind: init, from: fixture.onnx, init_seed: 3, out: inits/redraw.onnx}",
		"{id: t, init: inits/redraw.onnx, out: out/t}",
		"{id: ev, kind: eval, models: [out/t/final.onnx, inits/redraw.onnx], out: evals/t.json}",
		"{id: broken, init: missing.onnx, out: out/broken}",
	}
	files := []string{"inits/i1.onnx", "inits/i2.onnx", "inits/redraw.onnx", "out/t/final.onnx", "out/t/perm.json"}
	fixtureModel, err := os.ReadFile(fixture("mlp", "seed2", "ckpt_000.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	setup := func() (string, string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "fixture.onnx"), fixtureModel, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir, batchManifest(t, dir, cheapSettings, jobs...)
	}
	// A lone run: the job that fails alone, and the files the others write.
	refDir, refPath := setup()
	c := startBatch(t, ctx, bin, "batch", refPath)
	if code := c.wait(); code != 1 {
		t.Fatalf("a lone run: exit %d:\n%s", code, c.stderr.String())
	}
	if got := batchStatuses(readBatchReport(t, filepath.Join(refDir, "batch-report.json"))); got["broken"] != batch.StatusFailed || got["t"] != batch.StatusOK {
		t.Fatalf("a lone run: %v", got)
	}
	want := map[string][]byte{}
	for _, f := range files {
		if want[f], err = os.ReadFile(filepath.Join(refDir, f)); err != nil {
			t.Fatal(err)
		}
	}

	t.Setenv("LTRANSFER_TEST_WRITE_DELAY", "30ms")
	overlapped, waited := 0, 0
	const rounds = 20
	for round := range rounds {
		dir, path := setup()
		var children [2]*batchChild
		var wg sync.WaitGroup
		for i := range children {
			time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
			children[i] = startBatch(t, ctx, bin, "batch", path)
			wg.Go(func() { children[i].wait() })
		}
		wg.Wait()
		reports, _ := filepath.Glob(filepath.Join(dir, "batch-report*.json"))
		if len(reports) == 2 {
			overlapped++
		}
		for i, c := range children {
			stderr := c.stderr.String()
			if strings.Contains(stderr, ": waiting for process ") {
				waited++
			}
			if code := c.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(stderr, "1 of 6 jobs failed") {
				t.Errorf("round %d, process %d: exit %d, want 1 for the broken job alone; stderr:\n%s", round, i, code, stderr)
			}
		}
		for _, r := range reports {
			for _, j := range readBatchReport(t, r).Jobs {
				if ok := j.Status == batch.StatusOK || j.Status == batch.StatusSkipped; ok == (j.ID == "broken") {
					t.Errorf("round %d: %s: job %s %s: %s", round, filepath.Base(r), j.ID, j.Status, j.Error)
				}
			}
		}
		if temps := checkBatchOutputs(t, dir); len(temps) > 0 {
			t.Errorf("round %d: temporary files left: %v", round, temps)
		}
		for _, f := range files {
			if got, err := os.ReadFile(filepath.Join(dir, f)); err != nil || !bytes.Equal(got, want[f]) {
				t.Errorf("round %d: %s differs from a lone run's (%v)", round, f, err)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d rounds: in %d both processes ran at once (two reports), in %d processes waited for a job the other held", rounds, overlapped, waited)
	if overlapped < rounds/2 {
		t.Errorf("the processes overlapped in only %d of %d rounds: the test does not test concurrency", overlapped, rounds)
	}
}

// TestBatchSIGTERMLeavesCompleteFiles stops a batch with SIGTERM while a transfer writes one of
// its steps, every write slowed (LTRANSFER_TEST_WRITE_DELAY) so that the signal lands between
// writing the file and renaming it. The write in progress completes, the transfer stops before
// its next step, and the process exits with status 1, saying that a signal interrupted it and
// how to resume. Every file left is complete: the ONNX files load, the JSON files parse, no
// temporary file remains, and the step written under the signal is byte for byte the file a
// run without interruption writes (the rerun redoes the cancelled job).
func TestBatchSIGTERMLeavesCompleteFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command and runs batches")
	}
	bin := buildLtransfer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	path := batchManifest(t, dir, "  steps: 3\n  batch: 32\n  limit: 256\n  val_limit: 256\n  save: steps,final",
		`{id: a, out: out/a, seed: 1}`)
	out := filepath.Join(dir, "out", "a")
	t.Setenv("LTRANSFER_TEST_WRITE_DELAY", "1s")
	c := startBatch(t, ctx, bin, "batch", "-v", path)
	var found []string
	for deadline := time.Now().Add(time.Minute); len(found) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		found, _ = filepath.Glob(filepath.Join(out, ".step_001.onnx.tmp-*"))
	}
	if len(found) == 0 {
		c.cmd.Process.Kill()
		c.wait()
		t.Fatalf("step 1 was never being written:\n%s", c.stderr.String())
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := c.wait()
	stderr := c.stderr.String()
	if code != 1 || !strings.Contains(stderr, "ltransfer: batch interrupted (terminated signal received): 1 jobs cancelled") ||
		!strings.Contains(stderr, "rerun the same command to resume") {
		t.Errorf("exit %d, want 1 and the interruption with how to resume; stderr:\n%s", code, stderr)
	}
	if temps := checkBatchOutputs(t, dir); len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
	written, err := os.ReadFile(filepath.Join(out, "step_001.onnx"))
	if err != nil {
		t.Fatalf("the step written when the signal came: %v", err)
	}
	for _, f := range []string{"step_002.onnx", "step_003.onnx", "final.onnx", "report.json", "batch-job.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after the interruption: %v, want none (the transfer stops before the next step)", f, err)
		}
	}
	rep := readBatchReport(t, filepath.Join(dir, "batch-report.json"))
	if got := batchStatuses(rep); !rep.Interrupted || got["a"] != batch.StatusCancelled {
		t.Errorf("report: interrupted %v, statuses %v; want interrupted and a cancelled", rep.Interrupted, got)
	}

	t.Setenv("LTRANSFER_TEST_WRITE_DELAY", "")
	c = startBatch(t, ctx, bin, "batch", path)
	if code := c.wait(); code != 0 {
		t.Fatalf("the rerun: exit %d:\n%s", code, c.stderr.String())
	}
	if got, err := os.ReadFile(filepath.Join(out, "step_001.onnx")); err != nil || !bytes.Equal(got, written) {
		t.Errorf("step_001.onnx of the uninterrupted rerun differs from the one written under the signal (%v)", err)
	}
	if got := batchStatuses(readBatchReport(t, filepath.Join(dir, "batch-report.json"))); got["a"] != batch.StatusOK {
		t.Errorf("rerun: %v", got)
	}
}
