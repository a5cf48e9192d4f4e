// Package train trains models with stochastic gradient descent as torch.optim.SGD does
// (momentum, weight decay, a constant or cosine learning rate), updating BatchNorm running
// statistics as PyTorch's training mode does. Run writes the trajectory it follows as ONNX
// checkpoints that convert.LoadTrajectory reads back; fine-tuning is training started from a
// trained checkpoint.
package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/ltransfer/ltransfer/convert"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/internal/errwrap"
	"github.com/ltransfer/ltransfer/params"
)

// Schedule is how the learning rate changes over a training run.
type Schedule string

// The learning-rate schedules.
const (
	// Constant keeps the base rate: lr_t = lr.
	Constant Schedule = "constant"
	// Cosine anneals the rate to zero over the run's T steps, as torch.optim.lr_scheduler.
	// CosineAnnealingLR(T_max=T, eta_min=0) stepped after every iteration:
	// lr_t = lr * (1 + cos(pi t / T)) / 2 for step t = 0 .. T-1.
	Cosine Schedule = "cosine"
)

// ParseSchedule reads a learning-rate schedule name.
func ParseSchedule(s string) (Schedule, error) {
	switch Schedule(s) {
	case Constant, Cosine:
		return Schedule(s), nil
	}
	return "", fmt.Errorf("train: unknown learning-rate schedule %q (want constant or cosine)", s)
}

// rate returns the learning rate of step t (from 0) of a run of total steps.
func (s Schedule) rate(lr float64, t, total int) float64 {
	if s == Cosine {
		return lr * (1 + math.Cos(math.Pi*float64(t)/float64(total))) / 2
	}
	return lr
}

// Trainer takes steps of stochastic gradient descent on one model, with the semantics of
// torch.optim.SGD (dampening 0, no Nesterov) applied to the trainable parameters:
//
//	d = g + weightDecay*p;  b = momentum*b + d  (b = d at the first step);  p = p - lr*b
//
// computed in float32 as PyTorch does. Each step's forward pass runs BatchNorm in training mode
// and then moves every running statistic towards the batch's, as PyTorch's BatchNorm does:
// running = m*running + (1-m)*batch, with the batch's unbiased variance and m the node's ONNX
// momentum attribute (0.9 by default, which is PyTorch's momentum 0.1). A Trainer is not safe
// for concurrent use.
type Trainer struct {
	momentum, weightDecay float32
	params                params.Set // every float initializer: parameters and running statistics
	velocity              params.Set // the momentum buffers, nil before the first step
	trainable             []string
	normMomentum          map[string]float64 // running statistic -> its BatchNorm's momentum
	// r keeps a session per batch size and the input buffers.
	r *convert.Runner
}

// NewTrainer starts training model m from the parameters init (nil: the model's own), which must
// hold every float initializer of m. Fine-tuning is training started from a trained checkpoint;
// the momentum buffers always start empty.
func NewTrainer(m *graph.Model, init params.Set, momentum, weightDecay float64) (*Trainer, error) {
	if err := CheckSGD(momentum, weightDecay); err != nil {
		return nil, err
	}
	if init == nil {
		init = m.Params
	}
	// The runner's evaluation batch size is not used.
	r, err := convert.NewRunner(m, 1)
	if err != nil {
		return nil, err
	}
	t := &Trainer{
		momentum: float32(momentum), weightDecay: float32(weightDecay),
		params: params.Set{}, trainable: m.Trainable(), normMomentum: map[string]float64{}, r: r,
	}
	for _, info := range m.Infos {
		p, ok := init[info.Name]
		if !ok {
			return nil, fmt.Errorf("train: the initialization lacks the parameter %q of %s", info.Name, m.Path)
		}
		t.params[info.Name] = p
	}
	t.params = t.params.Clone()
	if err := t.params.CheckFinite(t.trainable); err != nil {
		return nil, errwrap.At("train", "initialization", err)
	}
	for _, n := range m.Nodes {
		if n.Op != "BatchNormalization" || len(n.Inputs) < 5 {
			continue
		}
		mom := 0.9 // the ONNX default
		if v, ok := n.Attrs["momentum"].(float32); ok {
			mom = float64(v)
		}
		t.normMomentum[n.Inputs[3]], t.normMomentum[n.Inputs[4]] = mom, mom
	}
	return t, nil
}

