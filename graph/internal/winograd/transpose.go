package winograd

// Transpose writes the transpose of src, a rows x cols matrix with row stride lds, into dst, a
// cols x rows matrix with row stride ldd; with add set it adds it to dst instead. The input and
// output transforms read and write channels last, the graph's planes are channels first: the
// convolution moves between the two layouts with it. Blocks of 8 x 8 go through the AVX2
// kernels (amd64), the edges through a Go loop.
func Transpose(dst []float32, ldd int, src []float32, lds, rows, cols int, add bool) {
	if rows <= 0 || cols <= 0 {
		return
	}
	_, _ = src[(rows-1)*lds+cols-1], dst[(cols-1)*ldd+rows-1]
	blocks, i := cols/8, 0
	if blocks > 0 && hasAVX2 {
		for ; i+8 <= rows; i += 8 {
			if add {
				transposeAddAVX2(&dst[i], ldd, &src[i*lds], lds, blocks)
			} else {
				transposeAVX2(&dst[i], ldd, &src[i*lds], lds, blocks)
			}
			if cols > 8*blocks {
				transposeGo(dst[8*blocks*ldd+i:], ldd, src[i*lds+8*blocks:], lds, 8, cols-8*blocks, add)
			}
		}
	}
	if i < rows {
		transposeGo(dst[i:], ldd, src[i*lds:], lds, rows-i, cols, add)
	}
}

// transposeGo is Transpose in Go.
func transposeGo(dst []float32, ldd int, src []float32, lds, rows, cols int, add bool) {
	for i := 0; i < rows; i++ {
		row := src[i*lds:][:cols]
		for j, v := range row {
			if add {
				dst[j*ldd+i] += v
			} else {
				dst[j*ldd+i] = v
			}
		}
	}
}
