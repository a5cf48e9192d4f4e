package graph

import (
	"slices"
	"sync"
	"unsafe"

	"gonum.org/v1/gonum/blas"

	"github.com/ltransfer/ltransfer/graph/internal/winograd"
)

// winoMinChannels is the smallest number of input and of output channels for which a 3x3
// stride-1 convolution runs through Winograd's F(4x4, 3x3): below it the products are too thin
// for the 4x fewer multiplications to pay for the transforms.
const winoMinChannels = 16

// winoTiles is about the number of tiles a worker transforms and multiplies at once: enough rows
// for the 36 products to run at the BLAS's speed, few enough that their operands (36 x tiles x
// channels, about 9 MB at 256 channels) stay near the cache.
const winoTiles = 256

// winoSkew is added to the stride of the 36 matrices of transformed tiles, products and filters
// (a cache line): at a power of 2, the common case, the 36 entries of a tile map to the same cache
// sets, and the transforms, which read or write all 36 at once, run several times slower.
const winoSkew = 16

// winoScratch is one worker's buffers for winoConv.
type winoScratch struct {
	in    []float32 // a few examples' padded input, channels last
	tiles []float32 // their transformed input tiles: 36 matrices of tiles x channels
	prods []float32 // the products: 36 matrices of tiles x output channels
	out   []float32 // the output tiles, channels last
	flat  []float32 // one example's input, channels last, without padding
}

// winograd tells whether the convolution of d runs through Winograd's F(4x4, 3x3) (forward and
// input gradient): one group, a 3x3 window, stride and dilation 1, padding of at most 2 on every
// side (the input gradient is then the same kind of convolution, with padding 2 - p), and at
// least winoMinChannels input and output channels, multiples of 8.
func (k *conv2D) winograd(d *convDims) bool {
	return k.groups == 1 && d.kh == 3 && d.kw == 3 && k.sh == 1 && k.sw == 1 && k.dh == 1 && k.dw == 1 &&
		max(k.top, k.left, k.bottom, k.right) <= 2 &&
		d.c >= winoMinChannels && d.m >= winoMinChannels && d.c%8 == 0 && d.m%8 == 0
}

// winoConv is one 3x3 stride-1 correlation computed with F(4x4, 3x3): n examples of c input
// planes of h x w, padded by top and left (and at least by bottom and right, zeros up to the
// last tile), into m output planes of oh x ow.
type winoConv struct {
	n, c, h, w, m, oh, ow int
	top, left             int
	th, tw                int // tiles down and across an output plane
	nb                    int // examples a worker takes at once
}

// newWinoConv returns the plan of a correlation of x (n x c x h x w) into m planes of oh x ow,
// padded by top and left.
func newWinoConv(n, c, h, w, m, oh, ow, top, left int) *winoConv {
	p := &winoConv{n: n, c: c, h: h, w: w, m: m, oh: oh, ow: ow, top: top, left: left,
		th: (oh + winograd.Out - 1) / winograd.Out, tw: (ow + winograd.Out - 1) / winograd.Out}
	p.nb = max(1, min(n, (winoTiles+p.th*p.tw-1)/(p.th*p.tw)))
	return p
}

// winoChunk is a few consecutive examples of one worker's share, with their input transformed.
type winoChunk struct {
	b0, nc int       // examples b0..b0+nc-1
	t      int       // their tiles
	v      []float32 // the transformed input tiles: 36 matrices of t x c, vs apart
	vs     int
}

// chunks transforms the input tiles of the examples [first, end) of x, a few at a time, into
// the worker's buffers s, and calls f on each chunk.
func (p *winoConv) chunks(s *winoScratch, x []float32, first, end int, f func(ch *winoChunk)) {
	hp, wp := winograd.Out*p.th+2, winograd.Out*p.tw+2 // padded input, whole tiles
	tiles := p.nb * p.th * p.tw
	in := growBuf(&s.in, p.nb*hp*wp*p.c)
	v := growBuf(&s.tiles, winograd.Points*(tiles*p.c+winoSkew))
	flat := growBuf(&s.flat, p.h*p.w*p.c)
	for b0 := first; b0 < end; b0 += p.nb {
		nc := min(p.nb, end-b0)
		t := nc * p.th * p.tw
		vs := t*p.c + winoSkew // a cache line between the 36 matrices
		p.pack(in[:nc*hp*wp*p.c], flat, x[b0*p.c*p.h*p.w:], nc, hp, wp)
		for b := 0; b < nc; b++ {
			for ty := 0; ty < p.th; ty++ {
				for tx := 0; tx < p.tw; tx++ {
					ti := (b*p.th+ty)*p.tw + tx
					winograd.InputTile(v[ti*p.c:], in[((b*hp+winograd.Out*ty)*wp+winograd.Out*tx)*p.c:], p.c, wp*p.c, p.c, vs)
				}
			}
		}
		f(&winoChunk{b0: b0, nc: nc, t: t, v: v, vs: vs})
	}
}

