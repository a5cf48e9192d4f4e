package graph

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
	"github.com/ltransfer/ltransfer/params"
)

// Model is a decoded ONNX model: its operator graph, its float32 initializers (the parameters and
// the BatchNorm running statistics) and the original protobuf message, kept so that Save writes
// the file back exactly as the exporting framework wrote it, with only the parameters replaced.
type Model struct {
	// Path is the file the model was loaded from (used in error messages).
	Path string
	// Opset is the version of the default ONNX operator set the model imports.
	Opset int64
	// Input is the data input of the network (the first graph input that is not an initializer).
	Input ValueInfo
	// Output is the first graph output: the logits (or log-probabilities, or probabilities).
	Output ValueInfo
	// Nodes are the operators in graph (topological) order.
	Nodes []*Node
	// Params holds every float32 initializer by name, trainable or not.
	Params params.Set
	// Infos describes every float32 initializer, in file order.
	Infos []ParamInfo

	consts   map[string]tensor.Tensor // initializers that are not float32, as decoded
	proto    *onnxpb.ModelProto
	external map[string]externalRef
	// released names the float32 initializers whose raw bytes were dropped from proto once
	// decoded into Params (they would double the model's memory); withParams writes them back
	// from Params.
	released map[string]bool
}

// Node is one ONNX operator.
type Node struct {
	Name    string
	Op      string
	Inputs  []string // "" marks an omitted optional input
	Outputs []string
	Attrs   map[string]any
}

// ValueInfo names a graph input or output and its declared shape; a dimension that the file
// leaves symbolic (such as the batch size) is -1.
type ValueInfo struct {
	Name  string
	Shape []int
}

// Role says what an initializer is to the network.
type Role string

// The roles of float32 initializers.
const (
	RoleWeight      Role = "weight"       // Conv, Gemm or MatMul weight
	RoleBias        Role = "bias"         // Conv or Gemm bias, or the operand of a bias Add
	RoleNormScale   Role = "norm_scale"   // BatchNormalization or LayerNormalization scale (gamma)
	RoleNormBias    Role = "norm_bias"    // BatchNormalization or LayerNormalization bias (beta)
	RoleRunningMean Role = "running_mean" // BatchNormalization running mean (not trainable)
	RoleRunningVar  Role = "running_var"  // BatchNormalization running variance (not trainable)
	RoleConstant    Role = "constant"     // any other float32 initializer (not trainable)
)

// ParamInfo describes one float32 initializer.
type ParamInfo struct {
	Name      string
	Shape     []int
	Role      Role
	Trainable bool
}

// Load reads an ONNX model file. Initializers stored as external data are read from the model's
// folder.
func Load(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	m, err := decode(bufio.NewReaderSize(f, 64<<10), st.Size(), filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("graph: %s: %w", path, errors.Unwrap(err))
	}
	m.Path = path
	return m, nil
}

// Decode decodes an ONNX model from memory; dir is where external data files are looked up.
func Decode(data []byte, dir string) (*Model, error) {
	return decode(bufio.NewReader(bytes.NewReader(data)), int64(len(data)), dir)
}

// decode decodes an ONNX model of size bytes read from r, parsing it once (see readModel).
func decode(r *bufio.Reader, size int64, dir string) (m *Model, err error) {
	pb, external, err := decodeProto(r, size, dir)
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	b := newBackend()
	if err := feed(b, pb.Graph); err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	m = &Model{proto: pb, external: external, consts: map[string]tensor.Tensor{}, Params: params.Set{}, released: map[string]bool{}}
	if err := m.build(pb, b); err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	return m, nil
}

