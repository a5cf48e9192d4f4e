// Package convert transfers learning trajectories: it loads a source run's checkpoints, moves
// them onto a new initialization with permutations chosen by a method (GMT, FGMT, naive,
// oracle), evaluates and trains models, and writes the results with their reports. A Job is one
// transfer with its files; a batch manifest is many jobs run as one.
//
// # Batch manifests
//
// A manifest is a JSON or YAML file (.json, .yaml or .yml) with the jobs and the defaults they
// share:
//
//	defaults:                     # any job field; a job's own fields override them
//	  data: mnist:data/mnist
//	  mean: 0.1307
//	  std: 0.3081
//	  method: fgmt
//	jobs:
//	  - trajectory: runs/seed1    # a folder of checkpoints, or the files in order
//	    init: inits/seed2.onnx
//	    out: out/seed2
//	  - kind: eval
//	    models: [out/seed2/best.onnx, out/seed2/final.onnx]
//	    out: evals/seed2.json
//	  - kind: init
//	    model: mlp:784,256,10
//	    init_seed: 3
//	    out: inits/seed3.onnx
//
// The fields of every job:
//
//	id            its name in reports and errors (default: out as written); unique
//	kind          transfer (default), eval or init
//	out           a transfer's output folder, an eval's JSON file, an init's ONNX file; unique
//	              (required)
//
// The fields of transfer and eval jobs:
//
//	data          training data: mnist:DIR, cifar10:DIR or npz:FILE (required)
//	val_data      validation data, its test split (default: the end of data's training set)
//	val_fraction  the fraction of data's training set held out for validation (0.1)
//	mean, std     per-channel normalisation after scaling bytes to [0,1]: a number or a list
//	limit         use only the first N training examples (0: all)
//	val_limit     use only the first N validation examples (0: all)
//	classes       keep only these labels (a list); relabel: map them to 0..k-1 (false)
//	batch         mini-batch size (transfer 128, eval 256)
//
// The fields of a transfer:
//
//	trajectory    the source run: a folder of ONNX checkpoints, or the files in order (required)
//	init          the new initialization, an ONNX file
//	init_seed     or the seed it is drawn from: the first checkpoint with every parameter drawn
//	              anew (as ltransfer init --from does), written to the output folder as init.onnx
//	target        the target run's trajectory, a folder or files, for method oracle
//	method        gmt (default), fgmt, naive or oracle
//	steps         interpolation points between consecutive checkpoints (10)
//	schedule      cosine (default) or uniform
//	grad_batches  mini-batches each gradient is averaged over (1)
//	bn_batches    batches BatchNorm statistics are recomputed over (20)
//	seed          seed of the mini-batches and the matching order (1)
//	max_sweeps    coordinate-descent sweeps of each matching (0: the matcher's default)
//	save          the ONNX files written: steps, best, final, as a list or "best,final" (all)
//	allow_nonfinite  accept checkpoints with NaN or infinite parameters (false)
//
// The fields of an eval, which writes the accuracy and loss of every model, with its SHA-256:
//
//	models        the ONNX files to evaluate: a file or a list (required)
//	split         train, val (default) or test
//
// The fields of an init, which writes a freshly initialized model as ltransfer init does:
//
//	model         a built-in architecture spec, such as mlp:784,256,10
//	from          or an ONNX model whose parameters are drawn anew
//	init_seed     the seed of the initialization (required)
//
// Relative paths, data paths included, are relative to the manifest's folder. An unknown field
// is an error, and so is a field that a job sets but its kind does not use; a default that a
// kind does not use is ignored, and so is a default init (or init_seed, model, from) when the
// job gives its alternative. Two jobs may not share an id. YAML anchors, aliases and merge
// keys (<<) work; a key given twice is an error.
//
// No job may write over another's files: an output may not equal or lie inside another
// output, nor lie inside (or equal, unless it is a dependency) a path that a job reads (inside
// a data folder is allowed), nor hold the manifest. Outputs must stay inside the manifest's
// folder unless ManifestOptions.AllowOutside. A manifest may have at most 32 MiB and 100,000
// jobs, and its aliases may add at most the larger of 2^20 and 16 times the values it writes
// out.
//
// # Running a batch
//
// RunBatch runs the jobs one after another or several at once; a job that fails is reported
// and the others go on. A job that reads another job's output (an eval of a transfer's
// final.onnx) starts after that job has finished, and fails without running if that job
// failed.
//
// Processes started by a scheduler (a Kubernetes Indexed Job, a Slurm job array; see
// ShardFromEnv) split a manifest without a coordinator: each job belongs to shard h mod count,
// where h is the first 8 bytes of the SHA-256 of the job's identity (its kind, output, method and
// input paths as written in the manifest, not its position), so reordering the manifest or
// adding jobs moves no other job. Jobs of different shards are not coordinated: a job that reads the output
// of a job of another shard fails if that output is not there yet.
//
// A job whose outputs are complete is skipped. For a transfer that means its report.json records
// the same method, settings and SHA-256 of every input file, every file the report lists is
// present, and batch-job.json (written last) records the same manifest fields, such as the
// preprocessing, which report.json does not hold; for an eval, its JSON file records the same
// settings and the same SHA-256 of every model. Every file is written under a temporary name (.NAME.tmp-*) and renamed, so
// a batch killed at any moment leaves only complete files besides temporary ones, which the next
// run removes before it redoes the unfinished jobs.
//
// Several processes may run on one folder at once (a retried Kubernetes pod while its
// predecessor runs): each job's output, and the report, is locked by the process writing it
// (see batch_lock.go), a process waits for a job another one holds and then skips or redoes it
// by its outputs, and only the holder of an output's lock removes its temporary files.
package convert

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
)

