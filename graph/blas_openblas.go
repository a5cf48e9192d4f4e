//go:build openblas

package graph

// The openblas build (go build -tags openblas, with Debian's libopenblas-dev and cgo) routes
// Gorgonia's tensor products and gonum's BLAS (which align's score products use) through
// OpenBLAS. The default build stays pure Go and static.

// #cgo LDFLAGS: -lopenblas
import "C"

import (
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/netlib/blas/netlib"
	G "gorgonia.org/gorgonia"
)

func init() {
	G.Use(netlib.Implementation{})
	blas32.Use(netlib.Implementation{})
	blas64.Use(netlib.Implementation{})
}

// BLAS names the BLAS implementation the build uses.
const BLAS = "openblas"
