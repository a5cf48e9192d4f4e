package graph

import (
	"fmt"
	"slices"

	"github.com/ltransfer/ltransfer/align"
)

// Unpermuted is a parameter axis that a hidden-unit group reaches but that must not be permuted,
// with the reason (the network's input or output, or an operator the walk does not understand).
type Unpermuted struct {
	Param  string `json:"param"`
	Axis   int    `json:"axis"`
	Reason string `json:"reason"`
}

// Symmetries derives the permutation symmetries of a model from its graph.
//
// Every hidden-unit axis of every value is a list of segments, each a slice of the axis that
// holds the units of one union-find element (in blocks). A Gemm, MatMul or Conv output axis is a
// new element shared with its weight's output axis and its bias; the contracted axis joins the
// input's element with the weight's input axis. Bias adds, BatchNormalization, activations,
// pooling, Dropout and Identity carry segments through; a residual Add (or the scaling Mul of a
// squeeze-and-excitation block) joins the elements of its operands; Flatten (or a Reshape that
// merges trailing axes) after a convolution turns a channel segment into a block segment, whose
// parameter axes move in blocks of H*W. Concat gives each input's segments their slice of the
// output axis (index maps with offsets); Split and Slice take the segments of their slice.
//
// A depthwise convolution (one input channel per group, k output channels each) carries its
// input's segments through, in blocks of k. A grouped convolution with G groups of c_in input
// and c_out output channels keeps two kinds of permutations, both exact and independent: each
// convolution group's output channels form a group of their own (a segment of the output axis:
// permuting output channels within one convolution group permutes rows of the weight that read
// the same inputs), and the input channels take one within-group permutation shared by all G
// convolution groups (a new element of c_in units, which the input's element becomes G copies
// of: the weight's input-channel axis, of length c_in, is shared by every convolution group, so
// only a permutation applied alike to every group can be undone on it). Moving whole
// convolution groups is also exact but is not offered: composed with the within-group
// permutations it would not be one linear assignment per group.
//
// The network input and output axes are fixed; so is every axis an operator the walk does not
// understand touches (a Reshape that splits or interleaves axes, such as a channel shuffle; a
// slice that cuts a group), and such axes are reported. Each class of elements that is not fixed
// and has more than one unit becomes a group of the spec.
//
// The walk needs only the shapes of the values (see shapePass), not an executable graph: it also
// describes models with operators the engine does not run, as long as their shapes are known. An
// operator whose shapes are not known is an error wrapping ErrUnsupported.
func Symmetries(m *Model) (align.Spec, []Unpermuted, error) {
	b, err := newShapePass(m, 1)
	if err != nil {
		return align.Spec{}, nil, fmt.Errorf("graph: %s: %w", m.Path, err)
	}
	w := &symWalker{m: m, b: b, vals: map[string][]axisTag{}, paramAxes: map[paramAxis]axisTag{}, fixed: map[int]string{},
		views: map[string]paramView{}, link: map[int]copies{}, subst: map[int]axisTag{}}
	in := make([]axisTag, len(m.Input.Shape))
	for i := 1; i < len(in); i++ {
		in[i] = w.fixedTag(max(m.Input.Shape[i], 0), "network input")
	}
	w.vals[m.Input.Name] = in
	for _, n := range m.Nodes {
		if err := b.apply(n); err != nil {
			return align.Spec{}, nil, fmt.Errorf("graph: %s: %w", m.Path, nodeError(n, err))
		}
		w.node(n)
	}
	for i, t := range w.vals[m.Output.Name] {
		if i > 0 {
			w.fixTag(w.norm(t), "network output")
		}
	}
	spec, unpermuted := w.spec()
	return spec, unpermuted, nil
}

// seg is a slice of an axis holding the units of one union-find element: positions
// offset..offset+span-1, each unit a run of block positions (span = units*block).
type seg struct {
	elem, offset, span, block int
}

// axisTag labels one axis of a value: its segments, in order; nil for an axis without hidden
// units (the batch, a spatial axis). Positions no segment covers have no hidden units.
type axisTag []seg

type paramAxis struct {
	param string
	axis  int
}

// ref is an axis of an operand: a parameter axis, or a tag of a computed value.
type ref struct {
	t     axisTag
	param string // set for a parameter axis
	axis  int
}

// copies records that an element's units are factor copies of the units of elem (the input of a
// grouped convolution: one within-group permutation shared by every convolution group).
type copies struct {
	elem, factor int
}