// The kinds of batch job.
const (
	KindTransfer = "transfer"
	KindEval     = "eval"
	KindInit     = "init"
)

// BatchSchema is the version of the layouts of batch-report.json, batch-job.json and an eval
// job's JSON file.
const BatchSchema = 1

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
	b.WriteString("convert: ")
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
	Jobs []*BatchJob
	// order has every job after the jobs whose outputs it reads, and otherwise manifest order.
	order []*BatchJob
}

// BatchJob is one job of a manifest.
type BatchJob struct {
	ID   string
	Kind string
	// Out is the output folder (transfer) or file (eval), resolved against the manifest folder.
	Out string

	kind     jobKind
	spec     jobSpec // defaults applied, paths resolved
	line     int
	identity string
	after    []*BatchJob // the jobs whose outputs this one reads
}

// Shard returns the shard, in [0, count), that the job belongs to when a manifest is split
// count ways. A cryptographic hash spreads jobs evenly for any count; the low bits of a simple
// hash such as FNV-1a do not (its lowest bit is the parity of the bytes' lowest bits).
func (j *BatchJob) Shard(count int) int {
	if count <= 1 {
		return 0
	}
	sum := sha256.Sum256([]byte(j.identity))
	return int(binary.BigEndian.Uint64(sum[:8]) % uint64(count))
}

// jobSpec holds the fields of a manifest job. The json tag is the field's name in the manifest,
// kinds the kinds of job that use it; setting:"no" marks the name, the output and the inputs,
// which are not settings (the inputs' content is compared instead).
type jobSpec struct {
	ID   string `json:"id" kinds:"transfer,eval,init" setting:"no"`
	Kind string `json:"kind" kinds:"transfer,eval,init"`
	Out  string `json:"out" kinds:"transfer,eval,init" setting:"no"`

	Data           string     `json:"data" kinds:"transfer,eval"`
	ValData        string     `json:"val_data" kinds:"transfer,eval"`
	ValFraction    float64    `json:"val_fraction" kinds:"transfer,eval"`
	Mean           floatList  `json:"mean" kinds:"transfer,eval"`
	Std            floatList  `json:"std" kinds:"transfer,eval"`
	Limit          int        `json:"limit" kinds:"transfer,eval"`
	ValLimit       int        `json:"val_limit" kinds:"transfer,eval"`
	Classes        []int      `json:"classes" kinds:"transfer,eval"`
	Relabel        bool       `json:"relabel" kinds:"transfer,eval"`
	Batch          int        `json:"batch" kinds:"transfer,eval"`
	Trajectory     stringList `json:"trajectory" kinds:"transfer" setting:"no"`
	Init           string     `json:"init" kinds:"transfer" setting:"no"`
	InitSeed       *uint64    `json:"init_seed,omitempty" kinds:"transfer,init"`
	Target         stringList `json:"target" kinds:"transfer" setting:"no"`
	Method         string     `json:"method" kinds:"transfer"`
	Steps          int        `json:"steps" kinds:"transfer"`
	Schedule       string     `json:"schedule" kinds:"transfer"`
	GradBatches    int        `json:"grad_batches" kinds:"transfer"`
	NormBatches    int        `json:"bn_batches" kinds:"transfer"`
	Seed           uint64     `json:"seed" kinds:"transfer"`
	MaxSweeps      int        `json:"max_sweeps" kinds:"transfer"`
	Save           stringList `json:"save" kinds:"transfer"`
	AllowNonFinite bool       `json:"allow_nonfinite,omitempty" kinds:"transfer"`
	Models         stringList `json:"models" kinds:"eval" setting:"no"`
	Split          string     `json:"split" kinds:"eval"`
	Model          string     `json:"model" kinds:"init"`
	From           string     `json:"from" kinds:"init" setting:"no"`
}

// jobKind is what a kind of batch job does. Its manifest fields are the jobSpec fields whose
// kinds tag names it. Another kind (an init job writing a re-initialized model for a seed, say)
// is one more jobKind in kinds, with its fields.
type jobKind interface {
	// defaults sets the kind's defaults in a new spec.
	defaults(s *jobSpec)
	// check validates the kind's fields, defaults applied.
	check(s jobSpec) error
	// inputs returns the input files (or folders) of a job.
	inputs(s jobSpec) []string
	// folder reports whether the output is a folder; it is a file otherwise.
	folder() bool
	// complete reports whether the job's outputs are there and were made from the same inputs
	// with the same settings.
	complete(r *batchRun, j *BatchJob) bool
	// run runs the job, writing every file atomically. It returns ErrInterrupted when it stops
	// early because the batch's context ended.
	run(r *batchRun, j *BatchJob) error
}

// kinds are the kinds of batch job by name.
var kinds = map[string]jobKind{KindTransfer: transferKind{}, KindEval: evalKind{}, KindInit: initKind{}}

// alternatives are the pairs of fields of which a job gives one.
var alternatives = [][2]string{{"init", "init_seed"}, {"model", "from"}}

// kindNames lists the kinds for messages: "eval or transfer".
func kindNames() string {
	names := slices.Sorted(maps.Keys(kinds))
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// specField is a field of jobSpec as the manifest names it.
type specField struct {
	index   int
	kinds   []string
	setting bool
}

// specFields maps manifest field names to jobSpec fields.
var specFields = func() map[string]specField {
	fields := map[string]specField{}
	t := reflect.TypeFor[jobSpec]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		fields[name] = specField{index: i, kinds: strings.Split(f.Tag.Get("kinds"), ","), setting: f.Tag.Get("setting") != "no"}
	}
	return fields
}()

