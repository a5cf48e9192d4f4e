package dataset

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
)

// Shuffle returns the order in which an epoch visits n examples: a
// permutation of 0..n-1 drawn by a Fisher–Yates shuffle from a PCG generator
// (math/rand/v2) seeded with (seed, epoch). The same n, seed and epoch always
// give the same order, on every platform and Go release, so a run can be
// replayed or resumed at any epoch. n ≤ 0 gives an empty order.
func Shuffle(n int, seed, epoch uint64) []int {
	order := make([]int, max(n, 0))
	for i := range order {
		order[i] = i
	}
	src := rand.NewPCG(seed, epoch)
	for i := len(order) - 1; i > 0; i-- {
		j := uniform(src, uint64(i)+1)
		order[i], order[j] = order[j], order[i]
	}
	return order
}

// uniform returns a uniformly distributed value in [0, n), n > 0, by
// Lemire's multiply-and-reject method. It is written out here rather than
// taken from rand.Rand, whose algorithms may change between Go releases.
func uniform(src *rand.PCG, n uint64) uint64 {
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		threshold := -n % n
		for lo < threshold {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}

// Batches cuts order into consecutive batches of size positions. When size
// does not divide len(order), the last batch is shorter: it is kept, not
// dropped. The batches share order's memory but have no spare capacity, so
// appending to one does not change the next.
func Batches(order []int, size int) ([][]int, error) {
	if size < 1 {
		return nil, fmt.Errorf("dataset: batch size %d, want at least 1", size)
	}
	batches := make([][]int, 0, (len(order)+size-1)/size)
	for len(order) > 0 {
		k := min(size, len(order))
		batches = append(batches, order[:k:k])
		order = order[k:]
	}
	return batches, nil
}
