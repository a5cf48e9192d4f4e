package dataset

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/ltransfer/ltransfer/params"
)

// Source is a labelled example collection. The Sources of this package are
// read-only and safe for concurrent use.
type Source interface {
	// Len returns the number of examples.
	Len() int
	// Shape returns the shape of one example, e.g. [1 28 28], [3 32 32] or
	// [D]. The caller may modify the returned slice.
	Shape() []int
	// Batch writes the preprocessed examples at positions idx, each in
	// [0, Len()), into x, example i at x[i*n:(i+1)*n] where n is the product
	// of Shape, and the label of example i into y[i]. x must hold at least
	// len(idx)*n values and y at least len(idx); only those prefixes are
	// written. On error x and y are left unchanged.
	Batch(idx []int, x []float32, y []int64) error
}

// Split names a part of a data set.
type Split string

const (
	// SplitTrain is the training set without its validation part. The empty
	// Split means SplitTrain.
	SplitTrain Split = "train"
	// SplitVal is the validation part: the last Options.ValFraction of the
	// training set.
	SplitVal Split = "val"
	// SplitTest is the test set; for npz, the whole file.
	SplitTest Split = "test"
)

// DefaultValFraction is the fraction of the training set held out for
// validation when Options.ValFraction is 0.
const DefaultValFraction = 0.1

// Options select and preprocess the examples of the Source that Open returns.
// The zero value selects the training split (the first 90% of the training
// set), all classes, no limit and no normalisation.
type Options struct {
	// Split is SplitTrain (or empty), SplitVal or SplitTest. For npz files,
	// train and val carve the file as for a training set and test takes it
	// whole.
	Split Split
	// ValFraction, in [0, 1), is the fraction of the training set held out,
	// from its end, as the validation split: with n examples the last
	// round(ValFraction*n) form SplitVal and the others SplitTrain. 0 means
	// DefaultValFraction.
	ValFraction float64
	// Classes, when not empty, keeps only the examples with these labels.
	Classes []int
	// Relabel maps label Classes[i] to i. It requires Classes.
	Relabel bool
	// Limit, when positive, keeps only the first Limit examples left after
	// the split and the class selection.
	Limit int
	// Mean and Std normalise each value v of channel c (the first axis of
	// the example shape) to (v - Mean[c]) / Std[c], after byte images are
	// scaled to [0,1]. Each holds no value (Mean 0, Std 1), one value for
	// all channels, or one per channel. The values must be finite, and
	// those of Std non-zero.
	Mean, Std []float32
}

// Open opens the data set named by spec, which is "mnist:DIR", "cifar10:DIR"
// or "npz:FILE", and returns the examples that opt selects, preprocessed as
// opt says. An empty selection is an error.
func Open(spec string, opt Options) (Source, error) {
	scheme, path, ok := strings.Cut(spec, ":")
	if !ok || path == "" {
		return nil, fmt.Errorf("dataset: bad spec %q, want mnist:DIR, cifar10:DIR or npz:FILE", spec)
	}
	if err := opt.check(); err != nil {
		return nil, err
	}
	split := opt.Split
	if split == "" {
		split = SplitTrain
	}
	var base *memSource
	var err error
	switch scheme {
	case "mnist":
		base, err = loadMNIST(path, split == SplitTest)
	case "cifar10":
		base, err = loadCIFAR(path, split == SplitTest)
	case "npz":
		base, err = loadNPZ(path)
	default:
		return nil, fmt.Errorf("dataset: unknown scheme %q in spec %q, want mnist, cifar10 or npz", scheme, spec)
	}
	if err != nil {
		return nil, err
	}
	if err := base.normalize(opt.Mean, opt.Std); err != nil {
		return nil, err
	}
	v := selectExamples(base, split, opt)
	if v.Len() == 0 {
		return nil, fmt.Errorf("dataset: %s: no examples selected (split %s, %d loaded, classes %v, limit %d)",
			spec, split, base.Len(), opt.Classes, opt.Limit)
	}
	return v, nil
}

