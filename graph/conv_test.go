package graph

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"gorgonia.org/tensor"
)

// directConv is the convolution as plain loops over every multiply-add: the reference that
// conv2D's matrix products are checked against.
type directConv struct {
	convAttrs
}

func (k *directConv) differentiable(int) bool { return true }

// each calls f(xIndex, wIndex, outIndex) for every multiply-add of the convolution.
func (k *directConv) each(x, w tensor.Shape, f func(xi, wi, oi int)) {
	n, c, h, wd := x[0], x[1], x[2], x[3]
	m, cg, kh, kw := w[0], w[1], w[2], w[3]
	oh, ow := k.geometry(x, w)
	mg := m / k.groups
	for b := 0; b < n; b++ {
		for oc := 0; oc < m; oc++ {
			g := oc / mg
			for ic := 0; ic < cg; ic++ {
				xBase := (b*c + g*cg + ic) * h * wd
				wBase := (oc*cg + ic) * kh * kw
				for oy := 0; oy < oh; oy++ {
					for ky := 0; ky < kh; ky++ {
						iy := oy*k.sh - k.top + ky*k.dh
						if iy < 0 || iy >= h {
							continue
						}
						oBase := ((b*m+oc)*oh + oy) * ow
						for ox := 0; ox < ow; ox++ {
							for kx := 0; kx < kw; kx++ {
								ix := ox*k.sw - k.left + kx*k.dw
								if ix < 0 || ix >= wd {
									continue
								}
								f(xBase+iy*wd+ix, wBase+ky*kw+kx, oBase+ox)
							}
						}
					}
				}
			}
		}
	}
}

func (k *directConv) forward(in [][]float32, shapes []tensor.Shape, out []float32) error {
	x, w := in[0], in[1]
	k.each(shapes[0], shapes[1], func(xi, wi, oi int) { out[oi] += x[xi] * w[wi] })
	return nil
}

func (k *directConv) backward(i int, in [][]float32, shapes []tensor.Shape, _, dOut, dIn []float32) error {
	x, w := in[0], in[1]
	if i == 0 {
		k.each(shapes[0], shapes[1], func(xi, wi, oi int) { dIn[xi] += dOut[oi] * w[wi] })
	} else {
		k.each(shapes[0], shapes[1], func(xi, wi, oi int) { dIn[wi] += dOut[oi] * x[xi] })
	}
	return nil
}

// relDiff returns max |a - b| over max |b|.
func relDiff(a, b []float32) float64 {
	var scale float64
	for _, v := range b {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	return maxAbsDiff(a, b) / math.Max(scale, 1e-30)
}

// convCases are convolutions covering groups (1, 2, depthwise), strides, dilations, asymmetric
// and oversized padding, rectangular kernels, 1x1 kernels, batches that split unevenly among
// workers, and no input channels, no output channels or an input of height 0 inside its padding.
// The winoCases among them run through Winograd's F(4x4, 3x3).
var convCases = []struct {
	x, w tensor.Shape
	a    convAttrs
}{
	{tensor.Shape{3, 4, 9, 8}, tensor.Shape{6, 4, 3, 3}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}},
	{tensor.Shape{2, 4, 9, 8}, tensor.Shape{6, 4, 3, 3}, convAttrs{groups: 1, sh: 2, sw: 2, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}},
	{tensor.Shape{5, 4, 10, 11}, tensor.Shape{6, 2, 3, 2}, convAttrs{groups: 2, sh: 1, sw: 2, dh: 2, dw: 1, top: 0, left: 2, bottom: 1, right: 0}},
	{tensor.Shape{2, 6, 9, 9}, tensor.Shape{6, 1, 3, 3}, convAttrs{groups: 6, sh: 2, sw: 2, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}},
	{tensor.Shape{3, 6, 7, 8}, tensor.Shape{12, 1, 3, 3}, convAttrs{groups: 6, sh: 1, sw: 1, dh: 2, dw: 2, top: 2, left: 1, bottom: 0, right: 3}},
	{tensor.Shape{4, 3, 8, 8}, tensor.Shape{5, 3, 3, 3}, convAttrs{groups: 1, sh: 2, sw: 1, dh: 2, dw: 2, top: 0, left: 1, bottom: 2, right: 0}},
	{tensor.Shape{3, 4, 6, 5}, tensor.Shape{8, 4, 1, 1}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1}},
	{tensor.Shape{3, 4, 7, 7}, tensor.Shape{8, 2, 1, 1}, convAttrs{groups: 2, sh: 2, sw: 2, dh: 1, dw: 1}},
	{tensor.Shape{2, 2, 5, 5}, tensor.Shape{3, 2, 1, 1}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1, top: 1, left: 0, bottom: 0, right: 2}},
	{tensor.Shape{1, 3, 4, 6}, tensor.Shape{4, 3, 3, 5}, convAttrs{groups: 1, sh: 3, sw: 3, dh: 1, dw: 1, top: 3, left: 4, bottom: 3, right: 4}},
	{tensor.Shape{7, 2, 5, 4}, tensor.Shape{2, 2, 2, 2}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 3, dw: 2, top: 0, left: 0, bottom: 0, right: 0}},
	{tensor.Shape{2, 0, 3, 3}, tensor.Shape{3, 0, 3, 3}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}},
	{tensor.Shape{2, 4, 3, 3}, tensor.Shape{0, 2, 3, 3}, convAttrs{groups: 2, sh: 1, sw: 1, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}},
	{tensor.Shape{2, 1, 0, 3}, tensor.Shape{2, 1, 1, 1}, convAttrs{groups: 1, sh: 2, sw: 1, dh: 1, dw: 1, top: 1, left: 0, bottom: 0, right: 0}},
}

