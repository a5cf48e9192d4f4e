package batch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ManifestOptions configure how a manifest is read.
type ManifestOptions struct {
	// AllowOutside accepts outputs outside the manifest's folder. By default a job whose out
	// leads out of it (../x, an absolute path elsewhere, a symbolic link pointing out) is an
	// error, so that a manifest edited in a pull request and run by CI cannot write over files
	// elsewhere. Inputs may be anywhere: reading does not harm them.
	AllowOutside bool
}

// Load reads and parses a manifest file; see ParseManifest.
func (o ManifestOptions) Load(path string) (*Manifest, error) {
	data, err := readManifest(path)
	if err != nil {
		return nil, err
	}
	return o.Parse(path, data)
}

// jobPath is a path a job reads, with the field that names it.
type jobPath struct {
	field string
	path  string
}

// readPaths returns every path the job reads, data included, resolved: its inputs
// (trajectory, init, target, models, from) and the files or folders of its data specs.
func (s jobSpec) readPaths() []jobPath {
	var paths []jobPath
	for _, f := range []struct {
		name  string
		paths []string
	}{{"trajectory", s.Trajectory}, {"init", []string{s.Init}}, {"target", s.Target}, {"models", s.Models}, {"from", []string{s.From}}} {
		for _, p := range f.paths {
			if p != "" {
				paths = append(paths, jobPath{f.name, p})
			}
		}
	}
	for _, f := range []struct{ name, spec string }{{"data", s.Data}, {"val_data", s.ValData}} {
		if _, p, ok := strings.Cut(f.spec, ":"); ok {
			paths = append(paths, jobPath{f.name, p})
		}
	}
	return paths
}

// checkConfined refuses an output that leaves base, the manifest's folder as realPath gives
// it. Symbolic links in the part of the output's path that exists are followed, so a link
// pointing out does not smuggle a write out either.
func (j *Job) checkConfined(base string, real realPaths) error {
	if out := real.of(j.Out); out != base && !within(out, base) {
		return fmt.Errorf("%s is outside the manifest's folder %s: move it inside, or allow writing outside (ltransfer batch --allow-outside)", j.Out, base)
	}
	return nil
}

// realPaths gives paths as realPath does, remembering the folders resolved: the outputs of a
// manifest share a few, and resolving one takes a system call per path element.
type realPaths map[string]string

func (c realPaths) of(p string) string {
	p = absPath(p)
	if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSymlink != 0 {
		return realPath(p)
	}
	dir := filepath.Dir(p)
	if dir == p {
		return p
	}
	r, ok := c[dir]
	if !ok {
		r = realPath(dir)
		c[dir] = r
	}
	return filepath.Join(r, filepath.Base(p))
}

// realPath is an absolute path with the symbolic links of its longest existing ancestor
// resolved; the rest, which does not exist yet, is kept as written.
func realPath(p string) string {
	p = absPath(p)
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, rest...)...)
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// checkOverlaps refuses jobs whose outputs would write over other files of the manifest: an
// output inside another job's output, an output equal to or inside a path that a job reads
// without producing it (a checkpoint in a trajectory folder, the model an eval reads, data), an
// eval's JSON file read as a model, a job that reads its own output, and an output that holds
// the manifest. A job reading another
// job's output (an eval of a transfer's final.onnx, a transfer of an init job's file) is a
// dependency, not an overlap; and a data folder is read by its files' names, so outputs beside
// them are harmless. Paths are compared as written, made absolute and clean; symbolic
// links are not followed.
func (m *Manifest) checkOverlaps() error {
	outs := make(map[string]*Job, len(m.Jobs))
	for _, j := range m.Jobs {
		outs[absPath(j.Out)] = j
	}
	type reader struct {
		job *Job
		jobPath
		abs string
	}
	reads := map[string][]reader{}
	own := make(map[*Job][]reader, len(m.Jobs))
	for _, j := range m.Jobs {
		for _, in := range j.spec.readPaths() {
			r := reader{j, in, absPath(in.path)}
			reads[r.abs] = append(reads[r.abs], r)
			own[j] = append(own[j], r)
		}
	}
	manifest, dir := absPath(m.Path), absPath(filepath.Dir(m.Path))
	// show is a path for messages: relative to the manifest's folder when inside it, as written.
	show := func(p string) string {
		if rel, err := filepath.Rel(dir, absPath(p)); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return filepath.ToSlash(rel)
		}
		return p
	}
	for _, j := range m.Jobs {
		out := absPath(j.Out)
		fail := func(format string, args ...any) error {
			return &ManifestError{Path: m.Path, Line: j.line, Job: j.ID, Field: "out", Err: fmt.Errorf(format, args...)}
		}
		if out == manifest || within(manifest, out) {
			return fail("%s would write over the manifest", show(j.Out))
		}
		for _, r := range reads[out] {
			if r.job == j {
				return fail("%s is also its %s: write the output elsewhere", show(j.Out), r.field)
			}
			if r.field == "data" || r.field == "val_data" || j.Kind == KindEval {
				return fail("%s is the %s of job %q (line %d): write the output elsewhere", show(j.Out), r.field, r.job.ID, r.job.line)
			}
		}
		for p := filepath.Dir(out); ; p = filepath.Dir(p) {
			if k, ok := outs[p]; ok {
				return fail("%s is inside %s, the output of job %q (line %d): jobs' outputs must not overlap", show(j.Out), show(k.Out), k.ID, k.line)
			}
			for _, r := range reads[p] {
				if r.field == "data" || r.field == "val_data" {
					continue // data readers read files of known names, not everything inside
				}
				return fail("%s is inside %s, the %s of job %q (line %d), which it would change: write the output elsewhere", show(j.Out), show(r.path), r.field, r.job.ID, r.job.line)
			}
			if filepath.Dir(p) == p {
				break
			}
		}
		// A job must not read inside its own output either (a transfer's init in its folder).
		for _, in := range own[j] {
			if within(in.abs, out) {
				return fail("%s holds its own %s %s: write the output elsewhere", show(j.Out), in.field, show(in.path))
			}
		}
	}
	return nil
}

