package align

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// bruteForce returns the maximum total score over all permutations of an n x n matrix.
func bruteForce(n int, score []float64) float64 {
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	best := math.Inf(-1)
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			t := 0.0
			for i, j := range perm {
				t += score[i*n+j]
			}
			best = max(best, t)
			return
		}
		for i := k; i < n; i++ {
			perm[k], perm[i] = perm[i], perm[k]
			rec(k + 1)
			perm[k], perm[i] = perm[i], perm[k]
		}
	}
	rec(0)
	return best
}

// matrixKind generates a random n x n matrix of one flavour.
type matrixKind struct {
	name string
	gen  func(rng *rand.Rand, n int) []float64
}

var matrixKinds = []matrixKind{
	{"uniform", func(rng *rand.Rand, n int) []float64 {
		s := make([]float64, n*n)
		for k := range s {
			s[k] = rng.Float64()
		}
		return s
	}},
	{"ties", func(rng *rand.Rand, n int) []float64 { // small integer range: many ties
		s := make([]float64, n*n)
		for k := range s {
			s[k] = float64(rng.IntN(3))
		}
		return s
	}},
	{"negative", func(rng *rand.Rand, n int) []float64 {
		s := make([]float64, n*n)
		for k := range s {
			s[k] = -1e3 * rng.Float64()
		}
		return s
	}},
	{"mixed-int", func(rng *rand.Rand, n int) []float64 { // negative and positive integers
		s := make([]float64, n*n)
		for k := range s {
			s[k] = float64(rng.IntN(11) - 5)
		}
		return s
	}},
	{"constant", func(rng *rand.Rand, n int) []float64 {
		s := make([]float64, n*n)
		for k := range s {
			s[k] = -2.5
		}
		return s
	}},
}

// checkAssignment verifies that perm is a permutation, that total matches it, and that total
// equals the brute-force optimum.
func checkAssignment(t *testing.T, label string, n int, score []float64, perm []int, total float64) {
	t.Helper()
	if len(perm) != n {
		t.Fatalf("%s: len(perm) = %d, want %d", label, len(perm), n)
	}
	seen := make([]bool, n)
	sum := 0.0
	for i, j := range perm {
		if j < 0 || j >= n || seen[j] {
			t.Fatalf("%s: perm %v is not a permutation", label, perm)
		}
		seen[j] = true
		sum += score[i*n+j]
	}
	if sum != total {
		t.Fatalf("%s: total %v != sum of assigned scores %v", label, total, sum)
	}
	want := bruteForce(n, score)
	if math.Abs(total-want) > 1e-9*(1+math.Abs(want)) {
		t.Fatalf("%s: total %v, brute force optimum %v (perm %v, score %v)", label, total, want, perm, score)
	}
	// The reference of the larger tests agrees with brute force too.
	if h := hungarian(n, score); math.Abs(h-want) > 1e-9*(1+math.Abs(want)) {
		t.Fatalf("%s: the Hungarian reference gives %v, brute force %v", label, h, want)
	}
}

func TestAssignBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	count := 0
	for _, kind := range matrixKinds {
		for n := 1; n <= 7; n++ {
			for rep := 0; rep < 20; rep++ {
				score := kind.gen(rng, n)
				perm, total := Assign(n, score)
				checkAssignment(t, kind.name, n, score, perm, total)
				count++
			}
		}
	}
	if count < 500 {
		t.Fatalf("only %d instances", count)
	}
}

func TestAssignerWarmBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	perturbations := []struct {
		name    string
		perturb func(rng *rand.Rand, s []float64)
	}{
		{"none", func(*rand.Rand, []float64) {}},
		{"small", func(rng *rand.Rand, s []float64) {
			for k := range s {
				s[k] += 0.01 * rng.NormFloat64()
			}
		}},
		{"large", func(rng *rand.Rand, s []float64) {
			for k := range s {
				s[k] += 3 * rng.NormFloat64()
			}
		}},
		{"integer", func(rng *rand.Rand, s []float64) { // keeps integer ties
			for k := range s {
				s[k] += float64(rng.IntN(3) - 1)
			}
		}},
		{"one-row", func(rng *rand.Rand, s []float64) {
			n := int(math.Sqrt(float64(len(s))))
			i := rng.IntN(n)
			for j := 0; j < n; j++ {
				s[i*n+j] = -s[i*n+j]
			}
		}},
	}
	count := 0
	for _, kind := range matrixKinds {
		for _, p := range perturbations {
			for n := 1; n <= 7; n++ {
				for rep := 0; rep < 4; rep++ {
					var a Assigner
					score := kind.gen(rng, n)
					perm, total := a.Solve(n, score)
					checkAssignment(t, kind.name+"/first", n, score, perm, total)
					// Several successive perturbations, each solved warm.
					for step := 0; step < 3; step++ {
						next := append([]float64(nil), score...)
						p.perturb(rng, next)
						perm, total = a.Solve(n, next)
						checkAssignment(t, kind.name+"/warm-"+p.name, n, next, perm, total)
						score = next
						count++
					}
				}
			}
		}
	}
	if count < 500 {
		t.Fatalf("only %d instances", count)
	}
}

