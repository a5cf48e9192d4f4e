package convert

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"time"

	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/params"
)

// LRSchedule is how the learning rate changes over a training run.
type LRSchedule string

// The learning-rate schedules.
const (
	// ConstantLR keeps the base rate: lr_t = lr.
	ConstantLR LRSchedule = "constant"
	// CosineLR anneals the rate to zero over the run's T steps, as torch.optim.lr_scheduler.
	// CosineAnnealingLR(T_max=T, eta_min=0) stepped after every iteration:
	// lr_t = lr * (1 + cos(pi t / T)) / 2 for step t = 0 .. T-1.
	CosineLR LRSchedule = "cosine"
)

// ParseLRSchedule reads a learning-rate schedule name.
func ParseLRSchedule(s string) (LRSchedule, error) {
	switch LRSchedule(s) {
	case ConstantLR, CosineLR:
		return LRSchedule(s), nil
	}
	return "", fmt.Errorf("convert: unknown learning-rate schedule %q (want constant or cosine)", s)
}

// rate returns the learning rate of step t (from 0) of a run of total steps.
func (s LRSchedule) rate(lr float64, t, total int) float64 {
	if s == CosineLR {
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
	// r keeps a session per batch size and the input buffers; its batch size is not used.
	r *runner
}

// NewTrainer starts training model m from the parameters init (nil: the model's own), which must
// hold every float initializer of m. Fine-tuning is training started from a trained checkpoint;
// the momentum buffers always start empty.
func NewTrainer(m *graph.Model, init params.Set, momentum, weightDecay float64) (*Trainer, error) {
	if err := checkSGD(momentum, weightDecay); err != nil {
		return nil, err
	}
	if init == nil {
		init = m.Params
	}
	t := &Trainer{
		momentum: float32(momentum), weightDecay: float32(weightDecay),
		params: params.Set{}, trainable: m.Trainable(), normMomentum: map[string]float64{},
		r: &runner{m: m, sessions: map[int]*graph.Session{}},
	}
	for _, info := range m.Infos {
		p, ok := init[info.Name]
		if !ok {
			return nil, fmt.Errorf("convert: the initialization lacks the parameter %q of %s", info.Name, m.Path)
		}
		t.params[info.Name] = p
	}
	t.params = t.params.Clone()
	if err := t.params.CheckFinite(t.trainable); err != nil {
		return nil, fmt.Errorf("convert: initialization: %w", err)
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
		return 0, errors.New("convert: a training step needs at least one example")
	}
	s, err := t.r.session(len(y), t.params)
	if err != nil {
		return 0, err
	}
	loss, grads, err := s.LossAndGrad(x, y)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return 0, fmt.Errorf("convert: the training loss is %v (is the learning rate too high?)", loss)
	}
	for name, stat := range s.BatchStats() {
		run, ok := t.params[name]
		if !ok || len(run.Data) != len(stat) {
			return 0, fmt.Errorf("convert: BatchNorm statistic %q is not a float initializer with %d values", name, len(stat))
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

// TrainSchema is the version of the train.json layout; it changes when fields change meaning or
// disappear (new fields keep it).
const TrainSchema = 1

// TrainOptions configure Train. Their JSON form is the settings record of train.json.
type TrainOptions struct {
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
	Schedule LRSchedule `json:"schedule"`
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
	Progress func(TrainProgress) `json:"-"`
}

// Check returns an error naming the first invalid setting; the data sources are checked by
// Train.
func (o TrainOptions) Check() error {
	switch {
	case o.Epochs < 1:
		return fmt.Errorf("convert: %d epochs, want at least 1", o.Epochs)
	case o.Batch < 1:
		return fmt.Errorf("convert: batch size %d, want at least 1", o.Batch)
	case !(o.LR > 0 && o.LR < math.Inf(1)):
		return fmt.Errorf("convert: learning rate %v, want a finite value above 0", o.LR)
	case o.EverySteps < 0:
		return fmt.Errorf("convert: checkpoint interval %d steps, want 0 (every epoch) or more", o.EverySteps)
	case o.EvalEvery < 0:
		return fmt.Errorf("convert: evaluation interval %d steps, want 0 (every epoch) or more", o.EvalEvery)
	case o.Out == "":
		return errors.New("convert: no output folder")
	}
	if _, err := ParseLRSchedule(string(o.Schedule)); err != nil {
		return err
	}
	return checkSGD(o.Momentum, o.WeightDecay)
}

// checkSGD checks the momentum and weight decay of SGD.
func checkSGD(momentum, weightDecay float64) error {
	if !(momentum >= 0 && momentum < 1) {
		return fmt.Errorf("convert: momentum %v, want a value in [0, 1)", momentum)
	}
	if !(weightDecay >= 0 && weightDecay < math.Inf(1)) {
		return fmt.Errorf("convert: weight decay %v, want a finite value of at least 0", weightDecay)
	}
	return nil
}

// TrainProgress describes the step just taken.
type TrainProgress struct {
	// Epoch is the epoch in progress, from 1; Step the steps taken, of Steps in the run.
	Epoch, Step, Steps int
	// LR is the learning rate the step used.
	LR float64
	// Loss is the mean training loss over the epoch's examples so far.
	Loss float64
	// Eval is the validation score when this step was evaluated, nil otherwise.
	Eval *TrainEval
}

// TrainEval is one evaluation on the validation data.
type TrainEval struct {
	// Epoch is the number of epochs done, fractional within an epoch (steps / steps per epoch).
	Epoch float64 `json:"epoch"`
	Step  int     `json:"step"`
	Score
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
	Score
	// Seconds is the time since training started.
	Seconds float64 `json:"seconds"`
}

// TrainReport is train.json: the settings, every evaluation and every epoch of a run.
type TrainReport struct {
	// Schema is TrainSchema.
	Schema int `json:"schema_version"`
	// Init is the file of the model training started from.
	Init          string         `json:"init"`
	Settings      TrainOptions   `json:"settings"`
	TrainExamples int            `json:"train_examples"`
	ValExamples   int            `json:"val_examples"`
	StepsPerEpoch int            `json:"steps_per_epoch"`
	Evals         []TrainEval    `json:"evals"`
	Epochs        []EpochSummary `json:"epochs"`
	// Files are the checkpoints written, in order, then train.json once the run is complete.
	Files   []string `json:"files"`
	Seconds float64  `json:"seconds"`
}

// Train trains model m from the parameters init (nil: the model's own) with SGD, as opt says,
// writing the trajectory into opt.Out: ckpt_000.onnx is the initialization, then one checkpoint
// per epoch (or every opt.EverySteps steps), named so that their natural order is the training
// order, and train.json, rewritten after every evaluation. The folder is a trajectory that
// LoadTrajectory accepts. Train returns the report it wrote.
func Train(m *graph.Model, init params.Set, opt TrainOptions) (*TrainReport, error) {
	if err := opt.Check(); err != nil {
		return nil, err
	}
	if opt.Train == nil || opt.Val == nil {
		return nil, errors.New("convert: training and validation data are required")
	}
	n := opt.Train.Len()
	if n == 0 {
		return nil, errors.New("convert: no training examples")
	}
	tr, err := NewTrainer(m, init, opt.Momentum, opt.WeightDecay)
	if err != nil {
		return nil, err
	}
	eval, err := newRunner(m, opt.Batch)
	if err != nil {
		return nil, err
	}
	if err := prepareTrainDir(opt.Out, m.Path); err != nil {
		return nil, err
	}
	start := time.Now()
	perEpoch := (n + opt.Batch - 1) / opt.Batch
	total := opt.Epochs * perEpoch
	rep := &TrainReport{Schema: TrainSchema, Init: m.Path, Settings: opt, TrainExamples: n,
		ValExamples: opt.Val.Len(), StepsPerEpoch: perEpoch}
	save := func(step int) error {
		name := fmt.Sprintf("ckpt_%03d.onnx", len(rep.Files))
		if err := m.Save(filepath.Join(opt.Out, name), tr.params); err != nil {
			return fmt.Errorf("convert: step %d: %w", step, err)
		}
		rep.Files = append(rep.Files, name)
		return nil
	}
	evaluate := func(step int) (*TrainEval, error) {
		score, err := eval.evaluate(tr.params, opt.Val, nil)
		if err != nil {
			return nil, fmt.Errorf("convert: step %d: %w", step, err)
		}
		rep.Evals = append(rep.Evals, TrainEval{Epoch: float64(step) / float64(perEpoch), Step: step,
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
			x, y, err := tr.r.load(opt.Train, idx)
			if err != nil {
				return nil, err
			}
			lr := opt.Schedule.rate(opt.LR, step, total)
			loss, err := tr.Step(x, y, lr)
			if err != nil {
				return nil, fmt.Errorf("convert: step %d: %w", step+1, err)
			}
			step++
			lossSum += loss * float64(len(idx))
			seen += len(idx)
			if opt.EverySteps > 0 && (step%opt.EverySteps == 0 || step == total) {
				if err := save(step); err != nil {
					return nil, err
				}
			}
			var ev *TrainEval
			if last := i == len(batches)-1; last || (opt.EvalEvery > 0 && step%opt.EvalEvery == 0) {
				if ev, err = evaluate(step); err != nil {
					return nil, err
				}
			}
			if opt.Progress != nil {
				opt.Progress(TrainProgress{Epoch: epoch + 1, Step: step, Steps: total, LR: lr, Loss: lossSum / float64(seen), Eval: ev})
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
	if err := PrepareDir(dir, inputs...); err != nil {
		return err
	}
	files, err := TrajectoryFiles(dir)
	if err != nil {
		return err
	}
	if len(files) > 0 {
		return fmt.Errorf("convert: the output folder %s already holds ONNX files (%s): choose another folder or empty it", dir, filepath.Base(files[0]))
	}
	return nil
}

func writeTrainReport(dir string, rep *TrainReport) error {
	return WriteJSON(filepath.Join(dir, "train.json"), rep)
}