// Step takes one SGD step with learning rate lr on a batch: x holds len(y) examples one after
// the other, y their labels. It returns the batch's mean cross-entropy before the update.
func (t *Trainer) Step(x []float32, y []int64, lr float64) (float64, error) {
	if len(y) == 0 {
		return 0, errors.New("train: a training step needs at least one example")
	}
	s, err := t.r.Session(len(y), t.params)
	if err != nil {
		return 0, err
	}
	loss, grads, err := s.LossAndGrad(x, y)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return 0, fmt.Errorf("train: the training loss is %v (is the learning rate too high?)", loss)
	}
	for name, stat := range s.BatchStats() {
		run, ok := t.params[name]
		if !ok || len(run.Data) != len(stat) {
			return 0, fmt.Errorf("train: BatchNorm statistic %q is not a float initializer with %d values", name, len(stat))
		}
		m := t.normMomentum[name]
		for i, v := range stat {
			run.Data[i] = float32(m*float64(run.Data[i]) + (1-m)*v)
		}
	}
	if t.momentum != 0 && t.velocity == nil {
		// Zero buffers make the first step's b = momentum*0 + d = d exactly, as PyTorch's.
		t.velocity = t.params.Subset(t.trainable).ZerosLike()
	}
	rate := float32(lr)
	for _, name := range t.trainable {
		p, g := t.params[name].Data, grads[name].Data
		if t.momentum == 0 {
			for i := range p {
				p[i] -= rate * (g[i] + t.weightDecay*p[i])
			}
			continue
		}
		b := t.velocity[name].Data
		for i := range p {
			b[i] = t.momentum*b[i] + (g[i] + t.weightDecay*p[i])
			p[i] -= rate * b[i]
		}
	}
	return loss, nil
}

// Params returns a copy of the current parameters and running statistics.
func (t *Trainer) Params() params.Set { return t.params.Clone() }

// Schema is the version of the train.json layout; it changes when fields change meaning or
// disappear (new fields keep it).
const Schema = 1

// Options configure Run. Their JSON form is the settings record of train.json.
type Options struct {
	// Epochs is the number of passes over the training data.
	Epochs int `json:"epochs"`
	// Batch is the mini-batch size of training and evaluation. Each epoch visits the training
	// data in the order dataset.Shuffle(n, Seed, e) for epoch e = 0, 1, ..., cut into batches of
	// Batch; the last, partial batch is kept, as PyTorch's DataLoader does by default.
	Batch int `json:"batch"`
	// LR is the base learning rate; Momentum and WeightDecay are those of torch.optim.SGD.
	LR          float64 `json:"lr"`
	Momentum    float64 `json:"momentum"`
	WeightDecay float64 `json:"weight_decay"`
	// Schedule is how the learning rate changes, step by step, over the whole run.
	Schedule Schedule `json:"schedule"`
	// Seed draws the order of the examples.
	Seed uint64 `json:"seed"`
	// EverySteps, when positive, writes a checkpoint every EverySteps steps (and after the last
	// step) instead of one per epoch: ckpt_00k.onnx is then the k-th of them.
	EverySteps int `json:"every_steps"`
	// EvalEvery, when positive, also evaluates on the validation data every EvalEvery steps;
	// the initialization and the end of every epoch are always evaluated.
	EvalEvery int `json:"eval_every"`
	// Out is the output folder: ckpt_000.onnx (the initialization), ckpt_001.onnx, ... and
	// train.json. It is created; it must not already hold ONNX files.
	Out string `json:"out"`
	// Data and ValData name the training and validation data; they are only recorded.
	Data    string `json:"data,omitempty"`
	ValData string `json:"val_data,omitempty"`
	// Train provides the training batches; Val the evaluation examples.
	Train dataset.Source `json:"-"`
	Val   dataset.Source `json:"-"`
	// Progress, when set, is called after every step.
	Progress func(Progress) `json:"-"`
}

