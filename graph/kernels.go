package graph

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gorgonia.org/tensor"
)

// softmaxCrossEntropy is the mean cross-entropy of logits (N x K) against integer labels, the
// loss of PyTorch's nn.CrossEntropyLoss. It is one fused operator so that it is computed stably
// (log-sum-exp with the row maximum subtracted) and its gradient is (softmax - onehot) / N.
type softmaxCrossEntropy struct {
	labels []int64 // set before every run
}

func (k *softmaxCrossEntropy) name() string { return "SoftmaxCrossEntropy" }

func (k *softmaxCrossEntropy) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if in[0].Dims() != 2 {
		return nil, fmt.Errorf("cross-entropy needs N x K logits, got shape %v", in[0])
	}
	return tensor.ScalarShape(), nil
}

func (k *softmaxCrossEntropy) differentiable(i int) bool { return i == 0 }

// rows iterates over the logit rows with their label, checking labels against the class count.
func (k *softmaxCrossEntropy) rows(logits []float32, shape tensor.Shape, f func(row []float32, label int)) error {
	n, c := shape[0], shape[1]
	if len(k.labels) != n {
		return fmt.Errorf("cross-entropy: %d labels for a batch of %d", len(k.labels), n)
	}
	for i := 0; i < n; i++ {
		y := k.labels[i]
		if y < 0 || y >= int64(c) {
			return fmt.Errorf("cross-entropy: label %d of example %d is outside the model's %d classes", y, i, c)
		}
		f(logits[i*c:(i+1)*c], int(y))
	}
	return nil
}

// CrossEntropy returns -log softmax(logits)[label], computed stably in float64: the loss of
// one example, as the training loss computes it.
func CrossEntropy(logits []float32, label int) float64 {
	m, lse := logSumExp(logits)
	return m + lse - float64(logits[label])
}

// logSumExp returns max(row) and log(sum(exp(row - max))) in float64.
func logSumExp(row []float32) (float64, float64) {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - m)
	}
	return m, math.Log(s)
}

func (k *softmaxCrossEntropy) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	var total float64
	err := k.rows(in[0], shapes[0], func(row []float32, y int) {
		total += CrossEntropy(row, y)
	})
	out[0] = float32(total / float64(shapes[0][0]))
	return err
}

func (k *softmaxCrossEntropy) backward(_ int, in [][]float32, shapes []tensor.Shape, _, dOut, dIn []float32) error {
	scale := float64(dOut[0]) / float64(shapes[0][0])
	c := shapes[0][1]
	i := 0
	return k.rows(in[0], shapes[0], func(row []float32, y int) {
		m, lse := logSumExp(row)
		d := dIn[i*c : (i+1)*c]
		for j, v := range row {
			d[j] = float32(math.Exp(float64(v)-m-lse) * scale)
		}
		d[y] -= float32(scale)
		i++
	})
}

// relu is Relu, max(0, x), with PyTorch's gradient: the output gradient where x > 0, else 0. A
// NaN input passes through, and so does its gradient, as in PyTorch.
type relu struct{}

func (relu) name() string { return "Relu" }

func (relu) outShape(in []tensor.Shape) (tensor.Shape, error) { return in[0].Clone(), nil }

func (relu) differentiable(int) bool { return true }

func (relu) overwrites(int) bool { return true }

func (relu) forward(in [][]float32, _ []tensor.Shape, out []float32) error {
	parallelRange(len(out), elementGrain, func(lo, hi int) {
		reluInto(out[lo:hi], in[0][lo:hi])
	})
	return nil
}

// gradReads tells that the gradient reads the output (arg 1) and its gradient (arg 2) only: the
// output is 0 exactly where the input is at most 0, and NaN where it is NaN.
func (relu) gradReads(_, arg int) bool { return arg > 0 }

