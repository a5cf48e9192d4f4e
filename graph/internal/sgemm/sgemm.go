// Package sgemm is a packed, register-blocked single-precision matrix product for the pure Go
// build: C = alpha op(A) op(B) + beta C, op(X) = X or X^T, row-major as in gonum's BLAS.
//
// It follows the GotoBLAS/BLIS structure. The product is cut into blocks of NC columns of C, KC
// terms of the inner dimension and MC rows of C; each block of op(B) (KC x NC, read from memory
// once per block, kept in the last-level cache) and of op(A) (MC x KC, kept in L2) is packed into
// contiguous panels of NR columns and MR rows, and a micro-kernel adds the product of one A panel
// and one B panel (KC x NR, kept in L1) into an MR x NR tile of C held in registers. Packing
// makes every transpose the same product; tiles at the edges of C run through a full-size
// buffer. On amd64 the micro-kernel is Go assembly: 6 x 16 with AVX2, 12 x 32 with AVX-512;
// elsewhere, and on processors without AVX2, a Go loop.
//
// Every entry of C is one sum in the order of the inner index, starting from beta C,
//
//	c = ((beta c + alpha a_0 b_0) + alpha a_1 b_1) + ...,
//
// with each product rounded to float32 before it is added (the kernels multiply and add; they
// do not fuse). That is the order and rounding of gonum's Sgemm when op(A) op(B) is not
// A B^T, so that such products, a convolution's weight gradient among them, are bit for bit
// gonum's (gonum skips the terms whose alpha a_l is zero, which differs only when c is -0 or
// b_l is not finite). gonum computes A B^T as dot products, in 8 interleaved partial sums;
// here each entry sums its terms in chunks of dotChunk from zero, each chunk then added to C,
// which bounds the rounding error as tightly ((dotChunk + k/dotChunk) u against k u for one
// running sum, u = 2^-24). That matters more than its size suggests: a convolution's forward
// product is A B^T, its outputs feed ReLUs, and in a small batch some of their inputs lie
// within 1e-7 of the kink, where the side rounding puts them on moves gradients by percents
// (graph's torchvision tests: MNASNet at batch 4 fails them with one running sum or chunks of
// 32, and passes with chunks of 8, as with gonum's dot products).
package sgemm

