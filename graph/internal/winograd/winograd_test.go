package winograd

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randSlice(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// withoutAsm runs f with the assembly kernels turned off.
func withoutAsm(t *testing.T, f func()) {
	t.Helper()
	saved := hasAVX2
	hasAVX2 = false
	defer func() { hasAVX2 = saved }()
	f()
}

// TestKernelsMatchGo checks the AVX2 kernels bit for bit against the Go loops, on strided
// layouts and channel counts with and without a remainder.
func TestKernelsMatchGo(t *testing.T) {
	if !hasAVX2 {
		t.Skip("no AVX2 kernels on this processor: the Go loops are all there is")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []int{8, 19, 64} {
		col, ld, xi := c+3, 5*(c+3)+1, c+5
		src := randSlice(rng, 4*ld)
		got, want := make([]float32, 16*xi), make([]float32, 16*xi)
		InputTile(got, src, c, ld, col, xi)
		withoutAsm(t, func() { InputTile(want, src, c, ld, col, xi) })
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("InputTile, %d channels: entry %d = %v, Go loop %v", c, i, got[i], want[i])
			}
		}
		y := randSlice(rng, 16*xi)
		gotO, wantO := make([]float32, 2*ld), make([]float32, 2*ld)
		OutputTile(gotO, y, c, xi, ld, col)
		withoutAsm(t, func() { OutputTile(wantO, y, c, xi, ld, col) })
		for i := range wantO {
			if math.Float32bits(gotO[i]) != math.Float32bits(wantO[i]) {
				t.Fatalf("OutputTile, %d channels: entry %d = %v, Go loop %v", c, i, gotO[i], wantO[i])
			}
		}
	}
}

// TestTileMatchesDirect checks a whole F(2x2, 3x3) tile (Filters, InputTile, the per-position
// products summed over channels, OutputTile) against the direct correlation in float64, and
// the flipped filters against the input gradient of the correlation.
func TestTileMatchesDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const m, c = 5, 11
	w := randSlice(rng, m*c*9)
	d := randSlice(rng, 16*c) // channels-last 4 x 4 tile: d[(4i+j)*c + ch]
	u := make([]float32, 16*m*c)
	Filters(u, w, m, c, 0, m, false)
	v := make([]float32, 16*c)
	InputTile(v, d, c, 4*c, c, c)
	y := make([]float32, 16*m)
	for xi := 0; xi < 16; xi++ {
		for mi := 0; mi < m; mi++ {
			s := float32(0)
			for ci := 0; ci < c; ci++ {
				s += v[xi*c+ci] * u[xi*c*m+ci*m+mi]
			}
			y[xi*m+mi] = s
		}
	}
	out := make([]float32, 4*m) // 2 x 2 x m
	OutputTile(out, y, m, m, 2*m, m)
	for p := 0; p < 2; p++ {
		for q := 0; q < 2; q++ {
			for mi := 0; mi < m; mi++ {
				want := 0.0
				for ci := 0; ci < c; ci++ {
					for ky := 0; ky < 3; ky++ {
						for kx := 0; kx < 3; kx++ {
							want += float64(d[((p+ky)*4+q+kx)*c+ci]) * float64(w[((mi*c+ci)*3+ky)*3+kx])
						}
					}
				}
				if got := float64(out[(p*2+q)*m+mi]); math.Abs(got-want) > 1e-5*(1+math.Abs(want)) {
					t.Errorf("output (%d, %d) channel %d = %v, direct %v", p, q, mi, got, want)
				}
			}
		}
	}
	// Flipped: u'[xi][mi][ci] is the transform of w[mi][ci] rotated by 180 degrees.
	uf := make([]float32, 16*m*c)
	Filters(uf, w, m, c, 0, 3, true)
	Filters(uf, w, m, c, 3, m, true)
	rot := make([]float32, m*c*9)
	for mi := 0; mi < m; mi++ {
		for ci := 0; ci < c; ci++ {
			for k := 0; k < 9; k++ {
				rot[(ci*m+mi)*9+k] = w[(mi*c+ci)*9+8-k]
			}
		}
	}
	Filters(u, rot, c, m, 0, c, false) // filters c x m: u[xi][mi][ci]
	for i := range u {
		if u[i] != uf[i] {
			t.Fatalf("flipped filter entry %d = %v, transform of the rotated filter %v", i, uf[i], u[i])
		}
	}
}

// TestTranspose checks Transpose (and its adding form) against the definition, with and
// without the kernels, on sizes with and without edges past the 8 x 8 blocks.
func TestTranspose(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, asm := range []bool{true, false} {
		for _, sz := range [][2]int{{8, 8}, {16, 24}, {13, 21}, {5, 3}, {9, 8}, {64, 4}} {
			rows, cols := sz[0], sz[1]
			lds, ldd := cols+3, rows+2
			src := randSlice(rng, rows*lds)
			for _, add := range []bool{false, true} {
				dst := randSlice(rng, cols*ldd)
				want := append([]float32(nil), dst...)
				for i := 0; i < rows; i++ {
					for j := 0; j < cols; j++ {
						if add {
							want[j*ldd+i] += src[i*lds+j]
						} else {
							want[j*ldd+i] = src[i*lds+j]
						}
					}
				}
				run := func() { Transpose(dst, ldd, src, lds, rows, cols, add) }
				if asm {
					run()
				} else {
					withoutAsm(t, run)
				}
				for i := range want {
					if dst[i] != want[i] {
						t.Fatalf("asm %t, %d x %d, add %t: entry %d = %v, want %v", asm, rows, cols, add, i, dst[i], want[i])
					}
				}
			}
		}
	}
}
