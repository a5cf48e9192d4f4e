package graph

// poolSize is the output length of a pooling window of size k and stride s over an axis of
// length in padded by lo and hi, as PyTorch computes it: rounded down, or with ceil rounded up
// unless the last window would start in the trailing padding (it must start inside the input or
// the leading padding).
func poolSize(in, lo, hi, k, s int, ceil bool) int {
	span := in + lo + hi - k
	if !ceil {
		return span/s + 1
	}
	out := (span+s-1)/s + 1
	if (out-1)*s >= in+lo {
		out--
	}
	return out
}
