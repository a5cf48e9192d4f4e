package convert

import (
	"fmt"
	"math"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
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

// session returns the session for n examples, with parameters p.
func (r *runner) session(n int, p align.Params) (*graph.Session, error) {
	s, ok := r.sessions[n]
	if !ok {
		var err error
		if s, err = graph.NewSession(r.m, n); err != nil {
			return nil, err
		}
		r.sessions[n] = s
	}
	return s, s.SetParams(p)
}

// load reads the examples at idx from data into the runner's buffers.
func (r *runner) load(data dataset.Source, idx []int) ([]float32, []int64, error) {
	size := 1
	for _, d := range data.Shape() {
		size *= d
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

// grad returns the mean loss and the gradient of the trainable parameters at p, averaged over
// the given batches of data.
func (r *runner) grad(p align.Params, data dataset.Source, batches [][]int) (float64, align.Params, error) {
	var total align.Params
	var loss float64
	for _, idx := range batches {
		s, err := r.session(len(idx), p)
		if err != nil {
			return 0, nil, err
		}
		x, y, err := r.load(data, idx)
		if err != nil {
			return 0, nil, err
		}
		l, g, err := s.LossAndGrad(x, y)
		if err != nil {
			return 0, nil, err
		}
		loss += l / float64(len(batches))
		if total == nil {
			total = g
			if len(batches) > 1 {
				for _, t := range total {
					for i := range t.Data {
						t.Data[i] /= float32(len(batches))
					}
				}
			}
			continue
		}
		addInto(total, 1/float32(len(batches)), g)
	}
	return loss, total, nil
}

// normStats returns p with the BatchNorm running statistics recomputed over the given batches.
func (r *runner) normStats(p align.Params, data dataset.Source, batches [][]int) (align.Params, error) {
	s, err := r.session(r.batch, p)
	if err != nil {
		return nil, err
	}
	i := 0
	var loadErr error
	out, err := s.NormStats(func() ([]float32, bool) {
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
		return nil, loadErr
	}
	return out, err
}

// Score is a model's accuracy and mean cross-entropy on a data set.
type Score struct {
	Accuracy float64 `json:"accuracy"`
	Loss     float64 `json:"loss"`
}

// Evaluate returns the accuracy and mean cross-entropy of model m with parameters p (nil: its
// own) on all of data, in evaluation mode, in batches of the given size; preds, when not nil,
// receives the predicted class of every example.
func Evaluate(m *graph.Model, p align.Params, data dataset.Source, batch int, preds []int) (Score, error) {
	r, err := newRunner(m, batch)
	if err != nil {
		return Score{}, err
	}
	if p == nil {
		p = m.Params
	}
	return r.evaluate(p, data, preds)
}

// evaluate returns the accuracy and mean cross-entropy of p on all of data, in evaluation mode,
// and the predicted class of every example when preds is not nil.
func (r *runner) evaluate(p align.Params, data dataset.Source, preds []int) (Score, error) {
	n := data.Len()
	if n == 0 {
		return Score{}, fmt.Errorf("convert: no examples to evaluate on")
	}
	var correct int
	var loss float64
	for start := 0; start < n; start += r.batch {
		idx := make([]int, 0, r.batch)
		for i := start; i < min(start+r.batch, n); i++ {
			idx = append(idx, i)
		}
		s, err := r.session(len(idx), p)
		if err != nil {
			return Score{}, err
		}
		x, y, err := r.load(data, idx)
		if err != nil {
			return Score{}, err
		}
		logits, err := s.Logits(x)
		if err != nil {
			return Score{}, err
		}
		classes := len(logits) / len(idx)
		for i, label := range y {
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
			loss += crossEntropy(row, int(label))
		}
	}
	return Score{Accuracy: float64(correct) / float64(n), Loss: loss / float64(n)}, nil
}

// crossEntropy returns -log softmax(row)[label], computed stably.
func crossEntropy(row []float32, label int) float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s) - float64(row[label])
}
