//go:build !openblas

package graph

// BLAS names the BLAS implementation the build uses: gonum's pure Go one (build with
// -tags openblas for OpenBLAS).
const BLAS = "gonum"

// serialBLAS makes the BLAS single-threaded until the function it returns is called; gonum's
// BLAS needs nothing (graph's gemm keeps its products on the calling goroutine).
func serialBLAS() func() { return func() {} }

// chunkRows is the number of patch rows below which a convolution's products stack several
// examples: none with gonum's BLAS, whose products run slower on the larger matrices.
const chunkRows = 0