import (
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Implementation is gonum's BLAS with this package's Sgemm.
type Implementation struct {
	gonum.Implementation
}

// Blocking of the inner dimension and of the rows and columns of C (multiples of every
// kernel's MR and NR): an A block of mcBlock x kcBlock floats is 123 KB, a B block of
// kcBlock x ncBlock 4 MB, one B panel (16 or 32 columns) 16 or 32 KB.
const (
	kcBlock = 256
	mcBlock = 120
	ncBlock = 4080 - 4080%32
)

// dotChunk is the number of terms summed from zero before they are added to C, in A B^T.
const dotChunk = 8

// microKernel adds the product of a packed A panel (k x mr, mr values per inner index) and a
// packed B panel (k x nr) into the mr x nr tile of C at c (row stride ldc), in the order the
// package documents: a running sum from C, or when fresh a sum from zero then added to C.
type microKernel struct {
	mr, nr int
	run    func(k int, a, b, c []float32, ldc int, fresh bool)
}

// goKernel is the portable micro-kernel.
var goKernel = microKernel{mr: 6, nr: 16, run: kernelGo6x16}

// kernel is the best micro-kernel the processor runs.
var kernel = func() microKernel {
	if ks := asmKernels(); len(ks) > 0 {
		return ks[0]
	}
	return goKernel
}()

// Sgemm computes C = alpha op(A) op(B) + beta C, where op(A) is m x k, op(B) k x n and C
// m x n, with gonum's argument checks.
func (Implementation) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, c []float32, ldc int) {
	transA, transB := check(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	gemm(kernel, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// check panics as gonum's Sgemm does on bad arguments, and tells whether A and B are
// transposed.
func check(tA, tB blas.Transpose, m, n, k int, a []float32, lda int, b []float32, ldb int,
	c []float32, ldc int) (transA, transB bool) {
	for _, t := range []blas.Transpose{tA, tB} {
		if t != blas.NoTrans && t != blas.Trans && t != blas.ConjTrans {
			panic("blas: illegal transpose")
		}
	}
	transA, transB = tA != blas.NoTrans, tB != blas.NoTrans
	switch {
	case m < 0:
		panic("blas: m < 0")
	case n < 0:
		panic("blas: n < 0")
	case k < 0:
		panic("blas: k < 0")
	}
	rowA, colA := m, k
	if transA {
		rowA, colA = k, m
	}
	rowB, colB := k, n
	if transB {
		rowB, colB = n, k
	}
	switch {
	case lda < max(1, colA):
		panic("blas: bad leading dimension of A")
	case ldb < max(1, colB):
		panic("blas: bad leading dimension of B")
	case ldc < max(1, n):
		panic("blas: bad leading dimension of C")
	}
	if m == 0 || n == 0 {
		return transA, transB
	}
	switch {
	case len(a) < lda*(rowA-1)+colA:
		panic("blas: insufficient length of a")
	case len(b) < ldb*(rowB-1)+colB:
		panic("blas: insufficient length of b")
	case len(c) < ldc*(m-1)+n:
		panic("blas: insufficient length of c")
	}
	return transA, transB
}

// buffers are the packed blocks of one product.
type buffers struct{ a, b, tile []float32 }

var pool = sync.Pool{New: func() any { return new(buffers) }}

// gemm is Sgemm with checked arguments, through the micro-kernel kern.
func gemm(kern microKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int,
	b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 || (alpha == 0 || k == 0) && beta == 1 {
		return
	}
	if beta != 1 {
		for i := 0; i < m; i++ {
			ci := c[i*ldc:][:n]
			if beta == 0 {
				clear(ci)
				continue
			}
			for j := range ci {
				ci[j] *= beta
			}
		}
	}
	if alpha == 0 || k == 0 {
		return
	}
	mr, nr := kern.mr, kern.nr
	buf := pool.Get().(*buffers)
	defer pool.Put(buf)
	kcMax, ncMax := min(kcBlock, k), min(ncBlock, (n+nr-1)/nr*nr)
	buf.a = grow(buf.a, min(mcBlock, (m+mr-1)/mr*mr)*kcMax)
	buf.b = grow(buf.b, kcMax*ncMax)
	buf.tile = grow(buf.tile, mr*nr)
	for jc := 0; jc < n; jc += ncBlock {
		nc := min(ncBlock, n-jc)
		for pc := 0; pc < k; pc += kcBlock {
			kc := min(kcBlock, k-pc)
			packB(buf.b, nr, transB, b, ldb, pc, kc, jc, nc)
			for ic := 0; ic < m; ic += mcBlock {
				mc := min(mcBlock, m-ic)
				packA(buf.a, mr, transA, a, lda, ic, mc, pc, kc, alpha)
				chunk := kc // a running sum from C
				if !transA && transB {
					chunk = dotChunk
				}
				for jr := 0; jr < nc; jr += nr {
					bp := buf.b[jr*kc:][:kc*nr]
					w := min(nr, nc-jr)
					for ir := 0; ir < mc; ir += mr {
						ap := buf.a[ir*kc:][:kc*mr]
						h := min(mr, mc-ir)
						ci := c[(ic+ir)*ldc+jc+jr:]
						if h == mr && w == nr {
							kern.tile(kc, chunk, ap, bp, ci, ldc)
							continue
						}
						t := buf.tile
						for r := 0; r < h; r++ {
							copy(t[r*nr:][:w], ci[r*ldc:][:w])
						}
						kern.tile(kc, chunk, ap, bp, t, nr)
						for r := 0; r < h; r++ {
							copy(ci[r*ldc:][:w], t[r*nr:][:w])
						}
					}
				}
			}
		}
	}
}

// tile adds the product of packed panels into a tile of C, in chunks of chunk terms, each a
// running sum from C when chunk is kc, from zero then added to C otherwise.
func (kern microKernel) tile(kc, chunk int, a, b, c []float32, ldc int) {
	if chunk >= kc {
		kern.run(kc, a, b, c, ldc, false)
		return
	}
	for l := 0; l < kc; l += chunk {
		kern.run(min(chunk, kc-l), a[l*kern.mr:], b[l*kern.nr:], c, ldc, true)
	}
}

// grow returns b if it holds n values, else a new slice of n.
func grow(b []float32, n int) []float32 {
	if len(b) < n {
		return make([]float32, n)
	}
	return b
}

// packA packs alpha op(A)[i0:i0+mc, l0:l0+kc] into dst as panels of mr rows, each kc x mr
// (the mr values of one inner index together), the rows past mc zero.
func packA(dst []float32, mr int, trans bool, a []float32, lda, i0, mc, l0, kc int, alpha float32) {
	for ir := 0; ir < mc; ir += mr {
		p := dst[ir*kc:][:kc*mr]
		h := min(mr, mc-ir)
		if h < mr {
			clear(p)
		}
		if trans { // op(A)[i, l] = a[l*lda+i]: a panel's row of mr values is contiguous
			for l := 0; l < kc; l++ {
				src := a[(l0+l)*lda+i0+ir:][:h]
				dl := p[l*mr:][:h]
				for r, v := range src {
					dl[r] = alpha * v
				}
			}
			continue
		}
		for r := 0; r < h; r++ {
			src := a[(i0+ir+r)*lda+l0:][:kc]
			for l, v := range src {
				p[l*mr+r] = alpha * v
			}
		}
	}
}

// packB packs op(B)[l0:l0+kc, j0:j0+nc] into dst as panels of nr columns, each kc x nr, the
// columns past nc zero.
func packB(dst []float32, nr int, trans bool, b []float32, ldb, l0, kc, j0, nc int) {
	for jr := 0; jr < nc; jr += nr {
		p := dst[jr*kc:][:kc*nr]
		w := min(nr, nc-jr)
		if w < nr {
			clear(p)
		}
		if !trans { // op(B)[l, j] = b[l*ldb+j]: a panel's row is contiguous
			for l := 0; l < kc; l++ {
				copy(p[l*nr:][:w], b[(l0+l)*ldb+j0+jr:][:w])
			}
			continue
		}
		for j := 0; j < w; j++ {
			src := b[(j0+jr+j)*ldb+l0:][:kc]
			for l, v := range src {
				p[l*nr+j] = v
			}
		}
	}
}

// kernelGo6x16 is the portable micro-kernel, 6 x 16.
func kernelGo6x16(k int, a, b, c []float32, ldc int, fresh bool) {
	var acc [6][16]float32
	if !fresh {
		for r := range acc {
			copy(acc[r][:], c[r*ldc:][:16])
		}
	}
	for l := 0; l < k; l++ {
		bl := (*[16]float32)(b[l*16:])
		al := (*[6]float32)(a[l*6:])
		for r, av := range al {
			row := &acc[r]
			for j, bv := range bl {
				// The conversion rounds the product, which the compiler may otherwise fuse
				// into the addition.
				row[j] += float32(av * bv)
			}
		}
	}
	for r := range acc {
		cr := c[r*ldc:][:16]
		if fresh {
			for j, v := range acc[r] {
				cr[j] += v
			}
			continue
		}
		copy(cr, acc[r][:])
	}
}
