package batch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A batch locks every output it writes, a job's output and the batch report alike, so that two
// processes on one folder (a retried Kubernetes pod whose predecessor still runs, a batch
// started twice) never write the same files at once. The lock of a path P is an exclusive
// flock(2) on the file .NAME.lock next to it, which also records the holder's PID and host for
// messages. The kernel (or the NFS server) releases it when its holder exits, however it
// exits, so a lock is never stale; the holder removes the file when it is done.
//
// Every temporary file .NAME.tmp-* of P is written by the holder of P's lock, so a process
// holding that lock knows that the writers of the temporary files it finds are gone, and only
// then removes them.

// lockPoll is how often a job waiting for another process's lock tries again.
const lockPoll = 200 * time.Millisecond

// outputLock is this process's lock on an output path.
type outputLock struct {
	file *os.File
	path string // the lock file
}

// lockPath returns the lock file of an output path.
func lockPath(out string) string {
	return filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".lock")
}

// tryLock locks the output path out, whose folder exists, for this process. It returns a nil
// lock and a description of the holder ("process 12 on host h since ...") when another
// process holds it.
func tryLock(out string) (*outputLock, string, error) {
	path := lockPath(out)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, "", fmt.Errorf("batch: locking %s: %w", out, err)
		}
		ok, err := flockExclusive(f)
		if err != nil {
			f.Close()
			return nil, "", fmt.Errorf("batch: locking %s: %w", out, err)
		}
		if !ok {
			holder, _ := os.ReadFile(path)
			f.Close()
			if h := strings.TrimSpace(string(holder)); h != "" {
				return nil, h, nil
			}
			return nil, "another process", nil
		}
		// The previous holder may have removed the file between our open and our lock: then the
		// lock is on a file nobody else sees, and we try again with the file now at path.
		here, err1 := f.Stat()
		there, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(here, there) {
			f.Close()
			continue
		}
		host, _ := os.Hostname()
		f.Truncate(0)
		fmt.Fprintf(f, "process %d on host %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
		return &outputLock{file: f, path: path}, "", nil
	}
}

// release removes the lock file and unlocks it. Removing first lets a process that opened the
// file before see, once it has the lock, that the file is gone, and try again.
func (l *outputLock) release() {
	if l == nil {
		return
	}
	os.Remove(l.path)
	l.file.Close()
}

// removeTempsOf removes the temporary files .NAME.tmp-* of the output path out, whose lock
// the caller holds.
func removeTempsOf(out string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "."+globEscape(filepath.Base(out))+".tmp-*"))
	for _, f := range matches {
		os.Remove(f)
	}
}

// removeOrphanTemps removes the temporary files in dir matching pattern (a glob of names
// .NAME.tmp-*) whose writers are gone: those of the paths whose lock it can take.
func removeOrphanTemps(dir, pattern string) {
	matches, _ := filepath.Glob(filepath.Join(dir, pattern))
	for _, f := range matches {
		name := filepath.Base(f)
		i := strings.LastIndex(name, ".tmp-")
		if i < 1 {
			continue
		}
		out := filepath.Join(dir, name[1:i])
		if l, _, err := tryLock(out); err == nil && l != nil {
			removeTempsOf(out)
			l.release()
		}
	}
}

// globEscape escapes the characters that filepath.Glob gives a meaning.
func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`)
	return r.Replace(s)
}

// lockJob locks the output of job j, waiting while another process holds it (the event tells
// who); it returns ErrInterrupted when the batch's context ends first.
func (r *batchRun) lockJob(j *Job) (*outputLock, error) {
	if err := os.MkdirAll(filepath.Dir(j.Out), 0o755); err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	told := ""
	for {
		l, holder, err := tryLock(j.Out)
		if l != nil || err != nil {
			return l, err
		}
		if holder != told {
			r.event(Event{Job: j, Holder: holder})
			told = holder
		}
		select {
		case <-time.After(lockPoll):
		case <-r.ctx.Done():
			return nil, ErrInterrupted
		}
	}
}

// maxReports is the number of report files (batch-report.json, batch-report.2.json, ...) that
// processes running at once on one folder may write.
const maxReports = 100

// lockReport locks the report file path, or, when other processes hold it, the first free of
// its variants NAME.2.EXT, NAME.3.EXT, ...: each process writes a report of its own. It returns
// the lock and the file locked, whose leftover temporary files it removes, with those of the
// variants whose writers are gone.
func lockReport(path string) (*outputLock, string, error) {
	dir, ext := filepath.Dir(path), filepath.Ext(path)
	stem := strings.TrimSuffix(filepath.Base(path), ext)
	for n := 1; n <= maxReports; n++ {
		p := path
		if n > 1 {
			p = filepath.Join(dir, fmt.Sprintf("%s.%d%s", stem, n, ext))
		}
		l, _, err := tryLock(p)
		if err != nil {
			return nil, "", err
		}
		if l != nil {
			removeTempsOf(p)
			removeOrphanTemps(dir, "."+globEscape(stem)+"*"+globEscape(ext)+".tmp-*")
			return l, p, nil
		}
	}
	return nil, "", fmt.Errorf("batch: %s and its %d variants are all being written by other processes", path, maxReports-1)
}

// removeTemps removes the temporary files that an interrupted write may have left in the job's
// output: every .NAME.tmp-* and .write-test-* in an output folder, and .NAME.tmp-* of an output
// file.
func removeTemps(j *Job) {
	dir, patterns := j.Out, []string{".*.tmp-*", ".write-test-*"}
	if !j.kind.folder() {
		dir, patterns = filepath.Dir(j.Out), []string{"." + filepath.Base(j.Out) + ".tmp-*"}
	}
	for _, p := range patterns {
		matches, _ := filepath.Glob(filepath.Join(dir, p))
		for _, f := range matches {
			os.Remove(f)
		}
	}
}
