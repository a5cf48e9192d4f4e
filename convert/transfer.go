package convert

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/internal/errwrap"
	"github.com/ltransfer/ltransfer/params"
)

// Options configure a transfer.
type Options struct {
	// Method is gmt, fgmt, naive or oracle.
	Method string
	// Steps is the number of interpolation points between consecutive checkpoints (K).
	Steps int
	// Schedule spaces them.
	Schedule Schedule
	// Batch is the mini-batch size of gradients, evaluation and BatchNorm statistics.
	Batch int
	// GradBatches is the number of mini-batches each gradient is averaged over.
	GradBatches int
	// NormBatches is the number of batches BatchNorm statistics are recomputed over.
	NormBatches int
	// Seed draws the mini-batches and the coordinate-descent order.
	Seed uint64
	// MaxSweeps bounds the coordinate-descent sweeps of each matching (0: align's default).
	MaxSweeps int
	// Train provides the gradient and BatchNorm batches; Val the evaluation examples.
	Train, Val dataset.Source
	// Target is the target run's own trajectory, needed by the oracle.
	Target *Trajectory
	// Progress, when set, is called after every step.
	Progress func(StepReport)
	// AllowNonFinite accepts checkpoints and an initialization with NaN or infinite trainable
	// values, which are refused otherwise. The values propagate as they would in any framework:
	// the naive method goes through (a non-finite loss is reported as null), while matching
	// methods fail at the first matching whose gradients are not finite, naming the step.
	AllowNonFinite bool
}

// StepReport describes one step of a transfer.
type StepReport struct {
	Step int `json:"step"`
	// Total is the number of steps of the transfer, step 0 (the initialization) included.
	Total int `json:"-"`
	// Position is how far along the source trajectory the step is, from 0 (its first
	// checkpoint) to 1 (its last).
	Position float64 `json:"position"`
	Score
	// Gain is the validation accuracy gained over the initialization itself.
	Gain float64 `json:"gain"`
	// Objective is the matching objective sum ||target - pi(source)||^2 at the chosen
	// permutation (0 for methods that do not match).
	Objective    float64 `json:"objective"`
	Sweeps       int     `json:"sweeps"`
	Pairs        int     `json:"pairs"`
	GradSeconds  float64 `json:"grad_seconds"`
	MatchSeconds float64 `json:"match_seconds"`
	// ScoreSeconds and AssignSeconds split MatchSeconds into the score products and the linear
	// assignments (the rest is the matching objective).
	ScoreSeconds  float64 `json:"score_seconds"`
	AssignSeconds float64 `json:"assign_seconds"`
	EvalSeconds   float64 `json:"eval_seconds"`
}

// Result is the outcome of a transfer.
type Result struct {
	Steps []StepReport
	// Best is the step with the highest validation accuracy.
	Best int
	// InitScore is the initialization evaluated as given, before any transfer.
	InitScore Score
	// SetupSeconds is the time before the first step: deriving and checking the symmetries,
	// evaluating the initialization.
	SetupSeconds float64
	// Spec is the permutation symmetry the transfer used, Perms the permutation of every step.
	Spec  align.Spec
	Perms []align.Perm
	// Unpermuted lists the parameter axes no group permutes; Dropped the groups the self-check
	// rejected.
	Unpermuted []graph.Unpermuted
	Dropped    []graph.Dropped
}

// point is a position on the source trajectory: checkpoint segment and coefficient within it.
type point struct {
	segment int
	coef    float64
}

// transfer holds what a running transfer needs.
type transfer struct {
	opt       Options
	src       *Trajectory
	points    []point
	theta1    []params.Set // checkpoint parameters
	init      params.Set
	trainable []string
	spec      align.Spec // every float parameter
	match     align.Spec // trainable parameters only: what gradients exist for
	norm      bool       // the model has BatchNorm statistics to recompute
	initScore Score
	gradTime  time.Duration
	// r runs the model: gradients, BatchNorm statistics, evaluation. One runner serves every
	// gradient in turn: the BLAS products already use every core (two runners computing the two
	// gradients of a pair at once were slower on 2 cores, and held a second copy of the model).
	// The source and transferred points are written straight into its session's parameters.
	r *runner
	// specs restricts spec to each parameter, and scratch (the size of the largest parameter)
	// receives theta1_j - theta1_0 one parameter at a time before it is permuted: the transfer
	// holds no parameter-sized buffer of differences.
	specs   map[string]align.Spec
	scratch []float32
	// srcGrads caches the source gradient of every point (GMT uses each at every later step).
	srcGrads map[int]align.Operand
}