// check validates the options that do not depend on the data.
func (o *Options) check() error {
	switch o.Split {
	case "", SplitTrain, SplitVal, SplitTest:
	default:
		return fmt.Errorf("dataset: unknown split %q, want %s, %s or %s", o.Split, SplitTrain, SplitVal, SplitTest)
	}
	if !(o.ValFraction >= 0 && o.ValFraction < 1) {
		return fmt.Errorf("dataset: validation fraction %v, want a value in [0, 1)", o.ValFraction)
	}
	if o.Limit < 0 {
		return fmt.Errorf("dataset: limit %d, want 0 (no limit) or more", o.Limit)
	}
	for i, c := range o.Classes {
		if c < 0 {
			return fmt.Errorf("dataset: class %d, want a label ≥ 0", c)
		}
		if slices.Contains(o.Classes[:i], c) {
			return fmt.Errorf("dataset: class %d listed twice in %v", c, o.Classes)
		}
	}
	if o.Relabel && len(o.Classes) == 0 {
		return fmt.Errorf("dataset: relabelling needs a class list")
	}
	for _, m := range o.Mean {
		if math.IsInf(float64(m), 0) || math.IsNaN(float64(m)) {
			return fmt.Errorf("dataset: mean %v, want a finite value", m)
		}
	}
	for _, s := range o.Std {
		if s == 0 || math.IsInf(float64(s), 0) || math.IsNaN(float64(s)) {
			return fmt.Errorf("dataset: standard deviation %v, want a finite non-zero value", s)
		}
	}
	return nil
}

// selectExamples applies the split, class and limit options of opt to the
// loaded data set s.
func selectExamples(s *memSource, split Split, opt Options) *view {
	n := s.Len()
	lo, hi := 0, n
	if split != SplitTest {
		frac := opt.ValFraction
		if frac == 0 {
			frac = DefaultValFraction
		}
		nval := int(math.Round(frac * float64(n)))
		if split == SplitVal {
			lo = n - nval
		} else {
			hi = n - nval
		}
	}
	newLabel := make(map[int64]int64, len(opt.Classes))
	for i, c := range opt.Classes {
		newLabel[int64(c)] = int64(i)
	}
	v := &view{src: s, size: s.size}
	for i := lo; i < hi && (opt.Limit == 0 || len(v.idx) < opt.Limit); i++ {
		if len(opt.Classes) > 0 {
			l, ok := newLabel[s.labels[i]]
			if !ok {
				continue
			}
			if opt.Relabel {
				v.labels = append(v.labels, l)
			}
		}
		v.idx = append(v.idx, i)
	}
	return v
}

// memSource is a data set held in memory: the examples one after the other
// as bytes (u8) or float32 (f32), and their labels.
type memSource struct {
	shape  []int
	size   int // values per example: the product of shape
	u8     []byte
	f32    []float32
	labels []int64

	// Preprocessing: each example is planes runs of plane values, and run c
	// uses lut[c] (byte data) or mean[c] and std[c] (float data).
	planes, plane int
	lut           [][256]float32
	mean, std     []float32
}

// newMemSource returns the data set of the examples of shape held in u8 or
// f32, labelled by labels. name, the file, appears in errors.
func newMemSource(name string, shape []int, u8 []byte, f32 []float32, labels []int64) (*memSource, error) {
	if len(shape) == 0 || slices.Contains(shape, 0) {
		return nil, fmt.Errorf("dataset: %s: example shape %v, want at least one dimension and none of size 0", name, shape)
	}
	size, ok := params.Volume(shape, maxValues)
	if !ok || (len(u8)+len(f32)) != size*len(labels) {
		return nil, fmt.Errorf("dataset: %s: %d values for %d examples of shape %v", name, len(u8)+len(f32), len(labels), shape)
	}
	return &memSource{shape: shape, size: size, u8: u8, f32: f32, labels: labels}, nil
}

// maxValues bounds every declared size, so that size arithmetic cannot
// overflow; real data is much smaller.
const maxValues = 1 << 40