func (relu) backward(_ int, _ [][]float32, _ []tensor.Shape, out, dOut, dIn []float32) error {
	parallelRange(len(dIn), elementGrain, func(lo, hi int) {
		for i, v := range out[lo:hi] {
			g := dOut[lo+i]
			if v <= 0 {
				g = 0
			}
			dIn[lo+i] = g
		}
	})
	return nil
}

// binaryOp is an elementwise arithmetic operator with numpy (ONNX multidirectional) broadcasting.
type binaryOp struct {
	op        string // Add, Sub, Mul or Div
	ia, ib    []int32
	shape     tensor.Shape
	broadcast bool // an input's shape differs from the output's: gradients need both shapes
	// relu is set when the kernel also computes the Relu that alone reads its output, in a
	// forward-only program (see fusedConv): the kernel then has no gradient.
	relu bool
}

func (k *binaryOp) name() string {
	if k.relu {
		return k.op + "+Relu"
	}
	return k.op
}

func (k *binaryOp) outShape(in []tensor.Shape) (tensor.Shape, error) {
	out, err := broadcastShape(in[0], in[1])
	k.broadcast = err == nil && !(in[0].Eq(out) && in[1].Eq(out))
	return out, err
}

func (k *binaryOp) differentiable(int) bool { return !k.relu }

