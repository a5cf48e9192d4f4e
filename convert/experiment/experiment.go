// Package experiment compares the transfer methods as the paper does, in one scenario: it
// trains (or loads) a source and a target run, transfers the source run onto the target's
// starting point with each method, fine-tunes each result and the starting point itself, and
// writes every evaluation as CSV, a JSON report, a Markdown summary and plots (PNG).
package experiment

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/convert/train"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/models"
	"github.com/ltransfer/ltransfer/params"
)

// The scenarios of an experiment: where the source and target runs start.
const (
	// ScenarioScratch transfers a run from a random initialization onto another random
	// initialization, then fine-tunes the result: does the transfer save training?
	ScenarioScratch = "scratch"
	// ScenarioFinetune transfers the fine-tuning of one pre-trained model (on other classes)
	// onto a second model pre-trained from another seed: can a fine-tuning be reused?
	ScenarioFinetune = "finetune"
)

// The phases of an experiment's rows.
const (
	PhaseTransfer = "transfer"
	PhaseFinetune = "finetune"
)

// The baselines fine-tuned next to the transferred parameters: the target's own starting point,
// which is a random initialization in ScenarioScratch and the second pre-trained model in
// ScenarioFinetune.
const (
	BaselineScratch = "scratch"
	BaselineDirect  = "direct"
)

// Schema is the version of the experiment.json layout; it changes when fields change
// meaning or disappear (new fields keep it).
const Schema = 1

// ReachMargin is how close to the target run's final validation accuracy a fine-tuning must come
// to have caught up with it (0.005: half a point).
const ReachMargin = 0.005

// Options configure Run. Their JSON form is the settings record of
// experiment.json.
type Options struct {
	// Scenario is ScenarioScratch or ScenarioFinetune.
	Scenario string `json:"scenario"`
	// Arch is the models.Parse spec of the network whose runs are trained; the source and
	// target start from models.New(arch, SourceSeed) and models.New(arch, TargetSeed). It is
	// not needed when both trajectories are given.
	Arch       string `json:"arch,omitempty"`
	SourceSeed uint64 `json:"source_seed"`
	TargetSeed uint64 `json:"target_seed"`
	// SourceTrajectory and TargetTrajectory, when set, are existing runs (a folder of
	// checkpoints or the files in order) used instead of training them: in ScenarioFinetune,
	// fine-tuning runs whose first checkpoint is the pre-trained model. Checkpoints are taken
	// to be one epoch apart.
	SourceTrajectory []string `json:"source_trajectory,omitempty"`
	TargetTrajectory []string `json:"target_trajectory,omitempty"`
	// Epochs is the length of the source and target runs: training from the initialization,
	// or in ScenarioFinetune the fine-tuning of the pre-trained models.
	Epochs int `json:"epochs"`
	// PretrainEpochs is the pre-training of ScenarioFinetune, on PretrainClasses; the runs
	// then fine-tune on FinetuneClasses, which select the examples of every later stage.
	PretrainEpochs  int   `json:"pretrain_epochs,omitempty"`
	PretrainClasses []int `json:"pretrain_classes,omitempty"`
	FinetuneClasses []int `json:"finetune_classes,omitempty"`
	// Relabel maps each class list to 0..k-1 (dataset.Options.Relabel); otherwise labels stay
	// as they are and the network keeps its full head.
	Relabel bool `json:"relabel,omitempty"`
	// Methods are the transfer methods compared (naive, fgmt, gmt, oracle), in order.
	Methods []string `json:"methods"`
	// Steps, Schedule, GradBatches and NormBatches are the transfer's Options. The transfer
	// runs over the linear trajectory from the source's first checkpoint to its last.
	Steps       int              `json:"steps"`
	Schedule    convert.Schedule `json:"schedule"`
	GradBatches int              `json:"grad_batches"`
	NormBatches int              `json:"bn_batches"`
	// FinetuneEpochs is how long each method's best step and the baseline are fine-tuned
	// (0: not at all), evaluated every EvalEvery steps.
	FinetuneEpochs int `json:"finetune_epochs"`
	EvalEvery      int `json:"eval_every"`
	// SummarySteps are the fine-tuning steps the summary reports (nil: 0, 25, 50, 100, 200,
	// 400).
	SummarySteps []int `json:"summary_steps,omitempty"`
	// Batch, LR, Momentum and WeightDecay are the SGD of every training run (constant rate)
	// and the batch size of the transfers.
	Batch       int     `json:"batch"`
	LR          float64 `json:"lr"`
	Momentum    float64 `json:"momentum"`
	WeightDecay float64 `json:"weight_decay"`
	// Seed draws the transfers' mini-batches and the example order of the fine-tuning phase;
	// the source and target runs shuffle with their own seeds.
	Seed uint64 `json:"seed"`
	// Data is the data spec (dataset.Open); the validation set is the last ValFraction of its
	// training set. Mean and Std normalise it; Limit and ValLimit, when positive, keep only
	// the first examples of the training and validation splits (after class selection).
	Data        string    `json:"data"`
	Mean        []float32 `json:"mean,omitempty"`
	Std         []float32 `json:"std,omitempty"`
	ValFraction float64   `json:"val_fraction"`
	Limit       int       `json:"limit,omitempty"`
	ValLimit    int       `json:"val_limit,omitempty"`
	// Out is the output folder; it is created and must be empty.
	Out string `json:"out"`
	// OnTrain and OnStep, when set, receive the progress of every training run and transfer,
	// with the stage's name ("source", "transfer gmt", "finetune gmt", ...).
	OnTrain func(stage string, p train.Progress)     `json:"-"`
	OnStep  func(stage string, r convert.StepReport) `json:"-"`
}

