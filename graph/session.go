package graph

import (
	"fmt"
	"slices"
	"strings"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/ltransfer/ltransfer/align"
)

// Session runs a model at one batch size on Gorgonia tape machines: the evaluation forward pass
// (BatchNorm with running statistics), the training pass (BatchNorm with batch statistics, mean
// cross-entropy and the gradient of every trainable parameter in one run), and the running
// statistics of BatchNorm layers for new parameters. The graphs are built on first use. A Session
// is not safe for concurrent use.
type Session struct {
	m     *Model
	batch int
	// params are the values bound to the graphs; Session owns these buffers because Gorgonia
	// may compute in place on bound values.
	params             align.Params
	eval, train, stats *program
	dirty              map[*program]bool
	x                  []float32
}

// NewSession prepares m to run on batches of the given size, with the model's own parameters.
func NewSession(m *Model, batch int) (*Session, error) {
	if batch < 1 {
		return nil, fmt.Errorf("graph: batch size %d", batch)
	}
	if err := m.CheckSupported(); err != nil {
		return nil, err
	}
	s := &Session{m: m, batch: batch, dirty: map[*program]bool{}}
	if err := s.SetParams(m.Params); err != nil {
		return nil, err
	}
	return s, nil
}

// Batch returns the batch size of the session.
func (s *Session) Batch() int { return s.batch }

// ExampleSize returns the number of float32 values of one input example.
func (s *Session) ExampleSize() int { return prod(s.m.Input.Shape[1:]) }

// SetParams sets the parameters the next runs use. p must hold every float32 initializer of the
// model with its shape; values are copied.
func (s *Session) SetParams(p align.Params) error {
	next := align.Params{}
	for _, info := range s.m.Infos {
		t, ok := p[info.Name]
		if !ok {
			return fmt.Errorf("graph: %s: parameter %q is missing", s.m.Path, info.Name)
		}
		if !slices.Equal(t.Shape, info.Shape) || len(t.Data) != prod(info.Shape) {
			return fmt.Errorf("graph: %s: parameter %q has shape %v, the model needs %v", s.m.Path, info.Name, t.Shape, info.Shape)
		}
		buf := s.params[info.Name]
		if buf == nil {
			buf = &align.Tensor{Shape: slices.Clone(info.Shape), Data: make([]float32, len(t.Data))}
		}
		copy(buf.Data, t.Data)
		next[info.Name] = buf
	}
	s.params = next
	for p := range s.dirty {
		s.dirty[p] = true
	}
	return nil
}

// program returns the program *p, building it on first use, with the current parameters bound.
func (s *Session) program(p **program, training, withLoss bool) (*program, error) {
	if *p == nil {
		built, err := buildProgram(s.m, s.batch, training, withLoss)
		if err != nil {
			return nil, fmt.Errorf("graph: %s: %w", s.m.Path, err)
		}
		*p = built
		s.dirty[built] = true
	}
	if s.dirty[*p] {
		for name, node := range (*p).params {
			t := s.params[name]
			var v G.Value = tensor.New(tensor.WithShape(t.Shape...), tensor.WithBacking(slices.Clone(t.Data)))
			if len(t.Shape) == 0 {
				v = G.NewF32(t.Data[0])
			}
			if err := G.Let(node, v); err != nil {
				return nil, fmt.Errorf("graph: binding %q: %w", name, err)
			}
		}
		s.dirty[*p] = false
	}
	return *p, nil
}

// run binds the input batch and runs the program.
func (s *Session) run(p *program, x []float32) error {
	if want := s.batch * s.ExampleSize(); len(x) != want {
		return fmt.Errorf("graph: %s: input has %d values, a batch of %d needs %d", s.m.Path, len(x), s.batch, want)
	}
	// A fresh copy each run: the graph may compute in place on its input.
	in := tensor.New(tensor.WithShape(p.x.Shape()...), tensor.WithBacking(slices.Clone(x)))
	if err := G.Let(p.x, in); err != nil {
		return fmt.Errorf("graph: binding input: %w", err)
	}
	defer p.vm.Reset()
	if err := p.vm.RunAll(); err != nil {
		return fmt.Errorf("graph: %s: %w", s.m.Path, err)
	}
	return nil
}

// Logits runs the evaluation forward pass (BatchNorm with running statistics) on a batch of
// inputs (batch x example values, row-major) and returns the model's output, batch x classes.
func (s *Session) Logits(x []float32) ([]float32, error) {
	p, err := s.program(&s.eval, false, false)
	if err != nil {
		return nil, err
	}
	if err := s.run(p, x); err != nil {
		return nil, err
	}
	return valueData(p.logits)
}