// winoCases are 3x3 stride-1 convolutions that conv2D computes with Winograd's F(4x4, 3x3):
// padding 1 (the ResNets'), none, asymmetric and 2; odd and even planes (partial tiles at the
// edges); planes of one tile, stacked; and batches that split unevenly among workers.
var winoCases = []struct {
	x, w tensor.Shape
	a    convAttrs
}{
	{tensor.Shape{3, 16, 8, 8}, tensor.Shape{24, 16, 3, 3}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}},
	{tensor.Shape{2, 24, 7, 9}, tensor.Shape{16, 24, 3, 3}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1}},
	{tensor.Shape{3, 16, 5, 6}, tensor.Shape{16, 16, 3, 3}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1, top: 0, left: 2, bottom: 1, right: 0}},
	{tensor.Shape{5, 32, 2, 2}, tensor.Shape{40, 32, 3, 3}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1, top: 2, left: 2, bottom: 2, right: 2}},
	{tensor.Shape{9, 16, 4, 4}, tensor.Shape{16, 16, 3, 3}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}},
	{tensor.Shape{3, 16, 10, 14}, tensor.Shape{16, 16, 3, 3}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}},
}

func init() { convCases = append(convCases, winoCases...) }

// TestWinogradCases checks that the winoCases take the Winograd path, and that convolutions
// just outside its conditions do not.
func TestWinogradCases(t *testing.T) {
	for _, tc := range winoCases {
		k := &conv2D{convAttrs: tc.a}
		if !k.winograd(k.dims(tc.x, tc.w)) {
			t.Errorf("convolution of %v with %v (%s) does not run through Winograd", tc.x, tc.w, tc.a.name())
		}
	}
	one := convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}
	for _, tc := range []struct {
		x, w tensor.Shape
		a    convAttrs
	}{
		{tensor.Shape{1, 8, 8, 8}, tensor.Shape{16, 8, 3, 3}, one},   // few input channels
		{tensor.Shape{1, 20, 8, 8}, tensor.Shape{16, 20, 3, 3}, one}, // not a multiple of 8
		{tensor.Shape{1, 16, 8, 8}, tensor.Shape{16, 16, 3, 3}, convAttrs{groups: 1, sh: 2, sw: 2, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}},
		{tensor.Shape{1, 16, 8, 8}, tensor.Shape{16, 8, 3, 3}, convAttrs{groups: 2, sh: 1, sw: 1, dh: 1, dw: 1, top: 1, left: 1, bottom: 1, right: 1}},
		{tensor.Shape{1, 16, 8, 8}, tensor.Shape{16, 16, 3, 3}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1, top: 3, left: 1, bottom: 1, right: 1}},
		{tensor.Shape{1, 16, 8, 8}, tensor.Shape{16, 16, 1, 1}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1}},
	} {
		k := &conv2D{convAttrs: tc.a}
		if k.winograd(k.dims(tc.x, tc.w)) {
			t.Errorf("convolution of %v with %v (%s) runs through Winograd", tc.x, tc.w, tc.a.name())
		}
	}
}

