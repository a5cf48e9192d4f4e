package convert

import (
	"fmt"
	"math"
)

// Schedule is how interpolation points are spaced between two consecutive checkpoints.
type Schedule string

// The schedules.
const (
	// Uniform spaces the points evenly: c_k = k/K.
	Uniform Schedule = "uniform"
	// Cosine takes big steps first, as the paper does: c_k = S(k)/S(K) with
	// S(k) = sum over t < k of (1 + cos(pi t / K)).
	Cosine Schedule = "cosine"
)

// ParseSchedule reads a schedule name.
func ParseSchedule(s string) (Schedule, error) {
	switch Schedule(s) {
	case Uniform, Cosine:
		return Schedule(s), nil
	}
	return "", fmt.Errorf("convert: unknown schedule %q (want uniform or cosine)", s)
}

// Coefficients returns c_0 = 0, ..., c_K = 1: the fraction of the way from one checkpoint to
// the next at each of the K interpolation steps.
func (s Schedule) Coefficients(k int) ([]float64, error) {
	if k < 1 {
		return nil, fmt.Errorf("convert: %d interpolation steps, want at least 1", k)
	}
	c := make([]float64, k+1)
	switch s {
	case Uniform:
		for i := range c {
			c[i] = float64(i) / float64(k)
		}
	case Cosine:
		var sum float64
		for i := 1; i <= k; i++ {
			sum += 1 + math.Cos(math.Pi*float64(i-1)/float64(k))
			c[i] = sum
		}
		for i := range c {
			c[i] /= sum
		}
	default:
		return nil, fmt.Errorf("convert: unknown schedule %q", s)
	}
	c[k] = 1
	return c, nil
}