// Check returns an error naming the first invalid setting; the data sources are checked by
// Run.
func (o Options) Check() error {
	switch {
	case o.Epochs < 1:
		return fmt.Errorf("train: %d epochs, want at least 1", o.Epochs)
	case o.Batch < 1:
		return fmt.Errorf("train: batch size %d, want at least 1", o.Batch)
	case !(o.LR > 0 && o.LR < math.Inf(1)):
		return fmt.Errorf("train: learning rate %v, want a finite value above 0", o.LR)
	case o.EverySteps < 0:
		return fmt.Errorf("train: checkpoint interval %d steps, want 0 (every epoch) or more", o.EverySteps)
	case o.EvalEvery < 0:
		return fmt.Errorf("train: evaluation interval %d steps, want 0 (every epoch) or more", o.EvalEvery)
	case o.Out == "":
		return errors.New("train: no output folder")
	}
	if _, err := ParseSchedule(string(o.Schedule)); err != nil {
		return err
	}
	return CheckSGD(o.Momentum, o.WeightDecay)
}

// CheckSGD checks the momentum and weight decay of SGD: momentum in [0, 1), a finite weight
// decay of at least 0.
func CheckSGD(momentum, weightDecay float64) error {
	if !(momentum >= 0 && momentum < 1) {
		return fmt.Errorf("train: momentum %v, want a value in [0, 1)", momentum)
	}
	if !(weightDecay >= 0 && weightDecay < math.Inf(1)) {
		return fmt.Errorf("train: weight decay %v, want a finite value of at least 0", weightDecay)
	}
	return nil
}

// Progress describes the step just taken.
type Progress struct {
	// Epoch is the epoch in progress, from 1; Step the steps taken, of Steps in the run.
	Epoch, Step, Steps int
	// LR is the learning rate the step used.
	LR float64
	// Loss is the mean training loss over the epoch's examples so far.
	Loss float64
	// Eval is the validation score when this step was evaluated, nil otherwise.
	Eval *Eval
}

// Eval is one evaluation on the validation data.
type Eval struct {
	// Epoch is the number of epochs done, fractional within an epoch (steps / steps per epoch).
	Epoch float64 `json:"epoch"`
	Step  int     `json:"step"`
	convert.Score
	// Seconds is the time since training started.
	Seconds float64 `json:"seconds"`
}

// EpochSummary sums up one epoch.
type EpochSummary struct {
	Epoch int `json:"epoch"`
	// Step is the number of steps taken at the end of the epoch.
	Step int `json:"step"`
	// TrainLoss is the mean training loss over the epoch's examples, each batch's loss taken
	// before its update.
	TrainLoss float64 `json:"train_loss"`
	// Score is the validation score at the end of the epoch.
	convert.Score
	// Seconds is the time since training started.
	Seconds float64 `json:"seconds"`
}

// Report is train.json: the settings, every evaluation and every epoch of a run.
type Report struct {
	// Schema is Schema.
	Schema int `json:"schema_version"`
	// Init is the file of the model training started from.
	Init          string         `json:"init"`
	Settings      Options        `json:"settings"`
	TrainExamples int            `json:"train_examples"`
	ValExamples   int            `json:"val_examples"`
	StepsPerEpoch int            `json:"steps_per_epoch"`
	Evals         []Eval         `json:"evals"`
	Epochs        []EpochSummary `json:"epochs"`
	// Files are the checkpoints written, in order, then train.json once the run is complete.
	Files   []string `json:"files"`
	Seconds float64  `json:"seconds"`
}