// TestConvMatchesDirect checks conv2D's output and its gradients with respect to the input and
// the weight against the direct loops, within 1e-4 of the largest value, on random data; every
// case runs twice on the same kernel (its buffers are reused) and with one and two workers. The
// weight gradient must be bit for bit the direct loops', which sum every entry
// over the examples and positions in order, as PyTorch does (see conv2D), except through
// Winograd's transforms (winoCases), which sum tile by tile.
func TestConvMatchesDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	random := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	for _, procs := range []int{1, 2} {
		old := runtime.GOMAXPROCS(procs)
		for _, tc := range convCases {
			t.Run(fmt.Sprintf("procs%d/%v*%v/%s", procs, tc.x, tc.w, tc.a.name()), func(t *testing.T) {
				ref, k := &directConv{tc.a}, &conv2D{convAttrs: tc.a}
				shapes := []tensor.Shape{tc.x, tc.w}
				outShape, err := k.outShape(shapes)
				if err != nil {
					t.Fatal(err)
				}
				in := [][]float32{random(tc.x.TotalSize()), random(tc.w.TotalSize())}
				dOut := random(outShape.TotalSize())
				want := make([]float32, outShape.TotalSize())
				if err := ref.forward(in, shapes, want); err != nil {
					t.Fatal(err)
				}
				wantGrads := make([][]float32, 2)
				for i := range wantGrads {
					wantGrads[i] = make([]float32, shapes[i].TotalSize())
					if err := ref.backward(i, in, shapes, want, dOut, wantGrads[i]); err != nil {
						t.Fatal(err)
					}
				}
				for run := 0; run < 2; run++ {
					got := make([]float32, outShape.TotalSize())
					if err := k.forward(in, shapes, got); err != nil {
						t.Fatal(err)
					}
					if d := relDiff(got, want); d > 1e-4 {
						t.Errorf("run %d: output differs by %g relative", run, d)
					}
					for i, wantGrad := range wantGrads {
						grad := make([]float32, len(wantGrad))
						if err := k.backward(i, in, shapes, got, dOut, grad); err != nil {
							t.Fatal(err)
						}
						exact := i == 1 && !k.winograd(k.dims(tc.x, tc.w))
						if d := relDiff(grad, wantGrad); d > 1e-4 || exact && d != 0 {
							t.Errorf("run %d: gradient of input %d differs by %g relative", run, i, d)
						}
					}
				}
			})
		}
		runtime.GOMAXPROCS(old)
	}
}

// TestConvShapeErrors checks that outShape refuses what the kernel cannot compute: channels that
// do not divide into the groups, an empty window, and windows larger than the padded input
// (also where the output-size formula, rounding towards zero, would give one row).
func TestConvShapeErrors(t *testing.T) {
	one := convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 1}
	for _, tc := range []struct {
		x, w tensor.Shape
		a    convAttrs
	}{
		{tensor.Shape{1, 3, 5, 5}, tensor.Shape{4, 3, 3, 3}, convAttrs{groups: 2, sh: 1, sw: 1, dh: 1, dw: 1}},
		{tensor.Shape{1, 4, 5, 5}, tensor.Shape{4, 4, 3, 3}, convAttrs{groups: 2, sh: 1, sw: 1, dh: 1, dw: 1}},
		{tensor.Shape{1, 3, 5, 5}, tensor.Shape{4, 3, 0, 3}, one},
		{tensor.Shape{1, 3, 2, 5}, tensor.Shape{4, 3, 3, 3}, one},
		{tensor.Shape{1, 3, 5, 5}, tensor.Shape{4, 3, 3, 3}, convAttrs{groups: 1, sh: 1, sw: 1, dh: 1, dw: 3}},
		{tensor.Shape{1, 1, 0, 3}, tensor.Shape{1, 1, 1, 1}, convAttrs{groups: 1, sh: 2, sw: 1, dh: 1, dw: 1}},
		{tensor.Shape{1, 3, 5}, tensor.Shape{4, 3, 3, 3}, one},
	} {
		if s, err := tc.a.outShape([]tensor.Shape{tc.x, tc.w}); err == nil {
			t.Errorf("convolution of %v with %v (%s) has shape %v, want an error", tc.x, tc.w, tc.a.name(), s)
		}
	}
}

// TestWinogradFilterCache checks that a convolution with a filter cache reuses the transformed
// filters while the weight is unchanged (a corrupted cache shows in the output) and transforms
// them again when any of its bits changes (the output is then the uncached one's).
func TestWinogradFilterCache(t *testing.T) {
	tc := winoCases[0]
	rng := rand.New(rand.NewPCG(7, 8))
	random := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	cached, plain := &conv2D{convAttrs: tc.a, filters: new(filterCache)}, &conv2D{convAttrs: tc.a}
	shapes := []tensor.Shape{tc.x, tc.w}
	outShape, err := plain.outShape(shapes)
	if err != nil {
		t.Fatal(err)
	}
	x, w := random(tc.x.TotalSize()), random(tc.w.TotalSize())
	run := func(k *conv2D) []float32 {
		out := make([]float32, outShape.TotalSize())
		if err := k.forward([][]float32{x, w}, shapes, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got, want := run(cached), run(plain); !slices.Equal(got, want) {
		t.Fatal("cached convolution differs from the uncached one")
	}
	cached.filters.u[0] += 1000 // reused while w is unchanged
	if got, want := run(cached), run(plain); slices.Equal(got, want) {
		t.Fatal("the cached transform was not reused")
	}
	w[0] = math.Nextafter32(w[0], 10) // one bit: transformed again
	if got, want := run(cached), run(plain); !slices.Equal(got, want) {
		t.Fatal("cached convolution after a weight change differs from the uncached one")
	}
}
