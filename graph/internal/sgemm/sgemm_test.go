package sgemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// kernels are every micro-kernel this processor runs: the assembly ones and the portable one.
func kernels() []microKernel { return append(asmKernels(), goKernel) }

func (k microKernel) String() string { return fmt.Sprintf("%dx%d", k.mr, k.nr) }

// operands are the inputs of one product, with leading dimensions larger than the matrices
// and C padded past its n columns with a sentinel that must survive.
type operands struct {
	tA, tB        blas.Transpose
	m, n, k       int
	alpha, beta   float32
	a, b, c       []float32
	lda, ldb, ldc int
}

const sentinel = 1234.5

func newOperands(rng *rand.Rand, tA, tB blas.Transpose, m, n, k int, alpha, beta float32) *operands {
	o := &operands{tA: tA, tB: tB, m: m, n: n, k: k, alpha: alpha, beta: beta}
	rowA, colA := m, k
	if tA == blas.Trans {
		rowA, colA = k, m
	}
	rowB, colB := k, n
	if tB == blas.Trans {
		rowB, colB = n, k
	}
	o.lda, o.ldb, o.ldc = colA+rng.IntN(3), colB+rng.IntN(3), n+1+rng.IntN(3)
	random := func(rows, ld int) []float32 {
		x := make([]float32, rows*ld)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	o.a, o.b, o.c = random(rowA, o.lda), random(rowB, o.ldb), random(m, o.ldc)
	for i := 0; i < m; i++ {
		for j := n; j < o.ldc; j++ {
			o.c[i*o.ldc+j] = sentinel
		}
	}
	return o
}

func (o *operands) opA(i, l int) float64 {
	if o.tA == blas.Trans {
		return float64(o.a[l*o.lda+i])
	}
	return float64(o.a[i*o.lda+l])
}

func (o *operands) opB(l, j int) float64 {
	if o.tB == blas.Trans {
		return float64(o.b[j*o.ldb+l])
	}
	return float64(o.b[l*o.ldb+j])
}

// check compares got (C after the product) with the product in float64. A float32 sum of
// k + 1 rounded terms, in any order, is within (k + 2) u sum |term| of the exact sum
// (u = 2^-24 the unit roundoff: k + 1 additions, one rounding per product, plus alpha's).
func (o *operands) check(t *testing.T, got []float32) {
	t.Helper()
	const u = 1.0 / (1 << 24)
	for i := 0; i < o.m; i++ {
		for j := 0; j < o.ldc; j++ {
			g := got[i*o.ldc+j]
			if j >= o.n {
				if g != sentinel {
					t.Fatalf("C[%d, %d] past column %d changed to %v", i, j, o.n, g)
				}
				continue
			}
			c := 0.0
			if o.beta != 0 {
				c = float64(o.beta) * float64(o.c[i*o.ldc+j])
			}
			want, abs := c, math.Abs(c)
			for l := 0; l < o.k; l++ {
				p := float64(o.alpha) * o.opA(i, l) * o.opB(l, j)
				want += p
				abs += math.Abs(p)
			}
			if tol := float64(o.k+2) * u * abs; math.Abs(float64(g)-want) > tol {
				t.Fatalf("C[%d, %d] = %v, want %v within %g", i, j, g, want, tol)
			}
		}
	}
}

var transposes = []blas.Transpose{blas.NoTrans, blas.Trans}

// sizes are the dimensions the tests take: 1, odd, around and past the tiles (6, 12, 16, 32)
// and the blocks (kcBlock 256, mcBlock 120).
var sizes = []int{1, 2, 5, 7, 11, 12, 13, 16, 17, 31, 33, 47, 121, 257}

func TestGemm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kern := range kernels() {
		for _, tA := range transposes {
			for _, tB := range transposes {
				for trial := 0; trial < 60; trial++ {
					m, n, k := sizes[rng.IntN(len(sizes))], sizes[rng.IntN(len(sizes))], sizes[rng.IntN(len(sizes))]
					alpha := []float32{1, -0.75}[trial%2]
					beta := []float32{0, 1, 0.5}[trial%3]
					o := newOperands(rng, tA, tB, m, n, k, alpha, beta)
					name := fmt.Sprintf("%v/%c%c/m=%d,n=%d,k=%d,alpha=%v,beta=%v", kern, tA, tB, m, n, k, alpha, beta)
					t.Run(name, func(t *testing.T) {
						got := append([]float32(nil), o.c...)
						gemm(kern, tA == blas.Trans, tB == blas.Trans, m, n, k, alpha, o.a, o.lda, o.b, o.ldb, beta, got, o.ldc)
						o.check(t, got)
					})
				}
			}
		}
	}
}

// TestGemmBlocks crosses every block boundary: the inner dimension twice kcBlock, C taller
// than mcBlock, then wider than ncBlock.
func TestGemmBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, kern := range kernels() {
		for _, tA := range transposes {
			for _, tB := range transposes {
				for _, mn := range [][2]int{{mcBlock + kern.mr + 1, 2*kern.nr + 1}, {kern.mr + 1, ncBlock + kern.nr + 3}} {
					o := newOperands(rng, tA, tB, mn[0], mn[1], 2*kcBlock+5, 1, 1)
					t.Run(fmt.Sprintf("%v/%c%c/m=%d,n=%d", kern, tA, tB, o.m, o.n), func(t *testing.T) {
						got := append([]float32(nil), o.c...)
						gemm(kern, tA == blas.Trans, tB == blas.Trans, o.m, o.n, o.k, 1, o.a, o.lda, o.b, o.ldb, 1, got, o.ldc)
						o.check(t, got)
					})
				}
			}
		}
	}
}

