package graph

import (
	"fmt"
	"slices"
	"strings"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/params"
)

// Session runs a model at one batch size on Gorgonia graphs (run by this package's machine, whose
// buffers are reused from run to run): the evaluation forward pass
// (BatchNorm with running statistics), the training pass (BatchNorm with batch statistics, mean
// cross-entropy and the gradient of every trainable parameter in one run), and the running
// statistics of BatchNorm layers for new parameters. The graphs are built on first use. A Session
// is not safe for concurrent use.
type Session struct {
	m     *Model
	batch int
	// params are the values bound to the graphs: every program of the session reads the same
	// tensors (values), whose backing arrays these are, so that new parameters are copied once.
	params                       params.Set
	values                       map[string]G.Value
	eval, train, factored, stats *program
	dirty                        map[*program]bool
	x                            []float32
	// buffers are the programs' planned buffers, shared: the programs run one at a time, and
	// what a caller gets from a run is copied out of them.
	buffers arena
}

// NewSession prepares m to run on batches of the given size, with the model's own parameters.
func NewSession(m *Model, batch int) (*Session, error) {
	if batch < 1 {
		return nil, fmt.Errorf("graph: batch size %d", batch)
	}
	if err := m.CheckSupported(); err != nil {
		return nil, err
	}
	if err := m.checkInput(); err != nil {
		return nil, fmt.Errorf("graph: %s: %w", m.Path, err)
	}
	s := &Session{m: m, batch: batch, dirty: map[*program]bool{}, params: params.Set{}, values: map[string]G.Value{}}
	if err := s.SetParams(m.Params); err != nil {
		return nil, err
	}
	return s, nil
}

// Batch returns the batch size of the session.
func (s *Session) Batch() int { return s.batch }

// ExampleSize returns the number of float32 values of one input example.
func (s *Session) ExampleSize() int { return params.Size(s.m.Input.Shape[1:]) }

// SetParams sets the parameters the next runs use. p must hold every float32 initializer of the
// model with its shape; values are copied.
func (s *Session) SetParams(p params.Set) error {
	for _, info := range s.m.Infos {
		t, ok := p[info.Name]
		if !ok {
			return fmt.Errorf("graph: %s: parameter %q is missing", s.m.Path, info.Name)
		}
		if !slices.Equal(t.Shape, info.Shape) || len(t.Data) != params.Size(info.Shape) {
			return fmt.Errorf("graph: %s: parameter %q has shape %v, the model needs %v", s.m.Path, info.Name, t.Shape, info.Shape)
		}
	}
	for _, info := range s.m.Infos {
		t, buf := p[info.Name], s.params[info.Name]
		if buf == nil {
			buf = &params.Tensor{Shape: slices.Clone(info.Shape), Data: make([]float32, len(t.Data))}
			s.params[info.Name] = buf
			if len(info.Shape) > 0 {
				s.values[info.Name] = tensor.New(tensor.WithShape(info.Shape...), tensor.WithBacking(buf.Data))
			}
		}
		copy(buf.Data, t.Data)
		if len(info.Shape) == 0 { // a scalar is a value, not a view of the buffer
			s.values[info.Name] = G.NewF32(t.Data[0])
		}
	}
	for p := range s.dirty {
		s.dirty[p] = true
	}
	return nil
}

// UpdateParams lets f write the parameters the next runs use in place: f receives the session's
// own tensors (every float32 initializer, with the model's shapes), which may be read until the
// next SetParams or UpdateParams and must not be reshaped. It saves the copy of SetParams when
// the parameters are computed anyway. When f fails, the parameters are what f left.
func (s *Session) UpdateParams(f func(params.Set) error) error {
	if err := f(s.params); err != nil {
		return err
	}
	for _, info := range s.m.Infos {
		if len(info.Shape) == 0 {
			s.values[info.Name] = G.NewF32(s.params[info.Name].Data[0])
		}
	}
	for p := range s.dirty {
		s.dirty[p] = true
	}
	return nil
}

