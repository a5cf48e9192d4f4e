package graph

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/ltransfer/ltransfer/graph/internal/sgemm"
	"gonum.org/v1/gonum/blas"
	"gorgonia.org/tensor"
)

// convAttrs are the attributes of a 2-D convolution: groups, strides, dilations and explicit
// (possibly asymmetric) padding. Input N x C x H x W, weight M x C/groups x kh x kw, output
// N x M x OH x OW.
type convAttrs struct {
	groups                   int
	sh, sw, dh, dw           int
	top, left, bottom, right int
}

// name names the convolution and its attributes.
func (a *convAttrs) name() string {
	return fmt.Sprintf("Conv(groups=%d, stride %dx%d, dilation %dx%d, pads %d,%d,%d,%d)",
		a.groups, a.sh, a.sw, a.dh, a.dw, a.top, a.left, a.bottom, a.right)
}

// geometry returns the output height and width for input shape x and weight shape w, whose
// windows fit in the padded input (outShape checks that).
func (a *convAttrs) geometry(x, w tensor.Shape) (oh, ow int) {
	oh = (x[2]+a.top+a.bottom-a.dh*(w[2]-1)-1)/a.sh + 1
	ow = (x[3]+a.left+a.right-a.dw*(w[3]-1)-1)/a.sw + 1
	return oh, ow
}

// outShape checks the input and weight shapes and returns the output shape.
func (a *convAttrs) outShape(in []tensor.Shape) (tensor.Shape, error) {
	x, w := in[0], in[1]
	if x.Dims() != 4 || w.Dims() != 4 {
		return nil, fmt.Errorf("convolution of %v with %v: want 4-D input and weight", x, w)
	}
	if x[1]%a.groups != 0 || w[0]%a.groups != 0 || w[1]*a.groups != x[1] {
		return nil, fmt.Errorf("convolution of %v with weight %v in %d groups: channels do not divide", x, w, a.groups)
	}
	if w[2] < 1 || w[3] < 1 {
		return nil, fmt.Errorf("convolution with weight %v: empty window", w)
	}
	if x[2]+a.top+a.bottom < a.dh*(w[2]-1)+1 || x[3]+a.left+a.right < a.dw*(w[3]-1)+1 {
		return nil, fmt.Errorf("convolution window larger than the padded input %v", x)
	}
	oh, ow := a.geometry(x, w)
	return tensor.Shape{x[0], w[0], oh, ow}, nil
}

// conv2D is a 2-D convolution (any groups, strides, dilations and padding) computed as matrix
// products. For example n and group g, the input patches are the rows of a P x K matrix
// R = rows(X[n, g]) (P = OH * OW rows (oy, ox), K = C/groups * kh * kw columns (c, ky, kx), zero
// where the window reads padding: im2col, in Gorgonia's layout), and
//
//	Y[n, g]  = W_g R^T                  (M/groups x P)
//	dW_g     = sum_n dY[n, g] R
//	dX[n, g] = row2im(dY[n, g]^T W_g)   (row2im adds every patch entry back where it was read)
//
// through convBLAS (graph/internal/sgemm), without transposing anything. When an
// example's output plane is small (P below chunkRows), the products take the patch matrices of
// several consecutive examples at once, stacked (with dY[n, g] of those examples side by side),
// so that each product is large enough to run at the BLAS's speed.
//
// The forward pass and dX split the examples among GOMAXPROCS workers; dW splits the columns of
// R (and of dW) instead, so that every weight-gradient entry is one float32 sum over the examples
// and positions in order, (((dy_0 x_0 + dy_1 x_1) + dy_2 x_2) + ...), as Gorgonia's convolution
// computed it (gonum's order, which graph/internal/sgemm keeps), whose training runs follow
// PyTorch's float32 ones within 2e-7. The order matters more than its rounding error suggests:
// at the fourth step of convert's TestTrainerMatchesPyTorch the largest input of one max-pool
// window of the cnn is 3e-8 (float64), and summing the weight gradient one example at a time,
// though closer to float64, had left the parameters 2e-6 from PyTorch's, enough to push that
// input below zero, route the window's gradient elsewhere and end the run 1e-3 from PyTorch's.
// Stacking examples keeps that order: the products sum over the stacked rows in order.
//
// The workers' buffers come from a pool shared by every convolution (a program runs one operator
// at a time). The weight gradient builds the patch matrices again rather than keeping those of
// the forward pass: for a batch they are K times the input (29 MB for a 3x3 convolution of 8
// channels of 28 x 28 at batch 128), while rebuilt a few examples at a time they stay in cache
// for the product that reads them. 3x3 stride-1 convolutions with enough channels take
// Winograd's F(4x4, 3x3) instead (winograd.go).
type conv2D struct {
	convAttrs
	// constInput is set when the input needs no gradient (it is the graph's input): input 0 is
	// then not differentiable, and Gorgonia does not compute dX.
	constInput bool
	// filters, in forward-only programs, keeps the Winograd transform of the weight between
	// calls (see filterCache).
	filters *filterCache
}