// TestSgemmGonumOrder checks the documented promise: but for A B^T, C is bit for bit gonum's.
// beta = 0 also clears a NaN in C, as gonum does.
func TestSgemmGonumOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, kern := range kernels() {
		for _, tA := range transposes {
			for _, tB := range transposes {
				if tA == blas.NoTrans && tB == blas.Trans {
					continue
				}
				for trial := 0; trial < 20; trial++ {
					m, n, k := sizes[rng.IntN(len(sizes))], sizes[rng.IntN(len(sizes))], 300+rng.IntN(300)
					alpha, beta := []float32{1, 0.3}[trial%2], []float32{0, 1, -2}[trial%3]
					o := newOperands(rng, tA, tB, m, n, k, alpha, beta)
					if beta == 0 {
						o.c[0] = float32(math.NaN())
					}
					got, want := append([]float32(nil), o.c...), append([]float32(nil), o.c...)
					gemm(kern, tA == blas.Trans, tB == blas.Trans, m, n, k, alpha, o.a, o.lda, o.b, o.ldb, beta, got, o.ldc)
					gonum.Implementation{}.Sgemm(tA, tB, m, n, k, alpha, o.a, o.lda, o.b, o.ldb, beta, want, o.ldc)
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%v %c%c m=%d n=%d k=%d alpha=%v beta=%v: C[%d] = %v, gonum %v",
								kern, tA, tB, m, n, k, alpha, beta, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}

// TestSgemmChecks checks that bad arguments panic as in gonum, and that empty products and
// alpha = 0 only scale C.
func TestSgemmChecks(t *testing.T) {
	a, b := make([]float32, 6), make([]float32, 6)
	for _, tc := range []struct {
		name       string
		m, n, k    int
		lda, ldc   int
		a          []float32
		wantPanics bool
	}{
		{"ok", 2, 2, 3, 3, 2, a, false},
		{"lda", 2, 2, 3, 2, 2, a, true},
		{"ldc", 2, 2, 3, 3, 1, a, true},
		{"short a", 2, 2, 3, 3, 2, a[:5], true},
		{"negative m", -1, 2, 3, 3, 2, a, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := make([]float32, 4)
			panics := func(f func()) (p bool) {
				defer func() { p = recover() != nil }()
				f()
				return false
			}
			got := panics(func() {
				Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, tc.m, tc.n, tc.k, 1, tc.a, tc.lda, b, 2, 0, c, tc.ldc)
			})
			gon := panics(func() {
				gonum.Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, tc.m, tc.n, tc.k, 1, tc.a, tc.lda, b, 2, 0, c, tc.ldc)
			})
			if got != tc.wantPanics || gon != tc.wantPanics {
				t.Fatalf("panics %v, gonum %v, want %v", got, gon, tc.wantPanics)
			}
		})
	}
	c := []float32{1, 2, 3, 4}
	Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, 2, 2, 0, 1, a, 3, nil, 2, 3, c, 2)
	Implementation{}.Sgemm(blas.NoTrans, blas.NoTrans, 2, 2, 3, 0, a, 3, b, 2, 0.5, c, 2)
	if want := []float32{1.5, 3, 4.5, 6}; fmt.Sprint(c) != fmt.Sprint(want) {
		t.Fatalf("C = %v, want %v", c, want)
	}
}

// BenchmarkSgemm times the products of a CIFAR ResNet-18's 3x3 convolutions (64 channels at
// 32 x 32, 512 at 4 x 4 with 16 examples stacked) against gonum's Sgemm.
func BenchmarkSgemm(b *testing.B) {
	for _, s := range []struct {
		name    string
		tA, tB  blas.Transpose
		m, n, k int
	}{
		{"conv64-forward", blas.NoTrans, blas.Trans, 64, 1024, 576},
		{"conv64-dX", blas.Trans, blas.NoTrans, 1024, 576, 64},
		{"conv64-dW", blas.NoTrans, blas.NoTrans, 64, 288, 1024},
		{"conv512-forward", blas.NoTrans, blas.Trans, 512, 256, 4608},
		{"conv512-dW", blas.NoTrans, blas.NoTrans, 512, 2304, 256},
		{"square512", blas.NoTrans, blas.NoTrans, 512, 512, 512},
	} {
		rng := rand.New(rand.NewPCG(7, 8))
		o := newOperands(rng, s.tA, s.tB, s.m, s.n, s.k, 1, 0)
		for _, impl := range []struct {
			name string
			blas.Float32Level3
		}{{"sgemm", Implementation{}}, {"gonum", gonum.Implementation{}}} {
			b.Run(s.name+"/"+impl.name, func(b *testing.B) {
				b.SetBytes(0)
				for b.Loop() {
					impl.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, o.a, o.lda, o.b, o.ldb, 0, o.c, o.ldc)
				}
				b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
			})
		}
	}
}