// broadcastShape returns the numpy broadcast of two shapes.
func broadcastShape(a, b tensor.Shape) (tensor.Shape, error) {
	n := max(len(a), len(b))
	out := make(tensor.Shape, n)
	for i := 0; i < n; i++ {
		da, db := dimFromEnd(a, n-1-i), dimFromEnd(b, n-1-i)
		switch {
		case da == db || db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

func dimFromEnd(s tensor.Shape, fromEnd int) int {
	i := len(s) - 1 - fromEnd
	if i < 0 {
		return 1
	}
	return s[i]
}

// indexMaps returns, for every output element, the index of the element of each input it reads.
func (k *binaryOp) indexMaps(a, b tensor.Shape) ([]int32, []int32) {
	out, _ := broadcastShape(a, b)
	if k.ia != nil && out.Eq(k.shape) {
		return k.ia, k.ib
	}
	k.shape = out
	k.ia, k.ib = broadcastIndex(a, out), broadcastIndex(b, out)
	return k.ia, k.ib
}

// broadcastIndex maps every element of the output shape to the element of in it reads.
func broadcastIndex(in, out tensor.Shape) []int32 {
	n := len(out)
	strides := make([]int, n)
	s := 1
	for i := n - 1; i >= 0; i-- {
		if d := dimFromEnd(in, n-1-i); d != 1 {
			strides[i] = s
			s *= d
		}
	}
	idx := make([]int32, out.TotalSize())
	coord := make([]int, n)
	cur := 0
	for o := range idx {
		idx[o] = int32(cur)
		for ax := n - 1; ax >= 0; ax-- {
			coord[ax]++
			cur += strides[ax]
			if coord[ax] < out[ax] {
				break
			}
			cur -= strides[ax] * coord[ax]
			coord[ax] = 0
		}
	}
	return idx
}

// overwrites tells that the forward pass writes every output value.
func (k *binaryOp) overwrites(i int) bool { return i < 0 }

// gradReads tells that the gradients of Add and Sub read only the output's gradient (arg 3),
// and the inputs' shapes when they broadcast; those of Mul and Div the inputs too, never the
// output.
func (k *binaryOp) gradReads(_, arg int) bool {
	return arg == 3 || (arg < 2 && (k.broadcast || (k.op != "Add" && k.op != "Sub")))
}

func (k *binaryOp) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	a, b := in[0], in[1]
	if k.op == "Add" && len(a) == len(out) && len(b) == len(out) { // no broadcasting, no index maps
		parallelRange(len(out), elementGrain, func(lo, hi int) {
			for o, v := range a[lo:hi] {
				out[lo+o] = v + b[lo+o]
			}
			if k.relu {
				reluInPlace(out[lo:hi])
			}
		})
		return nil
	}
	if k.relu {
		defer reluInPlace(out)
	}
	ia, ib := k.indexMaps(shapes[0], shapes[1])
	switch k.op {
	case "Add":
		for o := range out {
			out[o] = a[ia[o]] + b[ib[o]]
		}
	case "Sub":
		for o := range out {
			out[o] = a[ia[o]] - b[ib[o]]
		}
	case "Mul":
		for o := range out {
			out[o] = a[ia[o]] * b[ib[o]]
		}
	case "Div":
		for o := range out {
			out[o] = a[ia[o]] / b[ib[o]]
		}
	default:
		return fmt.Errorf("unknown elementwise operator %s", k.op)
	}
	return nil
}

func (k *binaryOp) backward(i int, in [][]float32, shapes []tensor.Shape, _, dOut, dIn []float32) error {
	if k.relu {
		return errFusedGradient
	}
	if (k.op == "Add" || k.op == "Sub") && len(dIn) == len(dOut) {
		// The input has the output's shape: its index map is the identity.
		sign := float32(1)
		if k.op == "Sub" && i == 1 {
			sign = -1
		}
		for o, g := range dOut {
			dIn[o] = sign * g
		}
		return nil
	}
	ia, ib := k.indexMaps(shapes[0], shapes[1])
	a, b := in[0], in[1]
	idx := ia
	if i == 1 {
		idx = ib
	}
	if k.op == "Add" || k.op == "Sub" {
		sign := float32(1)
		if k.op == "Sub" && i == 1 {
			sign = -1
		}
		for o, g := range dOut {
			dIn[idx[o]] += sign * g
		}
		return nil
	}
	for o, g := range dOut {
		var d float32
		switch {
		case k.op == "Mul" && i == 0:
			d = g * b[ib[o]]
		case k.op == "Mul":
			d = g * a[ia[o]]
		case i == 0: // Div
			d = g / b[ib[o]]
		default:
			bv := b[ib[o]]
			d = -g * a[ia[o]] / (bv * bv)
		}
		dIn[idx[o]] += d
	}
	return nil
}

// batchNorm is BatchNormalization over axis 1 of an N x C x ... input. In training mode it
// normalises with the batch mean and biased variance (and records them, with the unbiased
// variance, for running statistics); in evaluation mode it reads the running mean and variance as
// inputs 3 and 4.
type batchNorm struct {
	epsilon  float64
	training bool
	// BatchMean and BatchVar hold the statistics of the last training-mode forward pass, the
	// variance unbiased (as PyTorch accumulates it into running_var).
	batchMean, batchVar []float64
	// sums is what the backward calls of one run share (Gorgonia calls backward once per
	// differentiable input, with the same input and output gradient); forward clears it.
	sums *bnSums
	// relu is set when the kernel also computes the Relu that alone reads its output, in a
	// forward-only program (see fusedConv): the kernel then has no gradient.
	relu bool
}

// bnSums are the per-channel statistics and gradient sums of one backward pass, for the input x
// and output gradient dOut whose first elements they record.
type bnSums struct {
	x, dOut                        *float32
	mean, invstd, sumDy, sumDyXhat []float64
}

func (k *batchNorm) name() string {
	mode := "eval"
	if k.training {
		mode = "train"
	}
	if k.relu {
		return "BatchNormalization(" + mode + ")+Relu"
	}
	return "BatchNormalization(" + mode + ")"
}

func (k *batchNorm) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if in[0].Dims() < 2 {
		return nil, fmt.Errorf("BatchNormalization input %v needs at least 2 dims", in[0])
	}
	c := in[0][1]
	for i := 1; i < len(in); i++ {
		if in[i].TotalSize() != c {
			return nil, fmt.Errorf("BatchNormalization input %d has shape %v, want %d channels", i, in[i], c)
		}
	}
	return in[0].Clone(), nil
}

func (k *batchNorm) differentiable(i int) bool { return i < 3 && !k.relu }

// layout returns batch, channels and spatial size.
func bnLayout(s tensor.Shape) (int, int, int) {
	return s[0], s[1], s.TotalSize() / (s[0] * s[1])
}

// stats returns per-channel mean and inverse standard deviation used to normalise.
func (k *batchNorm) stats(in [][]float32, s tensor.Shape) ([]float64, []float64) {
	n, c, hw := bnLayout(s)
	mean := make([]float64, c)
	invstd := make([]float64, c)
	if !k.training {
		for ch := 0; ch < c; ch++ {
			mean[ch] = float64(in[3][ch])
			invstd[ch] = 1 / math.Sqrt(float64(in[4][ch])+k.epsilon)
		}
		return mean, invstd
	}
	x := in[0]
	m := float64(n * hw)
	variance := make([]float64, c)
	parallelRange(c, channelGrain(n*hw), func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			mean[ch], variance[ch], invstd[ch] = k.channelStats(x, n, c, hw, ch)
		}
	})
	k.batchMean = mean
	k.batchVar = make([]float64, c)
	for ch := range variance {
		if m > 1 {
			k.batchVar[ch] = variance[ch] * m / (m - 1)
		}
	}
	return mean, invstd
}

