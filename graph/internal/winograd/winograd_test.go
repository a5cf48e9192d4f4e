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
		col, xi := c+3, c+5
		ld := Alpha*col + 1
		for _, k := range []struct {
			name      string
			src, dst  int // sizes
			transform func(dst, src []float32)
		}{
			{"InputTile", Alpha * ld, Points * xi, func(dst, src []float32) { InputTile(dst, src, c, ld, col, xi) }},
			{"GradTile", Out * ld, Points * xi, func(dst, src []float32) { GradTile(dst, src, c, ld, col, xi) }},
			{"OutputTile", Points * xi, Out * ld, func(dst, src []float32) { OutputTile(dst, src, c, xi, ld, col) }},
		} {
			src := randSlice(rng, k.src)
			got, want := make([]float32, k.dst), make([]float32, k.dst)
			k.transform(got, src)
			withoutAsm(t, func() { k.transform(want, src) })
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s, %d channels: entry %d = %v, Go loop %v", k.name, c, i, got[i], want[i])
				}
			}
		}
	}
}

// filters returns the transformed filters of w (m x c x 3 x 3): u[xi*m*c + mi*c + ci].
func filters(w []float32, m, c int, flip bool) []float32 {
	u := make([]float32, Points*m*c)
	Filters(u, m*c, w, 0, 2, flip)
	Filters(u, m*c, w, 2, m*c, flip)
	return u
}

// TestTileMatchesDirect checks a whole F(4x4, 3x3) tile (Filters, InputTile, the per-position
// products summed over channels, OutputTile) against the direct correlation in float64, and the
// flipped transform against the transform of the rotated filters.
func TestTileMatchesDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const m, c = 5, 11
	w := randSlice(rng, m*c*9)
	d := randSlice(rng, Points*c) // channels-last 6 x 6 tile: d[(6i+j)*c + ch]
	u := filters(w, m, c, false)
	v := make([]float32, Points*c)
	InputTile(v, d, c, Alpha*c, c, c)
	y := make([]float32, Points*m)
	for xi := 0; xi < Points; xi++ {
		for mi := 0; mi < m; mi++ {
			s := float32(0)
			for ci := 0; ci < c; ci++ {
				s += v[xi*c+ci] * u[xi*m*c+mi*c+ci]
			}
			y[xi*m+mi] = s
		}
	}
	out := make([]float32, Out*Out*m)
	OutputTile(out, y, m, m, Out*m, m)
	worst, scale := 0.0, 0.0
	for p := 0; p < Out; p++ {
		for q := 0; q < Out; q++ {
			for mi := 0; mi < m; mi++ {
				want := 0.0
				for ci := 0; ci < c; ci++ {
					for ky := 0; ky < 3; ky++ {
						for kx := 0; kx < 3; kx++ {
							want += float64(d[((p+ky)*Alpha+q+kx)*c+ci]) * float64(w[((mi*c+ci)*3+ky)*3+kx])
						}
					}
				}
				got := float64(out[(p*Out+q)*m+mi])
				worst, scale = max(worst, math.Abs(got-want)), max(scale, math.Abs(want))
			}
		}
	}
	// F(4x4, 3x3) in float32 errs by a few 1e-6 of the outputs' scale (direct float32 sums,
	// about 1e-7); a wrong coefficient errs by the scale itself.
	if worst > 1e-5*scale {
		t.Errorf("largest difference from the direct correlation %g, want at most 1e-5 of the scale %g", worst, scale)
	}
	rot := make([]float32, len(w))
	for f := 0; f < m*c; f++ {
		for k := 0; k < 9; k++ {
			rot[f*9+k] = w[f*9+8-k]
		}
	}
	flipped, want := filters(w, m, c, true), filters(rot, m, c, false)
	for i := range want {
		if flipped[i] != want[i] {
			t.Fatalf("flipped transform entry %d = %v, transform of the rotated filter %v", i, flipped[i], want[i])
		}
	}
}

// TestGradTileIsAdjoint checks that GradTile is the adjoint of OutputTile, <A^T y A, z> =
// <y, A z A^T>, which makes its products with the input tiles the weight gradient.
func TestGradTileIsAdjoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 5; trial++ {
		y, z := randSlice(rng, Points), randSlice(rng, Out*Out)
		o, g := make([]float32, Out*Out), make([]float32, Points)
		OutputTile(o, y, 1, 1, Out, 1)
		GradTile(g, z, 1, Out, 1, 1)
		left, right, scale := 0.0, 0.0, 0.0
		for i := range o {
			left += float64(o[i]) * float64(z[i])
			scale += math.Abs(float64(o[i]) * float64(z[i]))
		}
		for i := range g {
			right += float64(y[i]) * float64(g[i])
		}
		if math.Abs(left-right) > 1e-5*scale {
			t.Errorf("<A^T y A, z> = %v, <y, A z A^T> = %v", left, right)
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
			src := randSlice(rng, (rows-1)*lds+cols) // no slack past the last row
			for _, add := range []bool{false, true} {
				dst := randSlice(rng, (cols-1)*ldd+rows)
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