func TestAssignerSizeChange(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var a Assigner
	for _, n := range []int{5, 3, 3, 0, 6, 1, 6, 2} {
		score := matrixKinds[0].gen(rng, n)
		perm, total := a.Solve(n, score)
		if n == 0 {
			if len(perm) != 0 || total != 0 {
				t.Fatalf("n=0: got %v %v", perm, total)
			}
			continue
		}
		checkAssignment(t, "sizes", n, score, perm, total)
	}
}

// hungarian returns the maximum total score of an n x n matrix by the textbook O(n^3)
// Hungarian algorithm with row-by-row augmentation (Kuhn-Munkres as in Jonker-Volgenant's
// shortest-path form, written independently of Assign): the reference for sizes brute force
// cannot reach.
func hungarian(n int, score []float64) float64 {
	inf := math.Inf(1)
	u, v := make([]float64, n+1), make([]float64, n+1)
	p, way := make([]int, n+1), make([]int, n+1) // p[j]: the row matched to column j (1-based)
	for i := 1; i <= n; i++ {
		p[0] = i
		j0 := 0
		minv := make([]float64, n+1)
		used := make([]bool, n+1)
		for j := range minv {
			minv[j] = inf
		}
		for p[j0] != 0 {
			used[j0] = true
			i0, delta, j1 := p[j0], inf, 0
			for j := 1; j <= n; j++ {
				if used[j] {
					continue
				}
				if cur := -score[(i0-1)*n+j-1] - u[i0] - v[j]; cur < minv[j] {
					minv[j], way[j] = cur, j0
				}
				if minv[j] < delta {
					delta, j1 = minv[j], j
				}
			}
			for j := 0; j <= n; j++ {
				if used[j] {
					u[p[j]] += delta
					v[j] -= delta
				} else {
					minv[j] -= delta
				}
			}
			j0 = j1
		}
		for j0 != 0 {
			j1 := way[j0]
			p[j0] = p[j1]
			j0 = j1
		}
	}
	var total float64
	for j := 1; j <= n; j++ {
		total += score[(p[j]-1)*n+j-1]
	}
	return total
}

// certify checks the optimality certificate held by an Assigner after a solve of score: the
// assignment is a permutation and every row's column attains the row minimum of the reduced
// costs V[j] - score[i][j] (up to tol), which proves optimality by LP duality.
func certify(t *testing.T, label string, a *Assigner, n int, score []float64, tol float64) {
	t.Helper()
	for i := 0; i < n; i++ {
		x := a.rowsol[i]
		if x < 0 || a.colsol[x] != i {
			t.Fatalf("%s: row %d column %d not consistently assigned", label, i, x)
		}
		rx := a.v[x] - score[i*n+x]
		for j := 0; j < n; j++ {
			if r := a.v[j] - score[i*n+j]; r < rx-tol {
				t.Fatalf("%s: row %d: reduced cost %v at column %d below %v at its column %d", label, i, r, j, rx, x)
			}
		}
	}
}

