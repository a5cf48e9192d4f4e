package align

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// panelElems bounds the size of the float64 row panels buildScore gathers before one matrix
// product (per panel: 4 Mi elements, 32 MiB), unless a single member block is larger. It is a
// variable so that tests can force several panels.
var panelElems = 1 << 22

// scoreWork is the reusable workspace of buildScore.
type scoreWork struct {
	a, b []float64
}

// buildScore writes into s (Size x Size, row-major) the score matrix of group g under the
// current permutation pi of the other groups:
//
//	s[i][j] = sum_pairs w * sum_{members (P, axis, block) of g} <T_P[i], P'_P[j]>
//
// where T_P[i] is the slab of the target tensor P at positions i*block..i*block+block-1 of the
// member axis (all other axes included, flattened), and P'_P[j] is the same slab of the source
// tensor after the current permutations of the OTHER axes of P (which belong to other groups)
// are applied; pi[g] itself is not applied. Then sum_i s[i][pi_g[i]] is the part of the
// correlation sum_pairs w <T, pi(S)> that depends on pi_g, so maximising it over pi_g minimises
// the objective over pi_g.
//
// The slabs are gathered as float64 rows, the target rows scaled by w, and concatenated along
// the inner dimension across members and pairs into panels A and B (Size rows each); every full
// panel is flushed with one product s += A B^T.
func (m *Matcher) buildScore(g int, pi Perm, s []float64, ws *scoreWork) {
	n := m.spec.Groups[g].Size
	clear(s[:n*n])
	// Panel width: all blocks if they fit, else as many columns as panelElems allows, but at
	// least the widest single block.
	total, widest := 0, 0
	for _, mem := range m.members[g] {
		k := len(m.pairs[0].target[mem.param].Data) / n
		total += k * len(m.pairs)
		widest = max(widest, k)
	}
	ld := min(total, max(widest, panelElems/n))
	if ld == 0 {
		return
	}
	if len(ws.a) < n*ld {
		ws.a = make([]float64, n*ld)
		ws.b = make([]float64, n*ld)
	}
	a, b := ws.a[:n*ld], ws.b[:n*ld]
	col := 0
	for _, pr := range m.pairs {
		for _, mem := range m.members[g] {
			t, src := pr.target[mem.param], pr.source[mem.param]
			k := len(t.Data) / n
			if k == 0 {
				continue
			}
			if col+k > ld {
				addABt(s, a, b, n, col, ld)
				col = 0
			}
			shape := t.Shape
			tabsT := identityTables(shape)
			tabsS := pi.offsetTables(shape, m.axes[mem.param], mem.axis)
			otherT := append(append([][]int(nil), tabsT[:mem.axis]...), tabsT[mem.axis+1:]...)
			otherS := append(append([][]int(nil), tabsS[:mem.axis]...), tabsS[mem.axis+1:]...)
			rest := k / mem.block
			for l, off := range tabsT[mem.axis] {
				at := (l/mem.block)*ld + col + (l%mem.block)*rest
				gather(a[at:at+rest], t.Data, off, otherT)
				gather(b[at:at+rest], src.Data, tabsS[mem.axis][l], otherS)
			}
			if pr.w != 1 {
				for i := 0; i < n; i++ {
					blk := a[i*ld+col : i*ld+col+k]
					for x := range blk {
						blk[x] *= pr.w
					}
				}
			}
			col += k
		}
	}
	if col > 0 {
		addABt(s, a, b, n, col, ld)
	}
}

// Blocking of addABt: rows of c per task, and the inner-dimension chunk kept in cache.
const (
	gemmRows = 32
	gemmK    = 256
)

// addABt adds a b^T to c: c[i*n+j] += sum_{t<k} a[i*ld+t] * b[j*ld+t], for n x k panels a and b
// with row stride ld. Row blocks of c are shared out to GOMAXPROCS goroutines. Every element is
// accumulated in the same order (k-chunks of gemmK, each summed from zero and then added to c)
// whatever the tiling or the number of goroutines, so the result is deterministic.
func addABt(c, a, b []float64, n, k, ld int) {
	blocks := (n + gemmRows - 1) / gemmRows
	workers := min(runtime.GOMAXPROCS(0), blocks)
	var next atomic.Int64
	work := func() {
		for {
			blk := int(next.Add(1)) - 1
			if blk >= blocks {
				return
			}
			i0, i1 := blk*gemmRows, min(blk*gemmRows+gemmRows, n)
			for k0 := 0; k0 < k; k0 += gemmK {
				gemmBlock(c, a, b, n, ld, i0, i1, k0, min(k0+gemmK, k))
			}
		}
	}
	if workers <= 1 {
		work()
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(work)
	}
	wg.Wait()
}

// gemmBlock adds to rows i0..i1-1 of c the products over the inner range k0..k1-1, with a
// 2x4 register tile and scalar edges.
func gemmBlock(c, a, b []float64, n, ld, i0, i1, k0, k1 int) {
	i := i0
	for ; i+2 <= i1; i += 2 {
		a0 := a[i*ld+k0 : i*ld+k1]
		a1 := a[(i+1)*ld+k0 : (i+1)*ld+k1]
		a1 = a1[:len(a0)]
		c0 := c[i*n : i*n+n]
		c1 := c[(i+1)*n : (i+1)*n+n]
		j := 0
		for ; j+4 <= n; j += 4 {
			b0 := b[j*ld+k0 : j*ld+k1]
			b1 := b[(j+1)*ld+k0 : (j+1)*ld+k1]
			b2 := b[(j+2)*ld+k0 : (j+2)*ld+k1]
			b3 := b[(j+3)*ld+k0 : (j+3)*ld+k1]
			b0, b1, b2, b3 = b0[:len(a0)], b1[:len(a0)], b2[:len(a0)], b3[:len(a0)]
			var s00, s01, s02, s03, s10, s11, s12, s13 float64
			for t, x0 := range a0 {
				x1 := a1[t]
				y0, y1, y2, y3 := b0[t], b1[t], b2[t], b3[t]
				s00 += x0 * y0
				s01 += x0 * y1
				s02 += x0 * y2
				s03 += x0 * y3
				s10 += x1 * y0
				s11 += x1 * y1
				s12 += x1 * y2
				s13 += x1 * y3
			}
			c0[j] += s00
			c0[j+1] += s01
			c0[j+2] += s02
			c0[j+3] += s03
			c1[j] += s10
			c1[j+1] += s11
			c1[j+2] += s12
			c1[j+3] += s13
		}
		for ; j < n; j++ {
			bj := b[j*ld+k0 : j*ld+k1]
			c0[j] += dot(a0, bj)
			c1[j] += dot(a1, bj)
		}
	}
	for ; i < i1; i++ {
		ai := a[i*ld+k0 : i*ld+k1]
		ci := c[i*n : i*n+n]
		for j := range ci {
			ci[j] += dot(ai, b[j*ld+k0:j*ld+k1])
		}
	}
}

// dot returns sum_t x[t]*y[t], accumulated in order from zero; len(y) >= len(x).
func dot(x, y []float64) float64 {
	y = y[:len(x)]
	s := 0.0
	for t, v := range x {
		s += v * y[t]
	}
	return s
}
