package batch

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/convert/dataset"
)

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

// transferKind is a transfer job: convert.Job.Run with the manifest's settings.
type transferKind struct{}

// defaults are the transfer command's.
func (transferKind) defaults(s *jobSpec) {
	s.Method, s.Steps, s.Schedule, s.Batch = "gmt", 10, string(convert.Cosine), 128
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
	if err := convert.CheckMethod(s.Method); err != nil {
		return s.bad("method", "%w", err)
	}
	if s.Method == "oracle" && len(s.Target) == 0 {
		return s.bad("target", "required by method oracle")
	}
	if _, err := convert.ParseSchedule(s.Schedule); err != nil {
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

func (transferKind) run(r *batchRun, j *Job) error {
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
	job := convert.Job{
		Trajectory: s.Trajectory, Init: s.Init, InitSeed: s.InitSeed, Target: s.Target, Out: s.Out, Save: save,
		Data: s.Data, ValData: s.ValData,
		Options: convert.Options{
			Method: s.Method, Steps: s.Steps, Schedule: convert.Schedule(s.Schedule), Batch: s.Batch, GradBatches: s.GradBatches,
			NormBatches: s.NormBatches, Seed: s.Seed, MaxSweeps: s.MaxSweeps, Train: train, Val: val, AllowNonFinite: s.AllowNonFinite,
			Progress: func(step convert.StepReport) { r.event(Event{Job: j, Step: &step}) },
		},
	}
	// A previous record must not vouch for the files this run replaces.
	if err := os.Remove(filepath.Join(s.Out, batchJobFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if _, err := job.Run(r.ctx); err != nil {
		return err
	}
	return convert.WriteJSON(filepath.Join(s.Out, batchJobFile), jobRecord{Schema: Schema, ID: j.ID, Manifest: r.m.Path, Settings: s.settings()})
}

// complete checks report.json (method, settings, the SHA-256 of every input, the files it
// lists) and batch-job.json (the other settings). Anything unreadable, missing input files
// included, counts as not complete: running the job then says what is wrong.
func (transferKind) complete(r *batchRun, j *Job) bool {
	s := j.spec
	var rep convert.Report
	if readJSON(filepath.Join(s.Out, "report.json"), &rep) != nil {
		return false
	}
	settings := convert.Settings{Steps: s.Steps, Schedule: convert.Schedule(s.Schedule), Batch: s.Batch, GradBatches: s.GradBatches,
		NormBatches: s.NormBatches, Seed: s.Seed, InitSeed: s.InitSeed, Data: s.Data, ValData: s.ValData}
	if rep.Schema != convert.ReportSchema || rep.Method != s.Method || !reflect.DeepEqual(rep.Settings, settings) {
		return false
	}
	var inputs []convert.InputFile
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
				if paths, err = convert.TrajectoryFiles(paths[0]); err != nil {
					return false
				}
			}
		}
		for _, p := range paths {
			sum, err := r.hash(p)
			if err != nil {
				return false
			}
			inputs = append(inputs, convert.InputFile{Role: in.role, SHA256: sum})
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
	return rec.Schema == Schema && s.sameSettings(rec.Settings)
}
