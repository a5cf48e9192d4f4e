//go:build !openblas

package graph

// BLAS names the BLAS implementation the build uses: gonum's pure Go one (build with
// -tags openblas for OpenBLAS).
const BLAS = "gonum"
