package models

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/params"
)

// Opset is the ONNX operator set version of the built-in models.
const Opset = 17

// The names of the data input and the output of every built-in model.
const (
	InputName  = "input"
	OutputName = "logits"
)

// Architecture is a built-in network: MLP, ConvNet or ResNet.
type Architecture interface {
	// String returns the spec of the architecture with every option spelled out; Parse reads it
	// back to the same network.
	String() string
	// emit checks the hyper-parameters and adds the network to e with zero-valued parameters.
	emit(e *emitter) error
}

// New builds the architecture as an ONNX model whose parameters are drawn from seed as Reinit
// draws them; the graph is named by the architecture's spec. Save the model with m.Save(path,
// nil).
func New(a Architecture, seed uint64) (*graph.Model, error) {
	e := &emitter{b: graph.NewBuilder(a.String(), Opset)}
	if err := a.emit(e); err != nil {
		return nil, err
	}
	if e.err != nil {
		return nil, fmt.Errorf("models: %s: %w", a, e.err)
	}
	zero, err := e.b.Model()
	if err != nil {
		return nil, fmt.Errorf("models: %s: %w", a, err)
	}
	ps, err := Reinit(zero, seed)
	if err != nil {
		return nil, err
	}
	data, err := zero.Encode(ps)
	if err != nil {
		return nil, fmt.Errorf("models: %s: %w", a, err)
	}
	m, err := graph.Decode(data, ".")
	if err != nil {
		return nil, fmt.Errorf("models: %s: %w", a, err)
	}
	return m, nil
}

// Parse reads an architecture spec:
//
//	spec    = arch ":" widths { ";" option }
//	arch    = "mlp" | "convnet" | "resnet"
//	widths  = int { "," int }
//	option  = key "=" value
//	shape   = int { "x" int }                     (in=1x28x28)
//
// The widths are an MLP's layer widths from input features to classes, a ConvNet's conv
// channels, a ResNet's stage channels. Options, with defaults:
//
//	mlp      act=relu|tanh|sigmoid|none (relu), bias=true|false (true),
//	         in=shape (1x28x28 when the first width is 784, else that width; its product must
//	         equal the first width, and a shape of more than one axis is flattened)
//	convnet  in=CxHxW (3x32x32), classes=int (10), pool=int (2: MaxPool(2) after every second
//	         conv; 0: none), head=flatten|gap (flatten)
//	resnet   blocks=int or one int per stage (2), in=CxHxW (3x32x32), classes=int (10)
//
// See MLP, ConvNet and ResNet for the networks. Errors start with "models: " and name the
// offending part.
func Parse(spec string) (Architecture, error) {
	kind, rest, ok := strings.Cut(strings.TrimSpace(spec), ":")
	if !ok {
		return nil, fmt.Errorf("models: spec %q: want ARCH:WIDTHS[;KEY=VALUE...], such as mlp:784,256,10", spec)
	}
	kind = strings.TrimSpace(kind)
	defaults, ok := architectures[kind]
	if !ok {
		return nil, fmt.Errorf("models: unknown architecture %q (want mlp, convnet or resnet)", kind)
	}
	parts := strings.Split(rest, ";")
	widths, err := parseInts(parts[0])
	if err != nil {
		return nil, fmt.Errorf("models: %s: widths %q: %w", kind, strings.TrimSpace(parts[0]), err)
	}
	a := defaults(widths)
	seen := map[string]bool{}
	for _, p := range parts[1:] {
		key, value, ok := strings.Cut(p, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok || key == "":
			return nil, fmt.Errorf("models: %s: option %q: want KEY=VALUE", kind, strings.TrimSpace(p))
		case seen[key]:
			return nil, fmt.Errorf("models: %s: option %q is given twice", kind, key)
		case !slices.Contains(a.options(), key):
			return nil, fmt.Errorf("models: %s: unknown option %q (want %s)", kind, key, strings.Join(a.options(), ", "))
		}
		seen[key] = true
		if err := a.set(key, value); err != nil {
			return nil, fmt.Errorf("models: %s: option %s=%s: %w", kind, key, value, err)
		}
	}
	if err := a.emit(&emitter{dryRun: true}); err != nil {
		return nil, err
	}
	return a, nil
}

// parser is an architecture that Parse can set options of.
type parser interface {
	Architecture
	options() []string
	set(key, value string) error
}