type symWalker struct {
	m         *Model
	b         *shapePass
	parent    []int
	size      []int
	name      []string
	fixed     map[int]string  // why a class (by root) is fixed; absent when it is not
	link      map[int]copies  // by root: the element whose copies the class's units are
	subst     map[int]axisTag // by root: classes replaced by the segments of others (see substitute)
	vals      map[string][]axisTag
	paramAxes map[paramAxis]axisTag
	views     map[string]paramView
}

// paramView is a value that is a parameter seen through layout operators: axis i of the value
// is axis axes[i] of the parameter (-1 for an inserted axis of size 1).
type paramView struct {
	param string
	axes  []int
}

func (w *symWalker) newElem(size int, name string) int {
	w.parent = append(w.parent, len(w.parent))
	w.size = append(w.size, size)
	w.name = append(w.name, name)
	return len(w.parent) - 1
}

// newTag returns the tag of a new element of size units covering a whole axis.
func (w *symWalker) newTag(size int, name string) axisTag {
	return axisTag{{elem: w.newElem(size, name), span: size, block: 1}}
}

func (w *symWalker) find(e int) int {
	for w.parent[e] != e {
		w.parent[e] = w.parent[w.parent[e]]
		e = w.parent[e]
	}
	return e
}

// fixedTag returns a new fixed element covering an axis of length n.
func (w *symWalker) fixedTag(n int, reason string) axisTag {
	t := w.newTag(n, "")
	w.fixTag(t, reason)
	return t
}

// fix marks an element's class as fixed (never permuted), remembering the first reason.
func (w *symWalker) fix(e int, reason string) {
	if r := w.find(e); w.fixed[r] == "" {
		w.fixed[r] = reason
	}
}

// fixTag fixes every element of an axis.
func (w *symWalker) fixTag(t axisTag, reason string) {
	for _, s := range t {
		w.fix(s.elem, reason)
	}
}

// union joins two classes. Classes of different sizes cannot be one group: both are fixed.
func (w *symWalker) union(a, b int, reason string) {
	ra, rb := w.find(a), w.find(b)
	if ra == rb {
		return
	}
	fa, fb := w.fixed[ra], w.fixed[rb]
	if fa == "" && fb == "" && w.size[ra] != w.size[rb] {
		w.fix(ra, reason+": sizes differ")
		w.fix(rb, reason+": sizes differ")
		return
	}
	if rb < ra {
		ra, rb = rb, ra
	}
	w.parent[rb] = ra
	if w.fixed[ra] == "" && w.fixed[rb] != "" {
		w.fixed[ra] = w.fixed[rb]
	}
	la, okA := w.link[ra]
	lb, okB := w.link[rb]
	switch {
	case okA && okB && la.factor == lb.factor:
		w.union(la.elem, lb.elem, reason)
	case okA && okB:
		w.fix(ra, fmt.Sprintf("%s: inputs of grouped convolutions with %d and %d groups", reason, la.factor, lb.factor))
	case okB:
		w.link[ra] = lb
	}
	delete(w.link, rb)
}

// resolve returns the tag of an operand axis, creating the element of a parameter axis seen for
// the first time (a new hidden-unit axis named after the node).
func (w *symWalker) resolve(r ref, node string) axisTag {
	if r.param == "" {
		return w.norm(r.t)
	}
	key := paramAxis{r.param, r.axis}
	if t, ok := w.paramAxes[key]; ok {
		return w.norm(t)
	}
	t := w.newTag(w.m.Params[r.param].Shape[r.axis], node)
	w.paramAxes[key] = t
	return t
}

// join declares that two operand axes index the same hidden units.
func (w *symWalker) join(a, b ref, node string) {
	if a.param != "" && b.param == "" {
		a, b = b, a
	}
	if b.param != "" {
		key := paramAxis{b.param, b.axis}
		if _, seen := w.paramAxes[key]; !seen && a.param == "" {
			if a.t == nil {
				return
			}
			w.paramAxes[key] = a.t // the parameter axis takes the operand's segments
			return
		}
	}
	ta, tb := w.resolve(a, node), w.resolve(b, node)
	if ta == nil || tb == nil {
		return
	}
	if !sameSlices(ta, tb) && (w.substitute(tb, ta) || w.substitute(ta, tb)) {
		return
	}
	if !sameSlices(ta, tb) {
		reason := fmt.Sprintf("node %q: differently sliced axes meet", node)
		w.fixTag(ta, reason)
		w.fixTag(tb, reason)
		return
	}
	for i := range ta {
		if ta[i].block != tb[i].block {
			reason := fmt.Sprintf("node %q: blocks of %d and %d units meet", node, ta[i].block, tb[i].block)
			w.fix(ta[i].elem, reason)
			w.fix(tb[i].elem, reason)
			continue
		}
		w.union(ta[i].elem, tb[i].elem, fmt.Sprintf("node %q", node))
	}
}