// Transfer moves the source trajectory onto the initialization init:
// theta2_k = theta2_0 + pi_k(theta1_k - theta1_0) at every interpolation point k, with pi_k chosen
// by the method. After each step the BatchNorm statistics are recomputed on training batches and
// the point is evaluated on the validation set; emit receives every step's report and
// parameters. These are the transfer's working tensors, not a copy: they may be read until emit
// returns, and emit copies what it keeps (a 100M-parameter model would otherwise hold one more
// copy of itself per step kept).
//
// GMT and FGMT match, for a point j, the gradient at the transferred point
// theta2_0 + pi(theta1_j - theta1_0) (the target) with the gradient at the source point theta1_j
// (the source), both on the same mini-batches, which are drawn once per point: the source
// gradient of a point is computed once. Gradients of dense layers are kept as low-rank factors
// where that is smaller (graph.Session.LossAndFactoredGrad), which the matcher scores in factored
// form.
//
// Transfer stops between steps when ctx ends, and returns ctx's error wrapped.
func Transfer(ctx context.Context, src *Trajectory, init *graph.Model, opt Options, emit func(StepReport, params.Set) error) (*Result, error) {
	start := time.Now()
	if err := src.CheckInit(init); err != nil {
		return nil, err
	}
	if opt.Train == nil || opt.Val == nil {
		return nil, errors.New("convert: training and validation data are required")
	}
	if opt.GradBatches < 1 || opt.NormBatches < 1 {
		return nil, fmt.Errorf("convert: grad batches %d and BatchNorm batches %d must be at least 1", opt.GradBatches, opt.NormBatches)
	}
	coefs, err := opt.Schedule.Coefficients(opt.Steps)
	if err != nil {
		return nil, err
	}
	spec, unpermuted, err := graph.Symmetries(init)
	if err != nil {
		return nil, err
	}
	t := &transfer{opt: opt, src: src, init: init.Params, trainable: init.Trainable(),
		norm: init.OpCounts()["BatchNormalization"] > 0, srcGrads: map[int]align.Operand{}}
	// Gradient batches hold Batch examples, or the whole training set when it is smaller.
	if t.r, err = newRunner(init, min(opt.Batch, opt.Train.Len())); err != nil {
		return nil, err
	}
	// A group whose permutation changes the model's outputs would be silently wrong: drop it.
	// The check runs in the runner's session, which holds the model once for the whole transfer.
	s, err := t.r.session(t.r.batch, nil)
	if err != nil {
		return nil, err
	}
	spec, dropped, err := s.VerifySymmetries(spec, opt.Seed)
	if err != nil {
		return nil, err
	}
	t.spec = spec
	t.specs = map[string]align.Spec{}
	largest := 0
	for name, p := range init.Params {
		t.specs[name] = restrict(spec, []string{name})
		largest = max(largest, len(p.Data))
	}
	t.scratch = make([]float32, largest)
	t.match = restrict(spec, t.trainable)
	for seg := range len(src.Checkpoints) - 1 {
		for k, c := range coefs {
			if k > 0 || seg == 0 {
				t.points = append(t.points, point{segment: seg, coef: c})
			}
		}
	}
	for i, m := range src.Checkpoints {
		if err := m.Params.CheckFinite(t.trainable); err != nil && !opt.AllowNonFinite {
			return nil, fmt.Errorf("convert: %s: %w (--allow-nonfinite to go on)", src.Paths[i], err)
		}
		t.theta1 = append(t.theta1, m.Params)
	}
	if err := init.Params.CheckFinite(t.trainable); err != nil && !opt.AllowNonFinite {
		return nil, fmt.Errorf("convert: %s: %w (--allow-nonfinite to go on)", init.Path, err)
	}
	method, err := t.method()
	if err != nil {
		return nil, err
	}
	res := &Result{Spec: spec, Unpermuted: unpermuted, Dropped: dropped}
	// What the target was worth before the transfer (as given, statistics untouched): with a
	// pre-trained --init this is the baseline the transfer's gain is measured against.
	if res.InitScore, err = t.r.evaluate(init.Params, opt.Val, nil); err != nil {
		return nil, err
	}
	t.initScore = res.InitScore
	res.SetupSeconds = time.Since(start).Seconds()
	pi := align.Identity(spec)
	for k := range t.points {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("convert: stopped before step %d: %w", k, err)
		}
		var stats matchStats
		if k > 0 {
			if pi, stats, err = method(k, pi); err != nil {
				return nil, errwrap.At("convert", fmt.Sprintf("step %d", k), err)
			}
		}
		rep, ps, err := t.finish(k, pi, stats)
		if err != nil {
			return nil, errwrap.At("convert", fmt.Sprintf("step %d", k), err)
		}
		rep.Gain = rep.Accuracy - res.InitScore.Accuracy
		res.Steps = append(res.Steps, rep)
		res.Perms = append(res.Perms, pi)
		if rep.Accuracy > res.Steps[res.Best].Accuracy {
			res.Best = k
		}
		if emit != nil {
			if err := emit(rep, ps); err != nil {
				return nil, err
			}
		}
		if opt.Progress != nil {
			opt.Progress(rep)
		}
	}
	return res, nil
}

