//go:build openblas

package align

// The openblas build (go build -tags openblas, with Debian's libopenblas-dev and cgo) routes
// gonum's BLAS, which the score products use (and graph's kernels), through OpenBLAS. The
// default build uses gonum's pure Go BLAS.

// #cgo LDFLAGS: -lopenblas
import "C"

import (
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/netlib/blas/netlib"
)

func init() {
	blas32.Use(netlib.Implementation{})
	blas64.Use(netlib.Implementation{})
}