// settings returns, as a JSON object, the settings among the fields that the spec's kind uses:
// what decides a job's outputs besides the content of its input files.
func (s jobSpec) settings() json.RawMessage {
	all, err := json.Marshal(s)
	if err != nil {
		return nil // not reached: parsing accepts no value that JSON cannot hold
	}
	fields := decodeObject(all)
	for name, f := range specFields {
		if !f.setting || !slices.Contains(f.kinds, s.Kind) {
			delete(fields, name)
		}
	}
	return canonical(fields)
}

// decodeObject decodes a JSON object with its numbers as written (a uint64 seed stays exact);
// it returns nil for anything else.
func decodeObject(data []byte) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var fields map[string]any
	if dec.Decode(&fields) != nil {
		return nil
	}
	return fields
}

// canonical returns a decoded JSON object in one spelling: no spaces, keys sorted.
func canonical(fields map[string]any) json.RawMessage {
	out, err := json.Marshal(fields)
	if err != nil {
		return nil
	}
	return out
}

// sameSettings reports whether recorded settings are s's.
func (s jobSpec) sameSettings(recorded json.RawMessage) bool {
	fields, want := decodeObject(recorded), s.settings()
	return fields != nil && want != nil && bytes.Equal(canonical(fields), want)
}

// stringList is a string or a list of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*l = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(data, &one); err == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return errors.New("want a string or a list of strings")
	}
	*l = many
	return nil
}

// floatList is a number or a list of numbers.
type floatList []float32

func (l *floatList) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*l = nil
		return nil
	}
	var one float32
	if err := json.Unmarshal(data, &one); err == nil {
		*l = floatList{one}
		return nil
	}
	var many []float32
	if err := json.Unmarshal(data, &many); err != nil {
		return errors.New("want a number or a list of numbers")
	}
	*l = many
	return nil
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
	outs := map[string]*BatchJob{}
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

// decodeYAML decodes a YAML manifest into JSON-like values (maps with string keys, slices,
// strings, numbers, booleans, nil) and returns the line of every job. Timestamps stay strings,
// and merge keys (<<) are applied.
func decodeYAML(data []byte) (map[string]any, []int, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, err
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, nil, errors.New("want a YAML mapping with defaults and jobs")
	}
	top := root.Content[0]
	budget := max(maxAliasValues, aliasRatio*countNodes(top))
	v, err := (&yamlWalk{limit: budget, open: map[*yaml.Node]bool{}}).value(top)
	if err != nil {
		return nil, nil, err
	}
	var lines []int
	for i := 0; i+1 < len(top.Content); i += 2 {
		if jobs := resolveAlias(top.Content[i+1]); top.Content[i].Value == "jobs" && jobs.Kind == yaml.SequenceNode {
			for _, n := range jobs.Content {
				lines = append(lines, n.Line)
			}
		}
	}
	return v.(map[string]any), lines, nil
}

// resolveAlias returns the node an alias stands for.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// countNodes returns the number of nodes written out in a YAML document: an alias counts as
// one, not as the nodes it stands for.
func countNodes(n *yaml.Node) int {
	count := 1
	for _, c := range n.Content {
		count += countNodes(c)
	}
	return count
}

// yamlWalk converts YAML nodes into JSON-like values.
type yamlWalk struct {
	// added is the number of values that aliases added so far, limit the most allowed.
	added, limit int
	// aliases is the number of aliases being expanded around the node converted.
	aliases int
	// open holds the nodes being converted: an alias to one of them would never end.
	open map[*yaml.Node]bool
}