// substitute replaces, everywhere (see norm), a class whose units one whole axis holds in order
// (such as the output channels of the expanding convolution of a squeeze-and-excitation block,
// met by the sliced channels it scales) by the segments of t, and reports whether it did. Then
// the two axes hold the same segments, as a join requires.
func (w *symWalker) substitute(whole, t axisTag) bool {
	if len(whole) != 1 || whole[0].offset != 0 || whole[0].block != 1 || len(t) == 0 {
		return false
	}
	r := w.find(whole[0].elem)
	if w.fixed[r] != "" || whole[0].span != w.size[r] || t[len(t)-1].offset+t[len(t)-1].span > whole[0].span {
		return false
	}
	if _, ok := w.link[r]; ok {
		return false
	}
	for _, s := range t {
		if w.find(s.elem) == r {
			return false
		}
	}
	w.subst[r] = t
	return true
}

// norm returns a tag with every substituted element replaced: a segment of e (offset o, k
// positions per unit) becomes e's substitute's segments scaled by k from o.
func (w *symWalker) norm(t axisTag) axisTag {
	found := false
	for _, s := range t {
		_, ok := w.subst[w.find(s.elem)]
		found = found || ok
	}
	if !found {
		return t
	}
	var out axisTag
	for _, s := range t {
		sub, ok := w.subst[w.find(s.elem)]
		if !ok {
			out = append(out, s)
			continue
		}
		k := s.block
		for _, r := range w.norm(sub) {
			out = append(out, seg{elem: r.elem, offset: s.offset + r.offset*k, span: r.span * k, block: r.block * k})
		}
	}
	return out
}

// sameSlices reports whether two tags cut their axes into the same segments.
func sameSlices(a, b axisTag) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].offset != b[i].offset || a[i].span != b[i].span {
			return false
		}
	}
	return true
}

// operand returns the axes of input i of n as refs; ok is false for known constants and
// omitted inputs.
func (w *symWalker) operand(n *Node, i int) ([]ref, bool) {
	if i >= len(n.Inputs) || n.Inputs[i] == "" {
		return nil, false
	}
	name := n.Inputs[i]
	if v, ok := w.views[name]; ok {
		return w.viewRefs(v), true
	}
	if p, ok := w.m.Params[name]; ok {
		axes := make([]int, len(p.Shape))
		for a := range axes {
			axes[a] = a
		}
		return w.viewRefs(paramView{param: name, axes: axes}), true
	}
	tags, ok := w.vals[name]
	if !ok {
		return nil, false
	}
	out := make([]ref, len(tags))
	for a, t := range tags {
		out[a] = ref{t: t}
	}
	return out, true
}

func (w *symWalker) viewRefs(v paramView) []ref {
	out := make([]ref, len(v.axes))
	for a, pa := range v.axes {
		if pa >= 0 {
			out[a] = ref{param: v.param, axis: pa}
		}
	}
	return out
}

// fixAll fixes every hidden-unit axis of the node's operands.
func (w *symWalker) fixAll(n *Node, reason string) {
	for i := range n.Inputs {
		refs, _ := w.operand(n, i)
		for _, r := range refs {
			w.fixTag(w.resolve(r, n.Name), reason)
		}
	}
}

// outShape returns the shape the builder computed for output i of n.
func (w *symWalker) outShape(n *Node, i int) []int {
	return w.b.vals[n.Outputs[i]].shape()
}

// inShape returns the shape of input i of n.
func (w *symWalker) inShape(n *Node, i int) []int {
	if t, ok := w.m.Params[n.Inputs[i]]; ok {
		return t.Shape
	}
	return w.b.vals[n.Inputs[i]].shape()
}

func (w *symWalker) setTags(n *Node, refs []ref) {
	w.setOutput(n, 0, refs)
}

func (w *symWalker) setOutput(n *Node, out int, refs []ref) {
	tags := make([]axisTag, len(refs))
	for i, r := range refs {
		tags[i] = w.resolve(r, n.Name)
	}
	w.vals[n.Outputs[out]] = tags
}