// Check returns an error naming the first invalid setting; the data and the trajectories are
// checked by Run.
func (o Options) Check() error {
	trains := len(o.SourceTrajectory) == 0 || len(o.TargetTrajectory) == 0
	switch {
	case o.Scenario != ScenarioScratch && o.Scenario != ScenarioFinetune:
		return fmt.Errorf("experiment: unknown scenario %q (want %s or %s)", o.Scenario, ScenarioScratch, ScenarioFinetune)
	case trains && o.Arch == "":
		return errors.New("experiment: an architecture is needed to train the runs not given as trajectories")
	case trains && o.Epochs < 1:
		return fmt.Errorf("experiment: %d epochs, want at least 1", o.Epochs)
	case trains && o.Scenario == ScenarioFinetune && o.PretrainEpochs < 1:
		return fmt.Errorf("experiment: %d pre-training epochs, want at least 1", o.PretrainEpochs)
	case o.FinetuneEpochs < 0:
		return fmt.Errorf("experiment: %d fine-tuning epochs, want 0 (none) or more", o.FinetuneEpochs)
	case o.EvalEvery < 0:
		return fmt.Errorf("experiment: evaluation interval %d steps, want 0 (every epoch) or more", o.EvalEvery)
	case o.Steps < 1:
		return fmt.Errorf("experiment: %d interpolation steps, want at least 1", o.Steps)
	case o.Batch < 1:
		return fmt.Errorf("experiment: batch size %d, want at least 1", o.Batch)
	case o.GradBatches < 1 || o.NormBatches < 1:
		return fmt.Errorf("experiment: grad batches %d and BatchNorm batches %d must be at least 1", o.GradBatches, o.NormBatches)
	case !(o.LR > 0 && o.LR < math.Inf(1)):
		return fmt.Errorf("experiment: learning rate %v, want a finite value above 0", o.LR)
	case o.Limit < 0 || o.ValLimit < 0:
		return fmt.Errorf("experiment: limits %d and %d, want 0 (no limit) or more", o.Limit, o.ValLimit)
	case o.Data == "":
		return errors.New("experiment: no data")
	case o.Out == "":
		return errors.New("experiment: no output folder")
	}
	if o.Arch != "" {
		if _, err := models.Parse(o.Arch); err != nil {
			return fmt.Errorf("experiment: %w", err)
		}
	}
	if _, err := convert.ParseSchedule(string(o.Schedule)); err != nil {
		return fmt.Errorf("experiment: %w", err)
	}
	if err := train.CheckSGD(o.Momentum, o.WeightDecay); err != nil {
		return fmt.Errorf("experiment: %w", err)
	}
	for i, m := range o.Methods {
		if err := convert.CheckMethod(m); err != nil {
			return fmt.Errorf("experiment: %w", err)
		}
		if slices.Contains(o.Methods[:i], m) {
			return fmt.Errorf("experiment: method %q listed twice", m)
		}
	}
	for _, s := range o.SummarySteps {
		if s < 0 {
			return fmt.Errorf("experiment: summary step %d, want 0 or more", s)
		}
	}
	if o.Scenario == ScenarioFinetune {
		if len(o.FinetuneClasses) == 0 || (trains && len(o.PretrainClasses) == 0) {
			return errors.New("experiment: the finetune scenario needs pre-training and fine-tuning classes")
		}
		for _, c := range o.FinetuneClasses {
			if slices.Contains(o.PretrainClasses, c) {
				return fmt.Errorf("experiment: class %d is both a pre-training and a fine-tuning class", c)
			}
		}
	}
	return nil
}