// outTiles returns the output tile buffer of a worker, nb examples of ohp x owp x m (channels
// last), and ohp, owp.
func (p *winoConv) outTiles(s *winoScratch) (o []float32, ohp, owp int) {
	ohp, owp = winograd.Out*p.th, winograd.Out*p.tw
	return growBuf(&s.out, p.nb*ohp*owp*p.m), ohp, owp
}

// run writes (add false) or adds (add true) the correlation of x with the transformed filters u
// (36 matrices uStride apart: c x m, or m x c when uTrans) into out, the examples split among
// the workers; then, when epilogue is not nil, it calls epilogue(0, y) on each example's output
// planes y as soon as they are written, on the worker that wrote them. The forward pass takes
// uTrans: sgemm then sums each product's terms in chunks of 8 (its A B^T), which halves the
// error at a network's outputs (torchvision's ResNet-50: 4.6e-5 of PyTorch's logits against
// 9e-5 with one running sum, the test's bound being 1e-4) for about 5% more time.
func (p *winoConv) run(x, u []float32, uStride int, uTrans bool, out []float32, add bool, epilogue func(m0 int, y []float32)) {
	impl := convBLAS
	tB, ldu := blas.NoTrans, p.m
	if uTrans {
		tB, ldu = blas.Trans, p.c
	}
	runWorkers(p.n, func(s *convScratch, _, first, end int) {
		ws := &s.wino
		y := growBuf(&ws.prods, winograd.Points*(p.nb*p.th*p.tw*p.m+winoSkew))
		o, ohp, owp := p.outTiles(ws)
		p.chunks(ws, x, first, end, func(ch *winoChunk) {
			ys := ch.t*p.m + winoSkew
			for xi := 0; xi < winograd.Points; xi++ {
				impl.Sgemm(blas.NoTrans, tB, ch.t, p.m, p.c, 1, ch.v[xi*ch.vs:], p.c, u[xi*uStride:], ldu,
					0, y[xi*ys:], p.m)
			}
			for b := 0; b < ch.nc; b++ {
				for ty := 0; ty < p.th; ty++ {
					for tx := 0; tx < p.tw; tx++ {
						ti := (b*p.th+ty)*p.tw + tx
						winograd.OutputTile(o[((b*ohp+winograd.Out*ty)*owp+winograd.Out*tx)*p.m:], y[ti*p.m:], p.m, ys, owp*p.m, p.m)
					}
				}
			}
			for b := 0; b < ch.nc; b++ {
				planes := out[(ch.b0+b)*p.m*p.oh*p.ow:][:p.m*p.oh*p.ow]
				p.unpack(planes, o[b*ohp*owp*p.m:], owp, add)
				if epilogue != nil {
					epilogue(0, planes)
				}
			}
		})
	})
}

