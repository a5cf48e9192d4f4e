package graph

import (
	"slices"
	"testing"
)

// TestFusionIsExact checks that the fused kernels of forward-only programs (a convolution with its
// bias, evaluation-mode BatchNorm and Relu; a training-mode BatchNorm or an Add with its Relu)
// compute what the separate kernels compute, bit for bit: the logits of an evaluation pass and
// the statistics of a BatchNorm-statistics pass, against the same programs built unfused, on
// fixtures with BatchNorm (resnet, a training-mode export), convolution biases (cnn-eval, an
// evaluation-mode export with BatchNorm folded into them) and grouped convolutions (depthwise).
func TestFusionIsExact(t *testing.T) {
	for _, name := range []string{"resnet", "cnn-eval", "depthwise", "cnn"} {
		t.Run(name, func(t *testing.T) {
			m := loadFixture(t, name)
			ref := loadReference(t, name)
			batch := len(ref.labels)
			sessions := [2]*Session{}
			for i, fuse := range []bool{true, false} {
				s, err := NewSession(m, batch)
				if err != nil {
					t.Fatal(err)
				}
				for _, kind := range []programKind{evalProgram, statsProgram} {
					p, err := buildFused(m, batch, kind, fuse)
					if err != nil {
						t.Fatal(err)
					}
					s.dirty[p] = true
					if kind == evalProgram {
						s.eval = p
					} else {
						s.stats = p
					}
				}
				sessions[i] = s
			}
			fused, plain := sessions[0], sessions[1]
			if f, p := len(fused.eval.g.AllNodes()), len(plain.eval.g.AllNodes()); f >= p {
				t.Fatalf("the fused evaluation graph has %d nodes, the unfused one %d: nothing was fused", f, p)
			}
			got, err := fused.Logits(ref.input)
			if err != nil {
				t.Fatal(err)
			}
			want, err := plain.Logits(ref.input)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("fused evaluation logits differ from the unfused ones:\n%v\n%v", got, want)
			}
			gotStats, err := fused.NormStats(oneBatch(ref.input))
			if err != nil {
				t.Fatal(err)
			}
			wantStats, err := plain.NormStats(oneBatch(ref.input))
			if err != nil {
				t.Fatal(err)
			}
			for key, w := range wantStats {
				if !slices.Equal(gotStats[key].Data, w.Data) {
					t.Errorf("parameter %q after the fused statistics pass differs from the unfused one", key)
				}
			}
		})
	}
}

// oneBatch returns the batch source of Session.NormStats that gives x once.
func oneBatch(x []float32) func() ([]float32, bool) {
	done := false
	return func() ([]float32, bool) {
		if done {
			return nil, false
		}
		done = true
		return x, true
	}
}
