package convert

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/graph"
)

// Job is one transfer with its files: the source trajectory, the initialization, the output
// folder and what to write there. The CLI's transfer command, the demo and batch manifests run
// jobs.
type Job struct {
	// Trajectory is a folder of checkpoints, or the checkpoint files in order.
	Trajectory []string
	// Init is the new initialization's ONNX file.
	Init string
	// Target is the target run's trajectory (a folder, or files separated by commas) for the
	// oracle.
	Target string
	// Out is the output folder.
	Out string
	// Save selects the ONNX files written: "steps", "best", "final".
	Save map[string]bool
	// Data and ValData are the data specs, recorded in the report.
	Data, ValData string
	Options
}

// Run loads the inputs, transfers, and writes the ONNX files, perm.json and report.json into
// the output folder; it returns the report.
func (j Job) Run() (*Report, error) {
	start := time.Now()
	src, err := LoadTrajectory(j.Trajectory...)
	if err != nil {
		return nil, err
	}
	init, err := graph.Load(j.Init)
	if err != nil {
		return nil, err
	}
	if j.Target != "" {
		if j.Options.Target, err = LoadTrajectory(strings.Split(j.Target, ",")...); err != nil {
			return nil, err
		}
	}
	if err := PrepareDir(j.Out, append(slices.Clone(src.Paths), j.Init)...); err != nil {
		return nil, err
	}
	// Written files evaluate in inference mode in any ONNX runtime, as ltransfer evaluates them.
	out, err := init.InferenceCopy()
	if err != nil {
		return nil, err
	}
	w := &Writer{Dir: j.Out, Model: out, SaveSteps: j.Save["steps"], SaveBest: j.Save["best"], SaveFinal: j.Save["final"]}
	res, err := Transfer(src, init, j.Options, func(r StepReport, p align.Params) error {
		return w.Step(r.Step, r.Accuracy, p)
	})
	if err != nil {
		return nil, err
	}
	if err := w.Finish(); err != nil {
		return nil, err
	}
	report := &Report{
		Schema: ReportSchema, Method: j.Method, Steps: res.Steps, BestStep: res.Best,
		Unpermuted: res.Unpermuted, DroppedGroups: res.Dropped, InitScore: res.InitScore,
		Settings: Settings{Steps: j.Steps, Schedule: j.Schedule, Batch: j.Batch, GradBatches: j.GradBatches,
			NormBatches: j.NormBatches, Seed: j.Seed, Data: j.Data, ValData: j.ValData},
	}
	inputs := map[string][]string{"trajectory": src.Paths, "init": {j.Init}}
	if j.Options.Target != nil {
		inputs["target"] = j.Options.Target.Paths
	}
	for _, role := range []string{"trajectory", "init", "target"} {
		for _, p := range inputs[role] {
			sum, err := HashFile(p)
			if err != nil {
				return nil, fmt.Errorf("convert: %w", err)
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
