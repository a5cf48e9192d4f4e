package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
)

// ManifestError is a mistake in a manifest. Job is the job's id (or "jobs[i]" when it has none
// yet), "defaults", or empty for the manifest as a whole; Field is the field, when one is at
// fault; Line is the job's line in a YAML manifest (0 when not known).
type ManifestError struct {
	Path  string
	Line  int
	Job   string
	Field string
	Err   error
}

func (e *ManifestError) Error() string {
	var b strings.Builder
	b.WriteString("batch: ")
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	switch {
	case e.Job == "defaults":
		b.WriteString(": defaults")
	case strings.HasPrefix(e.Job, "jobs["):
		b.WriteString(": " + e.Job)
	case e.Job != "":
		fmt.Fprintf(&b, ": job %q", e.Job)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ManifestError) Unwrap() error { return e.Err }

// Manifest is a parsed batch manifest.
type Manifest struct {
	// Path is the manifest file; relative paths in it are relative to its folder.
	Path string
	// Jobs are the jobs in manifest order, with the defaults applied and paths resolved.
	Jobs []*Job
	// order has every job after the jobs whose outputs it reads, and otherwise manifest order.
	order []*Job
}

// Job is one job of a manifest.
type Job struct {
	ID   string
	Kind string
	// Out is the output folder (transfer) or file (eval), resolved against the manifest folder.
	Out string

	kind     jobKind
	spec     jobSpec // defaults applied, paths resolved
	line     int
	identity string
	after    []*Job // the jobs whose outputs this one reads
}

// LoadManifest reads and parses a manifest file with the default options: outputs must stay
// inside the manifest's folder.
func LoadManifest(path string) (*Manifest, error) {
	return ManifestOptions{}.Load(path)
}

// ParseManifest parses the manifest data read from path with the default options (see
// ManifestOptions.Parse).
func ParseManifest(path string, data []byte) (*Manifest, error) {
	return ManifestOptions{}.Parse(path, data)
}

// Parse parses the manifest data read from path: the extension of path (.json, .yaml or .yml)
// gives the format, and its folder is where relative paths start. Every mistake is a
// *ManifestError: besides the fields' own, outputs that overlap other outputs or inputs, an
// output outside the manifest's folder (unless o.AllowOutside), and a manifest past the size
// limits (wrapping errTooLarge).
func (o ManifestOptions) Parse(path string, data []byte) (*Manifest, error) {
	fail := func(job, field string, line int, format string, args ...any) error {
		return &ManifestError{Path: path, Line: line, Job: job, Field: field, Err: fmt.Errorf(format, args...)}
	}
	if len(data) > maxManifestBytes {
		return nil, tooLarge(path, int64(len(data)))
	}
	var doc map[string]any
	var lines []int
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".json":
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return nil, fail("", "", 0, "not a JSON object: %w", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, fail("", "", 0, "data after the JSON object")
		}
	case ".yaml", ".yml":
		var err error
		if doc, lines, err = decodeYAML(data); err != nil {
			return nil, fail("", "", 0, "%w", err)
		}
	default:
		return nil, fail("", "", 0, "unknown manifest format %q, want .json, .yaml or .yml", ext)
	}
	for _, key := range sortedKeys(doc) {
		if key != "defaults" && key != "jobs" {
			return nil, fail("", key, 0, "unknown top-level field, want defaults and jobs")
		}
	}
	defaults, ok := doc["defaults"].(map[string]any)
	if !ok && doc["defaults"] != nil {
		return nil, fail("defaults", "", 0, "want a mapping of job fields")
	}
	for _, key := range sortedKeys(defaults) {
		if _, ok := specFields[key]; !ok {
			return nil, fail("defaults", key, 0, "unknown field")
		}
	}
	items, ok := doc["jobs"].([]any)
	if !ok || len(items) == 0 {
		return nil, fail("", "jobs", 0, "want a list of at least one job")
	}
	if len(items) > maxJobs {
		return nil, fail("", "jobs", 0, "%w: %d jobs, more than the %d a manifest may have: split them into several manifests", errTooLarge, len(items), maxJobs)
	}
	m := &Manifest{Path: path}
	dir := filepath.Dir(path)
	base, real := realPath(dir), realPaths{}
	ids := map[string]int{}
	outs := map[string]*Job{}
	for i, item := range items {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		fields, ok := item.(map[string]any)
		if !ok {
			return nil, fail(fmt.Sprintf("jobs[%d]", i), "", line, "want a mapping of job fields")
		}
		j, err := parseJob(defaults, fields, dir)
		if err != nil {
			var me *ManifestError
			if errors.As(err, &me) {
				me.Path = path
				if me.Job != "defaults" {
					me.Line = line
				}
				if me.Job == "" {
					me.Job = fmt.Sprintf("jobs[%d]", i)
				}
			}
			return nil, err
		}
		j.line = line
		if !o.AllowOutside {
			if err := j.checkConfined(base, real); err != nil {
				return nil, &ManifestError{Path: path, Line: line, Job: j.ID, Field: "out", Err: err}
			}
		}
		if prev, ok := ids[j.ID]; ok {
			return nil, fail("", "id", line, "jobs[%d] and jobs[%d] have the same id %q", prev, i, j.ID)
		}
		ids[j.ID] = i
		key := absPath(j.Out)
		if prev, ok := outs[key]; ok {
			return nil, fail("", "out", line, "jobs %q and %q both write %s", prev.ID, j.ID, j.Out)
		}
		outs[key] = j
		m.Jobs = append(m.Jobs, j)
	}
	if err := m.checkOverlaps(); err != nil {
		return nil, err
	}
	if err := m.link(); err != nil {
		return nil, err
	}
	return m, nil
}

