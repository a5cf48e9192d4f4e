package convert

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/params"
)

// runner runs one model on a data source: batches of inputs, gradients, evaluation and
// BatchNorm statistics. It keeps one graph session per batch size it has needed.
type runner struct {
	m        *graph.Model
	batch    int
	sessions map[int]*graph.Session
	x        []float32
	y        []int64
}

func newRunner(m *graph.Model, batch int) (*runner, error) {
	if batch < 1 {
		return nil, fmt.Errorf("convert: batch size %d, want at least 1", batch)
	}
	return &runner{m: m, batch: batch, sessions: map[int]*graph.Session{}}, nil
}

// session returns the session for n examples, with parameters p (nil: as they were).
func (r *runner) session(n int, p params.Set) (*graph.Session, error) {
	s, ok := r.sessions[n]
	if !ok {
		var err error
		if s, err = graph.NewSession(r.m, n); err != nil {
			return nil, err
		}
		r.sessions[n] = s
	}
	if p == nil {
		return s, nil
	}
	return s, s.SetParams(p)
}

// load reads the examples at idx from data into the runner's buffers.
func (r *runner) load(data dataset.Source, idx []int) ([]float32, []int64, error) {
	size := params.Size(data.Shape())
	if in := r.m.Input.Shape; len(in) > 0 && params.Size(in[1:]) != size {
		return nil, nil, fmt.Errorf("convert: the data's examples have shape %v (%d values), the model's input %q needs %v (%d values)",
			data.Shape(), size, r.m.Input.Name, in[1:], params.Size(in[1:]))
	}
	if need := len(idx) * size; cap(r.x) < need {
		r.x = make([]float32, need)
	}
	if cap(r.y) < len(idx) {
		r.y = make([]int64, len(idx))
	}
	x, y := r.x[:len(idx)*size], r.y[:len(idx)]
	if err := data.Batch(idx, x, y); err != nil {
		return nil, nil, err
	}
	return x, y, nil
}

// update lets f write the parameters of the runner's main session (its batch size) in place,
// for the next calls with nil parameters (see graph.Session.UpdateParams).
func (r *runner) update(f func(params.Set) error) error {
	s, err := r.session(r.batch, nil)
	if err != nil {
		return err
	}
	return s.UpdateParams(f)
}

// grad returns the mean loss and the gradient of the trainable parameters at p (nil: the
// parameters last written by update, for batches of the runner's size only), averaged over the
// given batches of data, with the weight gradients of dense layers as low-rank factors where
// that is smaller (graph.Session.LossAndFactoredGrad): the average of g batches' factors
// U_b^T V_b is U^T V with the U_b/g and the V_b stacked, of g times the rank.
func (r *runner) grad(p params.Set, data dataset.Source, batches [][]int) (float64, align.Operand, error) {
	var total align.Operand
	var loss float64
	scale := 1 / float32(len(batches))
	set := map[int]bool{}
	for _, idx := range batches {
		if p == nil && len(idx) != r.batch {
			return 0, align.Operand{}, fmt.Errorf("convert: a batch of %d examples without parameters for it", len(idx))
		}
		s, err := r.session(len(idx), nil)
		if err != nil {
			return 0, align.Operand{}, err
		}
		if p != nil && !set[len(idx)] { // once per session
			if err := s.SetParams(p); err != nil {
				return 0, align.Operand{}, err
			}
			set[len(idx)] = true
		}
		x, y, err := r.load(data, idx)
		if err != nil {
			return 0, align.Operand{}, err
		}
		l, g, err := s.LossAndFactoredGrad(x, y)
		if err != nil {
			return 0, align.Operand{}, err
		}
		loss += l / float64(len(batches))
		if len(batches) > 1 {
			for _, t := range g.Params {
				for i := range t.Data {
					t.Data[i] *= scale
				}
			}
			for _, f := range g.LowRank {
				for i := range f.U {
					f.U[i] *= scale
				}
			}
		}
		if total.Params == nil {
			total = g
			continue
		}
		addInto(total.Params, 1, g.Params)
		for name, f := range total.LowRank {
			h := g.LowRank[name]
			f.U, f.V, f.Rank = append(f.U, h.U...), append(f.V, h.V...), f.Rank+h.Rank
		}
	}
	return loss, total, nil
}

