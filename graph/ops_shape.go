package graph

import (
	"fmt"
	"slices"

	"github.com/ltransfer/ltransfer/params"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// This file holds the kernels of the operators that move values without computing new ones
// (Slice, Split, Pad, Concat, Transpose of any rank) and of the reductions (ReduceMean); their
// shape rules are in shaperules.go. The movers are one kernel, indexed: every output element
// reads one input element (or a fill value), so the gradient scatters the output gradient back
// through the same index map.

// constantOfShape is ConstantOfShape, a shape computation: a known tensor of the shape input 0
// holds, filled with the value attribute (a one-element tensor; float 0 when absent).
func (b *builder) constantOfShape(n *Node) error {
	shape, err := knownInput(b, n, 0)
	if err != nil {
		return err
	}
	dims := make([]int, 0, shape.size())
	for _, d := range shape.asInts() {
		if d < 0 {
			return fmt.Errorf("ConstantOfShape of shape %v", shape.asInts())
		}
		dims = append(dims, int(d))
	}
	size, ok := params.Volume(dims, maxValues)
	if !ok {
		return fmt.Errorf("%w: ConstantOfShape of shape %v: more than %d values", ErrFormat, dims, maxValues)
	}
	fill := &konst{floats: []float32{0}}
	if t, ok := n.Attrs["value"].(tensor.Tensor); ok {
		if fill, err = konstFromTensor(t); err != nil {
			return err
		}
		if fill.size() != 1 {
			return fmt.Errorf("ConstantOfShape value has %d elements, want 1", fill.size())
		}
	}
	out := &konst{shape: dims}
	if fill.isInt() {
		out.ints = slices.Repeat([]int64{fill.ints[0]}, size)
	} else {
		out.floats = slices.Repeat([]float32{fill.floats[0]}, size)
	}
	b.set(n, value{k: out})
	return nil
}

// strides returns the row-major strides of shape.
func strides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// indexMap returns, for every element of outShape in row-major order, the input element that
// src maps its coordinates to, or -1 (the fill value); src rewrites an output coordinate into
// an input coordinate in place and reports false when it falls outside the input.
func indexMap(inShape, outShape []int, src func(coord []int) bool) []int32 {
	st := strides(inShape)
	idx := make([]int32, params.Size(outShape))
	coord := make([]int, len(outShape))
	in := make([]int, len(outShape))
	for o := range idx {
		rem := o
		for ax := len(outShape) - 1; ax >= 0; ax-- {
			coord[ax] = rem % outShape[ax]
			rem /= outShape[ax]
		}
		copy(in, coord)
		if !src(in) {
			idx[o] = -1
			continue
		}
		off := 0
		for ax, c := range in[:len(inShape)] {
			off += c * st[ax]
		}
		idx[o] = int32(off)
	}
	return idx
}

// indexed is an operator whose every output element is one element of its input, or fill where
// the index is -1 (padding).
type indexed struct {
	label    string
	idx      []int32
	fill     float32
	from, to tensor.Shape // the input and output shapes the map is built for
}

func (k *indexed) name() string { return k.label }

func (k *indexed) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if !in[0].Eq(k.from) {
		return nil, fmt.Errorf("%s: input %v, built for %v", k.label, in[0], k.from)
	}
	return k.to.Clone(), nil
}

func (k *indexed) differentiable(int) bool { return true }

func (k *indexed) forward(in [][]float32, _ []tensor.Shape, out []float32) error {
	x := in[0]
	for o, i := range k.idx {
		if i < 0 {
			out[o] = k.fill
		} else {
			out[o] = x[i]
		}
	}
	return nil
}

func (k *indexed) backward(_ int, _ [][]float32, _ []tensor.Shape, _, dOut, dIn []float32) error {
	for o, i := range k.idx {
		if i >= 0 {
			dIn[i] += dOut[o]
		}
	}
	return nil
}

// move adds the output of n computed by the movement mv of its input v (see movement): a
// kernel for a symbolic input, a gather for a known one (a shape computation).
func (b *builder) move(n *Node, out string, v value, mv movement, fill float32) error {
	in := v.shape()
	if v.k != nil {
		k, err := movedKonst(v.k, in, mv)
		if err != nil {
			return err
		}
		b.vals[out] = value{k: k}
		return nil
	}
	x, err := b.symbolic(v)
	if err != nil {
		return err
	}
	y, err := applyKernel(&indexed{label: fmt.Sprintf("%s%v->%v", n.Op, in, mv.out), idx: indexMap(in, mv.out, mv.src), fill: fill,
		from: tensor.Shape(in).Clone(), to: tensor.Shape(mv.out).Clone()}, x)
	if err != nil {
		return err
	}
	b.vals[out] = value{node: y}
	return nil
}

