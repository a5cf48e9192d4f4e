//go:build !amd64

package sgemm

// asmKernels are the assembly micro-kernels: none but on amd64.
func asmKernels() []microKernel { return nil }
