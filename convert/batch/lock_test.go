//go:build unix

package batch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLocksKeepTheTempsOfLiveWriters checks that an output's lock excludes a second holder
// (flock conflicts between two open files, even in one process), names its holder, and that
// temporary files are removed only once their output's lock is free.
func TestLocksKeepTheTempsOfLiveWriters(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "report.json")
	temp := filepath.Join(dir, ".report.json.tmp-123")
	if err := os.WriteFile(temp, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	held, _, err := tryLock(out)
	if err != nil || held == nil {
		t.Fatalf("a free lock: %v, %v", held, err)
	}
	second, holder, err := tryLock(out)
	if err != nil || second != nil || !strings.HasPrefix(holder, fmt.Sprintf("process %d on host ", os.Getpid())) {
		t.Fatalf("a held lock was taken again: %v, holder %q, %v", second, holder, err)
	}
	removeOrphanTemps(dir, ".report*.json.tmp-*")
	if _, err := os.Stat(temp); err != nil {
		t.Fatalf("the temporary file of a live writer was removed: %v", err)
	}
	held.release()
	if _, err := os.Stat(lockPath(out)); !os.IsNotExist(err) {
		t.Errorf("the lock file is left after release: %v", err)
	}
	removeOrphanTemps(dir, ".report*.json.tmp-*")
	if _, err := os.Stat(temp); !os.IsNotExist(err) {
		t.Errorf("the temporary file of a writer that is gone is left: %v", err)
	}
	again, _, err := tryLock(out)
	if err != nil || again == nil {
		t.Fatalf("a released lock: %v, %v", again, err)
	}
	again.release()
}

// TestBatchWaitsForAHeldOutput holds the lock of a job's output while a batch runs: the batch
// says who holds it and waits, writes the report of the jobs that ended meanwhile within the
// report interval, and runs the job once the lock is free.
func TestBatchWaitsForAHeldOutput(t *testing.T) {
	dir := t.TempDir()
	path := writeManifest(t, dir, "batch.yaml", `jobs:
  - {id: a, kind: init, model: "mlp:784,16,10", init_seed: 1, out: inits/a.onnx}
  - {id: b, kind: init, model: "mlp:784,16,10", init_seed: 2, out: inits/b.onnx}
`)
	if err := os.Mkdir(filepath.Join(dir, "inits"), 0o755); err != nil {
		t.Fatal(err)
	}
	held, _, err := tryLock(filepath.Join(dir, "inits", "b.onnx"))
	if err != nil || held == nil {
		t.Fatal(held, err)
	}
	reportPath := filepath.Join(dir, "batch-report.json")
	waiting := make(chan string, 1)
	done := make(chan *Report)
	go func() {
		rep, err := Run(context.Background(), loadManifest(t, path), Options{Report: reportPath, ReportInterval: 50 * time.Millisecond,
			Progress: func(ev Event) {
				if ev.Holder != "" {
					waiting <- ev.Job.ID + ": " + ev.Holder
				}
			}})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	if w := <-waiting; !strings.HasPrefix(w, fmt.Sprintf("b: process %d on host ", os.Getpid())) {
		t.Errorf("waiting for %q", w)
	}
	// Job a has ended: its status reaches the report within the interval, while b waits.
	var onDisk Report
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if readJSON(reportPath, &onDisk) == nil && onDisk.Jobs[0].Status == StatusOK {
			break
		}
	}
	if got := statuses(&onDisk); got["a"] != StatusOK || got["b"] != StatusPending {
		t.Errorf("the report while b waits: %v", got)
	}
	held.release()
	rep := <-done
	if got := statuses(rep); got["a"] != StatusOK || got["b"] != StatusOK {
		t.Errorf("after the lock was released: %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "inits", "b.onnx")); err != nil {
		t.Error(err)
	}
}
