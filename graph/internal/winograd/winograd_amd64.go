package winograd

import "golang.org/x/sys/cpu"

// hasAVX2 tells whether the processor runs the AVX2 kernels of winograd_amd64.s.
var hasAVX2 = cpu.X86.HasAVX2

// The AVX2 kernels, on pointers that InputTile, OutputTile and GradTile have checked; blocks
// counts runs of 8 channels, the strides (of the tile's rows and columns, then of the result's;
// see separable) are in float32 elements.
//
//go:noescape
func inputTileAVX2(dst, src *float32, blocks, sRow, sCol, dRow, dCol int)

//go:noescape
func outputTileAVX2(dst, src *float32, blocks, sRow, sCol, dRow, dCol int)

//go:noescape
func gradTileAVX2(dst, src *float32, blocks, sRow, sCol, dRow, dCol int)

//go:noescape
func transposeAVX2(dst *float32, ldd int, src *float32, lds, blocks int)

//go:noescape
func transposeAddAVX2(dst *float32, ldd int, src *float32, lds, blocks int)

// inputTileAsm runs InputTile's first 8*blocks channels through the AVX2 kernel, if the
// processor has AVX2, and tells whether it did.
func inputTileAsm(dst, src []float32, blocks, ld, col, xiStride int) bool {
	if !hasAVX2 {
		return false
	}
	inputTileAVX2(&dst[0], &src[0], blocks, ld, col, Alpha*xiStride, xiStride)
	return true
}

// outputTileAsm runs OutputTile's first 8*blocks channels through the AVX2 kernel, if the
// processor has AVX2, and tells whether it did.
func outputTileAsm(dst, src []float32, blocks, xiStride, ld, col int) bool {
	if !hasAVX2 {
		return false
	}
	outputTileAVX2(&dst[0], &src[0], blocks, Alpha*xiStride, xiStride, ld, col)
	return true
}

// gradTileAsm runs GradTile's first 8*blocks channels through the AVX2 kernel, if the processor
// has AVX2, and tells whether it did.
func gradTileAsm(dst, src []float32, blocks, ld, col, xiStride int) bool {
	if !hasAVX2 {
		return false
	}
	gradTileAVX2(&dst[0], &src[0], blocks, ld, col, Alpha*xiStride, xiStride)
	return true
}
