//go:build !amd64

package winograd

// hasAVX2 is false: the assembly kernels are amd64's.
var hasAVX2 = false

// transposeAVX2 and transposeAddAVX2 are never called without AVX2.
func transposeAVX2(dst *float32, ldd int, src *float32, lds, blocks int)    { panic("no AVX2") }
func transposeAddAVX2(dst *float32, ldd int, src *float32, lds, blocks int) { panic("no AVX2") }

// inputTileAsm has no kernel but on amd64.
func inputTileAsm(dst, src []float32, blocks, ld, col, xiStride int) bool { return false }

// outputTileAsm has no kernel but on amd64.
func outputTileAsm(dst, src []float32, blocks, xiStride, ld, col int) bool { return false }

// gradTileAsm has no kernel but on amd64.
func gradTileAsm(dst, src []float32, blocks, ld, col, xiStride int) bool { return false }