// normalize sets the preprocessing to (v - mean[c]) / std[c] per channel, v
// scaled to [0,1] for byte data. Options.check has vetted std's values.
func (s *memSource) normalize(mean, std []float32) error {
	channels := s.shape[0]
	k := 1
	for _, p := range []struct {
		name string
		v    []float32
	}{{"mean", mean}, {"std", std}} {
		switch len(p.v) {
		case 0, 1:
		case channels:
			k = channels
		default:
			return fmt.Errorf("dataset: %s has %d values, want 1 or one per channel (%d, the first axis of example shape %v)",
				p.name, len(p.v), channels, s.shape)
		}
	}
	s.planes, s.plane = k, s.size/k
	s.mean, s.std = make([]float32, k), make([]float32, k)
	for c := range k {
		s.mean[c], s.std[c] = pick(mean, c, 0), pick(std, c, 1)
	}
	if s.u8 != nil {
		s.lut = make([][256]float32, k)
		for c := range k {
			for b := range 256 {
				s.lut[c][b] = (float32(b)/255 - s.mean[c]) / s.std[c]
			}
		}
	}
	return nil
}

// pick returns v[c], v[0] when v holds one value, or def when v is empty.
func pick(v []float32, c int, def float32) float32 {
	switch len(v) {
	case 0:
		return def
	case 1:
		return v[0]
	}
	return v[c]
}

// Len implements Source.
func (s *memSource) Len() int { return len(s.labels) }

// Shape implements Source.
func (s *memSource) Shape() []int { return slices.Clone(s.shape) }

// Batch implements Source.
func (s *memSource) Batch(idx []int, x []float32, y []int64) error {
	if err := checkBatch(s.Len(), s.size, idx, x, y); err != nil {
		return err
	}
	for i, k := range idx {
		for c := range s.planes {
			dst := x[i*s.size+c*s.plane : i*s.size+(c+1)*s.plane]
			off := k*s.size + c*s.plane
			if s.u8 != nil {
				lut := &s.lut[c]
				for j, b := range s.u8[off : off+s.plane] {
					dst[j] = lut[b]
				}
				continue
			}
			m, sd := s.mean[c], s.std[c]
			for j, v := range s.f32[off : off+s.plane] {
				dst[j] = (v - m) / sd
			}
		}
		y[i] = s.labels[k]
	}
	return nil
}

// checkBatch validates the arguments of Batch for a Source of n examples of
// size values each.
func checkBatch(n, size int, idx []int, x []float32, y []int64) error {
	if len(x) < len(idx)*size {
		return fmt.Errorf("dataset: batch of %d examples needs %d values in x, have %d", len(idx), len(idx)*size, len(x))
	}
	if len(y) < len(idx) {
		return fmt.Errorf("dataset: batch of %d examples needs %d labels in y, have %d", len(idx), len(idx), len(y))
	}
	return checkIndices(n, idx)
}

// checkIndices reports the first position of idx outside [0, n).
func checkIndices(n int, idx []int) error {
	for p, k := range idx {
		if k < 0 || k >= n {
			return fmt.Errorf("dataset: index %d at position %d out of range [0, %d)", k, p, n)
		}
	}
	return nil
}

// view is the Source of the examples of src at positions idx.
type view struct {
	src    Source
	size   int     // values per example
	idx    []int   // positions in src
	labels []int64 // when not nil, labels[i] replaces the label of idx[i]
}

// Subset returns the Source of the examples of src at positions idx, in that
// order; a position may repeat. It fails if a position is out of range.
func Subset(src Source, idx []int) (Source, error) {
	if err := checkIndices(src.Len(), idx); err != nil {
		return nil, err
	}
	size, _ := params.Volume(src.Shape(), maxValues)
	v := &view{src: src, size: size, idx: slices.Clone(idx)}
	if w, ok := src.(*view); ok {
		v.src = w.src
		if w.labels != nil {
			v.labels = make([]int64, len(idx))
		}
		for i, k := range idx {
			v.idx[i] = w.idx[k]
			if w.labels != nil {
				v.labels[i] = w.labels[k]
			}
		}
	}
	return v, nil
}

// Len implements Source.
func (v *view) Len() int { return len(v.idx) }

// Shape implements Source.
func (v *view) Shape() []int { return v.src.Shape() }

// Batch implements Source.
func (v *view) Batch(idx []int, x []float32, y []int64) error {
	if err := checkBatch(v.Len(), v.size, idx, x, y); err != nil {
		return err
	}
	pos := make([]int, len(idx))
	for i, k := range idx {
		pos[i] = v.idx[k]
	}
	if err := v.src.Batch(pos, x, y); err != nil {
		return err
	}
	if v.labels != nil {
		for i, k := range idx {
			y[i] = v.labels[k]
		}
	}
	return nil
}
