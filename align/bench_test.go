package align

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

// benchSizes are the matrix sizes of BenchmarkAssign and BenchmarkAssignWarm, the same as in
// testdata/gen/bench_assign.py.
var benchSizes = []int{256, 512, 1024, 2048, 4096}

// uniformMatrix returns a seeded n x n matrix with entries uniform in [0, 1).
func uniformMatrix(seed uint64, n int) []float64 {
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	s := make([]float64, n*n)
	for k := range s {
		s[k] = rng.Float64()
	}
	return s
}

// warmNoise are the relative perturbation sizes of BenchmarkAssignWarm.
var warmNoise = []float64{1e-2, 1e-4}

// perturbed returns a + eps * N(0, 1) * (max(a) - min(a)), seeded.
func perturbed(seed uint64, a []float64, eps float64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 99))
	lo, hi := a[0], a[0]
	for _, x := range a {
		lo, hi = min(lo, x), max(hi, x)
	}
	b := make([]float64, len(a))
	for k, x := range a {
		b[k] = x + eps*(hi-lo)*rng.NormFloat64()
	}
	return b
}

// BenchmarkAssign times a cold solve of a seeded uniform random matrix; testdata/gen/bench_assign.py
// times scipy on the same distribution.
func BenchmarkAssign(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			score := uniformMatrix(1, n)
			for b.Loop() {
				Assign(n, score)
			}
		})
	}
}

// BenchmarkAssignWarm times a warm-started solve of B = A + noise*N(0,1)*spread(A) right after
// a solve of A (done outside the timer) and, for reference, a cold solve of the same B.
func BenchmarkAssignWarm(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			a0 := uniformMatrix(1, n)
			var first Assigner
			first.Solve(n, a0)
			for _, eps := range warmNoise {
				b.Run(fmt.Sprintf("noise=%g", eps), func(b *testing.B) {
					b1 := perturbed(2, a0, eps)
					b.Run("warm", func(b *testing.B) {
						var a Assigner
						for b.Loop() {
							b.StopTimer()
							a = first.clone()
							b.StartTimer()
							a.Solve(n, b1)
						}
					})
					b.Run("cold", func(b *testing.B) {
						for b.Loop() {
							Assign(n, b1)
						}
					})
				})
			}
		})
	}
}

// BenchmarkMatcherSolve aligns two independent random 784-4096-10 networks (one hidden group of
// 4096 units; W1[4096,784], b1[4096], W2[10,4096]); one pair.
func BenchmarkMatcherSolve(b *testing.B) {
	const in, hidden, out = 784, 4096, 10
	rng := rand.New(rand.NewPCG(5, 6))
	spec := Spec{Groups: []Group{{Name: "hidden", Size: hidden, Members: []Member{{Param: "W1", Axis: 0, Block: 1}, {Param: "b1", Axis: 0, Block: 1}, {Param: "W2", Axis: 1, Block: 1}}}}}
	mk := func() params.Set {
		return params.Set{"W1": randTensor(rng, hidden, in), "b1": randTensor(rng, hidden), "W2": randTensor(rng, out, hidden)}
	}
	m := NewMatcher(spec, MatcherOptions{Seed: 1})
	if err := m.Add(1, mk(), mk()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := m.Solve(nil); err != nil {
			b.Fatal(err)
		}
	}
}

// clone returns a deep copy of the Assigner's state, so a benchmark can repeat the same warm solve.
func (a *Assigner) clone() Assigner {
	c := *a
	c.v = append([]float64(nil), a.v...)
	c.rowsol = append([]int(nil), a.rowsol...)
	c.colsol = append([]int(nil), a.colsol...)
	c.free = append([]int(nil), a.free...)
	c.scanJ = append([]int(nil), a.scanJ...)
	c.scanV = append([]float64(nil), a.scanV...)
	c.scanD = append([]float64(nil), a.scanD...)
	c.d = append([]float64(nil), a.d...)
	c.pred = append([]int(nil), a.pred...)
	c.matches = append([]int(nil), a.matches...)
	return c
}