// baseline returns the name of the scenario's baseline.
func (o Options) baseline() string {
	if o.Scenario == ScenarioFinetune {
		return BaselineDirect
	}
	return BaselineScratch
}

// summarySteps returns the fine-tuning steps the summary reports.
func (o Options) summarySteps() []int {
	if o.SummarySteps == nil {
		return []int{0, 25, 50, 100, 200, 400}
	}
	return o.SummarySteps
}

// Row is one evaluation: a line of experiment.csv.
type Row struct {
	Scenario string `json:"scenario"`
	// Method is a transfer method, or the baseline in the fine-tuning phase.
	Method string `json:"method"`
	// Phase is PhaseTransfer or PhaseFinetune.
	Phase string `json:"phase"`
	// Step is the transfer step, or the fine-tuning SGD steps taken.
	Step int `json:"step"`
	// Epoch is, for a transfer step, the epoch of the source run that the point's position
	// along the trajectory corresponds to; for fine-tuning, the epochs done (fractional).
	Epoch float64 `json:"epoch"`
	// ValAccuracy is the validation accuracy, from 0 to 1.
	ValAccuracy float64 `json:"val_accuracy"`
	// WallSeconds is the time since the method's phase started.
	WallSeconds float64 `json:"wall_seconds"`
}

// TrainingRun is one of the training runs the experiment starts from.
type TrainingRun struct {
	// Name is "source" or "target", or "pretrain-source" or "pretrain-target".
	Name string `json:"name"`
	// Checkpoints are the run's files in order; Trained says whether the experiment trained
	// them (into Out/Name) or was given them.
	Checkpoints []string `json:"checkpoints"`
	Trained     bool     `json:"trained"`
	// Final is the last checkpoint's score on the validation examples of the run's classes;
	// Seconds the training time (0 for a given run).
	Final   convert.Score `json:"final"`
	Seconds float64       `json:"seconds"`
}

// MethodSummary is one line of the summary table.
type MethodSummary struct {
	Method string `json:"method"`
	// Transfer sums up the transfer; nil for the baseline.
	Transfer *TransferSummary `json:"transfer,omitempty"`
	// Finetune is the validation accuracy at each summary step that the fine-tuning evaluated.
	Finetune map[int]float64 `json:"finetune,omitempty"`
	// FinetuneSteps is the length of the fine-tuning, FinetuneFinal its last accuracy.
	FinetuneSteps int     `json:"finetune_steps"`
	FinetuneFinal float64 `json:"finetune_final"`
	// ReachStep is the first evaluated fine-tuning step whose accuracy is within ReachMargin of
	// the target run's final accuracy, -1 if none is.
	ReachStep int `json:"reach_step"`
	// Seconds is the wall time of the method's transfer and fine-tuning.
	Seconds float64 `json:"seconds"`
}

// TransferSummary sums up one method's transfer.
type TransferSummary struct {
	BestStep int     `json:"best_step"`
	Best     float64 `json:"best_accuracy"`
	Final    float64 `json:"final_accuracy"`
	Seconds  float64 `json:"seconds"`
}