// normStats recomputes the BatchNorm running statistics of the parameters last written by
// update over the given batches, in place (graph.Session.UpdateNormStats).
func (r *runner) normStats(data dataset.Source, batches [][]int) error {
	s, err := r.session(r.batch, nil)
	if err != nil {
		return err
	}
	i := 0
	var loadErr error
	err = s.UpdateNormStats(func() ([]float32, bool) {
		for i < len(batches) && len(batches[i]) != r.batch {
			i++ // statistics use full batches only
		}
		if i >= len(batches) || loadErr != nil {
			return nil, false
		}
		x, _, err := r.load(data, batches[i])
		i++
		if err != nil {
			loadErr = err
			return nil, false
		}
		return x, true
	})
	if loadErr != nil {
		return loadErr
	}
	return err
}

// Score is a model's accuracy and mean cross-entropy on a data set.
type Score struct {
	Accuracy float64  `json:"accuracy"`
	Loss     Measured `json:"loss"`
}

// Measured is a measured value that may be NaN or infinite (the loss of parameters with
// non-finite values); JSON holds such a value as null.
type Measured float64

// MarshalJSON writes the value, or null when it is not finite.
func (v Measured) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(v))
}

// Evaluate returns the accuracy and mean cross-entropy of model m with parameters p (nil: its
// own) on all of data, in evaluation mode, in batches of the given size; preds, when not nil,
// receives the predicted class of every example.
func Evaluate(m *graph.Model, p params.Set, data dataset.Source, batch int, preds []int) (Score, error) {
	r, err := newRunner(m, max(1, min(batch, data.Len())))
	if err != nil {
		return Score{}, err
	}
	if p == nil {
		p = m.Params
	}
	return r.evaluate(p, data, preds)
}

// evaluate returns the accuracy and mean cross-entropy of p (nil: the parameters last written by
// update) on all of data, in evaluation mode, and the predicted class of every example when
// preds is not nil. Every batch runs at the runner's batch size (a short batch is padded with
// repeats of its first example, whose outputs are dropped: in evaluation mode examples do not
// affect each other), so one session with the parameters set once serves the whole set.
func (r *runner) evaluate(p params.Set, data dataset.Source, preds []int) (Score, error) {
	n := data.Len()
	if n == 0 {
		return Score{}, fmt.Errorf("convert: no examples to evaluate on")
	}
	batch := r.batch
	s, err := r.session(batch, p)
	if err != nil {
		return Score{}, err
	}
	var correct int
	var loss float64
	idx := make([]int, batch)
	for start := 0; start < n; start += batch {
		count := min(batch, n-start)
		for i := range idx {
			idx[i] = start + i
			if i >= count {
				idx[i] = start
			}
		}
		x, y, err := r.load(data, idx)
		if err != nil {
			return Score{}, err
		}
		logits, err := s.Logits(x)
		if err != nil {
			return Score{}, err
		}
		classes := len(logits) / batch
		for i, label := range y[:count] {
			row := logits[i*classes : (i+1)*classes]
			if label < 0 || int(label) >= classes {
				return Score{}, fmt.Errorf("convert: label %d of example %d is outside the model's %d classes", label, idx[i], classes)
			}
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			if best == int(label) {
				correct++
			}
			if preds != nil {
				preds[idx[i]] = best
			}
			loss += graph.CrossEntropy(row, int(label))
		}
	}
	return Score{Accuracy: float64(correct) / float64(n), Loss: Measured(loss / float64(n))}, nil
}