// build fills the model from our message (names, inputs, order, float32 initializers) and the
// backend it fed (operator attributes, other initializer values).
func (m *Model) build(pb *onnxpb.ModelProto, b *backend) error {
	g := pb.Graph
	for _, imp := range pb.OpsetImport {
		if imp.GetDomain() == "" || imp.GetDomain() == "ai.onnx" {
			m.Opset = imp.GetVersion()
		}
	}
	for i, n := range g.Node {
		name := nodeName(n, i)
		if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
			return fmt.Errorf("node %q (%s): operator domain %q is %w", name, n.GetOpType(), n.GetDomain(), ErrUnsupported)
		}
		m.Nodes = append(m.Nodes, &Node{Name: name, Op: n.GetOpType(), Inputs: n.Input, Outputs: n.Output, Attrs: b.ops[i].attrs})
	}

	decoded := b.tensors()
	isInit := map[string]bool{}
	for _, t := range g.Initializer {
		isInit[t.GetName()] = true
		dims := make([]int, len(t.Dims))
		for i, d := range t.Dims {
			dims[i] = int(d)
		}
		if onnxpb.TensorProto_DataType(t.GetDataType()) == onnxpb.TensorProto_FLOAT {
			m.Params[t.GetName()] = &params.Tensor{Shape: dims, Data: floatsInPlace(t)}
			m.Infos = append(m.Infos, ParamInfo{Name: t.GetName(), Shape: dims})
			if t.RawData != nil {
				t.RawData = nil
				m.released[t.GetName()] = true
			}
			continue
		}
		if dt, ok := decoded[t.GetName()]; ok {
			m.consts[t.GetName()] = dt
		}
		// Other types (strings, float16, ...) stay opaque: untouched in the file, unusable by ops.
	}
	for _, in := range g.Input {
		if !isInit[in.GetName()] {
			m.Input = valueInfo(in)
			break
		}
	}
	if m.Input.Name == "" {
		return fmt.Errorf("%w: the graph has no data input (every input is an initializer)", ErrFormat)
	}
	m.Output = valueInfo(g.Output[0])
	m.untie()
	m.assignRoles()
	return nil
}

func valueInfo(v *onnxpb.ValueInfoProto) ValueInfo {
	vi := ValueInfo{Name: v.GetName()}
	if tt := v.GetType().GetTensorType(); tt != nil && tt.GetShape() != nil {
		for _, d := range tt.GetShape().GetDim() {
			if d.GetDimParam() != "" || d.Value == nil {
				vi.Shape = append(vi.Shape, -1)
			} else {
				vi.Shape = append(vi.Shape, int(d.GetDimValue()))
			}
		}
	}
	return vi
}

// assignRoles classifies every float32 initializer by the operator slots that read it. An
// initializer is trainable when an operator reads it as a weight, a bias or a BatchNorm affine
// parameter; BatchNorm running statistics and other constants are not.
func (m *Model) assignRoles() {
	roles := map[string]Role{}
	// origin maps values computed from an initializer by layout-only operators (a Linear layer
	// without bias is exported as Transpose then MatMul) back to that initializer.
	origin := map[string]string{}
	for _, n := range m.Nodes {
		if len(n.Inputs) == 0 || len(n.Outputs) == 0 || !layoutOps[n.Op] {
			continue
		}
		src := n.Inputs[0]
		if o, ok := origin[src]; ok {
			src = o
		}
		if _, ok := m.Params[src]; ok {
			origin[n.Outputs[0]] = src
		}
	}
	set := func(name string, r Role) {
		if o, ok := origin[name]; ok {
			name = o
		}
		if _, ok := m.Params[name]; ok && name != "" {
			if _, seen := roles[name]; !seen {
				roles[name] = r
			}
		}
	}
	in := func(n *Node, i int) string {
		if i < len(n.Inputs) {
			return n.Inputs[i]
		}
		return ""
	}
	for _, n := range m.Nodes {
		switch n.Op {
		case "Conv", "ConvTranspose":
			set(in(n, 1), RoleWeight)
			set(in(n, 2), RoleBias)
		case "Gemm":
			set(in(n, 0), RoleWeight)
			set(in(n, 1), RoleWeight)
			set(in(n, 2), RoleBias)
		case "MatMul":
			set(in(n, 0), RoleWeight)
			set(in(n, 1), RoleWeight)
		case "Mul":
			// The scale of a normalisation exported decomposed (LayerNormalization before opset
			// 17): a tensor of several values scaling a computed one.
			if len(n.Inputs) == 2 {
				for i, name := range n.Inputs {
					_, other := m.Params[n.Inputs[1-i]]
					if p, ok := m.Params[name]; ok && !other && len(p.Data) > 1 {
						set(name, RoleNormScale)
					}
				}
			}
		case "LayerNormalization":
			set(in(n, 1), RoleNormScale)
			set(in(n, 2), RoleNormBias)
		case "BatchNormalization":
			set(in(n, 1), RoleNormScale)
			set(in(n, 2), RoleNormBias)
			set(in(n, 3), RoleRunningMean)
			set(in(n, 4), RoleRunningVar)
		case "Add", "Sub":
			for _, name := range n.Inputs {
				if o, ok := origin[name]; ok {
					name = o
				}
				if p, ok := m.Params[name]; ok && len(p.Shape) > 0 {
					set(name, RoleBias)
				}
			}
		}
	}
	for i := range m.Infos {
		r, ok := roles[m.Infos[i].Name]
		if !ok {
			r = RoleConstant
		}
		m.Infos[i].Role = r
		m.Infos[i].Trainable = r != RoleConstant && r != RoleRunningMean && r != RoleRunningVar
	}
}