// node propagates the symmetry labels through one operator.
func (w *symWalker) node(n *Node) {
	if v := w.b.vals[n.Outputs[0]]; v.k != nil {
		return // a shape computation or constant: no hidden units
	}
	x, ok := w.operand(n, 0)
	if !ok {
		w.fixAll(n, fmt.Sprintf("node %q (%s) reads no computed value", n.Name, n.Op))
		w.fixOutputs(n, fmt.Sprintf("node %q (%s) reads no computed value", n.Name, n.Op))
		return
	}
	switch n.Op {
	case "Identity", "Dropout", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Cast", "Softmax", "LogSoftmax", "MaxPool", "AveragePool",
		"Clip", "HardSigmoid", "HardSwish", "Erf", "Elu", "Selu", "Softplus", "Neg", "Exp", "Sqrt", "Reciprocal":
		// Unary and elementwise along every axis (Softmax along an axis is permutation
		// equivariant too): each axis carries its segments. Clip's min and max are scalars.
		if v, isView := w.viewOf(n.Inputs[0]); isView {
			w.views[n.Outputs[0]] = v
			return
		}
		w.setTags(n, x)
	case "GlobalAveragePool":
		w.setTags(n, []ref{x[0], x[1], {}, {}})
	case "ReduceMean":
		w.reduceMean(n, x)
	case "Pad":
		w.pad(n, x)
	case "Transpose":
		perm := n.attrInts("perm")
		if perm == nil {
			for i := len(x) - 1; i >= 0; i-- {
				perm = append(perm, i)
			}
		}
		if v, isView := w.viewOf(n.Inputs[0]); isView {
			axes := make([]int, len(perm))
			for i, p := range perm {
				axes[i] = v.axes[p]
			}
			w.views[n.Outputs[0]] = paramView{param: v.param, axes: axes}
			return
		}
		out := make([]ref, len(perm))
		for i, p := range perm {
			out[i] = x[p]
		}
		w.setTags(n, out)
	case "Gemm", "MatMul":
		w.gemm(n, x)
	case "Conv":
		w.conv(n, x)
	case "BatchNormalization":
		for i := 1; i < 5; i++ {
			if p, ok := w.operand(n, i); ok && len(p) == 1 {
				w.join(x[1], p[0], n.Name)
			}
		}
		w.setTags(n, x)
	case "Add", "Sub", "Mul", "Div":
		w.elementwise(n)
	case "Reshape", "Flatten", "Squeeze", "Unsqueeze":
		w.reshape(n, x)
	case "Concat":
		w.concat(n)
	case "Split", "Slice":
		w.slice(n, x)
	default: // anything else: the axes it touches stay unpermuted
		reason := fmt.Sprintf("node %q (%s) is not understood by the symmetry walk", n.Name, n.Op)
		w.fixAll(n, reason)
		w.fixOutputs(n, reason)
	}
}

// fixOutputs gives every output of n fixed non-batch axes.
func (w *symWalker) fixOutputs(n *Node, reason string) {
	for i, name := range n.Outputs {
		if name == "" {
			continue
		}
		shape := w.outShape(n, i)
		tags := make([]axisTag, len(shape))
		for a := 1; a < len(shape); a++ {
			tags[a] = w.fixedTag(shape[a], reason)
		}
		w.vals[name] = tags
	}
}

func (w *symWalker) viewOf(name string) (paramView, bool) {
	if v, ok := w.views[name]; ok {
		return v, true
	}
	if p, ok := w.m.Params[name]; ok {
		axes := make([]int, len(p.Shape))
		for a := range axes {
			axes[a] = a
		}
		return paramView{param: name, axes: axes}, true
	}
	return paramView{}, false
}

// ints returns the integers of input i of n, or of attribute attr before opset inputSince (see
// intsInput); the shape pass has read them without error before the walk reaches n.
func (w *symWalker) ints(n *Node, i int, attr string, inputSince int64) []int {
	v, _ := intsInput(w.b, n, i, attr, inputSince)
	return v
}

// reduceMean: a mean over axes is invariant to permutations of them; the reduced axes carry no
// hidden units (kept with size 1 or dropped).
func (w *symWalker) reduceMean(n *Node, x []ref) {
	reduced, keep, _ := reduceRule(w.b, n, w.inShape(n, 0)) // read without error by the shape pass
	if reduced == nil {
		w.setTags(n, x)
		return
	}
	w.setTags(n, reducedAxes(x, reduced, keep, ref{}))
}