// moved adds Slice, Split and Pad nodes (see moveRules): the outputs that are read, padding
// filled with the Pad value (attribute value before opset 11, input 2 from opset 11 on).
func (b *builder) moved(n *Node) error {
	v, err := b.need(n, 0)
	if err != nil {
		return err
	}
	mvs, err := moveRules[n.Op](b, n, v.shape())
	if err != nil {
		return err
	}
	fill := 0.0
	if n.Op == "Pad" {
		fill = n.attrFloat("value", 0)
		if b.m.Opset >= 11 {
			if fill, err = b.scalarInput(n, 2, 0); err != nil {
				return err
			}
		}
	}
	for i, mv := range mvs {
		name := n.Outputs[i]
		if name == "" || !b.m.isRead(name) {
			continue
		}
		if err := b.move(n, name, v, mv, float32(fill)); err != nil {
			return err
		}
	}
	return nil
}

// concatKernel concatenates its inputs along one axis.
type concatKernel struct {
	axis int
}

func (k *concatKernel) name() string { return fmt.Sprintf("Concat(%d)", k.axis) }

// blocks returns, for shapes concatenated along the axis, the number of outer blocks and each
// input's contiguous run per block.
func (k *concatKernel) blocks(in []tensor.Shape) (int, []int) {
	outer := params.Size(in[0][:k.axis])
	runs := make([]int, len(in))
	for i, s := range in {
		runs[i] = params.Size(s[k.axis:])
	}
	return outer, runs
}

func (k *concatKernel) outShape(in []tensor.Shape) (tensor.Shape, error) {
	shapes := make([][]int, len(in))
	for i, s := range in {
		shapes[i] = s
	}
	return concatShape(k.axis, shapes)
}

func (k *concatKernel) differentiable(int) bool { return true }

func (k *concatKernel) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	outer, runs := k.blocks(shapes)
	o := 0
	for blk := 0; blk < outer; blk++ {
		for i, r := range runs {
			o += copy(out[o:o+r], in[i][blk*r:(blk+1)*r])
		}
	}
	return nil
}

func (k *concatKernel) backward(i int, _ [][]float32, shapes []tensor.Shape, _, dOut, dIn []float32) error {
	outer, runs := k.blocks(shapes)
	width := sumInts(runs)
	at := sumInts(runs[:i])
	r := runs[i]
	for blk := 0; blk < outer; blk++ {
		copy(dIn[blk*r:(blk+1)*r], dOut[blk*width+at:blk*width+at+r])
	}
	return nil
}

// reduceMean is ReduceMean (see reduceRule).
func (b *builder) reduceMean(n *Node) error {
	x, err := b.sym(n, 0)
	if err != nil {
		return err
	}
	in := []int(x.Shape())
	reduced, keep, err := reduceRule(b, n, in)
	if err != nil {
		return err
	}
	if reduced == nil {
		b.set(n, value{node: x})
		return nil
	}
	y, err := applyKernel(&reduceKernel{inShape: tensor.Shape(in).Clone(), reduced: reduced, keep: keep}, x)
	if err != nil {
		return err
	}
	b.set(n, value{node: y})
	return nil
}

// reduceKernel is the mean over a set of axes.
type reduceKernel struct {
	inShape tensor.Shape
	reduced []bool
	keep    bool
	idx     []int32 // output element of every input element
	count   int
}

func (k *reduceKernel) name() string { return fmt.Sprintf("ReduceMean%v", k.reduced) }

func (k *reduceKernel) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if !in[0].Eq(k.inShape) {
		return nil, fmt.Errorf("ReduceMean: input %v, built for %v", in[0], k.inShape)
	}
	return reducedAxes(k.inShape, k.reduced, k.keep, 1), nil
}

// mapping returns the output element of every input element and the number of input elements
// each output averages.
func (k *reduceKernel) mapping() ([]int32, int) {
	if k.idx == nil {
		kept := slices.Clone([]int(k.inShape))
		k.count = 1
		for ax, r := range k.reduced {
			if r {
				kept[ax] = 1
				k.count *= k.inShape[ax]
			}
		}
		st := strides(kept)
		k.idx = make([]int32, k.inShape.TotalSize())
		coord := make([]int, len(kept))
		for i := range k.idx {
			off := 0
			for ax, c := range coord {
				if !k.reduced[ax] {
					off += c * st[ax]
				}
			}
			k.idx[i] = int32(off)
			for ax := len(coord) - 1; ax >= 0; ax-- {
				if coord[ax]++; coord[ax] < k.inShape[ax] {
					break
				}
				coord[ax] = 0
			}
		}
	}
	return k.idx, k.count
}

func (k *reduceKernel) differentiable(int) bool { return true }