// convScratch is one worker's buffers.
type convScratch struct {
	rows []float32 // the stacked patch matrices of a few examples' group, or some of their columns
	pad  []float32 // an example's input planes with their padding, or their gradient
	dy   []float32 // the output (gradient) of a few examples' group, side by side
	wino winoScratch
}

// scratchPool holds the convolution workers' buffers between calls.
var scratchPool struct {
	sync.Mutex
	free []*convScratch
}

// getScratch returns a worker's buffers, of any size (see growBuf).
func getScratch() *convScratch {
	scratchPool.Lock()
	defer scratchPool.Unlock()
	if n := len(scratchPool.free); n > 0 {
		s := scratchPool.free[n-1]
		scratchPool.free = scratchPool.free[:n-1]
		return s
	}
	return &convScratch{}
}

// growBuf returns *b with at least n elements, reallocated (and kept in *b) when it is shorter.
func growBuf(b *[]float32, n int) []float32 {
	if len(*b) < n {
		*b = make([]float32, n)
	}
	return *b
}

// putScratch returns buffers to the pool.
func putScratch(s *convScratch) {
	scratchPool.Lock()
	scratchPool.free = append(scratchPool.free, s)
	scratchPool.Unlock()
}

// convDims are the sizes of one convolution.
type convDims struct {
	n, c, h, w    int // input
	m, cg, kh, kw int // weight
	oh, ow        int // output
	mg, kk, p, hw int // output channels per group, columns and rows of R, input plane size
	hp, wp        int // padded input plane
	nb            int // examples a product stacks
	// off[j] is the offset, in the padded planes of a group, of the entry column j = (c, ky, kx)
	// of R reads from the window's corner: c*hp*wp + ky*dh*wp + kx*dw.
	off []int
}

// differentiable tells whether input i has a gradient: the weight always, the input unless it is
// the graph's.
func (k *conv2D) differentiable(i int) bool { return i != 0 || !k.constInput }

// dims returns the sizes of a convolution of x with w.
func (k *conv2D) dims(x, w tensor.Shape) *convDims {
	d := &convDims{n: x[0], c: x[1], h: x[2], w: x[3], m: w[0], cg: w[1], kh: w[2], kw: w[3]}
	d.oh, d.ow = k.geometry(x, w)
	d.mg, d.kk, d.p, d.hw = d.m/k.groups, d.cg*d.kh*d.kw, d.oh*d.ow, d.h*d.w
	d.hp, d.wp = d.h+k.top+k.bottom, d.w+k.left+k.right
	d.nb = max(1, min(d.n, chunkRows/max(d.p, 1)))
	d.off = make([]int, d.kk)
	for j := range d.off {
		c, ky, kx := j/(d.kh*d.kw), j/d.kw%d.kh, j%d.kw
		d.off[j] = (c*d.hp+ky*k.dh)*d.wp + kx*k.dw
	}
	return d
}