// matchStats is what a method reports about one step.
type matchStats struct {
	objective     float64
	sweeps        int
	pairs         int
	match         time.Duration
	score, assign time.Duration
}

// stepFunc returns pi_k given pi_{k-1}.
type stepFunc func(k int, prev align.Perm) (align.Perm, matchStats, error)

func (t *transfer) method() (stepFunc, error) {
	switch t.opt.Method {
	case "naive":
		return func(int, align.Perm) (align.Perm, matchStats, error) {
			return align.Identity(t.spec), matchStats{}, nil
		}, nil
	case "gmt":
		// One matcher, emptied at every step: the same problem as a fresh matcher, but its
		// assignment solver warm-starts from the previous step's solution.
		m := align.NewMatcher(t.match, t.matcherOptions())
		return func(k int, prev align.Perm) (align.Perm, matchStats, error) {
			m.Reset()
			// GMT matches the gradients of every earlier point j < k, recomputed at the points
			// transferred with the latest permutation.
			var js []int
			for j := 0; j < k; j++ {
				js = append(js, j)
			}
			if err := t.addPairs(m, js, prev); err != nil {
				return nil, matchStats{}, err
			}
			return t.solve(m, prev)
		}, nil
	case "fgmt":
		m := align.NewMatcher(t.match, t.matcherOptions())
		return func(k int, prev align.Perm) (align.Perm, matchStats, error) {
			// FGMT keeps the pairs of earlier steps and adds only the newest one.
			if err := t.addPairs(m, []int{k - 1}, prev); err != nil {
				return nil, matchStats{}, err
			}
			return t.solve(m, prev)
		}, nil
	case "oracle":
		return t.oracle()
	}
	return nil, fmt.Errorf("convert: %w", CheckMethod(t.opt.Method))
}

func (t *transfer) matcherOptions() align.MatcherOptions {
	return align.MatcherOptions{Seed: t.opt.Seed, MaxSweeps: t.opt.MaxSweeps}
}

func (t *transfer) solve(m *align.Matcher, warm align.Perm) (align.Perm, matchStats, error) {
	start := time.Now()
	before := m.Timing()
	pi, res, err := m.Solve(warm)
	if err != nil {
		return nil, matchStats{}, err
	}
	after := m.Timing()
	return pi, matchStats{objective: res.Objective, sweeps: res.Sweeps, pairs: m.Len(), match: time.Since(start),
		score: after.Score - before.Score, assign: after.Assign - before.Assign}, nil
}

// oracle matches the target run's own update theta2_T - theta2_0 with the source's
// theta1_T - theta1_0 once, and uses that permutation at every step.
func (t *transfer) oracle() (stepFunc, error) {
	if t.opt.Target == nil {
		return nil, errors.New("convert: the oracle method needs the target run's trajectory")
	}
	tgt := t.opt.Target
	for _, m := range tgt.Checkpoints {
		if err := t.src.CheckInit(m); err != nil {
			return nil, err
		}
	}
	last := func(tr *Trajectory) params.Set { return tr.Checkpoints[len(tr.Checkpoints)-1].Params }
	dt, err := diff(last(tgt).Subset(t.trainable), tgt.Checkpoints[0].Params)
	if err != nil {
		return nil, err
	}
	ds, err := diff(last(t.src).Subset(t.trainable), t.theta1[0])
	if err != nil {
		return nil, err
	}
	m := align.NewMatcher(t.match, t.matcherOptions())
	if err := m.Add(1, dt, ds); err != nil {
		return nil, err
	}
	var pi align.Perm
	var stats matchStats
	return func(k int, prev align.Perm) (align.Perm, matchStats, error) {
		if pi == nil {
			if pi, stats, err = t.solve(m, prev); err != nil {
				return nil, stats, err
			}
			return pi, stats, nil
		}
		return pi, matchStats{objective: stats.objective}, nil
	}, nil
}

// sourceInto writes theta1 at point j into dst, as combine(a, c, b, a) computes it.
func (t *transfer) sourceInto(dst params.Set, j int) {
	for name, d := range dst {
		t.sourceOf(d.Data, name, j)
	}
}

// sourceOf writes parameter name of theta1 at point j into dst.
func (t *transfer) sourceOf(dst []float32, name string, j int) {
	p := t.points[j]
	ta, tb := t.theta1[p.segment][name].Data, t.theta1[p.segment+1][name].Data
	for i := range dst {
		dst[i] = float32(float64(ta[i]) + p.coef*(float64(tb[i])-float64(ta[i])))
	}
}

