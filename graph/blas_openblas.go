//go:build openblas

package graph

// The openblas build (go build -tags openblas, with Debian's libopenblas-dev and cgo) routes
// Gorgonia's tensor products through OpenBLAS; gonum's BLAS (align's score products and this
// package's dense-layer kernels) is routed by align, which graph imports. Convolutions multiply
// with graph/internal/sgemm in both builds (see convBLAS). The default build stays pure Go and
// static.

// #cgo LDFLAGS: -lopenblas
import "C"

import (
	"gonum.org/v1/netlib/blas/netlib"
	G "gorgonia.org/gorgonia"
)

func init() {
	G.Use(netlib.Implementation{})
}

// BLAS names the BLAS implementation the build uses.
const BLAS = "openblas"
