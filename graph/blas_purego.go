//go:build !openblas

package graph

import (
	"gonum.org/v1/gonum/blas/blas32"
	G "gorgonia.org/gorgonia"

	"github.com/ltransfer/ltransfer/graph/internal/sgemm"
)

// The default build routes gonum's single-precision products (this package's kernels and
// align's score products) and Gorgonia's through the packed, register-blocked Sgemm of
// graph/internal/sgemm: pure Go and Go assembly, static, many times gonum's speed.
func init() {
	blas32.Use(sgemm.Implementation{})
	G.Use(sgemm.Implementation{})
}

// BLAS names the BLAS implementation the build uses: gonum's pure Go one, its Sgemm that of
// graph/internal/sgemm (build with -tags openblas for OpenBLAS).
const BLAS = "gonum"
