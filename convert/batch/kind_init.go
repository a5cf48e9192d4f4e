package batch

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/models"
	"github.com/ltransfer/ltransfer/params"
)

// initKind is an init job: a built-in architecture (model) or an ONNX model with its
// parameters drawn anew (from), drawn from init_seed and written to the ONNX file out, as
// ltransfer init does. The output depends on nothing else, so a job is complete when out holds
// exactly the bytes it would write.
type initKind struct{}

func (initKind) defaults(*jobSpec) {}

func (initKind) check(s jobSpec) error {
	if (s.Model == "") == (s.From == "") {
		return s.bad("model", "init jobs need exactly one of model and from")
	}
	if s.InitSeed == nil {
		return s.bad("init_seed", "required by init jobs")
	}
	if s.Model != "" {
		if _, err := models.Parse(s.Model); err != nil {
			return s.bad("model", "%v", err)
		}
	}
	return nil
}

func (initKind) inputs(s jobSpec) []string {
	if s.From == "" {
		return nil
	}
	return []string{s.From}
}

func (initKind) folder() bool { return false }

func (initKind) run(_ *batchRun, j *Job) error {
	s := j.spec
	m, ps, err := drawModel(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.Out), 0o755); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	return m.Save(s.Out, ps)
}

func (initKind) complete(_ *batchRun, j *Job) bool {
	have, err := os.ReadFile(j.spec.Out)
	if err != nil {
		return false
	}
	m, ps, err := drawModel(j.spec)
	if err != nil {
		return false
	}
	want, err := m.Encode(ps)
	return err == nil && bytes.Equal(have, want)
}

// drawModel returns the model an init job writes and its parameters (nil: the model's own).
func drawModel(s jobSpec) (*graph.Model, params.Set, error) {
	if s.Model != "" {
		arch, err := models.Parse(s.Model)
		if err != nil {
			return nil, nil, err
		}
		m, err := models.New(arch, *s.InitSeed)
		return m, nil, err
	}
	m, err := graph.Load(s.From)
	if err != nil {
		return nil, nil, err
	}
	ps, err := models.Reinit(m, *s.InitSeed)
	if err != nil {
		return nil, nil, fmt.Errorf("batch: %s: %w", s.From, err)
	}
	return m, ps, nil
}