// Report is experiment.json: the settings, the runs, every evaluation and the summary.
type Report struct {
	// Schema is Schema.
	Schema   int     `json:"schema_version"`
	Settings Options `json:"settings"`
	// Baseline is the name of the fine-tuning baseline: BaselineScratch or BaselineDirect.
	Baseline string `json:"baseline"`
	// Runs are the source and target runs, after their pre-training runs in ScenarioFinetune.
	Runs []TrainingRun `json:"runs"`
	// InitScore is the target's starting point before any transfer (the second pre-trained
	// model in ScenarioFinetune); TargetFinal the end of the target run, the accuracy the
	// fine-tunings are measured against.
	InitScore   convert.Score `json:"init_score"`
	TargetFinal convert.Score `json:"target_final"`
	// TrainExamples and ValExamples are the sizes of the data the transfers and fine-tunings
	// use.
	TrainExamples int             `json:"train_examples"`
	ValExamples   int             `json:"val_examples"`
	Rows          []Row           `json:"rows"`
	Summary       []MethodSummary `json:"summary"`
	Files         []string        `json:"files"`
	Seconds       float64         `json:"seconds"`
}

// experiment holds what a running experiment needs.
type experiment struct {
	ctx       context.Context
	opt       Options
	rep       *Report
	trainSet  dataset.Source // the examples of the transfers and the fine-tunings
	valSet    dataset.Source
	src       *convert.Trajectory // the linear source trajectory: first and last checkpoints
	srcEpochs int                 // the epochs the source run spans
	target    *convert.Trajectory
	init      *graph.Model // the target's starting point
	// preTrain and preVal are the pre-training examples of ScenarioFinetune, opened when first
	// needed.
	preTrain, preVal dataset.Source
}

// Run compares the transfer methods on one scenario and writes, into opt.Out,
// experiment.csv (every evaluation), experiment.json (the report) and experiment.png (the
// plots), next to the folders of the training runs: source and target (pre-training first in
// ScenarioFinetune, unless the trajectories are given), and finetune/METHOD for each method
// and the baseline.
//
// The source run is transferred onto the target run's starting point by each method, over
// the linear trajectory from its first checkpoint to its last; the oracle matches the target
// run's own update. Each method's best step, and the target's starting point itself (the
// baseline), are then fine-tuned with the same SGD and example order for FinetuneEpochs.
// When ctx ends, the running transfer or training stops between two steps and Run returns
// ctx's error wrapped.
func Run(ctx context.Context, opt Options) (*Report, error) {
	if err := opt.Check(); err != nil {
		return nil, err
	}
	start := time.Now()
	inputs := append(slices.Clone(opt.SourceTrajectory), opt.TargetTrajectory...)
	if err := convert.PrepareDir(opt.Out, inputs...); err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(opt.Out); err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	} else if len(entries) > 0 {
		return nil, fmt.Errorf("experiment: the output folder %s is not empty (it holds %s): choose another folder or empty it", opt.Out, entries[0].Name())
	}
	e := &experiment{ctx: ctx, opt: opt,
		rep: &Report{Schema: Schema, Settings: opt, Baseline: opt.baseline()}}
	var classes []int // every class in ScenarioScratch
	if opt.Scenario == ScenarioFinetune {
		classes = opt.FinetuneClasses
	}
	var err error
	if e.trainSet, e.valSet, err = e.open(classes); err != nil {
		return nil, err
	}
	e.rep.TrainExamples, e.rep.ValExamples = e.trainSet.Len(), e.valSet.Len()
	var source *convert.Trajectory
	if source, err = e.run("source", opt.SourceTrajectory, opt.SourceSeed); err != nil {
		return nil, err
	}
	if e.target, err = e.run("target", opt.TargetTrajectory, opt.TargetSeed); err != nil {
		return nil, err
	}
	e.srcEpochs = len(source.Paths) - 1
	e.src = &convert.Trajectory{Paths: []string{source.Paths[0], source.Paths[e.srcEpochs]},
		Checkpoints: []*graph.Model{source.Checkpoints[0], source.Checkpoints[e.srcEpochs]}}
	e.init = e.target.Checkpoints[0]
	if err := e.src.CheckInit(e.init); err != nil {
		return nil, err
	}
	if e.rep.InitScore, err = convert.Evaluate(e.init, nil, e.valSet, opt.Batch, nil); err != nil {
		return nil, err
	}
	e.rep.TargetFinal = e.rep.Runs[len(e.rep.Runs)-1].Final
	for _, method := range opt.Methods {
		best, sum, err := e.transfer(method)
		if err != nil {
			return nil, err
		}
		seconds, err := e.finetune(method, best)
		if err != nil {
			return nil, err
		}
		sum.Seconds = sum.Transfer.Seconds + seconds
		e.rep.Summary = append(e.rep.Summary, sum)
	}
	if opt.FinetuneEpochs > 0 {
		seconds, err := e.finetune(e.rep.Baseline, nil)
		if err != nil {
			return nil, err
		}
		e.rep.Summary = append(e.rep.Summary, MethodSummary{Method: e.rep.Baseline, Seconds: seconds})
	}
	e.summarize()
	return e.rep, e.write(start)
}

