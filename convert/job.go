package convert

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/internal/version"
	"github.com/ltransfer/ltransfer/models"
	"github.com/ltransfer/ltransfer/params"
)

// Job is one transfer with its files: the source trajectory, the initialization, the output
// folder and what to write there. The CLI's transfer command, the demo and batch manifests run
// jobs.
type Job struct {
	// Trajectory is a folder of checkpoints, or the checkpoint files in order.
	Trajectory []string
	// Init is the new initialization's ONNX file. When it is empty, InitSeed must be set: the
	// initialization is then the first checkpoint with every parameter drawn anew from that seed
	// (models.Reinit), written to the output folder as init.onnx.
	Init     string
	InitSeed *uint64
	// Target is the target run's trajectory, for the oracle: a folder of checkpoints, or the
	// checkpoint files in order.
	Target []string
	// Out is the output folder.
	Out string
	// Save selects the ONNX files written: "steps", "best", "final".
	Save map[string]bool
	// Data and ValData are the data specs, recorded in the report.
	Data, ValData string
	Options
}

// Run loads the inputs, transfers, and writes the ONNX files, perm.json and report.json into
// the output folder; it returns the report. When ctx ends, the transfer stops between steps
// (every file written so far is complete) and Run returns ctx's error wrapped.
func (j Job) Run(ctx context.Context) (*Report, error) {
	start := time.Now()
	src, err := LoadTrajectory(j.Trajectory...)
	if err != nil {
		return nil, err
	}
	if (j.Init == "") == (j.InitSeed == nil) {
		return nil, errors.New("convert: a transfer needs either an initialization file or an initialization seed")
	}
	if len(j.Target) > 0 {
		if j.Options.Target, err = LoadTrajectory(j.Target...); err != nil {
			return nil, err
		}
	}
	inputs := slices.Clone(src.Paths)
	if j.Init != "" {
		inputs = append(inputs, j.Init)
	}
	if err := PrepareDir(j.Out, inputs...); err != nil {
		return nil, err
	}
	var files []string
	initPath := j.Init
	if j.Init == "" {
		initPath = filepath.Join(j.Out, "init.onnx")
		if err := drawInit(src.Checkpoints[0], *j.InitSeed, initPath); err != nil {
			return nil, err
		}
		files = append(files, "init.onnx")
	}
	init, err := graph.Load(initPath)
	if err != nil {
		return nil, err
	}
	// Before the copy that writes the files: the initialization takes the trajectory's
	// parameter names, which the transferred parameters carry.
	if err := src.CheckInit(init); err != nil {
		return nil, err
	}
	// Written files evaluate in inference mode in any ONNX runtime, as ltransfer evaluates them.
	out, err := init.InferenceCopy()
	if err != nil {
		return nil, err
	}
	w := &Writer{Dir: j.Out, Model: out, SaveSteps: j.Save["steps"], SaveBest: j.Save["best"], SaveFinal: j.Save["final"], Files: files}
	res, err := Transfer(ctx, src, init, j.Options, func(r StepReport, p params.Set) error {
		return w.Step(r.Step, r.Accuracy, p)
	})
	if err != nil {
		return nil, errors.Join(err, w.Discard())
	}
	if err := w.Finish(); err != nil {
		return nil, err
	}
	report := &Report{
		Schema: ReportSchema, Version: version.Get().String(), Method: j.Method, Steps: res.Steps, BestStep: res.Best,
		Unpermuted: res.Unpermuted, DroppedGroups: res.Dropped, InitScore: res.InitScore, SetupSeconds: res.SetupSeconds,
		Settings: Settings{Steps: j.Steps, Schedule: j.Schedule, Batch: j.Batch, GradBatches: j.GradBatches,
			NormBatches: j.NormBatches, Seed: j.Seed, InitSeed: j.InitSeed, Data: j.Data, ValData: j.ValData},
	}
	roles := map[string][]string{"trajectory": src.Paths}
	if j.Init != "" {
		roles["init"] = []string{j.Init}
	}
	if j.Options.Target != nil {
		roles["target"] = j.Options.Target.Paths
	}
	for _, role := range []string{"trajectory", "init", "target"} {
		for _, p := range roles[role] {
			sum, err := HashFile(p)
			if err != nil {
				return nil, err
			}
			report.Inputs = append(report.Inputs, InputFile{Role: role, Path: p, SHA256: sum})
		}
	}
	for _, g := range res.Spec.Groups {
		report.Groups = append(report.Groups, GroupReport{Name: g.Name, Size: g.Size, Members: len(g.Members)})
	}
	if err := WriteJSON(filepath.Join(j.Out, "perm.json"), NewPermFile(res)); err != nil {
		return nil, err
	}
	report.Files = append(w.Files, "perm.json", "report.json")
	report.Seconds = time.Since(start).Seconds()
	if err := WriteJSON(filepath.Join(j.Out, "report.json"), report); err != nil {
		return nil, err
	}
	return report, nil
}

// drawInit writes to path the model first with every parameter drawn anew from seed.
func drawInit(first *graph.Model, seed uint64, path string) error {
	ps, err := models.Reinit(first, seed)
	if err != nil {
		return fmt.Errorf("convert: drawing an initialization from %s: %w", first.Path, err)
	}
	return first.Save(path, ps)
}