// BenchmarkAssignReal times cold and warm solves of real score matrices: the raw float64 files
// (n*n values, row-major) in the folder named by LTRANSFER_SCORES, in name order, such as those
// testdata/gen/bench_gmt_torch.py --child gmt --dump-scores DIR writes for the steps of GMT on
// the paper's MNIST setting (its --time-assign times scipy on the same files). A warm solve
// starts from the solution of the previous file. Skipped when LTRANSFER_SCORES is not set.
func BenchmarkAssignReal(b *testing.B) {
	dir := os.Getenv("LTRANSFER_SCORES")
	if dir == "" {
		b.Skip("LTRANSFER_SCORES is not set")
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.f64"))
	if err != nil || len(paths) == 0 {
		b.Fatalf("no *.f64 files in %s (%v)", dir, err)
	}
	slices.Sort(paths)
	var prev *Assigner
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		score := make([]float64, len(data)/8)
		for i := range score {
			score[i] = math.Float64frombits(binary.LittleEndian.Uint64(data[8*i:]))
		}
		n := int(math.Round(math.Sqrt(float64(len(score)))))
		name := strings.TrimSuffix(filepath.Base(path), ".f64")
		b.Run(name+"/cold", func(b *testing.B) {
			for b.Loop() {
				Assign(n, score)
			}
		})
		if prev != nil && prev.n == n {
			b.Run(name+"/warm", func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					a := prev.clone()
					b.StartTimer()
					a.Solve(n, score)
				}
			})
		}
		var a Assigner
		a.Solve(n, score)
		prev = &a
	}
}

// BenchmarkScore times one score matrix of the paper's MNIST setting (a 784-4096-10 linear MLP:
// one group of 4096 hidden units, fc1 [4096, 784] on its rows and fc2 [10, 4096] on its
// columns): for the 10 gradient pairs of GMT's last step, with fc1's gradients as rank-128
// factors (batch 128), and for one pair of dense gradients, the paper's form.
func BenchmarkScore(b *testing.B) {
	const in, hidden, out, batch = 784, 4096, 10, 128
	rng := rand.New(rand.NewPCG(7, 8))
	spec := Spec{Groups: []Group{{Name: "hidden", Size: hidden, Members: []Member{{Param: "fc1", Axis: 0, Block: 1}, {Param: "fc2", Axis: 1, Block: 1}}}}}
	operand := func() Operand {
		return Operand{Params: params.Set{"fc2": randTensor(rng, out, hidden)},
			LowRank: map[string]*LowRank{"fc1": randLowRank(rng, hidden, in, batch)}}
	}
	for _, c := range []struct {
		name  string
		pairs int
		dense bool
	}{{"lowrank/pairs=10", 10, false}, {"dense/pairs=1", 1, true}} {
		b.Run(c.name, func(b *testing.B) {
			m := NewMatcher(spec, MatcherOptions{})
			for range c.pairs {
				t, s := operand(), operand()
				if c.dense {
					t = Operand{Params: params.Set{"fc1": t.LowRank["fc1"].Dense(), "fc2": t.Params["fc2"]}}
					s = Operand{Params: params.Set{"fc1": s.LowRank["fc1"].Dense(), "fc2": s.Params["fc2"]}}
				}
				if err := m.AddOperands(1, t, s); err != nil {
					b.Fatal(err)
				}
			}
			score := make([]float64, hidden*hidden)
			pi := Identity(spec)
			for b.Loop() {
				clear(score)
				m.buildScore(0, pi, score, 0)
			}
		})
	}
}

// BenchmarkScoreConv times the score matrix of a ResNet-18 layer4-like group of 512 channels
// (conv1 [512, 512, 3, 3] on its output axis, conv2 [512, 512, 3, 3] on its input axis, whose
// output axis a second group of 512 permutes) for GMT's 3 gradient pairs: built from scratch,
// and updated after the second group moved 10% of its channels (swaps of 26 pairs), as in a
// later coordinate-descent sweep.
func BenchmarkScoreConv(b *testing.B) {
	const c, pairs = 512, 3
	rng := rand.New(rand.NewPCG(9, 10))
	spec := Spec{Groups: []Group{
		{Name: "mid", Size: c, Members: []Member{{Param: "conv1", Axis: 0, Block: 1}, {Param: "conv2", Axis: 1, Block: 1}}},
		{Name: "out", Size: c, Members: []Member{{Param: "conv2", Axis: 0, Block: 1}}},
	}}
	m := NewMatcher(spec, MatcherOptions{})
	for range pairs {
		mk := func() params.Set {
			return params.Set{"conv1": randTensor(rng, c, c, 3, 3), "conv2": randTensor(rng, c, c, 3, 3)}
		}
		if err := m.Add(1, mk(), mk()); err != nil {
			b.Fatal(err)
		}
	}
	before := Identity(spec)
	after := before.clone()
	for k := 0; k < c/10; k += 2 {
		after[1][k], after[1][k+1] = after[1][k+1], after[1][k]
	}
	score := make([]float64, c*c)
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			clear(score)
			m.buildScore(0, after, score, 0)
		}
	})
	b.Run("update", func(b *testing.B) {
		for b.Loop() {
			if !m.updateScore(0, before, after, score, pairs) {
				b.Fatal("the update was declined")
			}
		}
	})
}