// open opens the training and validation splits of the data with the given classes (nil:
// all).
func (e *experiment) open(classes []int) (train, val dataset.Source, err error) {
	o := e.opt
	opt := dataset.Options{Split: dataset.SplitTrain, ValFraction: o.ValFraction, Classes: classes,
		Relabel: o.Relabel && len(classes) > 0, Limit: o.Limit, Mean: o.Mean, Std: o.Std}
	if train, err = dataset.Open(o.Data, opt); err != nil {
		return nil, nil, err
	}
	opt.Split, opt.Limit = dataset.SplitVal, o.ValLimit
	if val, err = dataset.Open(o.Data, opt); err != nil {
		return nil, nil, err
	}
	return train, val, nil
}

// run loads the run called name from the given files, or trains it from models.New(arch,
// seed), pre-training it first in ScenarioFinetune, and records it in the report.
func (e *experiment) run(name string, given []string, seed uint64) (*convert.Trajectory, error) {
	if len(given) > 0 {
		traj, err := convert.LoadTrajectory(given...)
		if err != nil {
			return nil, err
		}
		final, err := convert.Evaluate(traj.Checkpoints[len(traj.Checkpoints)-1], nil, e.valSet, e.opt.Batch, nil)
		if err != nil {
			return nil, fmt.Errorf("experiment: %s run: %w", name, err)
		}
		e.rep.Runs = append(e.rep.Runs, TrainingRun{Name: name, Checkpoints: traj.Paths, Final: final})
		return traj, nil
	}
	arch, err := models.Parse(e.opt.Arch)
	if err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	m, err := models.New(arch, seed)
	if err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	if e.opt.Scenario == ScenarioFinetune {
		if e.preTrain == nil {
			if e.preTrain, e.preVal, err = e.open(e.opt.PretrainClasses); err != nil {
				return nil, err
			}
		}
		pre, err := e.trainRun("pretrain-"+name, m, e.opt.PretrainEpochs, seed, e.preTrain, e.preVal)
		if err != nil {
			return nil, err
		}
		m = pre.Checkpoints[len(pre.Checkpoints)-1]
	}
	return e.trainRun(name, m, e.opt.Epochs, seed, e.trainSet, e.valSet)
}

// trainRun trains the run called name from m into Out/name, for the given epochs and with the
// given example order, and records it in the report.
func (e *experiment) trainRun(name string, m *graph.Model, epochs int, seed uint64, trainData, valData dataset.Source) (*convert.Trajectory, error) {
	dir := filepath.Join(e.opt.Out, name)
	rep, err := train.Run(e.ctx, m, nil, e.trainOptions(name, dir, epochs, seed, 0, trainData, valData))
	if err != nil {
		return nil, fmt.Errorf("experiment: %s run: %w", name, err)
	}
	traj, err := convert.LoadTrajectory(dir)
	if err != nil {
		return nil, err
	}
	e.rep.Runs = append(e.rep.Runs, TrainingRun{Name: name, Checkpoints: traj.Paths, Trained: true,
		Final: rep.Evals[len(rep.Evals)-1].Score, Seconds: rep.Seconds})
	return traj, nil
}