// empty tells whether the convolution has no products (no input or no output channels): its
// output and gradients are zero.
func (d *convDims) empty() bool { return d.kk == 0 || d.mg == 0 }

// padded tells whether the convolution pads its input.
func (k *conv2D) padded() bool { return k.top != 0 || k.left != 0 || k.bottom != 0 || k.right != 0 }

// group returns the input planes (or their gradient) of example b's group g in x.
func (d *convDims) group(x []float32, b, g int) []float32 {
	return x[(b*d.c+g*d.cg)*d.hw:][:d.cg*d.hw]
}

// padPlanes returns the input planes x of one example's group with their padding, written into
// pad, or x itself when the convolution does not pad.
func (k *conv2D) padPlanes(d *convDims, x, pad []float32) []float32 {
	if !k.padded() {
		return x
	}
	planes := pad[:d.cg*d.hp*d.wp]
	clear(planes)
	for c := 0; c < d.cg; c++ {
		for y := 0; y < d.h; y++ {
			copy(planes[(c*d.hp+y+k.top)*d.wp+k.left:], x[c*d.hw+y*d.w:][:d.w])
		}
	}
	return planes
}

// im2row writes columns [j0, j1) of the patch matrix R of one example's group, whose input planes
// x holds, into rows (P x (j1 - j0)), through the padded planes in pad.
func (k *conv2D) im2row(d *convDims, x, pad, rows []float32, j0, j1 int) {
	planes := k.padPlanes(d, x, pad)
	off := d.off[j0:j1]
	n4 := len(off) &^ 3
	for oy := 0; oy < d.oh; oy++ {
		for ox := 0; ox < d.ow; ox++ {
			row := rows[(oy*d.ow+ox)*len(off):][:len(off)]
			src := planes[oy*k.sh*d.wp+ox*k.sw:]
			j := 0
			for ; j < n4; j += 4 { // unrolled: about 1.6x faster
				o, r := off[j:j+4:j+4], row[j:j+4:j+4]
				r[0], r[1], r[2], r[3] = src[o[0]], src[o[1]], src[o[2]], src[o[3]]
			}
			for ; j < len(off); j++ {
				row[j] = src[off[j]]
			}
		}
	}
}

// row2im adds the gradient of the patch matrix R of one example's group, rows (P x K), into the
// gradient of its input planes, dxg, through the padded planes in pad. Every entry receives its
// terms in Gorgonia's order (positions, then columns).
func (k *conv2D) row2im(d *convDims, rows, pad, dxg []float32) {
	planes := dxg
	if k.padded() {
		planes = pad[:d.cg*d.hp*d.wp]
		clear(planes)
	}
	n4 := len(d.off) &^ 3
	for oy := 0; oy < d.oh; oy++ {
		for ox := 0; ox < d.ow; ox++ {
			row := rows[(oy*d.ow+ox)*len(d.off):][:len(d.off)]
			dst := planes[oy*k.sh*d.wp+ox*k.sw:]
			j := 0
			for ; j < n4; j += 4 { // the offsets of a window are distinct
				o, r := d.off[j:j+4:j+4], row[j:j+4:j+4]
				dst[o[0]] += r[0]
				dst[o[1]] += r[1]
				dst[o[2]] += r[2]
				dst[o[3]] += r[3]
			}
			for ; j < len(d.off); j++ {
				dst[d.off[j]] += row[j]
			}
		}
	}
	if k.padded() {
		for c := 0; c < d.cg; c++ {
			for y := 0; y < d.h; y++ {
				src := planes[(c*d.hp+y+k.top)*d.wp+k.left:][:d.w]
				dst := dxg[c*d.hw+y*d.w:][:d.w]
				for i, v := range src {
					dst[i] += v
				}
			}
		}
	}
}

