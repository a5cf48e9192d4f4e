// Package winograd holds the transforms of Winograd's minimal filtering algorithm F(4x4, 3x3)
// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), which computes a
// 4 x 4 tile of a 3x3 stride-1 correlation from a 6 x 6 tile of its input with 36
// multiplications per channel pair instead of 144:
//
//	Y = A^T [ (G g G^T) .* (B^T d B) ] A
//
// g the 3 x 3 filter, d the 6 x 6 input tile, .* the element-wise product, and (interpolation
// points 0, -1, 1, -2, 2 and infinity)
//
//	B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//	G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//	A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
//
// Summed over the input channels, the element-wise products become 36 matrix products, one per
// position xi = 6i + j of the transformed tiles: Y_xi (tiles x M) = V_xi (tiles x C) U_xi (C x M),
// where V holds the transformed input tiles and U the transformed filters. The caller runs those
// products; this package transforms filters, input tiles and output tiles, and moves planes
// between the channels-first and channels-last layouts (Transpose).
//
// Tiles are vectors of channels: the input and output transforms read and write a tile's
// entries as runs of channels (channels last), so that one transform serves 8 channels at once
// in the AVX2 kernels (amd64, winograd_amd64.s, written by gen_asm.go); they only add, subtract
// and multiply by powers of 2. The channel counts passed to InputTile and OutputTile may be any;
// the kernels take the multiples of 8 and a Go loop, in the same order, the rest.
package winograd

//go:generate go run gen_asm.go

// Alpha is the side of an input tile, Out that of an output tile, and Points the number of
// entries of a transformed tile (and of products).
const (
	Alpha  = 6
	Out    = 4
	Points = Alpha * Alpha
)

// Filters writes the transformed filters G g G^T of the filters j0..j1-1 of w (3 x 3 each,
// row-major, consecutive) into u: entry xi of filter j at u[xi*stride + j]. With flip set, the
// filters are rotated by 180 degrees first, as the input gradient's transposed convolution
// needs. The transform runs in float64, rounded once: in float32 its rounding adds about half
// of F(4x4, 3x3)'s error (measured on torchvision's ResNet-50). A stride of a multiple of 8 plus
// a cache line keeps the 36 rows of u from mapping to the same cache sets.
func Filters(u []float32, stride int, w []float32, j0, j1 int, flip bool) {
	if j1 <= j0 {
		return
	}
	_, _ = u[(Points-1)*stride+j1-1], w[j1*9-1]
	var f [9]float64
	var t [Points]float64
	for j := j0; j < j1; j++ {
		g := w[j*9:][:9]
		if flip {
			for i, v := range g {
				f[8-i] = float64(v)
			}
		} else {
			for i, v := range g {
				f[i] = float64(v)
			}
		}
		filter(&t, &f)
		for xi, v := range t {
			u[xi*stride+j] = float32(v)
		}
	}
}

// FilterMatrix returns the 36 x 9 matrix M (row-major) of the filter transform: entry xi of
// G g G^T is sum_k M[xi][k] g_k, g_k the taps in row-major order. Its transpose is the
// transform's adjoint, which takes the transformed weight gradient (see GradTile) back to 3 x 3.
func FilterMatrix() []float32 {
	mat := make([]float32, Points*9)
	var t [Points]float64
	for k := 0; k < 9; k++ {
		var f [9]float64
		f[k] = 1
		filter(&t, &f)
		for xi, v := range t {
			mat[xi*9+k] = float32(v)
		}
	}
	return mat
}

// filter sets t to G f G^T for the 3 x 3 filter f, t row-major 6 x 6.
func filter(t *[Points]float64, f *[9]float64) {
	var h [Alpha * 3]float64 // G f, 6 x 3
	for k := 0; k < 3; k++ {
		gRow(h[k:], 3, f[k], f[3+k], f[6+k])
	}
	for i := 0; i < Alpha; i++ {
		gRow(t[Alpha*i:], 1, h[3*i], h[3*i+1], h[3*i+2])
	}
}

// gRow sets dst[0], dst[stride], ..., dst[5*stride] to G (g0, g1, g2).
func gRow(dst []float64, stride int, g0, g1, g2 float64) {
	const quarter, sixth, twelfth, twentyfourth = 1.0 / 4, 1.0 / 6, 1.0 / 12, 1.0 / 24
	even, odd := (g0+g2)*sixth, g1*sixth
	dst[0] = g0 * quarter
	dst[stride] = -(even + odd)
	dst[2*stride] = odd - even
	dst[3*stride] = g0*twentyfourth + g1*twelfth + g2*sixth
	dst[4*stride] = g0*twentyfourth - g1*twelfth + g2*sixth
	dst[5*stride] = g2
}