// trainOptions are the SGD settings of every training run of the experiment.
func (e *experiment) trainOptions(stage, dir string, epochs int, seed uint64, evalEvery int, trainData, valData dataset.Source) train.Options {
	o := e.opt
	opt := train.Options{Epochs: epochs, Batch: o.Batch, LR: o.LR, Momentum: o.Momentum, WeightDecay: o.WeightDecay,
		Schedule: train.Constant, Seed: seed, EvalEvery: evalEvery, Out: dir, Data: o.Data, Train: trainData, Val: valData}
	if o.OnTrain != nil {
		opt.Progress = func(p train.Progress) { o.OnTrain(stage, p) }
	}
	return opt
}

// transfer transfers the source run onto the target's starting point with method, records
// every step, and returns the parameters of the best one and the method's summary line.
func (e *experiment) transfer(method string) (params.Set, MethodSummary, error) {
	start := time.Now()
	stage := "transfer " + method
	opt := convert.Options{Method: method, Steps: e.opt.Steps, Schedule: e.opt.Schedule, Batch: e.opt.Batch,
		GradBatches: e.opt.GradBatches, NormBatches: e.opt.NormBatches, Seed: e.opt.Seed,
		Train: e.trainSet, Val: e.valSet, Target: e.target}
	if e.opt.OnStep != nil {
		opt.Progress = func(r convert.StepReport) { e.opt.OnStep(stage, r) }
	}
	var best params.Set
	var bestAcc float64
	res, err := convert.Transfer(e.ctx, e.src, e.init, opt, func(r convert.StepReport, p params.Set) error {
		if best == nil || r.Accuracy > bestAcc { // as Result.Best: the first of the best
			best, bestAcc = p.Clone(), r.Accuracy // p is the transfer's working copy
		}
		e.rep.Rows = append(e.rep.Rows, Row{Scenario: e.opt.Scenario, Method: method, Phase: PhaseTransfer,
			Step: r.Step, Epoch: r.Position * float64(e.srcEpochs), ValAccuracy: r.Accuracy,
			WallSeconds: time.Since(start).Seconds()})
		return nil
	})
	if err != nil {
		return nil, MethodSummary{}, fmt.Errorf("experiment: %s: %w", stage, err)
	}
	return best, MethodSummary{Method: method, Transfer: &TransferSummary{
		BestStep: res.Best, Best: res.Steps[res.Best].Accuracy, Final: res.Steps[len(res.Steps)-1].Accuracy,
		Seconds: time.Since(start).Seconds()}}, nil
}

// finetune fine-tunes the target's starting point with the parameters p (nil: its own) into
// Out/finetune/method, records every evaluation and returns the time it took; it does nothing
// when FinetuneEpochs is 0.
func (e *experiment) finetune(method string, p params.Set) (float64, error) {
	if e.opt.FinetuneEpochs == 0 {
		return 0, nil
	}
	stage := "finetune " + method
	dir := filepath.Join(e.opt.Out, "finetune", method)
	rep, err := train.Run(e.ctx, e.init, p, e.trainOptions(stage, dir, e.opt.FinetuneEpochs, e.opt.Seed, e.opt.EvalEvery, e.trainSet, e.valSet))
	if err != nil {
		return 0, fmt.Errorf("experiment: %s: %w", stage, err)
	}
	for _, ev := range rep.Evals {
		e.rep.Rows = append(e.rep.Rows, Row{Scenario: e.opt.Scenario, Method: method, Phase: PhaseFinetune,
			Step: ev.Step, Epoch: ev.Epoch, ValAccuracy: ev.Accuracy, WallSeconds: ev.Seconds})
	}
	return rep.Seconds, nil
}

// summarize completes the summary lines from the fine-tuning rows.
func (e *experiment) summarize() {
	steps := e.opt.summarySteps()
	for i := range e.rep.Summary {
		s := &e.rep.Summary[i]
		s.ReachStep = -1
		for _, r := range e.rep.Rows {
			if r.Method != s.Method || r.Phase != PhaseFinetune {
				continue
			}
			if slices.Contains(steps, r.Step) {
				if s.Finetune == nil {
					s.Finetune = map[int]float64{}
				}
				s.Finetune[r.Step] = r.ValAccuracy
			}
			if s.ReachStep < 0 && r.ValAccuracy >= e.rep.TargetFinal.Accuracy-ReachMargin {
				s.ReachStep = r.Step
			}
			s.FinetuneSteps, s.FinetuneFinal = r.Step, r.ValAccuracy
		}
	}
}