// stackDy returns the gradient (or output) planes of group g of examples [b0, b0+nc) of dy
// side by side, an mg x nc*P matrix, and its row stride: dy itself for one example, else a copy
// in s.dy.
func (d *convDims) stackDy(s *convScratch, dy []float32, b0, nc, g int) ([]float32, int) {
	if nc == 1 {
		return dy[(b0*d.m+g*d.mg)*d.p:], d.p
	}
	for b := 0; b < nc; b++ {
		for m := 0; m < d.mg; m++ {
			copy(s.dy[m*nc*d.p+b*d.p:][:d.p], dy[((b0+b)*d.m+g*d.mg+m)*d.p:][:d.p])
		}
	}
	return s.dy, nc * d.p
}

// parallel splits [0, n) into contiguous ranges among min(GOMAXPROCS, n) workers and runs
// f(s, first, end) for each, with the worker's buffers, sized for d's patch matrices.
func (k *conv2D) parallel(d *convDims, n int, f func(s *convScratch, first, end int)) {
	rows, pad, dy := d.nb*d.p*d.kk, 0, 0
	if k.padded() {
		pad = d.cg * d.hp * d.wp
	}
	if d.nb > 1 {
		dy = d.mg * d.nb * d.p
	}
	runWorkers(n, func(s *convScratch, _, first, end int) {
		growBuf(&s.rows, rows)
		growBuf(&s.pad, pad)
		growBuf(&s.dy, dy)
		f(s, first, end)
	})
}

// workersFor returns the number of workers runWorkers uses for n items: min(GOMAXPROCS, n),
// at least 1.
func workersFor(n int) int { return max(min(runtime.GOMAXPROCS(0), n), 1) }

// runWorkers splits [0, n) into contiguous ranges among workersFor(n) workers and runs
// f(s, i, first, end) for each worker i, with buffers from the pool.
func runWorkers(n int, f func(s *convScratch, i, first, end int)) {
	workers := workersFor(n)
	if workers == 1 {
		s := getScratch()
		f(s, 0, 0, n)
		putScratch(s)
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := getScratch()
			f(s, i, i*n/workers, (i+1)*n/workers)
			putScratch(s)
		}()
	}
	wg.Wait()
}

// overwrites tells that the forward pass writes every output value.
func (k *conv2D) overwrites(i int) bool { return i < 0 }

// gradReads tells that dX reads the weight, dW the input, both the output's gradient (arg 3).
func (k *conv2D) gradReads(wrt, arg int) bool { return arg == 3 || arg == 1-wrt }

// forward computes Y[n, g] = W_g R^T for every example and group, the examples split among the
// workers.
func (k *conv2D) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	return k.convolve(in[0], in[1], shapes, out, nil)
}

// convolve computes the output of the convolution of x with w into out; then, when epilogue is
// not nil, it calls epilogue(m0, y) on the output planes y (channels m0, m0+1, ... of one
// example, mg x P values) of every example's group as soon as they are written, while they are
// in cache, on the worker that wrote them.
func (k *conv2D) convolve(x, w []float32, shapes []tensor.Shape, out []float32, epilogue func(m0 int, y []float32)) error {
	d := k.dims(shapes[0], shapes[1])
	if d.empty() {
		clear(out)
		if epilogue != nil {
			for b := 0; b < d.n; b++ {
				epilogue(0, out[b*d.m*d.p:][:d.m*d.p])
			}
		}
		return nil
	}
	if k.winograd(d) {
		k.winoForward(d, x, w, out, epilogue)
		return nil
	}
	k.parallel(d, d.n, func(s *convScratch, first, end int) {
		for b0 := first; b0 < end; b0 += d.nb {
			nc := min(d.nb, end-b0)
			for g := 0; g < k.groups; g++ {
				for b := 0; b < nc; b++ {
					k.im2row(d, d.group(x, b0+b, g), s.pad, s.rows[b*d.p*d.kk:], 0, d.kk)
				}
				wg := w[g*d.mg*d.kk:]
				if nc == 1 {
					gemm(blas.NoTrans, blas.Trans, d.mg, d.p, d.kk, wg, d.kk, s.rows, d.kk, 0, out[(b0*d.m+g*d.mg)*d.p:], d.p)
				} else {
					gemm(blas.NoTrans, blas.Trans, d.mg, nc*d.p, d.kk, wg, d.kk, s.rows, d.kk, 0, s.dy, nc*d.p)
					for b := 0; b < nc; b++ {
						for m := 0; m < d.mg; m++ {
							copy(out[((b0+b)*d.m+g*d.mg+m)*d.p:][:d.p], s.dy[m*nc*d.p+b*d.p:][:d.p])
						}
					}
				}
				if epilogue != nil {
					for b := 0; b < nc; b++ {
						epilogue(g*d.mg, out[((b0+b)*d.m+g*d.mg)*d.p:][:d.mg*d.p])
					}
				}
			}
		}
	})
	return nil
}