// LossAndGrad runs the training pass on a batch with integer labels: the mean cross-entropy and
// the gradient of every trainable parameter, with BatchNorm using batch statistics.
func (s *Session) LossAndGrad(x []float32, labels []int64) (float64, align.Params, error) {
	p, err := s.program(&s.train, true, true)
	if err != nil {
		return 0, nil, err
	}
	if len(labels) != s.batch {
		return 0, nil, fmt.Errorf("graph: %d labels for a batch of %d", len(labels), s.batch)
	}
	p.ce.labels = labels
	if err := s.run(p, x); err != nil {
		return 0, nil, err
	}
	loss, err := valueData(p.loss)
	if err != nil {
		return 0, nil, err
	}
	grads := align.Params{}
	for _, name := range s.m.Trainable() {
		info, _ := s.m.Info(name)
		g := &align.Tensor{Shape: slices.Clone(info.Shape), Data: make([]float32, prod(info.Shape))}
		if node, ok := p.grads[name]; ok {
			data, err := valueData(node)
			if err != nil {
				return 0, nil, err
			}
			copy(g.Data, data)
		}
		grads[name] = g
	}
	return float64(loss[0]), grads, nil
}

// BatchStats returns the batch statistics of every BatchNormalization layer from the last
// LossAndGrad run, keyed by the name of the running statistic each estimates (the running-mean
// and running-variance initializers); variances are unbiased, as PyTorch accumulates them. It is
// empty for a model without BatchNorm or before the first run.
func (s *Session) BatchStats() map[string][]float64 {
	out := map[string][]float64{}
	if s.train == nil {
		return out
	}
	for _, ref := range s.train.norms {
		if ref.k.batchMean != nil {
			out[ref.mean] = slices.Clone(ref.k.batchMean)
			out[ref.variance] = slices.Clone(ref.k.batchVar)
		}
	}
	return out
}

// NormStats recomputes the running statistics of every BatchNormalization layer for the current
// parameters: the mean over the given batches of each batch's mean and unbiased variance (what
// PyTorch's BatchNorm accumulates with momentum=None). next returns the successive input batches
// and false when there are no more. It returns the current parameters with the running
// statistics replaced; a model without BatchNorm gets its parameters back unchanged.
func (s *Session) NormStats(next func() ([]float32, bool)) (align.Params, error) {
	out := align.Params{}
	for name, t := range s.params {
		out[name] = &align.Tensor{Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
	}
	if !s.m.hasOp("BatchNormalization") {
		return out, nil
	}
	p, err := s.program(&s.stats, true, false)
	if err != nil {
		return nil, err
	}
	sums := make([][2][]float64, len(p.norms))
	batches := 0
	for {
		x, ok := next()
		if !ok {
			break
		}
		if err := s.run(p, x); err != nil {
			return nil, err
		}
		for i, ref := range p.norms {
			if sums[i][0] == nil {
				sums[i] = [2][]float64{make([]float64, len(ref.k.batchMean)), make([]float64, len(ref.k.batchVar))}
			}
			for c := range ref.k.batchMean {
				sums[i][0][c] += ref.k.batchMean[c]
				sums[i][1][c] += ref.k.batchVar[c]
			}
		}
		batches++
	}
	if batches == 0 {
		return nil, fmt.Errorf("graph: %s: no batches to compute BatchNorm statistics from", s.m.Path)
	}
	for i, ref := range p.norms {
		for j, name := range []string{ref.mean, ref.variance} {
			t, ok := out[name]
			if !ok {
				return nil, fmt.Errorf("graph: %s: BatchNorm statistic %q is not a float initializer", s.m.Path, name)
			}
			for c := range t.Data {
				t.Data[c] = float32(sums[i][j][c] / float64(batches))
			}
		}
	}
	return out, nil
}

// CheckSupported returns an error naming the first node whose operator the engine cannot run.
func (m *Model) CheckSupported() error {
	for _, n := range m.Nodes {
		if !slices.Contains(SupportedOps(), n.Op) {
			return fmt.Errorf("graph: %s: %w", m.Path, nodeError(n, fmt.Errorf("operator %s is %w (supported: %s)", n.Op, ErrUnsupported, strings.Join(SupportedOps(), ", "))))
		}
	}
	return nil
}

func (m *Model) hasOp(op string) bool {
	return slices.ContainsFunc(m.Nodes, func(n *Node) bool { return n.Op == op })
}

// valueData returns a copy of the float32 value a node computed in the last run.
func valueData(n *G.Node) ([]float32, error) {
	switch v := n.Value().(type) {
	case *G.F32:
		return []float32{float32(*v)}, nil
	case tensor.Tensor:
		if d, ok := v.Data().([]float32); ok {
			return slices.Clone(d), nil
		}
		if f, ok := v.Data().(float32); ok {
			return []float32{f}, nil
		}
	}
	return nil, fmt.Errorf("graph: node %s holds %T, want float32", n.Name(), n.Value())
}