// Run trains model m from the parameters init (nil: the model's own) with SGD, as opt says,
// writing the trajectory into opt.Out: ckpt_000.onnx is the initialization, then one checkpoint
// per epoch (or every opt.EverySteps steps), named so that their natural order is the training
// order, and train.json, rewritten after every evaluation. The folder is a trajectory that
// LoadTrajectory accepts. Run returns the report it wrote. When ctx ends, Run stops between
// two steps (every checkpoint and train.json written so far is complete) and returns ctx's
// error wrapped.
func Run(ctx context.Context, m *graph.Model, init params.Set, opt Options) (*Report, error) {
	if err := opt.Check(); err != nil {
		return nil, err
	}
	if opt.Train == nil || opt.Val == nil {
		return nil, errors.New("train: training and validation data are required")
	}
	n := opt.Train.Len()
	if n == 0 {
		return nil, errors.New("train: no training examples")
	}
	tr, err := NewTrainer(m, init, opt.Momentum, opt.WeightDecay)
	if err != nil {
		return nil, err
	}
	eval, err := convert.NewRunner(m, opt.Batch)
	if err != nil {
		return nil, err
	}
	if err := prepareTrainDir(opt.Out, m.Path); err != nil {
		return nil, err
	}
	start := time.Now()
	perEpoch := (n + opt.Batch - 1) / opt.Batch
	total := opt.Epochs * perEpoch
	rep := &Report{Schema: Schema, Init: m.Path, Settings: opt, TrainExamples: n,
		ValExamples: opt.Val.Len(), StepsPerEpoch: perEpoch}
	save := func(step int) error {
		name := fmt.Sprintf("ckpt_%03d.onnx", len(rep.Files))
		if err := m.Save(filepath.Join(opt.Out, name), tr.params); err != nil {
			return errwrap.At("train", fmt.Sprintf("step %d", step), err)
		}
		rep.Files = append(rep.Files, name)
		return nil
	}
	evaluate := func(step int) (*Eval, error) {
		score, err := eval.Evaluate(tr.params, opt.Val, nil)
		if err != nil {
			return nil, errwrap.At("train", fmt.Sprintf("step %d", step), err)
		}
		rep.Evals = append(rep.Evals, Eval{Epoch: float64(step) / float64(perEpoch), Step: step,
			Score: score, Seconds: time.Since(start).Seconds()})
		rep.Seconds = time.Since(start).Seconds()
		ev := rep.Evals[len(rep.Evals)-1]
		return &ev, writeTrainReport(opt.Out, rep)
	}
	if err := save(0); err != nil {
		return nil, err
	}
	if _, err := evaluate(0); err != nil {
		return nil, err
	}
	step := 0
	for epoch := range opt.Epochs {
		batches, err := dataset.Batches(dataset.Shuffle(n, opt.Seed, uint64(epoch)), opt.Batch)
		if err != nil {
			return nil, err
		}
		var lossSum float64
		seen := 0
		for i, idx := range batches {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("train: stopped before step %d: %w", step+1, err)
			}
			x, y, err := tr.r.Load(opt.Train, idx)
			if err != nil {
				return nil, err
			}
			lr := opt.Schedule.rate(opt.LR, step, total)
			loss, err := tr.Step(x, y, lr)
			if err != nil {
				return nil, errwrap.At("train", fmt.Sprintf("step %d", step+1), err)
			}
			step++
			lossSum += loss * float64(len(idx))
			seen += len(idx)
			if opt.EverySteps > 0 && (step%opt.EverySteps == 0 || step == total) {
				if err := save(step); err != nil {
					return nil, err
				}
			}
			var ev *Eval
			if last := i == len(batches)-1; last || (opt.EvalEvery > 0 && step%opt.EvalEvery == 0) {
				if ev, err = evaluate(step); err != nil {
					return nil, err
				}
			}
			if opt.Progress != nil {
				opt.Progress(Progress{Epoch: epoch + 1, Step: step, Steps: total, LR: lr, Loss: lossSum / float64(seen), Eval: ev})
			}
		}
		if opt.EverySteps == 0 {
			if err := save(step); err != nil {
				return nil, err
			}
		}
		last := rep.Evals[len(rep.Evals)-1]
		rep.Epochs = append(rep.Epochs, EpochSummary{Epoch: epoch + 1, Step: step, TrainLoss: lossSum / float64(seen),
			Score: last.Score, Seconds: time.Since(start).Seconds()})
	}
	rep.Files = append(rep.Files, "train.json")
	rep.Seconds = time.Since(start).Seconds()
	if err := writeTrainReport(opt.Out, rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// prepareTrainDir creates the output folder of a run and refuses one that already holds ONNX
// files: checkpoints of another run would join the trajectory.
func prepareTrainDir(dir, init string) error {
	var inputs []string
	if init != "" {
		inputs = append(inputs, init)
	}
	if err := convert.PrepareDir(dir, inputs...); err != nil {
		return err
	}
	files, err := convert.TrajectoryFiles(dir)
	if err != nil {
		return err
	}
	if len(files) > 0 {
		return fmt.Errorf("train: the output folder %s already holds ONNX files (%s): choose another folder or empty it", dir, filepath.Base(files[0]))
	}
	return nil
}

func writeTrainReport(dir string, rep *Report) error {
	return convert.WriteJSON(filepath.Join(dir, "train.json"), rep)
}