// weightGrad sets z (36 matrices of m x c, zStride apart) to the sums of the products of the
// transformed gradients of the outputs, dy, with the transformed input tiles of x, over the
// examples [first, end) (a worker's share, not empty): z_xi = sum (A dY A^T)_xi^T V_xi.
func (p *winoConv) weightGrad(s *winoScratch, x, dy []float32, first, end int, z []float32, zStride int) {
	impl := convBLAS
	g := growBuf(&s.prods, winograd.Points*(p.nb*p.th*p.tw*p.m+winoSkew))
	o, ohp, owp := p.outTiles(s)
	hw := p.oh * p.ow
	p.chunks(s, x, first, end, func(ch *winoChunk) {
		gs := ch.t*p.m + winoSkew
		if ohp != p.oh || owp != p.ow {
			clear(o[:ch.nc*ohp*owp*p.m]) // zeros past the planes
		}
		for b := 0; b < ch.nc; b++ {
			planes, ob := dy[(ch.b0+b)*p.m*hw:], o[b*ohp*owp*p.m:]
			if owp == p.ow {
				winograd.Transpose(ob, p.m, planes, hw, p.m, hw, false)
			} else {
				for y := 0; y < p.oh; y++ {
					winograd.Transpose(ob[y*owp*p.m:], p.m, planes[y*p.ow:], hw, p.m, p.ow, false)
				}
			}
			for ty := 0; ty < p.th; ty++ {
				for tx := 0; tx < p.tw; tx++ {
					ti := (b*p.th+ty)*p.tw + tx
					winograd.GradTile(g[ti*p.m:], ob[(winograd.Out*ty*owp+winograd.Out*tx)*p.m:], p.m, owp*p.m, p.m, gs)
				}
			}
		}
		beta := float32(1)
		if ch.b0 == first {
			beta = 0 // the first chunk sets z
		}
		for xi := 0; xi < winograd.Points; xi++ {
			impl.Sgemm(blas.Trans, blas.NoTrans, p.m, p.c, ch.t, 1, g[xi*gs:], p.m, ch.v[xi*ch.vs:], p.c,
				beta, z[xi*zStride:], p.c)
		}
	})
}

// pack writes the input planes of nc examples, x, into in channels last, hp x wp per example,
// with the padding (and everything past the input) zero, through flat (h*w*c values): each
// example's planes transposed, then each row moved into place.
func (p *winoConv) pack(in, flat, x []float32, nc, hp, wp int) {
	clear(in)
	hw := p.h * p.w
	rows, cols := min(p.h, hp-p.top), min(p.w, wp-p.left)
	for b := 0; b < nc; b++ {
		winograd.Transpose(flat, p.c, x[b*p.c*hw:], hw, p.c, hw, false)
		for y := 0; y < rows; y++ {
			copy(in[((b*hp+y+p.top)*wp+p.left)*p.c:][:cols*p.c], flat[y*p.w*p.c:])
		}
	}
}

// unpack writes (or adds) one example's output tiles o (channels last, rows of owp) into its
// output planes, leaving out what lies past the plane.
func (p *winoConv) unpack(planes, o []float32, owp int, add bool) {
	hw := p.oh * p.ow
	if owp == p.ow { // the rows follow each other
		winograd.Transpose(planes, hw, o, p.m, hw, p.m, add)
		return
	}
	for y := 0; y < p.oh; y++ {
		winograd.Transpose(planes[y*p.ow:], hw, o[y*owp*p.m:], p.m, p.ow, p.m, add)
	}
}

// filterMatrix is winograd.FilterMatrix().
var filterMatrix = winograd.FilterMatrix()

// filterBufs holds the buffers of the transformed filters and weight gradients between calls.
var filterBufs struct {
	sync.Mutex
	free []*[]float32
}

// getFilterBuf returns a buffer of at least n values from filterBufs (contents undefined).
func getFilterBuf(n int) *[]float32 {
	filterBufs.Lock()
	buf := new([]float32)
	if k := len(filterBufs.free); k > 0 {
		buf, filterBufs.free = filterBufs.free[k-1], filterBufs.free[:k-1]
	}
	filterBufs.Unlock()
	growBuf(buf, n)
	return buf
}

// putFilterBuf returns a buffer to filterBufs.
func putFilterBuf(buf *[]float32) {
	filterBufs.Lock()
	filterBufs.free = append(filterBufs.free, buf)
	filterBufs.Unlock()
}

// withFilters calls f with the transformed filters of w (m x c x 3 x 3) for d's convolution
// (flip false) or for its input gradient (flip true, the filters rotated by 180 degrees): 36
// matrices of m x c, stride apart in u, computed by the workers, in a buffer from filterBufs.
func withFilters(d *convDims, w []float32, flip bool, f func(u []float32, stride int)) {
	mc := d.m * d.c
	stride := mc + winoSkew
	buf := getFilterBuf(winograd.Points * stride)
	defer putFilterBuf(buf)
	transformFilters(d, *buf, stride, w, flip)
	f(*buf, stride)
}