// layoutOps are the operators that change only the layout of their first input.
var layoutOps = map[string]bool{"Transpose": true, "Reshape": true, "Identity": true, "Flatten": true, "Squeeze": true, "Unsqueeze": true}

// Trainable returns the names of the trainable parameters, in file order.
func (m *Model) Trainable() []string {
	var out []string
	for _, in := range m.Infos {
		if in.Trainable {
			out = append(out, in.Name)
		}
	}
	return out
}

// Info returns the description of the named float32 initializer.
func (m *Model) Info(name string) (ParamInfo, bool) {
	for _, in := range m.Infos {
		if in.Name == name {
			return in, true
		}
	}
	return ParamInfo{}, false
}

// ParamCount returns the number of elements in the trainable parameters.
func (m *Model) ParamCount() int {
	n := 0
	for _, name := range m.Trainable() {
		n += len(m.Params[name].Data)
	}
	return n
}

// OpCounts returns how many nodes of each operator type the model has.
func (m *Model) OpCounts() map[string]int {
	out := map[string]int{}
	for _, n := range m.Nodes {
		out[n.Op]++
	}
	return out
}

// SameArchitecture reports whether b has the architecture of a: the same operators in the same
// order with the same attributes, wired the same way, with a float32 parameter of the same shape
// wherever a has one. Checkpoints are compared by this structure, not by their initializer
// lists: parameter and value names may differ (see AdoptNames). The error names the first
// difference.
func SameArchitecture(a, b *Model) error {
	_, err := correspondence(a, b)
	return err
}

// AdoptNames checks that m has the architecture of ref (see SameArchitecture) and renames m's
// float32 parameters to the names of the parameters of ref in the same places, in the model and
// in the files Save writes. Exporters name parameters differently when some were deduplicated in
// one checkpoint and not in another; after AdoptNames the checkpoints of a run key their
// parameters alike.
func (m *Model) AdoptNames(ref *Model) error {
	names, err := correspondence(ref, m)
	if err != nil {
		return err
	}
	return m.renameParams(names)
}

// correspondence matches the nodes of a and b in order and returns, for every float32 parameter
// of b whose counterpart in a has another name, b's name mapped to a's.
func correspondence(a, b *Model) (map[string]string, error) {
	if len(a.Nodes) != len(b.Nodes) {
		return nil, fmt.Errorf("graph: %s has %d nodes, %s has %d", a.Path, len(a.Nodes), b.Path, len(b.Nodes))
	}
	ab, ba := map[string]string{}, map[string]string{} // every name of a to b's and back
	renamed := map[string]string{}
	pair := func(na *Node, side string, k int, x, y string) error {
		px, isParamA := a.Params[x]
		py, isParamB := b.Params[y]
		where := fmt.Sprintf("node %q (%s) %s %d", na.Name, na.Op, side, k)
		switch {
		case isParamA != isParamB:
			return fmt.Errorf("graph: %s is %s in %s and %s in %s", where, describeValue(x, isParamA), a.Path, describeValue(y, isParamB), b.Path)
		case isParamA && !slices.Equal(px.Shape, py.Shape):
			return fmt.Errorf("graph: %s is parameter %q %v in %s and %q %v in %s", where, x, px.Shape, a.Path, y, py.Shape, b.Path)
		}
		if (x == "") != (y == "") {
			return fmt.Errorf("graph: %s is %q in %s and %q in %s", where, x, a.Path, y, b.Path)
		}
		if x == "" {
			return nil
		}
		if (ab[x] != "" && ab[x] != y) || (ba[y] != "" && ba[y] != x) {
			return fmt.Errorf("graph: %s reads %q in %s and %q in %s, which are wired differently", where, x, a.Path, y, b.Path)
		}
		ab[x], ba[y] = y, x
		if isParamA && x != y {
			renamed[y] = x
		}
		return nil
	}
	for i := range a.Nodes {
		na, nb := a.Nodes[i].comparable(), b.Nodes[i].comparable()
		if na.Op != nb.Op || len(na.Inputs) != len(nb.Inputs) || len(na.Outputs) != len(nb.Outputs) {
			return nil, fmt.Errorf("graph: node %d differs: %s has %q (%s) reading %v writing %v, %s has %q (%s) reading %v writing %v",
				i, a.Path, na.Name, na.Op, na.Inputs, na.Outputs, b.Path, nb.Name, nb.Op, nb.Inputs, nb.Outputs)
		}
		if fa, fb := fmt.Sprint(sortedAttrs(na.Attrs)), fmt.Sprint(sortedAttrs(nb.Attrs)); fa != fb {
			return nil, fmt.Errorf("graph: node %q (%s) has attributes %s in %s and %s in %s", na.Name, na.Op, fa, a.Path, fb, b.Path)
		}
		for k := range na.Inputs {
			if err := pair(na, "input", k, na.Inputs[k], nb.Inputs[k]); err != nil {
				return nil, err
			}
		}
		for k := range na.Outputs {
			if err := pair(na, "output", k, na.Outputs[k], nb.Outputs[k]); err != nil {
				return nil, err
			}
		}
	}
	// Parameters that no node reads are matched by name.
	for _, side := range []struct {
		x, y   *Model
		linked map[string]string
	}{{a, b, ab}, {b, a, ba}} {
		for _, in := range side.x.Infos {
			if _, ok := side.linked[in.Name]; ok {
				continue
			}
			if other, ok := side.y.Params[in.Name]; !ok || !slices.Equal(other.Shape, in.Shape) {
				return nil, fmt.Errorf("graph: parameter %q %v of %s, which no node reads, is not in %s", in.Name, in.Shape, side.x.Path, side.y.Path)
			}
		}
	}
	return renamed, nil
}