// pad: constant padding of axes without hidden units carries the tags; padding a hidden-unit
// axis adds positions that belong to no unit, which the walk does not model.
func (w *symWalker) pad(n *Node, x []ref) {
	pads := w.ints(n, 1, "pads", 11)
	out := slices.Clone(x)
	for a := range x {
		if len(pads) == 2*len(x) && pads[a] == 0 && pads[a+len(x)] == 0 {
			continue
		}
		if a == 0 {
			continue
		}
		reason := fmt.Sprintf("node %q (Pad) pads an axis", n.Name)
		if t := w.resolve(x[a], n.Name); t != nil {
			w.fixTag(t, reason)
			out[a] = ref{t: w.fixedTag(w.outShape(n, 0)[a], reason)}
		}
	}
	w.setTags(n, out)
}

// concat: along its axis each input's segments take the input's slice of the output; the other
// axes are joined as in an elementwise operator.
func (w *symWalker) concat(n *Node) {
	outShape := w.outShape(n, 0)
	axis, err := normAxis(int(n.attrInt("axis", 0)), len(outShape))
	if err != nil {
		w.fixOutputs(n, fmt.Sprintf("node %q (Concat): %v", n.Name, err))
		return
	}
	out := make([]ref, len(outShape))
	var cat axisTag
	offset := 0
	for i := range n.Inputs {
		refs, ok := w.operand(n, i)
		shape := w.inShape(n, i)
		if !ok || len(refs) != len(out) {
			offset += shape[axis]
			continue
		}
		for a, r := range refs {
			if a == axis {
				continue
			}
			if out[a].param == "" && out[a].t == nil {
				out[a] = r
				continue
			}
			w.join(out[a], r, n.Name)
		}
		for _, s := range w.resolve(refs[axis], n.Name) {
			s.offset += offset
			cat = append(cat, s)
		}
		offset += shape[axis]
	}
	out[axis] = ref{t: cat}
	w.setTags(n, out)
}

// slice: Split and Slice outputs take the segments of their slice of the axis; a segment the
// slice cuts is fixed.
func (w *symWalker) slice(n *Node, x []ref) {
	in := w.inShape(n, 0)
	type part struct{ out, axis, from, to int }
	var parts []part
	if n.Op == "Split" {
		axis, err := normAxis(int(n.attrInt("axis", 0)), len(in))
		if err != nil {
			w.fixOutputs(n, fmt.Sprintf("node %q (Split): %v", n.Name, err))
			return
		}
		from := 0
		for i := range n.Outputs {
			d := w.outShape(n, i)[axis]
			parts = append(parts, part{i, axis, from, from + d})
			from += d
		}
	} else {
		starts, ends, axes, steps := w.ints(n, 1, "starts", 10), w.ints(n, 2, "ends", 10), w.ints(n, 3, "axes", 10), w.ints(n, 4, "steps", 10)
		if starts == nil || len(ends) != len(starts) {
			reason := fmt.Sprintf("node %q (Slice) has starts and ends that are not known", n.Name)
			w.fixAll(n, reason)
			w.fixOutputs(n, reason)
			return
		}
		sliced := map[int]bool{}
		for k, s := range starts {
			a := k
			if axes != nil {
				a = axes[k]
			}
			ax, err := normAxis(a, len(in))
			step := 1
			if steps != nil {
				step = steps[k]
			}
			d := in[ax]
			if err != nil || step != 1 {
				reason := fmt.Sprintf("node %q (Slice) steps by %d", n.Name, step)
				w.fixAll(n, reason)
				w.fixOutputs(n, reason)
				return
			}
			clampIdx := func(v int) int {
				if v < 0 {
					v += d
				}
				return min(max(v, 0), d)
			}
			from := clampIdx(s)
			parts = append(parts, part{0, ax, from, from + w.outShape(n, 0)[ax]})
			sliced[ax] = true
		}
		if len(sliced) != len(parts) {
			w.fixAll(n, fmt.Sprintf("node %q (Slice) slices an axis twice", n.Name))
			w.fixOutputs(n, fmt.Sprintf("node %q (Slice) slices an axis twice", n.Name))
			return
		}
	}
	outs := map[int][]ref{}
	for _, p := range parts {
		refs, ok := outs[p.out]
		if !ok {
			refs = slices.Clone(x)
		}
		if p.from == 0 && p.to == in[p.axis] {
			outs[p.out] = refs
			continue
		}
		var t axisTag
		reason := fmt.Sprintf("node %q (%s) cuts a group", n.Name, n.Op)
		for _, s := range w.resolve(x[p.axis], n.Name) {
			switch {
			case s.offset >= p.from && s.offset+s.span <= p.to:
				s.offset -= p.from
				t = append(t, s)
			case s.offset < p.to && p.from < s.offset+s.span:
				w.fix(s.elem, reason)
				lo, hi := max(s.offset, p.from), min(s.offset+s.span, p.to)
				f := w.fixedTag(hi-lo, reason)
				f[0].offset = lo - p.from
				t = append(t, f...)
			}
		}
		refs[p.axis] = ref{t: t}
		outs[p.out] = refs
	}
	for i, refs := range outs {
		w.setOutput(n, i, refs)
	}
}