func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

// parseJob builds a job from the defaults and its own fields; paths are resolved against dir.
// Errors are *ManifestError without Path and Line.
func parseJob(defaults, own map[string]any, dir string) (*Job, error) {
	failf := func(job, field, format string, args ...any) error {
		return &ManifestError{Job: job, Field: field, Err: fmt.Errorf(format, args...)}
	}
	// Until the spec is decoded, errors name the job by the id or output it gives.
	id, _ := own["id"].(string)
	if id == "" {
		id, _ = own["out"].(string)
	}
	for _, key := range sortedKeys(own) {
		if _, ok := specFields[key]; !ok {
			return nil, failf(id, key, "unknown field")
		}
	}
	kind := KindTransfer
	for _, src := range []map[string]any{defaults, own} {
		if v, ok := src["kind"]; ok {
			s, _ := v.(string)
			if _, ok := kinds[s]; !ok {
				return nil, failf(id, "kind", "%s, want %s", compact(v), kindNames())
			}
			kind = s
		}
	}
	for _, key := range sortedKeys(own) {
		if !slices.Contains(specFields[key].kinds, kind) {
			return nil, failf(id, key, "not used by %s jobs", kind)
		}
	}
	// A job that gives one of two alternatives does not take the other from the defaults.
	defaults = maps.Clone(defaults)
	for _, pair := range alternatives {
		for i, name := range pair {
			if _, ok := own[name]; ok {
				delete(defaults, pair[1-i])
			}
		}
	}
	spec := jobSpec{Kind: kind}
	kinds[kind].defaults(&spec)
	sv := reflect.ValueOf(&spec).Elem()
	// The job's own fields are set after the defaults, over them.
	for _, src := range []struct {
		name   string
		fields map[string]any
	}{{"defaults", defaults}, {id, own}} {
		for _, key := range sortedKeys(src.fields) {
			f := specFields[key]
			if !slices.Contains(f.kinds, kind) {
				continue // a default this kind does not use
			}
			raw, err := json.Marshal(src.fields[key])
			if err != nil {
				return nil, failf(src.name, key, "%v", err)
			}
			field := sv.Field(f.index)
			fresh := reflect.New(field.Type())
			if err := json.Unmarshal(raw, fresh.Interface()); err != nil {
				return nil, failf(src.name, key, "%s, got %s", want(field.Type(), err), compact(src.fields[key]))
			}
			field.Set(fresh.Elem())
		}
	}
	if spec.ID == "" && spec.Out != "" {
		spec.ID = cleanPath(spec.Out)
	}
	written := spec
	if err := spec.check(); err != nil {
		return nil, err
	}
	spec.normalize()
	if err := spec.resolve(dir); err != nil {
		return nil, err
	}
	return &Job{ID: spec.ID, Kind: spec.Kind, Out: spec.Out, kind: kinds[kind], spec: spec, identity: written.identity()}, nil
}

// want describes the type a manifest field wants.
func want(t reflect.Type, err error) string {
	switch t {
	case reflect.TypeFor[stringList](), reflect.TypeFor[floatList]():
		return err.Error()
	case reflect.TypeFor[[]int]():
		return "want a list of integers"
	}
	switch t.Kind() {
	case reflect.String:
		return "want a string"
	case reflect.Int:
		return "want an integer"
	case reflect.Uint64:
		return "want an integer ≥ 0"
	case reflect.Float64:
		return "want a number"
	case reflect.Bool:
		return "want true or false"
	}
	return "want a " + t.String()
}

// compact renders a manifest value for an error message.
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 60 {
		return string(b[:57]) + "..."
	}
	return string(b)
}