// program returns the program *p of the given kind, building it on first use, with the current
// parameters bound. The programs share the session's parameter tensors: no operator writes into
// its inputs' values (Gorgonia's built-in operators that may work in place are not applied to
// parameters, and the kernels of this package allocate their outputs), which
// TestSessionLeavesParamsUntouched checks.
func (s *Session) program(p **program, kind programKind) (*program, error) {
	if *p == nil {
		built, err := buildProgram(s.m, s.batch, kind)
		if err != nil {
			return nil, fmt.Errorf("graph: %s: %w", s.m.Path, err)
		}
		built.vm.arena = &s.buffers
		*p = built
		s.dirty[built] = true
	}
	if s.dirty[*p] {
		for name, node := range (*p).params {
			if err := G.Let(node, s.values[name]); err != nil {
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
	// The program's own copy: no operator writes into its inputs, but the caller may reuse x.
	if p.in == nil {
		p.in = make([]float32, len(x))
		if err := G.Let(p.x, tensor.New(tensor.WithShape(p.x.Shape()...), tensor.WithBacking(p.in))); err != nil {
			return fmt.Errorf("graph: binding input: %w", err)
		}
	}
	copy(p.in, x)
	if err := p.vm.run(); err != nil {
		return fmt.Errorf("graph: %s: %w", s.m.Path, err)
	}
	return nil
}

// Logits runs the evaluation forward pass (BatchNorm with running statistics) on a batch of
// inputs (batch x example values, row-major) and returns the model's output, batch x classes.
func (s *Session) Logits(x []float32) ([]float32, error) {
	p, err := s.program(&s.eval, evalProgram)
	if err != nil {
		return nil, err
	}
	if err := s.run(p, x); err != nil {
		return nil, err
	}
	return p.valueData(p.logits)
}

// LossAndGrad runs the training pass on a batch with integer labels: the mean cross-entropy and
// the gradient of every trainable parameter, with BatchNorm using batch statistics.
func (s *Session) LossAndGrad(x []float32, labels []int64) (float64, params.Set, error) {
	p, err := s.program(&s.train, trainProgram)
	if err != nil {
		return 0, nil, err
	}
	return s.runTrain(p, x, labels)
}

// runTrain runs a training program and returns the loss and the dense gradients it computes: a
// zero gradient for a trainable parameter the loss does not depend on, none for the weights the
// program keeps as factors.
func (s *Session) runTrain(p *program, x []float32, labels []int64) (float64, params.Set, error) {
	if len(labels) != s.batch {
		return 0, nil, fmt.Errorf("graph: %d labels for a batch of %d", len(labels), s.batch)
	}
	p.ce.labels = labels
	if err := s.run(p, x); err != nil {
		return 0, nil, err
	}
	loss, err := p.valueData(p.loss)
	if err != nil {
		return 0, nil, err
	}
	grads := params.Set{}
	for _, name := range s.m.Trainable() {
		if _, ok := p.lowRank[name]; ok {
			continue
		}
		g := &params.Tensor{Shape: slices.Clone(s.params[name].Shape)}
		if node, ok := p.grads[name]; ok {
			if g.Data, err = p.valueData(node); err != nil {
				return 0, nil, err
			}
		} else {
			g.Data = make([]float32, len(s.params[name].Data))
		}
		if len(g.Data) != len(s.params[name].Data) {
			return 0, nil, fmt.Errorf("graph: %s: gradient of %q has %d values for shape %v", s.m.Path, name, len(g.Data), g.Shape)
		}
		grads[name] = g
	}
	return float64(loss[0]), grads, nil
}

// LossAndFactoredGrad is LossAndGrad with the weight gradient of every dense layer (a Gemm or
// MatMul reading a trainable 2-D weight that nothing else reads) kept as a low-rank product when
// its factors are smaller than the matrix (batch*(rows+cols) < rows*cols): over a batch the
// gradient is a sum of one outer product per example, dL/dW = dy^T a for y = a W^T (U = dy,
// V = a in align.LowRank's terms) or a^T dy for y = a W (U = a, V = dy), where a is the layer's
// input and dy the gradient of the loss with respect to the layer's product. The dense gradient of
// such a weight is never formed, which also saves its matrix product. Every other trainable
// parameter's gradient is in the operand's Params.
func (s *Session) LossAndFactoredGrad(x []float32, labels []int64) (float64, align.Operand, error) {
	p, err := s.program(&s.factored, factoredProgram)
	if err != nil {
		return 0, align.Operand{}, err
	}
	loss, grads, err := s.runTrain(p, x, labels)
	if err != nil {
		return 0, align.Operand{}, err
	}
	out := align.Operand{Params: grads, LowRank: map[string]*align.LowRank{}}
	for name, lg := range p.lowRank {
		a, err := p.valueData(lg.a)
		if err != nil {
			return 0, align.Operand{}, err
		}
		dy, err := p.valueData(lg.dy)
		if err != nil {
			return 0, align.Operand{}, err
		}
		l := &align.LowRank{Shape: slices.Clone(s.params[name].Shape), Rank: s.batch, U: a, V: dy}
		if lg.transposed {
			l.U, l.V = dy, a
		}
		if len(l.U) != l.Rank*l.Shape[0] || len(l.V) != l.Rank*l.Shape[1] {
			return 0, align.Operand{}, fmt.Errorf("graph: %s: factors of %q have %d and %d values for shape %v and batch %d",
				s.m.Path, name, len(l.U), len(l.V), l.Shape, l.Rank)
		}
		out.LowRank[name] = l
	}
	return loss, out, nil
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
func (s *Session) NormStats(next func() ([]float32, bool)) (params.Set, error) {
	out := params.Set{}
	for name, t := range s.params {
		out[name] = &params.Tensor{Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
	}
	if err := s.normStatsInto(out, next); err != nil {
		return nil, err
	}
	return out, nil
}

// UpdateNormStats is NormStats writing the recomputed running statistics into the session's own
// parameters, which the next runs use, instead of a copy of them.
func (s *Session) UpdateNormStats(next func() ([]float32, bool)) error {
	return s.UpdateParams(func(p params.Set) error { return s.normStatsInto(p, next) })
}

// normStatsInto computes the running statistics of NormStats for the current parameters into
// the statistics' tensors of out.
func (s *Session) normStatsInto(out params.Set, next func() ([]float32, bool)) error {
	if !s.m.hasOp("BatchNormalization") {
		return nil
	}
	p, err := s.program(&s.stats, statsProgram)
	if err != nil {
		return err
	}
	sums := make([][2][]float64, len(p.norms))
	batches := 0
	for {
		x, ok := next()
		if !ok {
			break
		}
		if err := s.run(p, x); err != nil {
			return err
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
		return fmt.Errorf("graph: %s: no batches to compute BatchNorm statistics from", s.m.Path)
	}
	for i, ref := range p.norms {
		for j, name := range []string{ref.mean, ref.variance} {
			t, ok := out[name]
			if !ok {
				return fmt.Errorf("graph: %s: BatchNorm statistic %q is not a float initializer", s.m.Path, name)
			}
			for c := range t.Data {
				t.Data[c] = float32(sums[i][j][c] / float64(batches))
			}
		}
	}
	return nil
}

// CheckSupported returns an error naming the first node whose operator the engine cannot run.
func (m *Model) CheckSupported() error {
	for _, n := range m.Nodes {
		if _, ok := opBuilders[n.Op]; !ok {
			return fmt.Errorf("graph: %s: %w", m.Path, nodeError(n, fmt.Errorf("operator %s (opset %d) is %w (supported: %s)", n.Op, m.Opset, ErrUnsupported, strings.Join(SupportedOps(), ", "))))
		}
	}
	return nil
}

func (m *Model) hasOp(op string) bool {
	return slices.ContainsFunc(m.Nodes, func(n *Node) bool { return n.Op == op })
}

// valueData returns a copy of the float32 value a node computed in the last run.
func (p *program) valueData(n *G.Node) ([]float32, error) {
	switch v := p.vm.value(n).(type) {
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