// backward computes dX (i = 0, the examples split among the workers) or dW (i = 1, its columns
// split among the workers, each summing over the examples in order). dIn arrives zeroed, as
// every kernel assumes: both add into it.
func (k *conv2D) backward(i int, in [][]float32, shapes []tensor.Shape, _, dOut, dIn []float32) error {
	x, w := in[0], in[1]
	d := k.dims(shapes[0], shapes[1])
	if d.empty() {
		return nil
	}
	if k.winograd(d) {
		if i == 0 {
			k.winoInputGrad(d, w, dOut, dIn)
		} else {
			k.winoWeightGrad(d, x, dOut, dIn)
		}
		return nil
	}
	if i == 0 {
		k.parallel(d, d.n, func(s *convScratch, first, end int) {
			for b0 := first; b0 < end; b0 += d.nb {
				nc := min(d.nb, end-b0)
				for g := 0; g < k.groups; g++ {
					dy, ld := d.stackDy(s, dOut, b0, nc, g)
					gemm(blas.Trans, blas.NoTrans, nc*d.p, d.kk, d.mg, dy, ld, w[g*d.mg*d.kk:], d.kk, 0, s.rows, d.kk)
					for b := 0; b < nc; b++ {
						k.row2im(d, s.rows[b*d.p*d.kk:], s.pad, d.group(dIn, b0+b, g))
					}
				}
			}
		})
		return nil
	}
	k.parallel(d, d.kk, func(s *convScratch, j0, j1 int) {
		for b0 := 0; b0 < d.n; b0 += d.nb {
			nc := min(d.nb, d.n-b0)
			for g := 0; g < k.groups; g++ {
				for b := 0; b < nc; b++ {
					k.im2row(d, d.group(x, b0+b, g), s.pad, s.rows[b*d.p*(j1-j0):], j0, j1)
				}
				dy, ld := d.stackDy(s, dOut, b0, nc, g)
				gemm(blas.NoTrans, blas.NoTrans, d.mg, j1-j0, nc*d.p, dy, ld, s.rows, j1-j0, 1, dIn[g*d.mg*d.kk+j0:], d.kk)
			}
		}
	})
	return nil
}

// chunkRows is the number of patch rows below which a convolution's products stack several
// examples, so that each product is large enough to run at the kernel's speed.
const chunkRows = 256

// convBLAS multiplies the convolutions' matrices in both builds, each worker on its own core:
// graph/internal/sgemm. Its products of these shapes ran as fast as OpenBLAS's, single-threaded,
// in the openblas build (ResNet-18's evaluation pass, in one process: 0.504 s both), without
// OpenBLAS's buffer management at every call or switching OpenBLAS to one thread around the
// workers; and both builds then sum in the order conv2D documents.
var convBLAS = sgemm.Implementation{}

// gemm sets C = op(A) op(B) + beta C through convBLAS.
func gemm(tA, tB blas.Transpose, m, n, k int, a []float32, lda int, b []float32, ldb int,
	beta float32, c []float32, ldc int) {
	convBLAS.Sgemm(tA, tB, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
}