// gemm: Y = A' B' (+ C): A' rows carry through, A' columns join B' rows, B' columns are the
// output units, which C's last axis shares.
func (w *symWalker) gemm(n *Node, a []ref) {
	bRefs, ok := w.operand(n, 1)
	if !ok || len(a) != 2 || len(bRefs) != 2 {
		reason := fmt.Sprintf("node %q (%s) has operands the symmetry walk does not understand", n.Name, n.Op)
		w.fixAll(n, reason)
		w.fixOutputs(n, reason)
		return
	}
	if n.attrInt("transA", 0) == 1 {
		a = []ref{a[1], a[0]}
	}
	if n.attrInt("transB", 0) == 1 {
		bRefs = []ref{bRefs[1], bRefs[0]}
	}
	w.join(a[1], bRefs[0], n.Name)
	out := []ref{a[0], bRefs[1]}
	if c, ok := w.operand(n, 2); ok {
		w.broadcastJoin(n, out, c, w.outShape(n, 0), w.inShape(n, 2))
	}
	w.setTags(n, out)
}

// conv: the weight's input-channel axis joins the input's channels; its output-channel axis
// (shared with the bias) is the output's channel axis. Depthwise and grouped convolutions are
// described at Symmetries.
func (w *symWalker) conv(n *Node, x []ref) {
	wt, _ := w.operand(n, 1)
	bias, hasBias := w.operand(n, 2)
	groups := int(n.attrInt("group", 1))
	inC, outC := w.inShape(n, 0)[1], w.outShape(n, 0)[1]
	var out ref
	switch {
	case groups == 1:
		w.join(x[1], wt[1], n.Name)
		out = wt[0]
	case groups == inC && outC%inC == 0:
		// Output channel g*k+j reads input channel g alone: the output's units are the input's,
		// in blocks of k.
		k := outC / inC
		var t axisTag
		for _, s := range w.resolve(x[1], n.Name) {
			t = append(t, seg{elem: s.elem, offset: s.offset * k, span: s.span * k, block: s.block * k})
		}
		out = ref{t: t}
		w.join(out, wt[0], n.Name)
	default:
		w.groupedInput(n, x[1], wt[1], groups, inC)
		var t axisTag
		per := outC / groups
		for g := 0; g < groups; g++ {
			t = append(t, w.newTag(per, fmt.Sprintf("%s/group%d", n.Name, g))...)
			t[g].offset = g * per
		}
		out = ref{t: t}
		w.join(out, wt[0], n.Name)
	}
	if hasBias {
		w.join(out, bias[0], n.Name)
	}
	w.setTags(n, []ref{x[0], out, {}, {}})
}

// groupedInput makes the input channels of a grouped convolution groups copies of one
// within-group element, which the weight's input-channel axis holds once.
func (w *symWalker) groupedInput(n *Node, in, weight ref, groups, channels int) {
	t := w.resolve(in, n.Name)
	per := channels / groups
	if len(t) != 1 || t[0].offset != 0 || t[0].span != channels || t[0].block != 1 {
		reason := fmt.Sprintf("node %q (Conv): the input of a grouped convolution (group=%d) is not one group", n.Name, groups)
		w.fixTag(t, reason)
		w.fixTag(w.resolve(weight, n.Name), reason)
		return
	}
	root := w.find(t[0].elem)
	l, ok := w.link[root]
	switch {
	case !ok:
		l = copies{elem: w.newElem(per, n.Name+"/within-group"), factor: groups}
		w.link[root] = l
	case l.factor != groups:
		reason := fmt.Sprintf("node %q (Conv): input of grouped convolutions with %d and %d groups", n.Name, l.factor, groups)
		w.fix(root, reason)
		w.fixTag(w.resolve(weight, n.Name), reason)
		return
	}
	w.join(ref{t: axisTag{{elem: l.elem, span: per, block: 1}}}, weight, n.Name)
}