func TestAssignCertificateLarge(t *testing.T) {
	// Larger instances, cold and after several warm re-solves, checked by their dual certificate
	// (exactly for integer scores) and against a cold solve's total.
	rng := rand.New(rand.NewPCG(7, 8))
	kinds := []struct {
		name  string
		gen   func(n int) []float64
		noise func(s []float64)
		tol   float64
	}{
		{"uniform", func(n int) []float64 { return matrixKinds[0].gen(rng, n) },
			func(s []float64) {
				for k := range s {
					s[k] += 1e-3 * rng.NormFloat64()
				}
			}, 1e-9},
		{"ties", func(n int) []float64 { return matrixKinds[1].gen(rng, n) },
			func(s []float64) {
				for k := 0; k < len(s)/10; k++ {
					s[rng.IntN(len(s))] += float64(rng.IntN(3) - 1)
				}
			}, 0},
		{"wide-int", func(n int) []float64 {
			s := make([]float64, n*n)
			for k := range s {
				s[k] = float64(rng.IntN(2001) - 1000)
			}
			return s
		}, func(s []float64) {
			for k := range s {
				s[k] += float64(rng.IntN(21) - 10)
			}
		}, 0},
	}
	// Each total is also compared with the independent Hungarian algorithm's.
	reference := func(label string, n int, score []float64, total, tol float64) {
		t.Helper()
		if want := hungarian(n, score); math.Abs(total-want) > tol*float64(n)*(1+math.Abs(want)) {
			t.Fatalf("%s n=%d: total %v, the Hungarian algorithm's %v", label, n, total, want)
		}
	}
	for _, kind := range kinds {
		for _, n := range []int{50, 200, 500} {
			score := kind.gen(n)
			var as Assigner
			_, total := as.Solve(n, score)
			certify(t, kind.name+"/cold", &as, n, score, kind.tol)
			reference(kind.name+"/cold", n, score, total, max(kind.tol, 1e-12))
			for step := 0; step < 4; step++ {
				kind.noise(score)
				_, warm := as.Solve(n, score)
				certify(t, kind.name+"/warm", &as, n, score, kind.tol)
				reference(kind.name+"/warm", n, score, warm, max(kind.tol, 1e-12))
				_, cold := Assign(n, score)
				if math.Abs(warm-cold) > kind.tol*float64(n)*(1+math.Abs(cold)) {
					t.Fatalf("%s n=%d step %d: warm total %v, cold total %v", kind.name, n, step, warm, cold)
				}
			}
		}
	}
}

func TestAssignPlanted(t *testing.T) {
	const n = 1024
	rng := rand.New(rand.NewPCG(9, 10))
	planted := rng.Perm(n)
	score := make([]float64, n*n)
	for k := range score {
		score[k] = rng.Float64()
	}
	for i, j := range planted {
		score[i*n+j] += 10
	}
	perm, total := Assign(n, score)
	var want float64 // the planted assignment's total, summed in Assign's order (row by row)
	for i, j := range planted {
		want += score[i*n+j]
	}
	for i := range perm {
		if perm[i] != planted[i] {
			t.Fatalf("row %d: got column %d, planted %d", i, perm[i], planted[i])
		}
	}
	if math.Abs(total-want) > 1e-9*want {
		t.Errorf("total %v, the planted assignment's %v", total, want)
	}
}

func TestAssignEdgeCases(t *testing.T) {
	perm, total := Assign(0, nil)
	if perm == nil || len(perm) != 0 || total != 0 {
		t.Errorf("n=0: got %v, %v", perm, total)
	}
	perm, total = Assign(1, []float64{-7})
	if len(perm) != 1 || perm[0] != 0 || total != -7 {
		t.Errorf("n=1: got %v, %v", perm, total)
	}
	// Maximisation, not minimisation.
	perm, total = Assign(2, []float64{1, 5, 7, 2})
	if perm[0] != 1 || perm[1] != 0 || total != 12 {
		t.Errorf("2x2: got %v, %v", perm, total)
	}
}

