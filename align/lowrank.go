package align

import (
	"fmt"
	"math"
	"slices"

	"github.com/ltransfer/ltransfer/params"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// LowRank is a matrix of Shape [rows, cols] held as the product of two factors, M = U^T V: U is
// Rank x rows and V is Rank x cols, both row-major, so M[i][j] = sum_t U[t][i] V[t][j]. The
// gradient of a dense layer's weight over a batch of B examples has this form with Rank = B (U
// the gradients of the layer's outputs and V its inputs, or the other way round): when B is well
// below rows and cols it takes far less memory than the dense matrix, and the Matcher scores it
// at a cost of about rows*B*(rows+B) instead of rows*rows*cols (see Matcher.AddOperands).
type LowRank struct {
	Shape []int
	Rank  int
	U, V  []float32
}

// Operand is one side of a Matcher pair: every parameter named by the spec, held either dense in// Params or as a low-rank product in LowRank. Other parameters of either map are ignored.
type Operand struct {
	Params  params.Set
	LowRank map[string]*LowRank
}

// check reports whether the factors fit the shape and the rank.
func (l *LowRank) check() error {
	if len(l.Shape) != 2 || l.Shape[0] < 0 || l.Shape[1] < 0 || l.Rank < 0 {
		return fmt.Errorf("low rank shape %v rank %d: want 2 dimensions and a rank >= 0", l.Shape, l.Rank)
	}
	if len(l.U) != l.Rank*l.Shape[0] || len(l.V) != l.Rank*l.Shape[1] {
		return fmt.Errorf("low rank shape %v rank %d: factors have %d and %d values, want %d and %d",
			l.Shape, l.Rank, len(l.U), len(l.V), l.Rank*l.Shape[0], l.Rank*l.Shape[1])
	}
	return nil
}

// Dense returns the matrix U^T V as a dense tensor (accumulated in float64, rounded once).
func (l *LowRank) Dense() *params.Tensor {
	rows, cols := l.Shape[0], l.Shape[1]
	out := &params.Tensor{Shape: slices.Clone(l.Shape), Data: make([]float32, rows*cols)}
	acc := make([]float64, cols)
	for i := 0; i < rows; i++ {
		l.row(i, nil, acc)
		for j, v := range acc {
			out.Data[i*cols+j] = float32(v)
		}
	}
	return out
}

// row writes row i of U^T V into dst (len cols), with column j taken from column cols[j] of the
// matrix when cols is not nil.
func (l *LowRank) row(i int, cols []int, dst []float64) {
	clear(dst)
	c := l.Shape[1]
	for t := 0; t < l.Rank; t++ {
		u := float64(l.U[t*l.Shape[0]+i])
		if u == 0 {
			continue
		}
		v := l.V[t*c : t*c+c]
		if cols == nil {
			for j, x := range v {
				dst[j] += u * float64(x)
			}
			continue
		}
		for j, src := range cols {
			dst[j] += u * float64(v[src])
		}
	}
}

// transposed returns the factors of M^T: the same data with the roles of U and V swapped.
func (l *LowRank) transposed() *LowRank {
	return &LowRank{Shape: []int{l.Shape[1], l.Shape[0]}, Rank: l.Rank, U: l.V, V: l.U}
}

// gram returns the Rank_a x Rank_b matrix a b^T of two factor matrices of the same width, the
// columns of b reordered by cols when cols is not nil (b'[u][x] = b[u][cols[x]]); work is scratch
// space for the reordered copy.
func gram(a []float32, ra int, b []float32, rb, width int, cols []int, work *[]float32) []float32 {
	if cols != nil {
		bp := grow(work, rb*width)
		for u := 0; u < rb; u++ {
			src, dst := b[u*width:u*width+width], bp[u*width:u*width+width]
			for x, c := range cols {
				dst[x] = src[c]
			}
		}
		b = bp
	}
	out := make([]float32, ra*rb)
	if ra > 0 && rb > 0 && width > 0 {
		blas32.Implementation().Sgemm(blas.NoTrans, blas.Trans, ra, rb, width, 1, a, width, b, width, 0, out, rb)
	}
	return out
}

// dotF64 returns sum_k x[k]*y[k] accumulated in float64.
func dotF64(x, y []float32) float64 {
	y = y[:len(x)]
	s := 0.0
	for k, v := range x {
		s += float64(v) * float64(y[k])
	}
	return s
}

// lowRankDot returns <a, b'> where b' is b with its rows reordered by rows and its columns by
// cols (nil: unchanged): sum over the factors of (U_a U_b'^T) * (V_a V_b'^T), elementwise.
func lowRankDot(a, b *LowRank, rows, cols []int, work *[]float32) float64 {
	gu := gram(a.U, a.Rank, b.U, b.Rank, a.Shape[0], rows, work)
	gv := gram(a.V, a.Rank, b.V, b.Rank, a.Shape[1], cols, work)
	return dotF64(gu, gv)
}

// lowRankNorm returns ||U^T V||^2 and an error naming a non-finite factor value.
func lowRankNorm(l *LowRank) (float64, error) {
	for _, f := range []struct {
		name string
		x    []float32
	}{{"U", l.U}, {"V", l.V}} {
		for i, v := range f.x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return 0, fmt.Errorf("factor %s element %d is %v", f.name, i, v)
			}
		}
	}
	var work []float32
	n := lowRankDot(l, l, nil, nil, &work)
	if math.IsInf(n, 0) || math.IsNaN(n) {
		return 0, fmt.Errorf("norm overflows")
	}
	return max(n, 0), nil
}

// grow returns (*buf)[:n], reallocating when the capacity is short.
func grow[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n)
	}
	return (*buf)[:n]
}
