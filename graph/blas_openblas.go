//go:build openblas

package graph

// The openblas build (go build -tags openblas, with Debian's libopenblas-dev and cgo) routes
// Gorgonia's tensor products through OpenBLAS; gonum's BLAS (align's score products and this
// package's kernels) is routed by align, which graph imports. The default build stays pure Go
// and static.

// #cgo LDFLAGS: -lopenblas
// void openblas_set_num_threads(int);
// int openblas_get_num_threads(void);
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

// serialBLAS makes OpenBLAS single-threaded until the function it returns is called: the
// convolution's workers call it from several goroutines at once.
func serialBLAS() func() {
	n := C.openblas_get_num_threads()
	C.openblas_set_num_threads(1)
	return func() { C.openblas_set_num_threads(n) }
}