// within reports whether the clean absolute path p lies strictly inside the folder dir (clean
// and absolute too, so only a root ends with a separator).
func within(p, dir string) bool {
	if !strings.HasPrefix(p, dir) || len(p) == len(dir) {
		return false
	}
	return os.IsPathSeparator(p[len(dir)]) || os.IsPathSeparator(dir[len(dir)-1])
}

// Limits of a manifest, each with its own message: a manifest past them is refused before its
// jobs are built. A batch of transfers that outgrows them is better split into several
// manifests (or run as shards of one, which still parses whole in every process).
const (
	// maxManifestBytes bounds the file: parsing a YAML file takes about 30 times its size in
	// memory.
	maxManifestBytes = 32 << 20
	// maxJobs bounds the jobs: the report lists all of them, and every process of a sharded
	// batch builds all of them.
	maxJobs = 100_000
	// maxAliasValues and aliasRatio bound the values that aliases add: at most the larger of
	// maxAliasValues and aliasRatio times the values written out, which lets every job merge a
	// mapping of defaults (<<: *common) but stops aliases of aliases, which make a small file
	// stand for billions of values.
	maxAliasValues = 1 << 20
	aliasRatio     = 16
)

// errTooLarge is wrapped by the errors of manifests past the size limits.
var errTooLarge = errors.New("too large")

// readManifest reads a manifest file, refusing one larger than maxManifestBytes before reading
// it.
func readManifest(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("batch: reading the manifest: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxManifestBytes {
		return nil, tooLarge(path, st.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("batch: reading the manifest: %w", err)
	}
	return data, nil
}

// tooLarge is the error of a manifest of size bytes, past maxManifestBytes.
func tooLarge(path string, size int64) error {
	return &ManifestError{Path: path, Err: fmt.Errorf("%w: %d bytes, more than the %d MiB a manifest may have: split the jobs into several manifests",
		errTooLarge, size, maxManifestBytes>>20)}
}

// checkReport refuses a report file that is a job's output or lies inside one, that is a file
// a job reads, or the manifest.
func (m *Manifest) checkReport(report string) error {
	p := absPath(report)
	if p == absPath(m.Path) {
		return fmt.Errorf("batch: the report %s would write over the manifest", report)
	}
	for _, j := range m.Jobs {
		if out := absPath(j.Out); p == out || within(p, out) {
			return fmt.Errorf("batch: the report %s would be written into the output %s of job %q: choose another report file", report, j.Out, j.ID)
		}
		for _, in := range j.spec.readPaths() {
			if p == absPath(in.path) {
				return fmt.Errorf("batch: the report %s would be written over %s, the %s of job %q: choose another report file", report, in.path, in.field, j.ID)
			}
		}
	}
	return nil
}
