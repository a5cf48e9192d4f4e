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
	"sync"

	"gonum.org/v1/netlib/blas/netlib"
	G "gorgonia.org/gorgonia"
)

func init() {
	G.Use(netlib.Implementation{})
}

// BLAS names the BLAS implementation the build uses.
const BLAS = "openblas"

// serial counts the callers of serialBLAS that have not restored it yet, and threads is the
// thread count to restore when the last does.
var serial struct {
	sync.Mutex
	callers int
	threads C.int
}

// serialBLAS makes OpenBLAS single-threaded until the function it returns is called (by every
// caller, when several overlap): the convolution's workers call it from several goroutines at
// once.
func serialBLAS() func() {
	serial.Lock()
	if serial.callers == 0 {
		serial.threads = C.openblas_get_num_threads()
		C.openblas_set_num_threads(1)
	}
	serial.callers++
	serial.Unlock()
	return func() {
		serial.Lock()
		if serial.callers--; serial.callers == 0 {
			C.openblas_set_num_threads(serial.threads)
		}
		serial.Unlock()
	}
}

// chunkRows is the number of patch rows below which a convolution's products stack several
// examples.
const chunkRows = 256