// channelStats returns the mean, biased variance and inverse standard deviation of channel ch
// of x (n x c x hw).
func (k *batchNorm) channelStats(x []float32, n, c, hw, ch int) (mu, variance, invstd float64) {
	m := float64(n * hw)
	var s float64
	for b := 0; b < n; b++ {
		for _, v := range x[(b*c+ch)*hw : (b*c+ch+1)*hw] {
			s += float64(v)
		}
	}
	mu = s / m
	var q float64
	for b := 0; b < n; b++ {
		for _, v := range x[(b*c+ch)*hw : (b*c+ch+1)*hw] {
			d := float64(v) - mu
			q += d * d
		}
	}
	return mu, q / m, 1 / math.Sqrt(q/m+k.epsilon)
}

func (k *batchNorm) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	k.sums = nil // a new run: new inputs, possibly in the same buffers
	n, c, hw := bnLayout(shapes[0])
	mean, invstd := k.stats(in, shapes[0])
	x, scale, bias := in[0], in[1], in[2]
	parallelRange(n*c, channelGrain(hw), func(lo, hi int) {
		for plane := lo; plane < hi; plane++ {
			ch := plane % c
			a := float64(scale[ch]) * invstd[ch]
			off := float64(bias[ch]) - mean[ch]*a
			base := plane * hw
			for j, v := range x[base : base+hw] {
				out[base+j] = float32(float64(v)*a + off)
			}
			if k.relu {
				reluInPlace(out[base : base+hw])
			}
		}
	})
	return nil
}

// overwrites tells that every pass writes its whole output.
func (k *batchNorm) overwrites(int) bool { return true }

// gradReads tells that the gradients read neither the bias (arg 2) nor the output (arg 5).
func (k *batchNorm) gradReads(_, arg int) bool { return arg != 2 && arg != 5 }

// backwardSums returns the statistics and gradient sums for the backward calls of this run,
// computing them on the first call.
func (k *batchNorm) backwardSums(in [][]float32, s tensor.Shape, dOut []float32) *bnSums {
	x := in[0]
	if len(x) == 0 || len(dOut) == 0 {
		return &bnSums{mean: make([]float64, s[1]), invstd: make([]float64, s[1]), sumDy: make([]float64, s[1]), sumDyXhat: make([]float64, s[1])}
	}
	if k.sums != nil && k.sums.x == &x[0] && k.sums.dOut == &dOut[0] {
		return k.sums
	}
	n, c, hw := bnLayout(s)
	mean, invstd := k.stats(in, s)
	sums := &bnSums{x: &x[0], dOut: &dOut[0], mean: mean, invstd: invstd, sumDy: make([]float64, c), sumDyXhat: make([]float64, c)}
	parallelRange(c, channelGrain(n*hw), func(lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			var sumDy, sumDyXhat float64
			for b := 0; b < n; b++ {
				base := (b*c + ch) * hw
				for j, g := range dOut[base : base+hw] {
					sumDy += float64(g)
					sumDyXhat += float64(g) * (float64(x[base+j]) - mean[ch]) * invstd[ch]
				}
			}
			sums.sumDy[ch], sums.sumDyXhat[ch] = sumDy, sumDyXhat
		}
	})
	k.sums = sums
	return sums
}