// architectures returns each architecture with the given widths and its default options.
var architectures = map[string]func(widths []int) parser{
	"mlp": func(w []int) parser { return &MLP{Widths: w, Activation: ReLU, Bias: true} },
	"convnet": func(w []int) parser {
		return &ConvNet{Widths: w, Input: []int{3, 32, 32}, Classes: 10, PoolEvery: 2, Head: HeadFlatten}
	},
	"resnet": func(w []int) parser {
		return &ResNet{Widths: w, Blocks: []int{2}, Input: []int{3, 32, 32}, Classes: 10}
	},
}

// parseInts reads "a,b,c" as positive integers.
func parseInts(s string) ([]int, error) {
	return parseList(s, ",")
}

// parseShape reads "CxHxW" (or one number) as positive integers.
func parseShape(s string) ([]int, error) {
	return parseList(s, "x")
}

func parseList(s, sep string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("empty list")
	}
	var out []int
	for _, f := range strings.Split(s, sep) {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", strings.TrimSpace(f))
		}
		if v < 1 {
			return nil, fmt.Errorf("%d is not positive", v)
		}
		out = append(out, v)
	}
	return out, nil
}

func parsePositive(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("want a positive integer")
	}
	return v, nil
}

func joinInts(v []int, sep string) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, sep)
}

// checkImage checks an image input shape CxHxW.
func checkImage(kind string, in []int) error {
	if len(in) != 3 || in[0] < 1 || in[1] < 1 || in[2] < 1 {
		return fmt.Errorf("models: %s: input shape %s: want CxHxW, three positive sizes", kind, joinInts(in, "x"))
	}
	return nil
}

func checkWidths(kind string, widths []int, least int) error {
	if len(widths) < least {
		return fmt.Errorf("models: %s: widths %q: want at least %d", kind, joinInts(widths, ","), least)
	}
	for i, w := range widths {
		if w < 1 {
			return fmt.Errorf("models: %s: width %d is %d, want a positive size", kind, i+1, w)
		}
	}
	return nil
}

// emitter adds nodes and zero-valued initializers to a builder, keeping the first error. A
// dry-run emitter only lets an architecture check its hyper-parameters.
type emitter struct {
	b      *graph.Builder
	dryRun bool
	err    error
}

func (e *emitter) param(name string, shape ...int) string {
	if e.dryRun {
		return name
	}
	e.b.Initializer(name, &params.Tensor{Shape: shape, Data: make([]float32, params.Size(shape))})
	return name
}

// node adds an operator whose single output is the value named out.
func (e *emitter) node(op, name, out string, inputs []string, attrs ...graph.Attr) string {
	if e.dryRun || e.err != nil {
		return out
	}
	e.err = e.b.Node(op, name, inputs, []string{out}, attrs...)
	return out
}

// io declares the data input [N, in...] and the logits [N, classes].
func (e *emitter) io(in []int, classes int) string {
	if !e.dryRun {
		e.b.Input(InputName, append([]int{-1}, in...))
		e.b.Output(OutputName, []int{-1, classes})
	}
	return InputName
}

// conv adds a square convolution without bias, as nn.Conv2d(in, out, k, stride, pad, bias=False).
func (e *emitter) conv(name, x string, in, out, k, stride, pad int) string {
	w := e.param(name+".weight", out, in, k, k)
	return e.node("Conv", name, name, []string{x, w},
		attrInts("kernel_shape", k, k), attrInts("pads", pad, pad, pad, pad), attrInts("strides", stride, stride))
}

// batchNorm adds nn.BatchNorm2d(c) in inference form (one output, running statistics).
func (e *emitter) batchNorm(name, x string, c int) string {
	inputs := []string{x}
	for _, p := range []string{"weight", "bias", "running_mean", "running_var"} {
		inputs = append(inputs, e.param(name+"."+p, c))
	}
	return e.node("BatchNormalization", name, name, inputs,
		graph.Attr{Name: "epsilon", Value: float32(1e-5)},
		graph.Attr{Name: "momentum", Value: float32(0.9)}) // ONNX's momentum: torch's 0.1
}

// linear adds nn.Linear(in, out, bias) as Gemm with transB=1 (weight [out, in]).
func (e *emitter) linear(name, x, out string, in, units int, bias bool) string {
	inputs := []string{x, e.param(name+".weight", units, in)}
	if bias {
		inputs = append(inputs, e.param(name+".bias", units))
	}
	return e.node("Gemm", name, out, inputs, graph.Attr{Name: "transB", Value: int64(1)})
}

func (e *emitter) flatten(name, x string) string {
	return e.node("Flatten", name, name, []string{x}, graph.Attr{Name: "axis", Value: int64(1)})
}

func attrInts(name string, v ...int) graph.Attr {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return graph.Attr{Name: name, Value: out}
}
