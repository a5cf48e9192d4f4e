// Package winograd holds the transforms of Winograd's minimal filtering algorithm F(2x2, 3x3)
// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), which computes a
// 2 x 2 tile of a 3x3 stride-1 correlation from a 4 x 4 tile of its input with 16
// multiplications per channel pair instead of 36:
//
//	Y = A^T [ (G g G^T) .* (B^T d B) ] A
//
// g the 3 x 3 filter, d the 4 x 4 input tile, .* the element-wise product, and
//
//	B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//	G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//	A^T = [1 1 1 0; 0 1 -1 -1]
//
// Summed over the input channels, the element-wise products become 16 matrix products, one per
// position xi = 4i + j of the 4 x 4 transformed tiles: Y_xi (tiles x M) = V_xi (tiles x C)
// U_xi (C x M), where V holds the transformed input tiles and U the transformed filters. The
// caller runs those products; this package transforms filters, input tiles and output tiles.
//
// Tiles are vectors of channels: the input and output transforms read and write a tile's
// entries as runs of channels (the channels-last layout), so that one transform serves 8
// channels at once in the AVX2 kernels (amd64); the transforms only add and subtract. The
// channel counts passed to InputTile and OutputTile may be any; the kernels take the multiples
// of 8 and a Go loop the rest.
package winograd

// Alpha is the side of an input tile, Out that of an output tile.
const (
	Alpha = 4
	Out   = 2
)

// Filters writes the transformed filters m0..m1-1 of w (m x c x 3 x 3, row-major) into u, laid
// out u[xi*c*m + ci*m + mi] (16 matrices of c x m, the right operands of the products), for
// correlation (flip false); with flip set, of the filters of the transposed convolution that
// gives the input gradient, w'[ci][mi][ky][kx] = w[mi][ci][2-ky][2-kx], laid out
// u[xi*c*m + mi*c + ci] (16 matrices of m x c). The transform is computed in float64 and rounded
// once.
func Filters(u, w []float32, m, c, m0, m1 int, flip bool) {
	_, _ = u[16*m*c-1], w[m*c*9-1]
	one := func(mi, ci, off int) {
		g := w[(mi*c+ci)*9:][:9]
		var f [9]float64
		for i := range f {
			if flip {
				f[i] = float64(g[8-i])
			} else {
				f[i] = float64(g[i])
			}
		}
		// t = G g (4 x 3), then t G^T (4 x 4).
		var t [4][3]float64
		for k := 0; k < 3; k++ {
			g0, g1, g2 := f[k], f[3+k], f[6+k]
			t[0][k] = g0
			t[1][k] = (g0 + g1 + g2) / 2
			t[2][k] = (g0 - g1 + g2) / 2
			t[3][k] = g2
		}
		for i := 0; i < 4; i++ {
			r0, r1, r2 := t[i][0], t[i][1], t[i][2]
			row := [4]float64{r0, (r0 + r1 + r2) / 2, (r0 - r1 + r2) / 2, r2}
			for j, v := range row {
				u[(4*i+j)*m*c+off] = float32(v)
			}
		}
	}
	// The inner loop runs along the rows of u's matrices.
	if flip {
		for mi := m0; mi < m1; mi++ {
			for ci := 0; ci < c; ci++ {
				one(mi, ci, mi*c+ci)
			}
		}
		return
	}
	for ci := 0; ci < c; ci++ {
		for mi := m0; mi < m1; mi++ {
			one(mi, ci, ci*m+mi)
		}
	}
}

// InputTile writes the transformed input tile B^T d B for c channels: entry (i, j) of the tile d,
// channel ch, is src[i*ld + j*col + ch], and transformed entry xi = 4i + j, channel ch, goes to
// dst[xi*xiStride + ch].
func InputTile(dst, src []float32, c, ld, col, xiStride int) {
	if c <= 0 {
		return
	}
	_, _ = src[3*ld+3*col+c-1], dst[15*xiStride+c-1]
	vec := c &^ 7
	if vec > 0 && inputTileAsm(dst, src, vec/8, ld, col, xiStride) {
		src, dst = src[vec:], dst[vec:]
		c -= vec
	}
	for ch := 0; ch < c; ch++ {
		var d [4][4]float32
		for i := range d {
			for j := range d[i] {
				d[i][j] = src[i*ld+j*col+ch]
			}
		}
		// Each row times B, then B^T times the result, in the order of the kernels.
		e0, e1, e2, e3 := cols(d[0]), cols(d[1]), cols(d[2]), cols(d[3])
		for j := 0; j < 4; j++ {
			dst[j*xiStride+ch] = e0[j] - e2[j]
			dst[(4+j)*xiStride+ch] = e1[j] + e2[j]
			dst[(8+j)*xiStride+ch] = e2[j] - e1[j]
			dst[(12+j)*xiStride+ch] = e1[j] - e3[j]
		}
	}
}

// cols returns the row r of a tile times B.
func cols(r [4]float32) [4]float32 {
	return [4]float32{r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]}
}

// OutputTile writes the output tile A^T y A for c channels: transformed entry xi, channel ch,
// is src[xi*xiStride + ch], and output entry (p, q), channel ch, goes to dst[p*ld + q*col + ch].
func OutputTile(dst, src []float32, c, xiStride, ld, col int) {
	if c <= 0 {
		return
	}
	_, _ = src[15*xiStride+c-1], dst[ld+col+c-1]
	vec := c &^ 7
	if vec > 0 && outputTileAsm(dst, src, vec/8, xiStride, ld, col) {
		src, dst = src[vec:], dst[vec:]
		c -= vec
	}
	for ch := 0; ch < c; ch++ {
		for q := 0; q < 2; q++ {
			var f [4]float32
			for i := range f {
				y0, y1, y2, y3 := src[4*i*xiStride+ch], src[(4*i+1)*xiStride+ch], src[(4*i+2)*xiStride+ch], src[(4*i+3)*xiStride+ch]
				if q == 0 {
					f[i] = y0 + y1 + y2
				} else {
					f[i] = y1 - y2 - y3
				}
			}
			dst[q*col+ch] = f[0] + f[1] + f[2]
			dst[ld+q*col+ch] = f[1] - f[2] - f[3]
		}
	}
}
