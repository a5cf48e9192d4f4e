package batch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/internal/errwrap"
)

// Schema is the version of the layouts of batch-report.json, batch-job.json and an eval
// job's JSON file.
const Schema = 1

// JobStatus is the state of a batch job.
type JobStatus string

// The states of a batch job. A finished batch has none pending.
const (
	StatusPending   JobStatus = "pending"
	StatusOK        JobStatus = "ok"
	StatusFailed    JobStatus = "failed"
	StatusSkipped   JobStatus = "skipped"   // its outputs were complete already
	StatusCancelled JobStatus = "cancelled" // the batch was interrupted first
)

// JobResult is one job's line in batch-report.json.
type JobResult struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Status  JobStatus `json:"status"`
	Seconds float64   `json:"seconds"`
	Error   string    `json:"error"`
	Output  string    `json:"output"`
}

// Report is batch-report.json: the jobs of one shard of a manifest, in manifest order, and
// how each went.
type Report struct {
	// Path is the file the report is written to: Options.Report, or NAME.2.EXT (.3, ...)
	// next to it when other processes are writing that file. It is not part of the file.
	Path        string      `json:"-"`
	Schema      int         `json:"schema_version"`
	Manifest    string      `json:"manifest"`
	Shard       Shard       `json:"shard"`
	Started     time.Time   `json:"started"`
	Seconds     float64     `json:"seconds"`
	Interrupted bool        `json:"interrupted"`
	Jobs        []JobResult `json:"jobs"`
}

// Count returns the number of jobs with the status.
func (r *Report) Count(status JobStatus) int {
	n := 0
	for _, j := range r.Jobs {
		if j.Status == status {
			n++
		}
	}
	return n
}

// Options configure Run.
type Options struct {
	// Parallel is the number of jobs run at once; less than 1 means 1.
	Parallel int
	// Shard selects the jobs to run; the zero value selects all.
	Shard Shard
	// Force reruns the jobs whose outputs are complete.
	Force bool
	// Report, when not empty, is the file the Report is written to (atomically) when the
	// batch starts, at most every ReportInterval while jobs end, and at the end. Its folder must
	// exist. While another process writes it, this one writes NAME.2.EXT (NAME.3.EXT, ...)
	// instead; Report.Path says which.
	Report string
	// ReportInterval is the shortest time between two writes of the report while jobs end
	// (0: DefaultReportInterval); a job's end is written at most that long after it.
	ReportInterval time.Duration
	// Progress, when set, is called with every event, one call at a time.
	Progress func(Event)
}

// Event is a job starting (Result, Step and Holder unset), a job waiting for another
// process that holds its output (Holder set: "process 12 on host h since ..."), a step of a
// running transfer (Step set), or a job ending (Result set).
type Event struct {
	Job    *Job
	Step   *convert.StepReport
	Result *JobResult
	Holder string
}

// DefaultReportInterval is the shortest time between two writes of the batch report while jobs
// end, unless Options.ReportInterval says otherwise: rewriting (and syncing) a report of
// thousands of jobs after each would cost more than short jobs. Whether a job is done is
// decided from its outputs, never from the report, so a report that lags behind after a kill
// costs no work.
const DefaultReportInterval = 2 * time.Second

// ErrInterrupted is wrapped by the error of Run when its context ends before every job has.
var ErrInterrupted = errors.New("interrupted")

