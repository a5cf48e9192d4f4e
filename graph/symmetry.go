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
// Every axis of every value is an element of a union-find structure. A Gemm, MatMul or Conv
// output axis is a new hidden-unit element shared with its weight's output axis and its bias;
// the contracted axis joins the input's element with the weight's input axis. Bias adds,
// BatchNormalization, activations, pooling, Dropout and Identity carry elements through; a
// residual Add joins the elements of its operands; Flatten (or a Reshape that merges trailing
// axes) after a convolution turns a channel element into a block element, whose parameter axes
// move in blocks of H*W. The network input and output axes are fixed; so is every axis an
// operator the walk does not understand touches (Concat, a Reshape that splits or interleaves
// axes, grouped convolution other than depthwise), and such axes are reported. Each class of
// elements that is not fixed and has more than one unit becomes a group of the spec.
func Symmetries(m *Model) (align.Spec, []Unpermuted, error) {
	if err := m.CheckSupported(); err != nil {
		return align.Spec{}, nil, err
	}
	b, _, err := newBuilder(m, 1, false)
	if err != nil {
		return align.Spec{}, nil, fmt.Errorf("graph: %s: %w", m.Path, err)
	}
	w := &symWalker{m: m, b: b, vals: map[string][]tag{}, paramAxes: map[paramAxis]tag{}, fixed: map[int]string{}, views: map[string]paramView{}}
	in := make([]tag, len(m.Input.Shape))
	for i := 1; i < len(in); i++ {
		in[i] = w.fixedTag("network input")
	}
	in[0] = none
	w.vals[m.Input.Name] = in
	for _, n := range m.Nodes {
		if err := b.apply(n); err != nil {
			return align.Spec{}, nil, fmt.Errorf("graph: %s: %w", m.Path, nodeError(n, err))
		}
		w.node(n)
	}
	for i, t := range w.vals[m.Output.Name] {
		if i > 0 {
			w.fix(t.elem, "network output")
		}
	}
	spec, unpermuted := w.spec()
	return spec, unpermuted, nil
}

// tag labels one axis of a value: the union-find element of its hidden units (-1: not a
// hidden-unit axis, such as the batch or a spatial axis) and the block size of each unit.
type tag struct {
	elem  int
	block int
}

var none = tag{elem: -1, block: 1}

type paramAxis struct {
	param string
	axis  int
}

// ref is an axis of an operand: a parameter axis, or a tag of a computed value.
type ref struct {
	t     tag
	param string // set for a parameter axis
	axis  int
}

type symWalker struct {
	m         *Model
	b         *builder
	parent    []int
	size      []int
	name      []string
	fixed     map[int]string // why a class (by root) is fixed; absent when it is not
	vals      map[string][]tag
	paramAxes map[paramAxis]tag
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

func (w *symWalker) find(e int) int {
	for w.parent[e] != e {
		w.parent[e] = w.parent[w.parent[e]]
		e = w.parent[e]
	}
	return e
}

func (w *symWalker) fixedTag(reason string) tag {
	e := w.newElem(0, "")
	w.fix(e, reason)
	return tag{elem: e, block: 1}
}

// fix marks an element's class as fixed (never permuted), remembering the first reason.
func (w *symWalker) fix(e int, reason string) {
	if e < 0 {
		return
	}
	if r := w.find(e); w.fixed[r] == "" {
		w.fixed[r] = reason
	}
}

// union joins two classes. Classes of different sizes cannot be one group: both are fixed.
func (w *symWalker) union(a, b int, reason string) {
	if a < 0 || b < 0 {
		return
	}
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
	if w.size[ra] == 0 {
		w.size[ra] = w.size[rb]
	}
}

// resolve returns the tag of an operand axis, creating the element of a parameter axis seen for
// the first time (a new hidden-unit axis named after the node).
func (w *symWalker) resolve(r ref, node string) tag {
	if r.param == "" {
		return r.t
	}
	key := paramAxis{r.param, r.axis}
	if t, ok := w.paramAxes[key]; ok {
		return t
	}
	t := tag{elem: w.newElem(w.m.Params[r.param].Shape[r.axis], node), block: 1}
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
			if a.t.elem < 0 {
				return
			}
			w.paramAxes[key] = a.t // the parameter axis takes the operand's element and block
			return
		}
	}
	ta, tb := w.resolve(a, node), w.resolve(b, node)
	if ta.block != tb.block {
		w.fix(ta.elem, fmt.Sprintf("node %q: blocks of %d and %d units meet", node, ta.block, tb.block))
		w.fix(tb.elem, fmt.Sprintf("node %q: blocks of %d and %d units meet", node, ta.block, tb.block))
		return
	}
	if ta.elem < 0 || tb.elem < 0 {
		return
	}
	w.union(ta.elem, tb.elem, fmt.Sprintf("node %q", node))
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
		if pa < 0 {
			out[a] = ref{t: none}
		} else {
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
			w.fix(w.resolve(r, n.Name).elem, reason)
		}
	}
}

