package sgemm

import "golang.org/x/sys/cpu"

//go:generate go run gen_kernels.go

// The assembly micro-kernels, in kernel_amd64.s (written by gen_kernels.go), on pointers that
// the wrappers check.
//
//go:noescape
func kernel6x16AVX2(k int, a, b, c *float32, ldc int, fresh bool)

//go:noescape
func kernel12x32AVX512(k int, a, b, c *float32, ldc int, fresh bool)

func runAVX2(k int, a, b, c []float32, ldc int, fresh bool) {
	_, _, _ = a[6*k-1], b[16*k-1], c[5*ldc+15]
	kernel6x16AVX2(k, &a[0], &b[0], &c[0], ldc, fresh)
}

func runAVX512(k int, a, b, c []float32, ldc int, fresh bool) {
	_, _, _ = a[12*k-1], b[32*k-1], c[11*ldc+31]
	kernel12x32AVX512(k, &a[0], &b[0], &c[0], ldc, fresh)
}

// asmKernels are the assembly micro-kernels the processor (and its operating system, which
// must save the wider registers) runs, best first.
func asmKernels() []microKernel {
	var ks []microKernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, microKernel{mr: 12, nr: 32, run: runAVX512})
	}
	if cpu.X86.HasAVX2 {
		ks = append(ks, microKernel{mr: 6, nr: 16, run: runAVX2})
	}
	return ks
}
