package batch

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
)

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
	convert.Score
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

func (evalKind) run(r *batchRun, j *Job) error {
	start := time.Now()
	s := j.spec
	data, err := r.open(s, dataset.Split(s.Split))
	if err != nil {
		return err
	}
	rep := EvalReport{Schema: Schema, ID: j.ID, Manifest: r.m.Path, Split: s.Split, Examples: data.Len(), Settings: s.settings()}
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
		score, err := convert.Evaluate(m, nil, data, s.Batch, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rep.Models = append(rep.Models, EvalModel{Model: path, SHA256: sum, Score: score})
	}
	if err := os.MkdirAll(filepath.Dir(s.Out), 0o755); err != nil {
		return err
	}
	rep.Seconds = time.Since(start).Seconds()
	return convert.WriteJSON(s.Out, rep)
}

func (evalKind) complete(r *batchRun, j *Job) bool {
	s := j.spec
	var rep EvalReport
	if readJSON(s.Out, &rep) != nil || rep.Schema != Schema || len(rep.Models) != len(s.Models) || !s.sameSettings(rep.Settings) {
		return false
	}
	for i, p := range s.Models {
		if sum, err := r.hash(p); err != nil || sum != rep.Models[i].SHA256 {
			return false
		}
	}
	return true
}