// outShape returns the shape the builder computed for output i of n.
func (w *symWalker) outShape(n *Node, i int) []int {
	return w.b.vals[n.Outputs[i]].shape()
}

func (w *symWalker) setTags(n *Node, refs []ref) {
	tags := make([]tag, len(refs))
	for i, r := range refs {
		tags[i] = w.resolve(r, n.Name)
	}
	w.vals[n.Outputs[0]] = tags
}

// node propagates the symmetry labels through one operator.
func (w *symWalker) node(n *Node) {
	if v := w.b.vals[n.Outputs[0]]; v.k != nil {
		return // a shape computation or constant: no hidden units
	}
	x, ok := w.operand(n, 0)
	if !ok {
		w.fixAll(n, fmt.Sprintf("node %q (%s) reads no computed value", n.Name, n.Op))
		w.setTags(n, w.fixedRefs(n, len(w.outShape(n, 0))))
		return
	}
	switch n.Op {
	case "Identity", "Dropout", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Cast", "Softmax", "LogSoftmax", "MaxPool", "AveragePool":
		if v, isView := w.viewOf(n.Inputs[0]); isView {
			w.views[n.Outputs[0]] = v
			return
		}
		w.setTags(n, x)
	case "GlobalAveragePool":
		w.setTags(n, []ref{x[0], x[1], {t: none}, {t: none}})
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
	default: // Concat and anything else: the axes it touches stay unpermuted
		w.fixAll(n, fmt.Sprintf("node %q (%s) is not understood by the symmetry walk", n.Name, n.Op))
		w.setTags(n, w.fixedRefs(n, len(w.outShape(n, 0))))
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

// fixedRefs returns refs for an output whose non-batch axes are fixed.
func (w *symWalker) fixedRefs(n *Node, rank int) []ref {
	out := make([]ref, rank)
	for i := range out {
		out[i] = ref{t: none}
		if i > 0 {
			out[i] = ref{t: w.fixedTag(fmt.Sprintf("node %q (%s) is not understood by the symmetry walk", n.Name, n.Op))}
		}
	}
	return out
}

// gemm: Y = A' B' (+ C): A' rows carry through, A' columns join B' rows, B' columns are the
// output units, which C's last axis shares.
func (w *symWalker) gemm(n *Node, a []ref) {
	bRefs, ok := w.operand(n, 1)
	if !ok || len(a) != 2 || len(bRefs) != 2 {
		w.fixAll(n, fmt.Sprintf("node %q (%s) has operands the symmetry walk does not understand", n.Name, n.Op))
		w.setTags(n, w.fixedRefs(n, len(w.outShape(n, 0))))
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
		w.broadcastJoin(n, out, c, w.outShape(n, 0), w.b.vals[n.Inputs[2]].shape())
	}
	w.setTags(n, out)
}

// conv: the weight's input-channel axis joins the input's channels; its output-channel axis
// (shared with the bias) is the output's channel axis. A depthwise convolution carries the
// input's channel element through.
func (w *symWalker) conv(n *Node, x []ref) {
	wt, _ := w.operand(n, 1)
	bias, hasBias := w.operand(n, 2)
	group := int(n.attrInt("group", 1))
	channels := w.b.vals[n.Inputs[0]].shape()[1]
	var outC ref
	switch {
	case group == 1:
		w.join(x[1], wt[1], n.Name)
		outC = wt[0]
	case group == channels && w.outShape(n, 0)[1] == channels:
		w.join(x[1], wt[0], n.Name)
		outC = x[1]
	default:
		reason := fmt.Sprintf("node %q (Conv) is a grouped convolution (group=%d)", n.Name, group)
		w.fixAll(n, reason)
		outC = ref{t: w.fixedTag(reason)}
	}
	if hasBias {
		w.join(outC, bias[0], n.Name)
	}
	w.setTags(n, []ref{x[0], outC, {t: none}, {t: none}})
}

// elementwise joins the axes that two operands share after numpy broadcasting. A constant
// operand that varies along an axis pins that axis.
func (w *symWalker) elementwise(n *Node) {
	outShape := w.outShape(n, 0)
	out := make([]ref, len(outShape))
	for i := range out {
		out[i] = ref{t: none}
	}
	for i := 0; i < 2; i++ {
		if refs, ok := w.operand(n, i); ok {
			w.broadcastJoin(n, out, refs, outShape, w.b.vals[n.Inputs[i]].shape())
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
				w.fix(w.resolve(out[off+a], n.Name).elem, fmt.Sprintf("node %q (%s) has a constant operand", n.Name, n.Op))
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
		if cur.param == "" && cur.t.elem < 0 {
			out[off+a] = r
			continue
		}
		w.join(cur, r, n.Name)
	}
}

// reshape maps axes through Reshape, Flatten, Squeeze and Unsqueeze: axes kept one to one carry
// their tags; axes merged into one give a block tag when only the outermost merged axis has
// hidden units (Flatten after a convolution); anything else is fixed.
func (w *symWalker) reshape(n *Node, x []ref) {
	in := w.b.vals[n.Inputs[0]].shape()
	out := w.outShape(n, 0)
	view, isView := w.viewOf(n.Inputs[0])
	res := make([]ref, len(out))
	viewAxes := make([]int, len(out))
	for i := range res {
		res[i], viewAxes[i] = ref{t: none}, -1
	}
	reason := fmt.Sprintf("node %q (%s) mixes axes", n.Name, n.Op)
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
				w.fix(w.resolve(x[a], n.Name).elem, reason)
			}
			for _, a := range g.out {
				res[a] = ref{t: w.fixedTag(reason)}
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
	for _, a := range axes {
		if t := w.resolve(x[a], n.Name); t.elem >= 0 && w.fixed[w.find(t.elem)] != "" {
			// Merging with a fixed axis (the network input, say) fixes the result for the same reason.
			for _, b := range axes {
				w.union(t.elem, w.resolve(x[b], n.Name).elem, reason)
			}
			return ref{t: t}
		}
	}
	hidden := -1
	for _, a := range axes {
		if t := w.resolve(x[a], n.Name); t.elem >= 0 && in[a] > 1 {
			if hidden >= 0 {
				hidden = -2
				break
			}
			hidden = a
		}
	}
	switch {
	case hidden == -1:
		return ref{t: none}
	case hidden >= 0 && hidden == firstNonUnit(in, axes):
		t := w.resolve(x[hidden], n.Name)
		inner := 1
		for _, a := range axes {
			if a > hidden {
				inner *= in[a]
			}
		}
		return ref{t: tag{elem: t.elem, block: t.block * inner}}
	}
	for _, a := range axes {
		w.fix(w.resolve(x[a], n.Name).elem, reason)
	}
	return ref{t: w.fixedTag(reason)}
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
// than one unit.
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
	groups := map[int]*align.Group{}
	var roots []int
	var unpermuted []Unpermuted
	for _, k := range keys {
		t := w.paramAxes[k]
		if t.elem < 0 {
			continue
		}
		root := w.find(t.elem)
		if reason := w.fixed[root]; reason != "" {
			unpermuted = append(unpermuted, Unpermuted{Param: k.param, Axis: k.axis, Reason: reason})
			continue
		}
		g, ok := groups[root]
		if !ok {
			g = &align.Group{Name: w.name[root], Size: w.size[root]}
			groups[root] = g
			roots = append(roots, root)
		}
		g.Members = append(g.Members, align.Member{Param: k.param, Axis: k.axis, Block: t.block})
	}
	slices.Sort(roots)
	var spec align.Spec
	for _, r := range roots {
		if g := groups[r]; g.Size > 1 {
			spec.Groups = append(spec.Groups, *g)
		}
	}
	return spec, unpermuted
}