func describeValue(name string, param bool) string {
	if name == "" {
		return "omitted"
	}
	if param {
		return fmt.Sprintf("parameter %q", name)
	}
	return fmt.Sprintf("value %q", name)
}

// renameParams renames float32 parameters (old name to new), in the model and its message. The
// new names must not name anything else in the graph.
func (m *Model) renameParams(names map[string]string) error {
	if len(names) == 0 {
		return nil
	}
	g := m.proto.Graph
	taken := m.names()
	for old, name := range names {
		if _, ok := m.Params[old]; !ok {
			return fmt.Errorf("graph: %s: no parameter %q to rename", m.Path, old)
		}
		if _, renamedToo := names[name]; taken[name] && !renamedToo {
			return fmt.Errorf("graph: %s: parameter %q cannot take the name %q: the graph already uses it", m.Path, old, name)
		}
	}
	rename := func(s string) string {
		if n, ok := names[s]; ok {
			return n
		}
		return s
	}
	// Nodes may be shared with another model (InferenceCopy): renamed ones are copied.
	for i, n := range m.Nodes {
		if !slices.ContainsFunc(n.Inputs, func(s string) bool { _, ok := names[s]; return ok }) {
			continue
		}
		c := *n
		c.Inputs = make([]string, len(n.Inputs))
		for k, s := range n.Inputs {
			c.Inputs[k] = rename(s)
		}
		m.Nodes[i] = &c
		g.Node[i].Input = slices.Clone(c.Inputs)
	}
	// Graph inputs list the initializers in IR < 4.
	for _, t := range g.Initializer {
		t.Name = proto.String(rename(t.GetName()))
	}
	for _, v := range slices.Concat(g.Input, g.ValueInfo) {
		v.Name = proto.String(rename(v.GetName()))
	}
	ps := make(params.Set, len(m.Params))
	released := make(map[string]bool, len(m.released))
	external := make(map[string]externalRef, len(m.external))
	for k, v := range m.Params {
		ps[rename(k)] = v
	}
	for k, v := range m.released {
		released[rename(k)] = v
	}
	for k, v := range m.external {
		external[rename(k)] = v
	}
	m.Params, m.released, m.external = ps, released, external
	for i := range m.Infos {
		m.Infos[i].Name = rename(m.Infos[i].Name)
	}
	return nil
}

// comparable returns the node as architectures are compared: a BatchNormalization is the same
// layer whether it was exported in training mode (with its running-statistics outputs) or in
// inference mode, since ltransfer decides the mode itself.
func (n *Node) comparable() *Node {
	if n.Op != "BatchNormalization" {
		return n
	}
	c := *n
	c.Outputs = n.Outputs[:min(1, len(n.Outputs))]
	c.Attrs = map[string]any{}
	for k, v := range n.Attrs {
		if k != "training_mode" {
			c.Attrs[k] = v
		}
	}
	return &c
}

// sortedAttrs renders attributes in name order, tensors by shape and values, for comparison.
func sortedAttrs(attrs map[string]any) []string {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		v := attrs[k]
		if t, ok := v.(tensor.Tensor); ok {
			v = fmt.Sprint(t.Shape(), t.Data())
		}
		out[i] = fmt.Sprintf("%s=%v", k, v)
	}
	return out
}
