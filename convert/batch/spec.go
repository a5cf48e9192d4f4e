package batch

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
)

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

// oneOrMany is a value or a list of values in a manifest.
type oneOrMany[T string | float32] []T

// stringList is a string or a list of strings; floatList a number or a list of numbers.
type (
	stringList = oneOrMany[string]
	floatList  = oneOrMany[float32]
)

func (l *oneOrMany[T]) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*l = nil
		return nil
	}
	var one T
	if err := json.Unmarshal(data, &one); err == nil {
		*l = oneOrMany[T]{one}
		return nil
	}
	var many []T
	if err := json.Unmarshal(data, &many); err != nil {
		if _, isString := any(one).(string); isString {
			return errors.New("want a string or a list of strings")
		}
		return errors.New("want a number or a list of numbers")
	}
	*l = many
	return nil
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
func (j *Job) inputs() []string {
	return j.kind.inputs(j.spec)
}