func (k *reduceKernel) forward(in [][]float32, _ []tensor.Shape, out []float32) error {
	idx, count := k.mapping()
	sums := make([]float64, len(out))
	for i, v := range in[0] {
		sums[idx[i]] += float64(v)
	}
	for o, s := range sums {
		out[o] = float32(s / float64(count))
	}
	return nil
}

func (k *reduceKernel) backward(_ int, _ [][]float32, _ []tensor.Shape, _, dOut, dIn []float32) error {
	idx, count := k.mapping()
	for i, o := range idx {
		dIn[i] = dOut[o] / float32(count)
	}
	return nil
}

// batchedMatMul is MatMul of operands of rank 2 or more with numpy broadcasting of the batch
// axes: one BLAS product per output matrix. With transB, the second operand holds B^T (the
// weight of a Linear layer applied to a 3-D input).
type batchedMatMul struct {
	transB bool
}

func (k *batchedMatMul) name() string { return fmt.Sprintf("BatchedMatMul(transB=%v)", k.transB) }

// dims returns m, k, n of one product.
func (k *batchedMatMul) dims(a, b tensor.Shape) (int, int, int) {
	m, kk := a[len(a)-2], a[len(a)-1]
	n := b[len(b)-1]
	if k.transB {
		n = b[len(b)-2]
	}
	return m, kk, n
}

func (k *batchedMatMul) outShape(in []tensor.Shape) (tensor.Shape, error) {
	return matMulShape(in[0], in[1], k.transB)
}

// batches returns, for every output matrix, the matrix of a and of b it multiplies.
func (k *batchedMatMul) batches(a, b tensor.Shape) ([]int32, []int32) {
	ba, bb := a[:len(a)-2], b[:len(b)-2]
	out, _ := broadcastShape(ba, bb)
	if len(out) == 0 {
		return []int32{0}, []int32{0}
	}
	return broadcastIndex(ba, out), broadcastIndex(bb, out)
}

func (k *batchedMatMul) differentiable(int) bool { return true }

func (k *batchedMatMul) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	m, kk, n := k.dims(shapes[0], shapes[1])
	ia, ib := k.batches(shapes[0], shapes[1])
	tb, ldb := blas.NoTrans, n
	if k.transB {
		tb, ldb = blas.Trans, kk
	}
	for o := range ia {
		a := in[0][int(ia[o])*m*kk : (int(ia[o])+1)*m*kk]
		w := in[1][int(ib[o])*kk*n : (int(ib[o])+1)*kk*n]
		blas32.Implementation().Sgemm(blas.NoTrans, tb, m, n, kk, 1, a, kk, w, ldb, 0, out[o*m*n:(o+1)*m*n], n)
	}
	return nil
}

func (k *batchedMatMul) backward(i int, in [][]float32, shapes []tensor.Shape, _, dOut, dIn []float32) error {
	m, kk, n := k.dims(shapes[0], shapes[1])
	ia, ib := k.batches(shapes[0], shapes[1])
	impl := blas32.Implementation()
	for o := range ia {
		a := in[0][int(ia[o])*m*kk : (int(ia[o])+1)*m*kk]
		w := in[1][int(ib[o])*kk*n : (int(ib[o])+1)*kk*n]
		g := dOut[o*m*n : (o+1)*m*n]
		switch {
		case i == 0 && k.transB: // dA = dY W, W is n x k
			impl.Sgemm(blas.NoTrans, blas.NoTrans, m, kk, n, 1, g, n, w, kk, 1, dIn[int(ia[o])*m*kk:(int(ia[o])+1)*m*kk], kk)
		case i == 0: // dA = dY B^T, B is k x n
			impl.Sgemm(blas.NoTrans, blas.Trans, m, kk, n, 1, g, n, w, n, 1, dIn[int(ia[o])*m*kk:(int(ia[o])+1)*m*kk], kk)
		case k.transB: // dW = dY^T A, n x k
			impl.Sgemm(blas.Trans, blas.NoTrans, n, kk, m, 1, g, n, a, kk, 1, dIn[int(ib[o])*kk*n:(int(ib[o])+1)*kk*n], kk)
		default: // dB = A^T dY, k x n
			impl.Sgemm(blas.Trans, blas.NoTrans, kk, n, m, 1, a, kk, g, n, 1, dIn[int(ib[o])*kk*n:(int(ib[o])+1)*kk*n], n)
		}
	}
	return nil
}

// matmulND adds a MatMul whose operands are not both 2-D.
func (b *builder) matmulND(n *Node, a, w *G.Node, transB bool) error {
	y, err := applyKernel(&batchedMatMul{transB: transB}, a, w)
	if err != nil {
		return err
	}
	b.set(n, value{node: y})
	return nil
}
