package batch

import (
	"maps"
	"slices"
	"strings"
)

// The kinds of batch job.
const (
	KindTransfer = "transfer"
	KindEval     = "eval"
	KindInit     = "init"
)

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
	complete(r *batchRun, j *Job) bool
	// run runs the job, writing every file atomically. When the batch's context ends it stops
	// at the next point where every file written is complete, and returns an error wrapping
	// ErrInterrupted or the context's error.
	run(r *batchRun, j *Job) error
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
