package convert

import (
	"github.com/ltransfer/ltransfer/convert/dataset"
	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/params"
)

// Runner runs one model on data sources, as a transfer does: it keeps one graph session per
// batch size and the input buffers, and evaluates in batches of one size. Training
// (convert/train) takes its steps through a Runner's sessions. A Runner is not safe for
// concurrent use.
type Runner struct{ r *runner }

// NewRunner returns a runner of model m whose evaluation batches hold batch examples.
func NewRunner(m *graph.Model, batch int) (*Runner, error) {
	r, err := newRunner(m, batch)
	if err != nil {
		return nil, err
	}
	return &Runner{r: r}, nil
}

// Session returns the session for n examples, with parameters p (nil: as they were).
func (r *Runner) Session(n int, p params.Set) (*graph.Session, error) { return r.r.session(n, p) }

// Load reads the examples at idx from data into the runner's buffers and returns them, valid
// until the next call: the inputs one example after the other, and the labels.
func (r *Runner) Load(data dataset.Source, idx []int) ([]float32, []int64, error) {
	return r.r.load(data, idx)
}

// Evaluate returns the accuracy and mean cross-entropy of p on all of data, in evaluation mode;
// preds, when not nil, receives the predicted class of every example.
func (r *Runner) Evaluate(p params.Set, data dataset.Source, preds []int) (Score, error) {
	return r.r.evaluate(p, data, preds)
}