// inputRow sets out to d B for a row d of an input tile (the same combination gives B^T d for a
// column), in the order of the AVX2 kernel.
func inputRow(d, out []float32) {
	d, out = d[:Alpha], out[:Alpha]
	t0 := d[4] - 4*d[2]
	t1 := d[3] - 4*d[1]
	t2 := d[4] - d[2]
	t3 := d[3] - d[1]
	t3 += t3
	out[0], out[1], out[2], out[3], out[4], out[5] = 4*(d[0]-d[2])+t2, t0+t1, t0-t1, t2+t3, t2-t3, 4*(d[1]-d[3])+(d[5]-d[3])
}

// outputRow sets out to y A for a row y of a transformed tile (the same combination gives A^T y
// for a column), in the order of the AVX2 kernel.
func outputRow(y, out []float32) {
	y, out = y[:Alpha], out[:Out]
	a, b, c, e := y[1]+y[2], y[1]-y[2], y[3]+y[4], y[3]-y[4]
	out[0], out[1], out[2], out[3] = y[0]+a+c, b+(e+e), a+4*c, b+8*e+y[5]
}

// gradRow sets out to A z for a column z of an output tile's gradient (the same combination
// gives z A^T for a row), in the order of the AVX2 kernel.
func gradRow(z, out []float32) {
	z, out = z[:Out], out[:Alpha]
	e, o := z[0]+z[2], z[1]+z[3]
	e2, o2 := z[0]+4*z[2], (z[1]+z[1])+8*z[3]
	out[0], out[1], out[2], out[3], out[4], out[5] = z[0], e+o, e-o, e2+o2, e2-o2, z[3]
}

// separable applies the 1-D transform row (n values to k) to every row of an n x n tile, then to
// every column of the result, for c channels: entry (i, j) of the tile, channel ch, is
// src[i*sRow + j*sCol + ch], entry (a, b) of the result goes to dst[a*dRow + b*dCol + ch]. This
// is the transforms' Go loop, in the order of their kernels.
func separable(dst, src []float32, c, n, k, sRow, sCol, dRow, dCol int, row func(in, out []float32)) {
	var in, out [Alpha]float32
	var rows [Alpha][Alpha]float32 // rows[i][:k]: row i transformed
	for ch := 0; ch < c; ch++ {
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				in[j] = src[i*sRow+j*sCol+ch]
			}
			row(in[:n], rows[i][:k])
		}
		for b := 0; b < k; b++ {
			for i := 0; i < n; i++ {
				in[i] = rows[i][b]
			}
			row(in[:n], out[:k])
			for a, v := range out[:k] {
				dst[a*dRow+b*dCol+ch] = v
			}
		}
	}
}

// GradTile writes the transformed gradient A z A^T of an output tile z for c channels, the
// adjoint of OutputTile: entry (p, q) of z, channel ch, is src[p*ld + q*col + ch], and
// transformed entry xi = 6i + j, channel ch, goes to dst[xi*xiStride + ch]. Summed over the
// tiles, its products with the transformed input tiles are the transformed weight gradient, which
// FilterMatrix's transpose takes back to 3 x 3.
func GradTile(dst, src []float32, c, ld, col, xiStride int) {
	if c <= 0 {
		return
	}
	_, _ = src[(Out-1)*(ld+col)+c-1], dst[(Points-1)*xiStride+c-1]
	if vec := c &^ 7; vec > 0 && gradTileAsm(dst, src, vec/8, ld, col, xiStride) {
		src, dst, c = src[vec:], dst[vec:], c-vec
	}
	separable(dst, src, c, Out, Alpha, ld, col, Alpha*xiStride, xiStride, gradRow)
}

// InputTile writes the transformed input tile B^T d B for c channels: entry (i, j) of the tile d,
// channel ch, is src[i*ld + j*col + ch], and transformed entry xi = 6i + j, channel ch, goes to
// dst[xi*xiStride + ch].
func InputTile(dst, src []float32, c, ld, col, xiStride int) {
	if c <= 0 {
		return
	}
	_, _ = src[(Alpha-1)*(ld+col)+c-1], dst[(Points-1)*xiStride+c-1]
	if vec := c &^ 7; vec > 0 && inputTileAsm(dst, src, vec/8, ld, col, xiStride) {
		src, dst, c = src[vec:], dst[vec:], c-vec
	}
	separable(dst, src, c, Alpha, Alpha, ld, col, Alpha*xiStride, xiStride, inputRow)
}

// OutputTile writes the output tile A^T y A for c channels: transformed entry xi, channel ch,
// is src[xi*xiStride + ch], and output entry (p, q), channel ch, goes to dst[p*ld + q*col + ch].
func OutputTile(dst, src []float32, c, xiStride, ld, col int) {
	if c <= 0 {
		return
	}
	_, _ = src[(Points-1)*xiStride+c-1], dst[(Out-1)*(ld+col)+c-1]
	if vec := c &^ 7; vec > 0 && outputTileAsm(dst, src, vec/8, xiStride, ld, col) {
		src, dst, c = src[vec:], dst[vec:], c-vec
	}
	separable(dst, src, c, Alpha, Out, Alpha*xiStride, xiStride, ld, col, outputRow)
}