// transformFilters writes the transformed filters of w into u (see withFilters), the filters
// split among the workers.
func transformFilters(d *convDims, u []float32, stride int, w []float32, flip bool) {
	runWorkers(d.m*d.c, func(_ *convScratch, _, j0, j1 int) {
		winograd.Filters(u, stride, w, j0, j1, flip)
	})
}

// filterCache keeps the transformed filters of a convolution of a forward-only program (an
// evaluation or BatchNorm-statistics pass), with a copy of the weight they were computed from:
// a transfer evaluates each point on dozens of batches with the same weights, and the transform
// of ResNet-18's filters takes about a tenth of its evaluation pass. A weight that differs in any
// bit is transformed again. It costs 5 times the weight's memory.
type filterCache struct {
	sync.Mutex
	w, u   []float32
	stride int
}

// withFilters calls f with the transformed filters of w for d's convolution, transformed again
// only when w changed since the last call.
func (c *filterCache) withFilters(d *convDims, w []float32, f func(u []float32, stride int)) {
	c.Lock()
	defer c.Unlock()
	if !slices.Equal(asBits(c.w), asBits(w)) {
		c.stride = d.m*d.c + winoSkew
		growBuf(&c.u, winograd.Points*c.stride)
		transformFilters(d, c.u, c.stride, w, false)
		c.w = append(c.w[:0], w...)
	}
	f(c.u, c.stride)
}

// asBits returns the bits of x, for comparisons that tell NaNs, zeros and payloads apart.
func asBits(x []float32) []uint32 {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(&x[0])), len(x))
}

// winoForward computes the convolution of x with w into out through F(4x4, 3x3), calling
// epilogue as convolve does, with the kernel's filter cache when it has one.
func (k *conv2D) winoForward(d *convDims, x, w, out []float32, epilogue func(m0 int, y []float32)) {
	run := func(u []float32, stride int) {
		newWinoConv(d.n, d.c, d.h, d.w, d.m, d.oh, d.ow, k.top, k.left).run(x, u, stride, true, out, false, epilogue)
	}
	if k.filters != nil {
		k.filters.withFilters(d, w, run)
	} else {
		withFilters(d, w, false, run)
	}
}

// winoInputGrad adds the gradient of the input, dx, of d's convolution with w, given the
// output's gradient dy: the correlation of dy, padded by 2 - top and 2 - left, with the filters
// rotated by 180 degrees and their channels swapped.
func (k *conv2D) winoInputGrad(d *convDims, w, dy, dx []float32) {
	withFilters(d, w, true, func(u []float32, stride int) {
		newWinoConv(d.n, d.m, d.oh, d.ow, d.c, d.h, d.w, 2-k.top, 2-k.left).run(dy, u, stride, false, dx, true, nil)
	})
}

// winoWeightGrad adds the gradient of the weight, dw (m x c x 3 x 3), of d's convolution of x,
// given the output's gradient dy: each worker sums the transformed products of its examples
// (36 matrices of m x c), the workers' sums are added in order, and the product with the filter
// matrix takes them back to 3 x 3 (the adjoint of the filter transform).
func (k *conv2D) winoWeightGrad(d *convDims, x, dy, dw []float32) {
	p := newWinoConv(d.n, d.c, d.h, d.w, d.m, d.oh, d.ow, k.top, k.left)
	mc := d.m * d.c
	stride := mc + winoSkew
	parts := make([]*[]float32, workersFor(d.n))
	for i := range parts {
		parts[i] = getFilterBuf(winograd.Points * stride)
		defer putFilterBuf(parts[i])
	}
	runWorkers(d.n, func(s *convScratch, i, first, end int) {
		p.weightGrad(&s.wino, x, dy, first, end, *parts[i], stride)
	})
	z := *parts[0]
	runWorkers(winograd.Points, func(_ *convScratch, _, x0, x1 int) {
		for _, part := range parts[1:] {
			for i, v := range (*part)[x0*stride : x1*stride] {
				z[x0*stride+i] += v
			}
		}
	})
	impl := convBLAS
	runWorkers(mc, func(_ *convScratch, _, f0, f1 int) {
		impl.Sgemm(blas.Trans, blas.NoTrans, f1-f0, 9, winograd.Points, 1, z[f0:], stride, filterMatrix, 9, 1, dw[f0*9:], 9)
	})
}