func (k *batchNorm) backward(i int, in [][]float32, shapes []tensor.Shape, _, dOut, dIn []float32) error {
	if k.relu {
		return errFusedGradient
	}
	n, c, hw := bnLayout(shapes[0])
	sums := k.backwardSums(in, shapes[0], dOut)
	mean, invstd := sums.mean, sums.invstd
	x, scale := in[0], in[1]
	m := float64(n * hw)
	if i > 0 {
		for ch := 0; ch < c; ch++ {
			if i == 1 {
				dIn[ch] = float32(sums.sumDyXhat[ch])
			} else {
				dIn[ch] = float32(sums.sumDy[ch])
			}
		}
		return nil
	}
	parallelRange(n*c, channelGrain(hw), func(lo, hi int) {
		for plane := lo; plane < hi; plane++ {
			ch := plane % c
			sumDy, sumDyXhat := sums.sumDy[ch], sums.sumDyXhat[ch]
			a := float64(scale[ch]) * invstd[ch]
			base := plane * hw
			for j, g := range dOut[base : base+hw] {
				if !k.training {
					dIn[base+j] = float32(float64(g) * a)
					continue
				}
				xhat := (float64(x[base+j]) - mean[ch]) * invstd[ch]
				dIn[base+j] = float32(a / m * (m*float64(g) - sumDy - xhat*sumDyXhat))
			}
		}
	})
	return nil
}

// pool2D is MaxPool, AveragePool and GlobalAveragePool over the last two axes of N x C x H x W,
// with ONNX's explicit padding (max pooling pads with -inf; average pooling divides by the window
// inside the input unless countPad is set).
type pool2D struct {
	max              bool
	kh, kw           int
	sh, sw           int
	top, left        int
	bottom, right    int
	countPad, global bool
	// ceil rounds the output size up, as PyTorch's ceil_mode: a last window that starts in the
	// right or bottom padding is dropped.
	ceil bool
}

func (k *pool2D) name() string {
	switch {
	case k.global:
		return "GlobalAveragePool"
	case k.max:
		return fmt.Sprintf("MaxPool(%dx%d/%dx%d)", k.kh, k.kw, k.sh, k.sw)
	}
	return fmt.Sprintf("AveragePool(%dx%d/%dx%d)", k.kh, k.kw, k.sh, k.sw)
}

func (k *pool2D) geometry(s tensor.Shape) (kh, kw, oh, ow int) {
	if k.global {
		return s[2], s[3], 1, 1
	}
	return k.kh, k.kw, poolSize(s[2], k.top, k.bottom, k.kh, k.sh, k.ceil), poolSize(s[3], k.left, k.right, k.kw, k.sw, k.ceil)
}

func (k *pool2D) outShape(in []tensor.Shape) (tensor.Shape, error) {
	s := in[0]
	if s.Dims() != 4 {
		return nil, fmt.Errorf("%s needs N x C x H x W input, got %v", k.name(), s)
	}
	_, _, oh, ow := k.geometry(s)
	if oh < 1 || ow < 1 {
		return nil, fmt.Errorf("%s: window larger than the padded input %v", k.name(), s)
	}
	return tensor.Shape{s[0], s[1], oh, ow}, nil
}