// elementwise joins the axes that two operands share after numpy broadcasting. A constant
// operand that varies along an axis pins that axis.
func (w *symWalker) elementwise(n *Node) {
	outShape := w.outShape(n, 0)
	out := make([]ref, len(outShape))
	for i := 0; i < 2; i++ {
		if refs, ok := w.operand(n, i); ok {
			w.broadcastJoin(n, out, refs, outShape, w.inShape(n, i))
		}
	}
	for i := 0; i < 2; i++ {
		v := w.b.vals[n.Inputs[i]]
		if v.k == nil {
			continue
		}
		off := len(out) - len(v.k.shape)
		for a, d := range v.k.shape {
			if d > 1 {
				w.fixTag(w.resolve(out[off+a], n.Name), fmt.Sprintf("node %q (%s) has a constant operand", n.Name, n.Op))
			}
		}
	}
	w.setTags(n, out)
}

// broadcastJoin merges an operand's axes (aligned from the right) into out, joining where both
// already have hidden units.
func (w *symWalker) broadcastJoin(n *Node, out, operand []ref, outShape, shape []int) {
	off := len(outShape) - len(shape)
	for a, r := range operand {
		if shape[a] == 1 || off+a < 0 {
			continue
		}
		cur := out[off+a]
		if cur.param == "" && cur.t == nil {
			out[off+a] = r
			continue
		}
		w.join(cur, r, n.Name)
	}
}

// reshape maps axes through Reshape, Flatten, Squeeze and Unsqueeze: axes kept one to one carry
// their tags; axes merged into one give block segments when only the outermost merged axis has
// hidden units (Flatten after a convolution); anything else (a Reshape that splits a channel
// axis, as a channel shuffle does) is fixed.
func (w *symWalker) reshape(n *Node, x []ref) {
	in := w.inShape(n, 0)
	out := w.outShape(n, 0)
	view, isView := w.viewOf(n.Inputs[0])
	res := make([]ref, len(out))
	viewAxes := make([]int, len(out))
	for i := range viewAxes {
		viewAxes[i] = -1
	}
	reason := fmt.Sprintf("node %q (%s) splits or interleaves axes with hidden units", n.Name, n.Op)
	for _, g := range axisGroups(in, out) {
		switch {
		case len(g.in) == 1 && len(g.out) == 1:
			res[g.out[0]] = x[g.in[0]]
			if isView {
				viewAxes[g.out[0]] = view.axes[g.in[0]]
			}
		case len(g.out) == 1 && !isView:
			res[g.out[0]] = w.merge(n, x, in, g.in, reason)
		default:
			for _, a := range g.in {
				w.fixTag(w.resolve(x[a], n.Name), reason)
			}
			for _, a := range g.out {
				res[a] = ref{t: w.fixedTag(out[a], reason)}
			}
		}
	}
	if isView {
		w.views[n.Outputs[0]] = paramView{param: view.param, axes: viewAxes}
		return
	}
	w.setTags(n, res)
}

// merge returns the tag of axes merged into one.
func (w *symWalker) merge(n *Node, x []ref, in []int, axes []int, reason string) ref {
	size := 1
	for _, a := range axes {
		size *= in[a]
	}
	for _, a := range axes {
		for _, s := range w.resolve(x[a], n.Name) {
			if r := w.fixed[w.find(s.elem)]; r != "" {
				// Merging with a fixed axis (the network input, say) fixes the result for the same reason.
				for _, b := range axes {
					w.fixTag(w.resolve(x[b], n.Name), r)
				}
				return ref{t: w.fixedTag(size, r)}
			}
		}
	}
	hidden := -1
	for _, a := range axes {
		if t := w.resolve(x[a], n.Name); t != nil && in[a] > 1 {
			if hidden >= 0 {
				hidden = -2
				break
			}
			hidden = a
		}
	}
	switch {
	case hidden == -1:
		return ref{}
	case hidden >= 0 && hidden == firstNonUnit(in, axes):
		inner := 1
		for _, a := range axes {
			if a > hidden {
				inner *= in[a]
			}
		}
		var t axisTag
		for _, s := range w.resolve(x[hidden], n.Name) {
			t = append(t, seg{elem: s.elem, offset: s.offset * inner, span: s.span * inner, block: s.block * inner})
		}
		return ref{t: t}
	}
	for _, a := range axes {
		w.fixTag(w.resolve(x[a], n.Name), reason)
	}
	return ref{t: w.fixedTag(size, reason)}
}