// setTransferred sets the runner's parameters to theta2_0 + pi(theta1_j - theta1_0) over every
// float parameter and returns them (the session's own tensors), with the roundings of combine,
// diff and Perm.Apply: the source point and its difference from theta1_0 are rounded to float32,
// as is the sum. It works one parameter at a time, through scratch.
func (t *transfer) setTransferred(j int, pi align.Perm) (params.Set, error) {
	var out params.Set
	err := t.r.update(func(p params.Set) error {
		for name, d := range p {
			diff := t.scratch[:len(d.Data)]
			t.sourceOf(diff, name, j)
			for i, z := range t.theta1[0][name].Data {
				diff[i] = float32(float64(diff[i]) - float64(z))
			}
			src := params.Set{name: {Shape: d.Shape, Data: diff}}
			if err := pi.ApplyInto(t.specs[name], params.Set{name: d}, src); err != nil {
				return err
			}
			base := t.init[name].Data
			for i, v := range d.Data {
				d.Data[i] = float32(float64(base[i]) + float64(v))
			}
		}
		out = p
		return nil
	})
	return out, err
}

// batches returns the gradient mini-batches of point j: drawn from the training data once, the
// same at every step and for both sides of the pair.
func (t *transfer) batches(j int) [][]int {
	order := dataset.Shuffle(t.opt.Train.Len(), t.opt.Seed, uint64(j)+1)
	var out [][]int
	for i := 0; i < t.opt.GradBatches; i++ {
		lo := (i * t.opt.Batch) % max(len(order)-t.opt.Batch+1, 1)
		out = append(out, order[lo:min(lo+t.opt.Batch, len(order))])
	}
	return out
}

// addPairs adds to m the gradient pair of every point in js: the gradient at the point
// transferred with pi (the target) and the gradient at the source point (the source), on the
// point's mini-batches. Source gradients are computed once per point and kept.
func (t *transfer) addPairs(m *align.Matcher, js []int, pi align.Perm) error {
	start := time.Now()
	defer func() { t.gradTime += time.Since(start) }()
	for _, j := range js {
		src, ok := t.srcGrads[j]
		if !ok {
			err := t.r.update(func(p params.Set) error {
				t.sourceInto(p, j)
				return nil
			})
			if err != nil {
				return err
			}
			if _, src, err = t.r.grad(nil, t.opt.Train, t.batches(j)); err != nil {
				return err
			}
			t.srcGrads[j] = src
		}
		if _, err := t.setTransferred(j, pi); err != nil {
			return err
		}
		_, target, err := t.r.grad(nil, t.opt.Train, t.batches(j))
		if err != nil {
			return err
		}
		if err := m.AddOperands(1, target, src); err != nil {
			return err
		}
	}
	return nil
}

// finish builds the parameters of step k in the runner's session, recomputes their BatchNorm
// statistics there and evaluates them; it returns the session's parameters.
func (t *transfer) finish(k int, pi align.Perm, stats matchStats) (StepReport, params.Set, error) {
	ps, err := t.setTransferred(k, pi)
	if err != nil {
		return StepReport{}, nil, err
	}
	start := time.Now()
	score := t.initScore
	switch {
	case t.norm:
		order := dataset.Shuffle(t.opt.Train.Len(), t.opt.Seed^0x6e6f726d, uint64(k))
		norm, err := dataset.Batches(order[:min(len(order), t.opt.NormBatches*t.opt.Batch)], t.opt.Batch)
		if err != nil {
			return StepReport{}, nil, err
		}
		if err := t.r.normStats(t.opt.Train, norm); err != nil {
			return StepReport{}, nil, err
		}
		if score, err = t.r.evaluate(nil, t.opt.Val, nil); err != nil {
			return StepReport{}, nil, err
		}
	case k > 0:
		if score, err = t.r.evaluate(nil, t.opt.Val, nil); err != nil {
			return StepReport{}, nil, err
		}
	default:
		// Without BatchNorm, step 0 is the initialization itself (theta2_0 + 0), which was
		// evaluated before the transfer.
	}
	p := t.points[k]
	rep := StepReport{
		Step:          k,
		Total:         len(t.points),
		Position:      (float64(p.segment) + p.coef) / float64(len(t.theta1)-1),
		Score:         score,
		Objective:     stats.objective,
		Sweeps:        stats.sweeps,
		Pairs:         stats.pairs,
		GradSeconds:   t.gradTime.Seconds(),
		MatchSeconds:  stats.match.Seconds(),
		ScoreSeconds:  stats.score.Seconds(),
		AssignSeconds: stats.assign.Seconds(),
		EvalSeconds:   time.Since(start).Seconds(),
	}
	t.gradTime = 0
	return rep, ps, nil
}