func (k *pool2D) differentiable(int) bool { return true }

// gradReads tells that the gradient reads the output's gradient (arg 2), and max pooling the
// input.
func (k *pool2D) gradReads(_, arg int) bool { return arg == 2 || (k.max && arg == 0) }

// windows calls f for every output element with the input plane, the output index and the
// window bounds clipped to the input.
func (k *pool2D) windows(s tensor.Shape, f func(plane, o, y0, y1, x0, x1, area int)) {
	kh, kw, oh, ow := k.geometry(s)
	h, w := s[2], s[3]
	sh, sw, top, left := k.sh, k.sw, k.top, k.left
	if k.global {
		sh, sw, top, left = 1, 1, 0, 0
	}
	for p := 0; p < s[0]*s[1]; p++ {
		for oy := 0; oy < oh; oy++ {
			ys := oy*sh - top
			y0, y1 := max(ys, 0), min(ys+kh, h)
			for ox := 0; ox < ow; ox++ {
				xs := ox*sw - left
				x0, x1 := max(xs, 0), min(xs+kw, w)
				area := (y1 - y0) * (x1 - x0)
				if k.countPad {
					area = (min(ys+kh, h+k.bottom) - ys) * (min(xs+kw, w+k.right) - xs)
				}
				f(p, (p*oh+oy)*ow+ox, y0, y1, x0, x1, area)
			}
		}
	}
}

func (k *pool2D) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	x := in[0]
	h, w := shapes[0][2], shapes[0][3]
	k.windows(shapes[0], func(p, o, y0, y1, x0, x1, area int) {
		plane := x[p*h*w : (p+1)*h*w]
		if k.max {
			best := float32(math.Inf(-1))
			for y := y0; y < y1; y++ {
				for _, v := range plane[y*w+x0 : y*w+x1] {
					if v > best {
						best = v
					}
				}
			}
			out[o] = best
			return
		}
		var s float64
		for y := y0; y < y1; y++ {
			for _, v := range plane[y*w+x0 : y*w+x1] {
				s += float64(v)
			}
		}
		out[o] = float32(s / float64(area))
	})
	return nil
}

func (k *pool2D) backward(_ int, in [][]float32, shapes []tensor.Shape, _, dOut, dIn []float32) error {
	x := in[0]
	h, w := shapes[0][2], shapes[0][3]
	k.windows(shapes[0], func(p, o, y0, y1, x0, x1, area int) {
		base := p * h * w
		if k.max {
			// The gradient goes to the first maximum in row-major order, as in PyTorch.
			best, at := float32(math.Inf(-1)), -1
			for y := y0; y < y1; y++ {
				for xx := x0; xx < x1; xx++ {
					if v := x[base+y*w+xx]; v > best || at < 0 {
						best, at = v, base+y*w+xx
					}
				}
			}
			if at >= 0 {
				dIn[at] += dOut[o]
			}
			return
		}
		g := dOut[o] / float32(area)
		for y := y0; y < y1; y++ {
			for xx := x0; xx < x1; xx++ {
				dIn[base+y*w+xx] += g
			}
		}
	})
	return nil
}

// softmax is Softmax or LogSoftmax over the last axis.
type softmax struct {
	log bool
}

func (k *softmax) name() string {
	if k.log {
		return "LogSoftmax"
	}
	return "Softmax"
}

func (k *softmax) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if in[0].Dims() < 1 {
		return nil, fmt.Errorf("%s of a scalar", k.name())
	}
	return in[0].Clone(), nil
}

func (k *softmax) differentiable(int) bool { return true }

// overwrites tells that every pass writes its whole output.
func (k *softmax) overwrites(int) bool { return true }