func firstNonUnit(shape []int, axes []int) int {
	for _, a := range axes {
		if shape[a] > 1 {
			return a
		}
	}
	return -1
}

// axisGroup is a run of input axes and output axes of a reshape that hold the same elements.
type axisGroup struct{ in, out []int }

// axisGroups splits a reshape into minimal groups of consecutive axes with equal products; axes
// of size 1 form groups of their own.
func axisGroups(in, out []int) []axisGroup {
	var groups []axisGroup
	i, j := 0, 0
	for i < len(in) || j < len(out) {
		switch {
		case i < len(in) && in[i] == 1 && (j >= len(out) || out[j] != 1):
			groups = append(groups, axisGroup{in: []int{i}})
			i++
			continue
		case j < len(out) && out[j] == 1 && (i >= len(in) || in[i] != 1):
			groups = append(groups, axisGroup{out: []int{j}})
			j++
			continue
		}
		if i >= len(in) || j >= len(out) {
			break
		}
		g := axisGroup{in: []int{i}, out: []int{j}}
		pi, po := in[i], out[j]
		i, j = i+1, j+1
		for pi != po {
			if pi < po && i < len(in) {
				g.in = append(g.in, i)
				pi *= in[i]
				i++
			} else if j < len(out) {
				g.out = append(g.out, j)
				po *= out[j]
				j++
			} else {
				break
			}
		}
		groups = append(groups, g)
	}
	return groups
}

// spec collects the groups: every class with parameter members that is not fixed and has more
// than one unit. A class whose units are copies of another element's (a grouped convolution's
// input) contributes its members to that element's group, with a repeat. A class that would give
// one parameter two members (a Concat of a value with itself) is left unpermuted: its
// assignment would not be linear.
func (w *symWalker) spec() (align.Spec, []Unpermuted) {
	order := map[string]int{}
	for i, in := range w.m.Infos {
		order[in.Name] = i
	}
	keys := make([]paramAxis, 0, len(w.paramAxes))
	for k := range w.paramAxes {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b paramAxis) int {
		if order[a.param] != order[b.param] {
			return order[a.param] - order[b.param]
		}
		return a.axis - b.axis
	})
	// A class and the element it copies are fixed together.
	for root, l := range w.link {
		if r := w.fixed[w.find(root)]; r != "" {
			w.fix(l.elem, r)
		}
	}
	reasonOf := func(root int) string {
		if r := w.fixed[root]; r != "" {
			return r
		}
		if l, ok := w.link[root]; ok {
			return w.fixed[w.find(l.elem)]
		}
		return ""
	}
	type member struct {
		key paramAxis
		m   align.Member
	}
	byGroup := map[int][]member{}
	var roots []int
	var unpermuted []Unpermuted
	for _, k := range keys {
		for _, s := range w.norm(w.paramAxes[k]) {
			root := w.find(s.elem)
			if reason := reasonOf(root); reason != "" {
				unpermuted = append(unpermuted, Unpermuted{Param: k.param, Axis: k.axis, Reason: reason})
				continue
			}
			mb := align.Member{Param: k.param, Axis: k.axis, Block: s.block, Offset: s.offset, Repeat: 1}
			if l, ok := w.link[root]; ok {
				root, mb.Repeat = w.find(l.elem), l.factor
			}
			if _, ok := byGroup[root]; !ok {
				roots = append(roots, root)
			}
			byGroup[root] = append(byGroup[root], member{k, mb})
		}
	}
	slices.Sort(roots)
	var spec align.Spec
	for _, r := range roots {
		members := byGroup[r]
		if w.size[r] < 2 {
			continue
		}
		twice := ""
		seen := map[string]bool{}
		for _, mb := range members {
			if seen[mb.key.param] {
				twice = mb.key.param
			}
			seen[mb.key.param] = true
		}
		if twice != "" {
			for _, mb := range members {
				unpermuted = append(unpermuted, Unpermuted{Param: mb.key.param, Axis: mb.key.axis,
					Reason: fmt.Sprintf("group %q reaches parameter %q twice", w.name[r], twice)})
			}
			continue
		}
		g := align.Group{Name: w.name[r], Size: w.size[r]}
		for _, mb := range members {
			g.Members = append(g.Members, mb.m)
		}
		spec.Groups = append(spec.Groups, g)
	}
	return spec, unpermuted
}