func TestAssignInvalid(t *testing.T) {
	cases := []struct {
		name  string
		n     int
		score []float64
		want  string
	}{
		{"negative size", -1, nil, "negative size"},
		{"short", 2, []float64{1, 2, 3}, "3 entries, want 2 x 2"},
		{"long", 1, []float64{1, 2}, "2 entries, want 1 x 1"},
		{"nan", 2, []float64{1, math.NaN(), 3, 4}, "score[0][1] = NaN is not finite"},
		{"inf", 2, []float64{1, 2, math.Inf(-1), 4}, "score[1][0] = -Inf is not finite"},
		{"huge", 2, []float64{0, 0, 0, -math.MaxFloat64 / 2}, "|score[1][1]| = 8.988465674311579e+307 exceeds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			perm, total, err := AssignChecked(c.n, c.score)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "align: ") {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if perm != nil || !math.IsNaN(total) {
				t.Fatalf("got %v, %v with error", perm, total)
			}
			perm, total = Assign(c.n, c.score)
			if perm != nil || !math.IsNaN(total) {
				t.Fatalf("Assign: got %v, %v, want nil, NaN", perm, total)
			}
		})
	}
	// An invalid solve resets the warm state; the next solve is still exact.
	var a Assigner
	a.Solve(2, []float64{1, 2, 3, 4})
	if p, _ := a.Solve(2, []float64{1, math.NaN(), 3, 4}); p != nil {
		t.Fatalf("NaN input solved: %v", p)
	}
	score := []float64{9, 1, 1, 9}
	perm, total := a.Solve(2, score)
	checkAssignment(t, "after invalid", 2, score, perm, total)
}

func TestAuctionThenWarmBruteForce(t *testing.T) {
	// The auction followed by the warm repair, on every kind of small matrix: exact.
	rng := rand.New(rand.NewPCG(33, 34))
	for _, kind := range matrixKinds {
		for n := 2; n <= 7; n++ {
			for rep := 0; rep < 10; rep++ {
				score := kind.gen(rng, n)
				var a Assigner
				a.resize(n)
				for i := range n { // the auction starts from a consistent state: all free
					a.rowsol[i], a.colsol[i], a.v[i] = -1, -1, 0
				}
				a.auction(score, math.Inf(1))
				a.solveWarm(score, false)
				perm := slices.Clone(a.rowsol)
				total := 0.0
				for i, j := range perm {
					total += score[i*n+j]
				}
				checkAssignment(t, kind.name+"/auction", n, score, perm, total)
			}
		}
	}
}

// lowRank returns an n x n matrix of rank r with a few dominant rows: the score matrices of
// gradient matching look like this, and they make augmentation searches long.
func lowRank(rng *rand.Rand, n, r int) []float64 {
	a, b := make([]float64, r*n), make([]float64, r*n)
	for k := range a {
		a[k], b[k] = rng.NormFloat64(), rng.NormFloat64()
	}
	s := make([]float64, n*n)
	for i := 0; i < n; i++ {
		scale := 1.0
		if i%50 == 0 {
			scale = 20
		}
		for j := 0; j < n; j++ {
			x := 0.0
			for t := 0; t < r; t++ {
				x += a[t*n+i] * b[t*n+j]
			}
			s[i*n+j] = scale * x
		}
	}
	return s
}

func TestAssignSwitchesToAuction(t *testing.T) {
	// On low-rank matrices the augmentation hands over to the auction (forced here by a low
	// switch threshold on some matrices, taken naturally on others); cold and warm results are
	// certified optimal and equal the totals of augmentation alone.
	rng := rand.New(rand.NewPCG(35, 36))
	saved := switchScans
	defer func() { switchScans = saved }()
	for _, n := range []int{60, 300} {
		for _, force := range []bool{false, true} {
			score := lowRank(rng, n, 4)
			switchScans = 1 << 30
			_, want := Assign(n, score)
			if force {
				switchScans = 0
			} else {
				switchScans = saved
			}
			var a Assigner
			_, got := a.Solve(n, score)
			certify(t, "cold", &a, n, score, 1e-9)
			if math.Abs(got-want) > 1e-9*math.Abs(want) {
				t.Fatalf("n=%d: total %v, augmentation alone %v", n, got, want)
			}
			if force && n >= 300 && a.auctions == 0 { // (at n = 60 augmentation ends before the first projection)
				t.Fatalf("n=%d: the auction did not run", n)
			}
			for step := 0; step < 3; step++ {
				for k := range score {
					score[k] += 0.05 * rng.NormFloat64()
				}
				_, got = a.Solve(n, score)
				certify(t, "warm", &a, n, score, 1e-9)
				switchScans = 1 << 30
				_, want = Assign(n, score)
				if force {
					switchScans = 0
				} else {
					switchScans = saved
				}
				if math.Abs(got-want) > 1e-9*math.Abs(want) {
					t.Fatalf("n=%d step %d: warm total %v, augmentation alone %v", n, step, got, want)
				}
			}
			t.Logf("n=%d force=%v: %d auctions", n, force, a.auctions)
		}
	}
}