// write writes experiment.csv, experiment.png and experiment.json into the output folder.
func (e *experiment) write(start time.Time) error {
	var csvData, png bytes.Buffer
	if err := e.rep.WriteCSV(&csvData); err != nil {
		return err
	}
	if err := e.rep.WritePNG(&png); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"experiment.csv", csvData.Bytes()}, {"experiment.png", png.Bytes()}} {
		if err := graph.WriteFileAtomic(filepath.Join(e.opt.Out, f.name), f.data); err != nil {
			return fmt.Errorf("experiment: %w", err)
		}
		e.rep.Files = append(e.rep.Files, f.name)
	}
	e.rep.Files = append(e.rep.Files, "experiment.json")
	e.rep.Seconds = time.Since(start).Seconds()
	return convert.WriteJSON(filepath.Join(e.opt.Out, "experiment.json"), e.rep)
}

// WriteCSV writes the rows as CSV with a header: scenario, method, phase, step, epoch,
// val_accuracy (from 0 to 1), wall_seconds.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"scenario", "method", "phase", "step", "epoch", "val_accuracy", "wall_seconds"})
	for _, row := range r.Rows {
		cw.Write([]string{row.Scenario, row.Method, row.Phase, strconv.Itoa(row.Step),
			strconv.FormatFloat(row.Epoch, 'f', 4, 64), strconv.FormatFloat(row.ValAccuracy, 'f', 6, 64),
			strconv.FormatFloat(row.WallSeconds, 'f', 3, 64)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("experiment: %w", err)
	}
	return nil
}

// Markdown returns the summary as a Markdown paragraph and table: per method, the transfer's
// best validation accuracy, the fine-tuning's accuracy at the summary steps it evaluated and at
// its end, the first step within ReachMargin of the target run's final accuracy, and the wall
// time.
func (r *Report) Markdown() string {
	var b strings.Builder
	s := r.Settings
	fmt.Fprintf(&b, "Scenario %s, %d training and %d validation examples: the target before any transfer %s, "+
		"the target run's final accuracy %s.\n\n", s.Scenario, r.TrainExamples, r.ValExamples,
		percent(r.InitScore.Accuracy), percent(r.TargetFinal.Accuracy))
	var steps []int
	for _, st := range s.summarySteps() {
		for _, m := range r.Summary {
			if _, ok := m.Finetune[st]; ok {
				steps = append(steps, st)
				break
			}
		}
	}
	b.WriteString("| method | transfer best (step) |")
	for _, st := range steps {
		fmt.Fprintf(&b, " step %d |", st)
	}
	if s.FinetuneEpochs > 0 {
		fmt.Fprintf(&b, " fine-tuned | reaches target -%.1f |", 100*ReachMargin)
	}
	b.WriteString(" time |\n|---|---|")
	b.WriteString(strings.Repeat("---|", len(steps)))
	if s.FinetuneEpochs > 0 {
		b.WriteString("---|---|")
	}
	b.WriteString("---|\n")
	for _, m := range r.Summary {
		transfer := "-"
		if m.Transfer != nil {
			transfer = fmt.Sprintf("%s (%d)", percent(m.Transfer.Best), m.Transfer.BestStep)
		}
		fmt.Fprintf(&b, "| %s | %s |", m.Method, transfer)
		for _, st := range steps {
			if acc, ok := m.Finetune[st]; ok {
				fmt.Fprintf(&b, " %s |", percent(acc))
			} else {
				b.WriteString(" - |")
			}
		}
		if s.FinetuneEpochs > 0 {
			reach := "never"
			if m.ReachStep >= 0 {
				reach = fmt.Sprintf("step %d", m.ReachStep)
			}
			fmt.Fprintf(&b, " %s (%d steps) | %s |", percent(m.FinetuneFinal), m.FinetuneSteps, reach)
		}
		fmt.Fprintf(&b, " %.1f s |\n", m.Seconds)
	}
	return b.String()
}

// percent formats an accuracy from 0 to 1 as a percentage.
func percent(acc float64) string {
	return fmt.Sprintf("%.2f%%", 100*acc)
}
