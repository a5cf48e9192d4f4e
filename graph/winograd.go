package graph

import (
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/ltransfer/ltransfer/graph/internal/winograd"
)

// winoMinChannels is the smallest number of input and of output channels for which a 3x3
// stride-1 convolution runs through Winograd's F(2x2, 3x3): below it the products are too thin
// for the 2.25x fewer multiplications to pay for the transforms.
const winoMinChannels = 16

// winoTiles is about the number of tiles a worker transforms and multiplies at once: enough rows
// for the 16 products to run at the BLAS's speed, few enough that their operands (16 x tiles x
// channels, 8 MB at 512 channels) stay near the cache.
const winoTiles = 512

// winoScratch is one worker's buffers for winoConv.
type winoScratch struct {
	in    []float32 // a few examples' padded input, channels last
	tiles []float32 // their transformed input tiles: 16 matrices of tiles x channels
	prods []float32 // the products: 16 matrices of tiles x output channels
	out   []float32 // the output tiles, channels last
	flat  []float32 // one example's input, channels last, without padding
}

// winograd tells whether the convolution of d runs through Winograd's F(2x2, 3x3) (forward and
// input gradient): one group, a 3x3 window, stride and dilation 1, padding of at most 2 on every
// side (the input gradient is then the same kind of convolution, with padding 2 - p), and at
// least winoMinChannels input and output channels, multiples of 8.
func (k *conv2D) winograd(d *convDims) bool {
	return k.groups == 1 && d.kh == 3 && d.kw == 3 && k.sh == 1 && k.sw == 1 && k.dh == 1 && k.dw == 1 &&
		max(k.top, k.left, k.bottom, k.right) <= 2 &&
		d.c >= winoMinChannels && d.m >= winoMinChannels && d.c%8 == 0 && d.m%8 == 0
}

// winoConv is one 3x3 stride-1 correlation computed with F(2x2, 3x3): n examples of c input
// planes of h x w, padded by top and left (and at least by bottom and right, zeros up to the
// last tile), into m output planes of oh x ow, with the transformed filters u (16 matrices of
// c x m, see winograd.Filters).
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
		th: (oh + 1) / 2, tw: (ow + 1) / 2}
	p.nb = max(1, min(n, (winoTiles+p.th*p.tw-1)/(p.th*p.tw)))
	return p
}

// run writes (add false) or adds (add true) the correlation of x with the transformed filters u
// into out, the examples split among the workers; then, when epilogue is not nil, it calls
// epilogue(0, y) on each example's output planes y as soon as they are written, on the worker
// that wrote them.
func (p *winoConv) run(x, u, out []float32, add bool, epilogue func(m0 int, y []float32)) {
	hp, wp := 2*p.th+2, 2*p.tw+2 // padded input tile rows
	ohp, owp := 2*p.th, 2*p.tw   // output tile rows
	impl := blas32.Implementation()
	runWorkers(p.n, func(s *convScratch, first, end int) {
		ws := &s.wino
		tiles := p.nb * p.th * p.tw
		in := growBuf(&ws.in, p.nb*hp*wp*p.c)
		v := growBuf(&ws.tiles, 16*tiles*p.c)
		y := growBuf(&ws.prods, 16*tiles*p.m)
		o := growBuf(&ws.out, p.nb*ohp*owp*p.m)
		flat := growBuf(&ws.flat, p.h*p.w*p.c)
		for b0 := first; b0 < end; b0 += p.nb {
			nc := min(p.nb, end-b0)
			t := nc * p.th * p.tw
			p.pack(in[:nc*hp*wp*p.c], flat, x[b0*p.c*p.h*p.w:], nc, hp, wp)
			for b := 0; b < nc; b++ {
				for ty := 0; ty < p.th; ty++ {
					for tx := 0; tx < p.tw; tx++ {
						ti := (b*p.th+ty)*p.tw + tx
						winograd.InputTile(v[ti*p.c:], in[((b*hp+2*ty)*wp+2*tx)*p.c:], p.c, wp*p.c, p.c, t*p.c)
					}
				}
			}
			for xi := 0; xi < 16; xi++ {
				impl.Sgemm(blas.NoTrans, blas.NoTrans, t, p.m, p.c, 1, v[xi*t*p.c:], p.c, u[xi*p.c*p.m:], p.m,
					0, y[xi*t*p.m:], p.m)
			}
			for b := 0; b < nc; b++ {
				for ty := 0; ty < p.th; ty++ {
					for tx := 0; tx < p.tw; tx++ {
						ti := (b*p.th+ty)*p.tw + tx
						winograd.OutputTile(o[((b*ohp+2*ty)*owp+2*tx)*p.m:], y[ti*p.m:], p.m, t*p.m, owp*p.m, p.m)
					}
				}
			}
			for b := 0; b < nc; b++ {
				planes := out[(b0+b)*p.m*p.oh*p.ow:][:p.m*p.oh*p.ow]
				p.unpack(planes, o[b*ohp*owp*p.m:], owp, add)
				if epilogue != nil {
					epilogue(0, planes)
				}
			}
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

// filterBufs holds the buffers of the transformed filters between calls.
var filterBufs struct {
	sync.Mutex
	free []*[]float32
}

// withFilters calls f with the transformed filters of w for d's convolution (flip false) or for
// its input gradient (flip true), computed by the workers, in a buffer from filterBufs.
func withFilters(d *convDims, w []float32, flip bool, f func(u []float32)) {
	filterBufs.Lock()
	buf := new([]float32)
	if n := len(filterBufs.free); n > 0 {
		buf, filterBufs.free = filterBufs.free[n-1], filterBufs.free[:n-1]
	}
	filterBufs.Unlock()
	u := growBuf(buf, 16*d.m*d.c)[:16*d.m*d.c]
	winograd.Filters(u, w, d.m, d.c, 0, d.m, flip)
	f(u)
	filterBufs.Lock()
	filterBufs.free = append(filterBufs.free, buf)
	filterBufs.Unlock()
}

// winoForward computes the convolution of x with w into out through F(2x2, 3x3), calling
// epilogue as convolve does. OpenBLAS stays single-threaded throughout (its threads would spin
// between the workers' phases).
func (k *conv2D) winoForward(d *convDims, x, w, out []float32, epilogue func(m0 int, y []float32)) {
	defer serialBLAS()()
	withFilters(d, w, false, func(u []float32) {
		newWinoConv(d.n, d.c, d.h, d.w, d.m, d.oh, d.ow, k.top, k.left).run(x, u, out, false, epilogue)
	})
}

// winoInputGrad adds the gradient of the input, dx, of d's convolution with w, given the
// output's gradient dy: the correlation of dy, padded by 2 - top and 2 - left, with the filters
// rotated by 180 degrees and their channels swapped.
func (k *conv2D) winoInputGrad(d *convDims, w, dy, dx []float32) {
	defer serialBLAS()()
	withFilters(d, w, true, func(u []float32) {
		newWinoConv(d.n, d.m, d.oh, d.ow, d.c, d.h, d.w, 2-k.top, 2-k.left).run(dy, u, dx, true, nil)
	})
}