func (k *softmax) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	c := shapes[0][shapes[0].Dims()-1]
	x := in[0]
	for r := 0; r < len(x)/c; r++ {
		row := x[r*c : (r+1)*c]
		m, lse := logSumExp(row)
		for j, v := range row {
			l := float64(v) - m - lse
			if k.log {
				out[r*c+j] = float32(l)
			} else {
				out[r*c+j] = float32(math.Exp(l))
			}
		}
	}
	return nil
}

func (k *softmax) backward(_ int, _ [][]float32, shapes []tensor.Shape, out, dOut, dIn []float32) error {
	c := shapes[0][shapes[0].Dims()-1]
	for r := 0; r < len(out)/c; r++ {
		y, g, d := out[r*c:(r+1)*c], dOut[r*c:(r+1)*c], dIn[r*c:(r+1)*c]
		var s float64
		if k.log {
			for _, v := range g {
				s += float64(v)
			}
			for j := range d {
				d[j] = float32(float64(g[j]) - math.Exp(float64(y[j]))*s)
			}
			continue
		}
		for j := range g {
			s += float64(g[j]) * float64(y[j])
		}
		for j := range d {
			d[j] = float32(float64(y[j]) * (float64(g[j]) - s))
		}
	}
	return nil
}

// matMulT is the product of a batch with a transposed weight, y = a W^T for a (M x K) and W
// (N x K): a fully connected layer as PyTorch exports it (Gemm with transB=1, or MatMul reading a
// Transpose of the weight). One BLAS product in each direction, without materialising W^T
// (which Gorgonia's Transpose would copy at every run).
type matMulT struct{}

func (k *matMulT) name() string { return "MatMulTransB" }

func (k *matMulT) outShape(in []tensor.Shape) (tensor.Shape, error) {
	a, w := in[0], in[1]
	if a.Dims() != 2 || w.Dims() != 2 || a[1] != w[1] {
		return nil, fmt.Errorf("product of %v with the transpose of %v: want M x K and N x K", a, w)
	}
	return tensor.Shape{a[0], w[0]}, nil
}

func (k *matMulT) differentiable(int) bool { return true }

// gradReads tells that the gradient with respect to one factor reads the other and the output's
// gradient (arg 3).
func (k *matMulT) gradReads(wrt, arg int) bool { return arg == 3 || arg == 1-wrt }

func (k *matMulT) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	m, kk, n := shapes[0][0], shapes[0][1], shapes[1][0]
	if m > 0 && n > 0 && kk > 0 {
		blas32.Implementation().Sgemm(blas.NoTrans, blas.Trans, m, n, kk, 1, in[0], kk, in[1], kk, 0, out, n)
	}
	return nil
}

func (k *matMulT) backward(i int, in [][]float32, shapes []tensor.Shape, _, dOut, dIn []float32) error {
	m, kk, n := shapes[0][0], shapes[0][1], shapes[1][0]
	if m == 0 || n == 0 || kk == 0 {
		return nil
	}
	if i == 0 { // dL/da = dy W
		blas32.Implementation().Sgemm(blas.NoTrans, blas.NoTrans, m, kk, n, 1, dOut, n, in[1], kk, 0, dIn, kk)
		return nil
	}
	// dL/dW = dy^T a
	blas32.Implementation().Sgemm(blas.Trans, blas.NoTrans, n, kk, m, 1, dOut, n, in[0], kk, 0, dIn, kk)
	return nil
}

// elementGrain is the number of elementwise operations below which a kernel runs on one
// goroutine.
const elementGrain = 1 << 16

// channelGrain returns the grain of parallelRange for items of size values each.
func channelGrain(size int) int { return max(1, elementGrain/max(size, 1)) }

// parallelRange splits [0, n) into contiguous ranges of at least grain items among up to
// GOMAXPROCS goroutines and runs f on each; every item is computed as on one goroutine.
func parallelRange(n, grain int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n/max(grain, 1))
	if workers <= 1 {
		if n > 0 {
			f(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i*n/workers, (i+1)*n/workers)
		}()
	}
	wg.Wait()
}