// value converts a YAML node into a JSON-like value.
func (w *yamlWalk) value(n *yaml.Node) (any, error) {
	if n.Kind == yaml.AliasNode {
		w.aliases++
		defer func() { w.aliases-- }()
	}
	n = resolveAlias(n)
	if w.aliases > 0 {
		if w.added++; w.added > w.limit {
			return nil, fmt.Errorf("%w: the manifest expands to more than %d values through its aliases (aliases of aliases?)", errTooLarge, w.limit)
		}
	}
	if w.open[n] { // only an alias can lead back to a node being converted
		return nil, fmt.Errorf("line %d: an alias refers to a node that contains it", n.Line)
	}
	w.open[n] = true
	defer delete(w.open, n)
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		var merged []map[string]any
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, vn := resolveAlias(n.Content[i]), n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a mapping key must be a string", k.Line)
			}
			v, err := w.value(vn)
			if err != nil {
				return nil, err
			}
			if k.Tag == "!!merge" {
				switch v := v.(type) {
				case map[string]any:
					merged = append(merged, v)
				case []any:
					for _, e := range v {
						em, ok := e.(map[string]any)
						if !ok {
							return nil, fmt.Errorf("line %d: a merge key wants mappings", k.Line)
						}
						merged = append(merged, em)
					}
				default:
					return nil, fmt.Errorf("line %d: a merge key wants a mapping", k.Line)
				}
				continue
			}
			if _, ok := m[k.Value]; ok {
				return nil, fmt.Errorf("line %d: %q is given twice", k.Line, k.Value)
			}
			m[k.Value] = v
		}
		for _, mm := range merged {
			for k, v := range mm {
				if _, ok := m[k]; !ok {
					m[k] = v
				}
			}
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			v, err := w.value(e)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	case yaml.ScalarNode:
		if n.Tag == "!!timestamp" {
			return n.Value, nil
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return v, nil
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
}

// parseJob builds a job from the defaults and its own fields; paths are resolved against dir.
// Errors are *ManifestError without Path and Line.
func parseJob(defaults, own map[string]any, dir string) (*BatchJob, error) {
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
	return &BatchJob{ID: spec.ID, Kind: spec.Kind, Out: spec.Out, kind: kinds[kind], spec: spec, identity: written.identity()}, nil
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

// check validates the fields of a spec whose defaults are applied.
func (s jobSpec) check() error {
	if s.Out == "" {
		return s.bad("out", "required by %s jobs", s.Kind)
	}
	return kinds[s.Kind].check(s)
}

// bad returns a *ManifestError about a field of the spec.
func (s jobSpec) bad(field, format string, args ...any) error {
	return &ManifestError{Job: s.ID, Field: field, Err: fmt.Errorf(format, args...)}
}

// minimum is a lower bound of an integer field.
type minimum struct {
	field        string
	value, least int
}

// atLeast checks integer fields against their lower bounds.
func (s jobSpec) atLeast(bounds ...minimum) error {
	for _, b := range bounds {
		if b.value < b.least {
			return s.bad(b.field, "%d, want at least %d", b.value, b.least)
		}
	}
	return nil
}

// checkData validates the data fields, which the transfer and eval kinds share.
func (s jobSpec) checkData() error {
	if s.Data == "" {
		return s.bad("data", "required by %s jobs", s.Kind)
	}
	if err := s.atLeast(minimum{"batch", s.Batch, 1}, minimum{"limit", s.Limit, 0}, minimum{"val_limit", s.ValLimit, 0}); err != nil {
		return err
	}
	if !(s.ValFraction >= 0 && s.ValFraction < 1) {
		return s.bad("val_fraction", "%v, want a value in [0, 1)", s.ValFraction)
	}
	if s.Relabel && len(s.Classes) == 0 {
		return s.bad("relabel", "needs classes")
	}
	return nil
}

// normalize gives the fields that can be written several ways one spelling, so that equal
// settings compare equal: save in the order steps, best, final, and nil for empty lists.
func (s *jobSpec) normalize() {
	save := s.saveSet()
	s.Save = nil
	for _, w := range []string{"steps", "best", "final"} {
		if save[w] {
			s.Save = append(s.Save, w)
		}
	}
	if len(s.Classes) == 0 {
		s.Classes = nil
	}
	if len(s.Mean) == 0 {
		s.Mean = nil
	}
	if len(s.Std) == 0 {
		s.Std = nil
	}
}

// saveSet returns the save field as a set: its entries may be comma-separated lists.
func (s jobSpec) saveSet() map[string]bool {
	set := map[string]bool{}
	for _, e := range s.Save {
		for _, w := range strings.Split(e, ",") {
			if w = strings.TrimSpace(w); w != "" {
				set[w] = true
			}
		}
	}
	return set
}

// identity is what decides a job's shard: its kind, output, method and inputs as written.
func (s jobSpec) identity() string {
	parts := []string{s.Kind, cleanPath(s.Out), s.Method}
	for _, p := range kinds[s.Kind].inputs(s) {
		parts = append(parts, cleanPath(p))
	}
	return strings.Join(parts, "\x00")
}

// cleanPath is a path as written, in one spelling, for identities.
func cleanPath(p string) string {
	if p == "" {
		return ""
	}
	return filepath.ToSlash(filepath.Clean(p))
}

// resolve makes the spec's relative paths relative to dir instead of the manifest.
func (s *jobSpec) resolve(dir string) error {
	at := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	all := func(l stringList) stringList {
		out := make(stringList, len(l))
		for i, p := range l {
			out[i] = at(p)
		}
		return out
	}
	s.Out, s.Init, s.From = at(s.Out), at(s.Init), at(s.From)
	s.Trajectory, s.Target, s.Models = all(s.Trajectory), all(s.Target), all(s.Models)
	for _, f := range []struct {
		name string
		spec *string
	}{{"data", &s.Data}, {"val_data", &s.ValData}} {
		if *f.spec == "" {
			continue
		}
		scheme, path, ok := strings.Cut(*f.spec, ":")
		if !ok || scheme == "" || path == "" {
			return &ManifestError{Job: s.ID, Field: f.name, Err: fmt.Errorf("%q, want mnist:DIR, cifar10:DIR or npz:FILE", *f.spec)}
		}
		*f.spec = scheme + ":" + at(path)
	}
	return nil
}

// inputs returns the input paths of the job, resolved.
func (j *BatchJob) inputs() []string {
	return j.kind.inputs(j.spec)
}

// link finds the jobs whose outputs each job reads and orders the jobs so that those come first.
func (m *Manifest) link() error {
	byOut := map[string]*BatchJob{}
	for _, j := range m.Jobs {
		byOut[absPath(j.Out)] = j
	}
	for _, j := range m.Jobs {
		for _, in := range j.inputs() {
			// The producer's output is the input or a folder holding it.
			for p := absPath(in); ; p = filepath.Dir(p) {
				if k, ok := byOut[p]; ok && k != j && !slices.Contains(j.after, k) {
					j.after = append(j.after, k)
				}
				if filepath.Dir(p) == p {
					break
				}
			}
		}
	}
	const (
		visiting = iota + 1
		visited
	)
	state := map[*BatchJob]int{}
	var stack []*BatchJob
	var visit func(j *BatchJob) error
	visit = func(j *BatchJob) error {
		switch state[j] {
		case visited:
			return nil
		case visiting:
			var ids []string
			for _, s := range stack[slices.Index(stack, j)+1:] {
				ids = append(ids, strconv.Quote(s.ID))
			}
			ids = append(ids, strconv.Quote(j.ID))
			return &ManifestError{Path: m.Path, Line: j.line, Job: j.ID, Err: fmt.Errorf("jobs read each other's outputs: %q reads the output of %s",
				j.ID, strings.Join(ids, ", which reads the output of "))}
		}
		state[j] = visiting
		stack = append(stack, j)
		for _, k := range j.after {
			if err := visit(k); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[j] = visited
		m.order = append(m.order, j)
		return nil
	}
	for _, j := range m.Jobs {
		if err := visit(j); err != nil {
			return err
		}
	}
	return nil
}

// absPath is a path in one spelling, for comparisons.
func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// Shard is the part of a manifest one process runs: the jobs j with j.Shard(Count) == Index.
// The zero value, like Count 1, is the whole manifest.
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// Check reports whether the shard is a valid one.
func (s Shard) Check() error {
	if s.Count < 0 || s.Index < 0 || (s.Count > 0 && s.Index >= s.Count) || (s.Count == 0 && s.Index != 0) {
		return fmt.Errorf("convert: shard index %d of %d shards, want an index in [0, %d)", s.Index, s.Count, max(s.Count, 1))
	}
	return nil
}

// Owns reports whether job j belongs to the shard.
func (s Shard) Owns(j *BatchJob) bool {
	return j.Shard(s.Count) == s.Index
}

// ShardFromEnv returns the shard that a scheduler assigned to this process, from its
// environment (lookup is os.LookupEnv or a stand-in); ok is false when no scheduler variable is
// set. count, when positive, is the shard count given otherwise (a command-line flag); it
// takes precedence over the environment's.
//
//   - A Kubernetes Indexed Job sets JOB_COMPLETION_INDEX (0 .. completions-1) but not the
//     count, which must then be given.
//   - A Slurm job array sets SLURM_ARRAY_TASK_ID, which runs from SLURM_ARRAY_TASK_MIN in steps
//     of SLURM_ARRAY_TASK_STEP (1 if unset), and SLURM_ARRAY_TASK_COUNT: the index is
//     (ID - MIN) / STEP.
func ShardFromEnv(lookup func(string) (string, bool), count int) (s Shard, ok bool, err error) {
	num := func(name string, def int) (int, error) {
		v, ok := lookup(name)
		if !ok || strings.TrimSpace(v) == "" {
			if def < 0 {
				return 0, fmt.Errorf("convert: %s is not set", name)
			}
			return def, nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("convert: %s=%q is not an integer", name, v)
		}
		return n, nil
	}
	if v, set := lookup("JOB_COMPLETION_INDEX"); set && v != "" {
		if s.Index, err = num("JOB_COMPLETION_INDEX", 0); err != nil {
			return s, true, err
		}
		if count <= 0 {
			return s, true, errors.New("convert: JOB_COMPLETION_INDEX is set but not the shard count: give the Job's completions")
		}
		s.Count = count
		return s, true, s.Check()
	}
	if v, set := lookup("SLURM_ARRAY_TASK_ID"); set && v != "" {
		id, err := num("SLURM_ARRAY_TASK_ID", 0)
		if err != nil {
			return s, true, err
		}
		lo, err := num("SLURM_ARRAY_TASK_MIN", 0)
		if err != nil {
			return s, true, err
		}
		step, err := num("SLURM_ARRAY_TASK_STEP", 1)
		if err != nil {
			return s, true, err
		}
		if step < 1 || id < lo || (id-lo)%step != 0 {
			return s, true, fmt.Errorf("convert: SLURM_ARRAY_TASK_ID %d is not SLURM_ARRAY_TASK_MIN %d plus a multiple of SLURM_ARRAY_TASK_STEP %d: use a range such as --array=0-N", id, lo, step)
		}
		s.Index, s.Count = (id-lo)/step, count
		if count <= 0 {
			if s.Count, err = num("SLURM_ARRAY_TASK_COUNT", -1); err != nil {
				return s, true, err
			}
		}
		if err := s.Check(); err != nil {
			return s, true, fmt.Errorf("%w (from SLURM_ARRAY_TASK_ID %d: the array must be a range such as --array=0-N)", err, id)
		}
		return s, true, nil
	}
	return Shard{}, false, nil
}

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

// BatchReport is batch-report.json: the jobs of one shard of a manifest, in manifest order, and
// how each went.
type BatchReport struct {
	// Path is the file the report is written to: BatchOptions.Report, or NAME.2.EXT (.3, ...)
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
func (r *BatchReport) Count(status JobStatus) int {
	n := 0
	for _, j := range r.Jobs {
		if j.Status == status {
			n++
		}
	}
	return n
}

// BatchOptions configure RunBatch.
type BatchOptions struct {
	// Parallel is the number of jobs run at once; less than 1 means 1.
	Parallel int
	// Shard selects the jobs to run; the zero value selects all.
	Shard Shard
	// Force reruns the jobs whose outputs are complete.
	Force bool
	// Report, when not empty, is the file the BatchReport is written to (atomically) when the
	// batch starts, at most every ReportInterval while jobs end, and at the end. Its folder must
	// exist. While another process writes it, this one writes NAME.2.EXT (NAME.3.EXT, ...)
	// instead; BatchReport.Path says which.
	Report string
	// ReportInterval is the shortest time between two writes of the report while jobs end
	// (0: DefaultReportInterval); a job's end is written at most that long after it.
	ReportInterval time.Duration
	// Progress, when set, is called with every event, one call at a time.
	Progress func(BatchEvent)
}

// BatchEvent is a job starting (Result, Step and Holder unset), a job waiting for another
// process that holds its output (Holder set: "process 12 on host h since ..."), a step of a
// running transfer (Step set), or a job ending (Result set).
type BatchEvent struct {
	Job    *BatchJob
	Step   *StepReport
	Result *JobResult
	Holder string
}

// DefaultReportInterval is the shortest time between two writes of the batch report while jobs
// end, unless BatchOptions.ReportInterval says otherwise: rewriting (and syncing) a report of
// thousands of jobs after each would cost more than short jobs. Whether a job is done is
// decided from its outputs, never from the report, so a report that lags behind after a kill
// costs no work.
const DefaultReportInterval = 2 * time.Second

// ErrInterrupted is wrapped by the error of RunBatch when its context ends before every job has.
var ErrInterrupted = errors.New("interrupted")

// RunBatch runs the jobs of shard opt.Shard of manifest m and returns the report. A job's
// failure is recorded in the report, not returned: the error is about the batch itself (the
// report could not be written, or ctx ended, which wraps ErrInterrupted). When ctx ends, no job
// starts any more, a running transfer is abandoned at the end of its current step (a finishing
// one completes), and the temporary files of the jobs' outputs are removed.
func RunBatch(ctx context.Context, m *Manifest, opt BatchOptions) (*BatchReport, error) {
	if err := opt.Shard.Check(); err != nil {
		return nil, err
	}
	if opt.Shard.Count == 0 {
		opt.Shard.Count = 1
	}
	r := &batchRun{
		ctx: ctx, m: m, opt: opt, index: map[*BatchJob]int{}, done: map[*BatchJob]chan struct{}{},
		hashes: map[string]hashEntry{}, data: map[string]*dataEntry{},
		report: &BatchReport{Schema: BatchSchema, Manifest: m.Path, Shard: opt.Shard, Started: time.Now(), Jobs: []JobResult{}},
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
	queue := make(chan *BatchJob)
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
		return r.report, fmt.Errorf("convert: %s: %w: %w", m.Path, ErrInterrupted, context.Cause(ctx))
	}
	return r.report, r.reportErr
}

// batchRun is a running batch.
type batchRun struct {
	ctx context.Context
	m   *Manifest
	opt BatchOptions

	mu        sync.Mutex // guards report, reportErr, written, flush and the Progress calls
	report    *BatchReport
	reportErr error
	written   time.Time         // the last write of the report
	flush     *time.Timer       // a pending write of the report
	index     map[*BatchJob]int // the jobs of the shard -> their place in report.Jobs
	done      map[*BatchJob]chan struct{}

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
	err := WriteJSON(r.report.Path, r.report)
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
func (r *batchRun) event(e BatchEvent) {
	if r.opt.Progress == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opt.Progress(e)
}

// run runs one job of the shard and records its result.
func (r *batchRun) run(j *BatchJob) {
	start := time.Now()
	status, err := r.attempt(j)
	if err != nil {
		err = fmt.Errorf("convert: %s: job %q: %w", r.m.Path, j.ID, err)
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
		r.opt.Progress(BatchEvent{Job: j, Result: &rc})
	}
	close(r.done[j])
	r.mu.Unlock()
}

// status returns the status of a job of the shard.
func (r *batchRun) status(j *BatchJob) JobStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.report.Jobs[r.index[j]].Status
}

// attempt waits for the jobs whose outputs j reads, then skips or runs j.
func (r *batchRun) attempt(j *BatchJob) (JobStatus, error) {
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
	r.event(BatchEvent{Job: j})
	err = abandonable(func() error { return j.kind.run(r, j) })
	if errors.Is(err, ErrInterrupted) {
		removeTemps(j)
		return StatusCancelled, err
	}
	if err != nil {
		return StatusFailed, err
	}
	return StatusOK, nil
}

// readyElsewhere checks that the inputs of j that job k of another shard writes are there.
func (r *batchRun) readyElsewhere(j, k *BatchJob) error {
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

// abandon is the panic value with which a transfer's progress callback leaves Job.Run when the
// batch is interrupted. Transfer calls the callback between steps, when no file is being
// written, and abandonable recovers it within this package.
type abandon struct{}

// abandonable runs f, turning an abandon panic into ErrInterrupted and any other panic into an
// error, so that one job cannot take the batch down.
func abandonable(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(abandon); ok {
				err = ErrInterrupted
				return
			}
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return f()
}

// jobRecord is batch-job.json, written into a transfer's output folder after report.json: the
// manifest fields the transfer ran with, so that a rerun redoes a job whose preprocessing or
// saved files changed (report.json records neither).
type jobRecord struct {
	Schema   int             `json:"schema_version"`
	ID       string          `json:"id"`
	Manifest string          `json:"manifest"`
	Settings json.RawMessage `json:"settings"`
}

// batchJobFile is the name of the record of a transfer job in its output folder.
const batchJobFile = "batch-job.json"

// transferKind is a transfer job: Job.Run with the manifest's settings.
type transferKind struct{}

// defaults are the transfer command's.
func (transferKind) defaults(s *jobSpec) {
	s.Method, s.Steps, s.Schedule, s.Batch = "gmt", 10, string(Cosine), 128
	s.GradBatches, s.NormBatches, s.Seed = 1, 20, 1
	s.Save = stringList{"steps", "best", "final"}
	s.ValFraction = dataset.DefaultValFraction
}

func (transferKind) check(s jobSpec) error {
	if len(s.Trajectory) == 0 {
		return s.bad("trajectory", "required by transfer jobs")
	}
	if (s.Init == "") == (s.InitSeed == nil) {
		return s.bad("init", "transfer jobs need exactly one of init and init_seed")
	}
	if err := s.checkData(); err != nil {
		return err
	}
	switch s.Method {
	case "gmt", "fgmt", "naive":
	case "oracle":
		if len(s.Target) == 0 {
			return s.bad("target", "required by method oracle")
		}
	default:
		return s.bad("method", "%q, want gmt, fgmt, naive or oracle", s.Method)
	}
	if _, err := ParseSchedule(s.Schedule); err != nil {
		return s.bad("schedule", "%q, want uniform or cosine", s.Schedule)
	}
	if err := s.atLeast(minimum{"steps", s.Steps, 1}, minimum{"grad_batches", s.GradBatches, 1},
		minimum{"bn_batches", s.NormBatches, 1}, minimum{"max_sweeps", s.MaxSweeps, 0}); err != nil {
		return err
	}
	save := s.saveSet()
	if len(save) == 0 {
		return s.bad("save", "empty, want some of steps, best, final")
	}
	for _, w := range slices.Sorted(maps.Keys(save)) {
		if w != "steps" && w != "best" && w != "final" {
			return s.bad("save", "%q, want some of steps, best, final", w)
		}
	}
	return nil
}

func (transferKind) inputs(s jobSpec) []string {
	if s.Init == "" {
		return slices.Concat(s.Trajectory, s.Target)
	}
	return slices.Concat(s.Trajectory, []string{s.Init}, s.Target)
}

func (transferKind) folder() bool { return true }

func (transferKind) run(r *batchRun, j *BatchJob) error {
	s := j.spec
	train, err := r.open(s, dataset.SplitTrain)
	if err != nil {
		return err
	}
	val, err := r.open(s, dataset.SplitVal)
	if err != nil {
		return err
	}
	save := s.saveSet()
	job := Job{
		Trajectory: s.Trajectory, Init: s.Init, InitSeed: s.InitSeed, Target: strings.Join(s.Target, ","), Out: s.Out, Save: save,
		Data: s.Data, ValData: s.ValData,
		Options: Options{
			Method: s.Method, Steps: s.Steps, Schedule: Schedule(s.Schedule), Batch: s.Batch, GradBatches: s.GradBatches,
			NormBatches: s.NormBatches, Seed: s.Seed, MaxSweeps: s.MaxSweeps, Train: train, Val: val, AllowNonFinite: s.AllowNonFinite,
			Progress: func(step StepReport) {
				r.event(BatchEvent{Job: j, Step: &step})
				if r.ctx.Err() != nil {
					panic(abandon{})
				}
			},
		},
	}
	// A previous record must not vouch for the files this run replaces.
	if err := os.Remove(filepath.Join(s.Out, batchJobFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if _, err := job.Run(); err != nil {
		return err
	}
	return WriteJSON(filepath.Join(s.Out, batchJobFile), jobRecord{Schema: BatchSchema, ID: j.ID, Manifest: r.m.Path, Settings: s.settings()})
}

// EvalReport is the JSON file an eval job writes.
type EvalReport struct {
	Schema   int    `json:"schema_version"`
	ID       string `json:"id"`
	Manifest string `json:"manifest"`
	// Split is the part of the data evaluated on, Examples its size.
	Split    string      `json:"split"`
	Examples int         `json:"examples"`
	Models   []EvalModel `json:"models"`
	Seconds  float64     `json:"seconds"`
	// Settings are the job's manifest fields that are settings, not paths (as in batch-job.json).
	Settings json.RawMessage `json:"settings"`
}

// EvalModel is one model's score in an EvalReport.
type EvalModel struct {
	Model  string `json:"model"`
	SHA256 string `json:"sha256"`
	Score
}

// evalKind is an eval job: the score of every model on one split of the data, into a JSON file.
type evalKind struct{}

// defaults are the eval command's.
func (evalKind) defaults(s *jobSpec) {
	s.Split, s.Batch, s.ValFraction = string(dataset.SplitVal), 256, dataset.DefaultValFraction
}

func (evalKind) check(s jobSpec) error {
	if len(s.Models) == 0 {
		return s.bad("models", "required by eval jobs")
	}
	if err := s.checkData(); err != nil {
		return err
	}
	switch dataset.Split(s.Split) {
	case dataset.SplitTrain, dataset.SplitVal, dataset.SplitTest:
		return nil
	}
	return s.bad("split", "%q, want train, val or test", s.Split)
}

func (evalKind) inputs(s jobSpec) []string { return s.Models }

func (evalKind) folder() bool { return false }

func (evalKind) run(r *batchRun, j *BatchJob) error {
	start := time.Now()
	s := j.spec
	data, err := r.open(s, dataset.Split(s.Split))
	if err != nil {
		return err
	}
	rep := EvalReport{Schema: BatchSchema, ID: j.ID, Manifest: r.m.Path, Split: s.Split, Examples: data.Len(), Settings: s.settings()}
	for _, path := range s.Models {
		if r.ctx.Err() != nil {
			return ErrInterrupted
		}
		m, err := graph.Load(path)
		if err != nil {
			return err
		}
		sum, err := r.hash(path)
		if err != nil {
			return err
		}
		score, err := Evaluate(m, nil, data, s.Batch, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rep.Models = append(rep.Models, EvalModel{Model: path, SHA256: sum, Score: score})
	}
	if err := os.MkdirAll(filepath.Dir(s.Out), 0o755); err != nil {
		return err
	}
	rep.Seconds = time.Since(start).Seconds()
	return WriteJSON(s.Out, rep)
}

func (evalKind) complete(r *batchRun, j *BatchJob) bool {
	s := j.spec
	var rep EvalReport
	if readJSON(s.Out, &rep) != nil || rep.Schema != BatchSchema || len(rep.Models) != len(s.Models) || !s.sameSettings(rep.Settings) {
		return false
	}
	for i, p := range s.Models {
		if sum, err := r.hash(p); err != nil || sum != rep.Models[i].SHA256 {
			return false
		}
	}
	return true
}

// complete checks report.json (method, settings, the SHA-256 of every input, the files it
// lists) and batch-job.json (the other settings). Anything unreadable, missing input files
// included, counts as not complete: running the job then says what is wrong.
func (transferKind) complete(r *batchRun, j *BatchJob) bool {
	s := j.spec
	var rep Report
	if readJSON(filepath.Join(s.Out, "report.json"), &rep) != nil {
		return false
	}
	settings := Settings{Steps: s.Steps, Schedule: Schedule(s.Schedule), Batch: s.Batch, GradBatches: s.GradBatches,
		NormBatches: s.NormBatches, Seed: s.Seed, InitSeed: s.InitSeed, Data: s.Data, ValData: s.ValData}
	if rep.Schema != ReportSchema || rep.Method != s.Method || !reflect.DeepEqual(rep.Settings, settings) {
		return false
	}
	var inputs []InputFile
	for _, in := range []struct {
		role  string
		paths []string
	}{{"trajectory", s.Trajectory}, {"init", []string{s.Init}}, {"target", s.Target}} {
		if len(in.paths) == 0 || in.paths[0] == "" {
			continue
		}
		paths := in.paths
		if len(paths) == 1 && in.role != "init" {
			if st, err := os.Stat(paths[0]); err == nil && st.IsDir() {
				if paths, err = TrajectoryFiles(paths[0]); err != nil {
					return false
				}
			}
		}
		for _, p := range paths {
			sum, err := r.hash(p)
			if err != nil {
				return false
			}
			inputs = append(inputs, InputFile{Role: in.role, SHA256: sum})
		}
	}
	if len(inputs) != len(rep.Inputs) {
		return false
	}
	for i, in := range rep.Inputs {
		if in.Role != inputs[i].Role || in.SHA256 != inputs[i].SHA256 {
			return false
		}
	}
	for _, f := range rep.Files {
		if st, err := os.Stat(filepath.Join(s.Out, f)); err != nil || !st.Mode().IsRegular() {
			return false
		}
	}
	var rec jobRecord
	if readJSON(filepath.Join(s.Out, batchJobFile), &rec) != nil {
		return false
	}
	return rec.Schema == BatchSchema && s.sameSettings(rec.Settings)
}

// readJSON decodes the JSON file at path into v.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// hashEntry is a file's SHA-256 with what identifies the version hashed.
type hashEntry struct {
	size int64
	mod  time.Time
	sum  string
}

// hash returns the SHA-256 of a file, computed once per version of the file in a batch (the
// jobs of an ensemble share their trajectory).
func (r *batchRun) hash(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	key := absPath(path)
	r.hashMu.Lock()
	e, ok := r.hashes[key]
	r.hashMu.Unlock()
	if ok && e.size == st.Size() && e.mod.Equal(st.ModTime()) {
		return e.sum, nil
	}
	sum, err := HashFile(path)
	if err != nil {
		return "", err
	}
	r.hashMu.Lock()
	r.hashes[key] = hashEntry{size: st.Size(), mod: st.ModTime(), sum: sum}
	r.hashMu.Unlock()
	return sum, nil
}

// dataEntry is a data source opened once for all the jobs of a batch that use it.
type dataEntry struct {
	once sync.Once
	src  dataset.Source
	err  error
}

// open returns the split of the job's data, as the transfer and eval commands select it: the
// validation set is val_data's test split or the end of data's training set, limited by
// val_limit; train and test are limited by limit.
func (r *batchRun) open(s jobSpec, split dataset.Split) (dataset.Source, error) {
	opt := dataset.Options{Split: split, ValFraction: s.ValFraction, Classes: s.Classes, Relabel: s.Relabel, Limit: s.Limit, Mean: s.Mean, Std: s.Std}
	spec := s.Data
	if split == dataset.SplitVal {
		opt.Limit = s.ValLimit
		if s.ValData != "" {
			spec, opt.Split = s.ValData, dataset.SplitTest
		}
	}
	key, err := json.Marshal(struct {
		Spec string
		Opt  dataset.Options
	}{spec, opt})
	if err != nil {
		return nil, err
	}
	r.dataMu.Lock()
	e, ok := r.data[string(key)]
	if !ok {
		e = &dataEntry{}
		r.data[string(key)] = e
	}
	r.dataMu.Unlock()
	e.once.Do(func() { e.src, e.err = dataset.Open(spec, opt) })
	return e.src, e.err
}

// removeTemps removes the temporary files that an interrupted write may have left in the job's
// output: every .NAME.tmp-* and .write-test-* in an output folder, and .NAME.tmp-* of an output
// file.
func removeTemps(j *BatchJob) {
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