// Run runs the jobs of shard opt.Shard of manifest m and returns the report. A job's
// failure is recorded in the report, not returned: the error is about the batch itself (the
// report could not be written, or ctx ended, which wraps ErrInterrupted). When ctx ends, no job
// starts any more, a running transfer stops between two steps (one past its last step
// completes), an evaluation between two models, and the temporary files of the jobs' outputs
// are removed.
func Run(ctx context.Context, m *Manifest, opt Options) (*Report, error) {
	if err := opt.Shard.Check(); err != nil {
		return nil, err
	}
	if opt.Shard.Count == 0 {
		opt.Shard.Count = 1
	}
	r := &batchRun{
		ctx: ctx, m: m, opt: opt, index: map[*Job]int{}, done: map[*Job]chan struct{}{},
		hashes: map[string]hashEntry{}, data: map[string]*dataEntry{},
		report: &Report{Schema: Schema, Manifest: m.Path, Shard: opt.Shard, Started: time.Now(), Jobs: []JobResult{}},
	}
	if opt.Report != "" {
		if err := m.checkReport(opt.Report); err != nil {
			return nil, err
		}
		lock, path, err := lockReport(opt.Report)
		if err != nil {
			return nil, err
		}
		defer lock.release()
		r.report.Path = path
	}
	for _, j := range m.Jobs {
		if opt.Shard.Owns(j) {
			r.index[j] = len(r.report.Jobs)
			r.done[j] = make(chan struct{})
			r.report.Jobs = append(r.report.Jobs, JobResult{ID: j.ID, Kind: j.Kind, Status: StatusPending, Output: j.Out})
		}
	}
	r.mu.Lock()
	err := r.writeReport()
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	queue := make(chan *Job)
	var wg sync.WaitGroup
	for range max(opt.Parallel, 1) {
		wg.Go(func() {
			for j := range queue {
				r.run(j)
			}
		})
	}
feed:
	for _, j := range m.order {
		if _, ok := r.index[j]; !ok {
			continue
		}
		select {
		case queue <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(queue)
	wg.Wait()

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.flush != nil {
		r.flush.Stop()
		r.flush = nil
	}
	for j, i := range r.index {
		if res := &r.report.Jobs[i]; res.Status == StatusPending {
			res.Status = StatusCancelled
			// The job never started: remove what an earlier, killed run left, unless another
			// process is writing it.
			if l, _, err := tryLock(j.Out); err == nil && l != nil {
				removeTemps(j)
				l.release()
			}
		}
	}
	r.report.Interrupted = ctx.Err() != nil && (r.report.Count(StatusCancelled) > 0)
	if err := r.writeReport(); err != nil {
		return r.report, err
	}
	if r.report.Interrupted {
		return r.report, fmt.Errorf("batch: %s: %w: %w", m.Path, ErrInterrupted, context.Cause(ctx))
	}
	return r.report, r.reportErr
}

// batchRun is a running batch.
type batchRun struct {
	ctx context.Context
	m   *Manifest
	opt Options

	mu        sync.Mutex // guards report, reportErr, written, flush and the Progress calls
	report    *Report
	reportErr error
	written   time.Time    // the last write of the report
	flush     *time.Timer  // a pending write of the report
	index     map[*Job]int // the jobs of the shard -> their place in report.Jobs
	done      map[*Job]chan struct{}

	hashMu sync.Mutex
	hashes map[string]hashEntry

	dataMu sync.Mutex
	data   map[string]*dataEntry
}

// writeReport writes the report when asked to; r.mu is held. Only the first failure is kept.
func (r *batchRun) writeReport() error {
	if r.report.Path == "" {
		return nil
	}
	r.report.Seconds = time.Since(r.report.Started).Seconds()
	err := convert.WriteJSON(r.report.Path, r.report)
	r.written = time.Now()
	if err != nil && r.reportErr == nil {
		r.reportErr = err
	}
	return err
}

// reportChanged writes the report, or schedules its write a report interval after the last one;
// r.mu is held.
func (r *batchRun) reportChanged() {
	if r.report.Path == "" || r.flush != nil {
		return
	}
	every := r.opt.ReportInterval
	if every <= 0 {
		every = DefaultReportInterval
	}
	wait := every - time.Since(r.written)
	if wait <= 0 {
		r.writeReport()
		return
	}
	r.flush = time.AfterFunc(wait, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.flush != nil { // else the batch has ended, and written the report itself
			r.flush = nil
			r.writeReport()
		}
	})
}

// event passes e to the Progress callback, one call at a time.
func (r *batchRun) event(e Event) {
	if r.opt.Progress == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opt.Progress(e)
}

// run runs one job of the shard and records its result.
func (r *batchRun) run(j *Job) {
	start := time.Now()
	status, err := r.attempt(j)
	if err != nil {
		err = errwrap.At("batch", fmt.Sprintf("%s: job %q", r.m.Path, j.ID), err)
	}
	r.mu.Lock()
	res := &r.report.Jobs[r.index[j]]
	res.Status, res.Seconds = status, time.Since(start).Seconds()
	if err != nil && status != StatusCancelled {
		res.Error = err.Error()
	}
	r.reportChanged()
	if r.opt.Progress != nil {
		rc := *res
		r.opt.Progress(Event{Job: j, Result: &rc})
	}
	close(r.done[j])
	r.mu.Unlock()
}

// status returns the status of a job of the shard.
func (r *batchRun) status(j *Job) JobStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.report.Jobs[r.index[j]].Status
}

// attempt waits for the jobs whose outputs j reads, then skips or runs j.
func (r *batchRun) attempt(j *Job) (JobStatus, error) {
	for _, k := range j.after {
		done, mine := r.done[k]
		if !mine {
			if err := r.readyElsewhere(j, k); err != nil {
				return StatusFailed, err
			}
			continue
		}
		select {
		case <-done:
		case <-r.ctx.Done():
			return StatusCancelled, ErrInterrupted
		}
		if s := r.status(k); s != StatusOK && s != StatusSkipped {
			return StatusFailed, fmt.Errorf("it reads the output of job %q, which %s", k.ID, map[JobStatus]string{
				StatusFailed: "failed", StatusCancelled: "was cancelled"}[s])
		}
	}
	if r.ctx.Err() != nil {
		return StatusCancelled, ErrInterrupted
	}
	// While this process holds the lock, no other writes the job's files: the temporary files
	// there are leftovers of writers that are gone.
	lock, err := r.lockJob(j)
	if errors.Is(err, ErrInterrupted) {
		return StatusCancelled, err
	}
	if err != nil {
		return StatusFailed, err
	}
	defer lock.release()
	removeTemps(j)
	if !r.opt.Force && j.kind.complete(r, j) {
		return StatusSkipped, nil
	}
	r.event(Event{Job: j})
	err = j.kind.run(r, j)
	if r.ctx.Err() != nil && (errors.Is(err, ErrInterrupted) || errors.Is(err, r.ctx.Err())) {
		removeTemps(j)
		return StatusCancelled, err
	}
	if err != nil {
		return StatusFailed, err
	}
	return StatusOK, nil
}

// readyElsewhere checks that the inputs of j that job k of another shard writes are there.
func (r *batchRun) readyElsewhere(j, k *Job) error {
	for _, in := range j.inputs() {
		rel, err := filepath.Rel(absPath(k.Out), absPath(in))
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		if _, err := os.Stat(in); err != nil {
			return fmt.Errorf("it reads %s, an output of job %q of shard %d of %d, which is not there: run this job after that shard",
				in, k.ID, k.Shard(r.opt.Shard.Count), r.opt.Shard.Count)
		}
	}
	return nil
}
