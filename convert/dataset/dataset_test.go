package dataset

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

// readAll returns all the examples of s, example i at position i, read in
// one Batch in shuffled order.
func readAll(t *testing.T, s Source) ([]float32, []int64) {
	t.Helper()
	size := params.Size(s.Shape())
	order := Shuffle(s.Len(), 0, 0)
	x := make([]float32, s.Len()*size)
	y := make([]int64, s.Len())
	if err := s.Batch(order, x, y); err != nil {
		t.Fatal(err)
	}
	xs, ys := make([]float32, len(x)), make([]int64, len(y))
	for p, i := range order {
		copy(xs[i*size:(i+1)*size], x[p*size:(p+1)*size])
		ys[i] = y[p]
	}
	return xs, ys
}

// checkBytes checks that s holds the byte images first, first+1, … of
// pixel, scaled to [0,1], labelled by label.
func checkBytes(t *testing.T, s Source, shape []int, n, first int, pixel func(i, j int) byte, label func(i int) byte) {
	t.Helper()
	if s.Len() != n || !slices.Equal(s.Shape(), shape) {
		t.Fatalf("Len, Shape = %d, %v, want %d, %v", s.Len(), s.Shape(), n, shape)
	}
	x, y := readAll(t, s)
	size := len(x) / max(n, 1)
	for i := range n {
		if y[i] != int64(label(first+i)) {
			t.Errorf("label %d = %d, want %d", i, y[i], label(first+i))
		}
		for j := range size {
			if want := float32(pixel(first+i, j)) / 255; x[i*size+j] != want {
				t.Fatalf("example %d value %d = %v, want %v", i, j, x[i*size+j], want)
			}
		}
	}
}

func TestCommittedFixtures(t *testing.T) {
	if *update {
		writeFixtures(t)
	}
	mnistShape := []int{1, fixtureMNISTRows, fixtureMNISTCols}
	cifarTrain := 5 * fixtureCIFARPerFile
	tests := []struct {
		spec     string
		split    Split
		shape    []int
		n, first int
		pixel    func(i, j int) byte
		label    func(i int) byte
	}{
		{"mnist:testdata/mnist", SplitTrain, mnistShape, fixtureMNISTTrain - 1, 0, mnistPixel, mnistLabel},
		{"mnist:testdata/mnist", SplitVal, mnistShape, 1, fixtureMNISTTrain - 1, mnistPixel, mnistLabel},
		{"mnist:testdata/mnist", SplitTest, mnistShape, fixtureMNISTTest, fixtureMNISTTestFirst, mnistPixel, mnistLabel},
		{"cifar10:testdata/cifar10", SplitTrain, []int{3, 32, 32}, cifarTrain - 1, 0, cifarPixel, cifarLabel},
		{"cifar10:testdata/cifar10", SplitVal, []int{3, 32, 32}, 1, cifarTrain - 1, cifarPixel, cifarLabel},
		{"cifar10:testdata/cifar10", SplitTest, []int{3, 32, 32}, fixtureCIFAR, cifarTrain, cifarPixel, cifarLabel},
	}
	for _, tt := range tests {
		t.Run(tt.spec+"/"+string(tt.split), func(t *testing.T) {
			s, err := Open(tt.spec, Options{Split: tt.split})
			if err != nil {
				t.Fatal(err)
			}
			checkBytes(t, s, tt.shape, tt.n, tt.first, tt.pixel, tt.label)
		})
	}
}

func TestOpenMNIST(t *testing.T) {
	tests := []struct {
		name, sep string
		gz        bool
	}{
		{"plain", "-", false},
		{"gzip", "-", true},
		{"dot names", ".", false},
		{"dot names gzip", ".", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeMNIST(t, dir, "train", tt.sep, 0, 20, 5, 7, tt.gz)
			writeMNIST(t, dir, "t10k", tt.sep, 50, 4, 5, 7, tt.gz)
			s, err := Open("mnist:"+dir, Options{ValFraction: 0.25})
			if err != nil {
				t.Fatal(err)
			}
			checkBytes(t, s, []int{1, 5, 7}, 15, 0, mnistPixel, mnistLabel)
			s, err = Open("mnist:"+dir, Options{Split: SplitTest})
			if err != nil {
				t.Fatal(err)
			}
			checkBytes(t, s, []int{1, 5, 7}, 4, 50, mnistPixel, mnistLabel)
		})
	}
}

func TestOpenCIFAR(t *testing.T) {
	dir := t.TempDir()
	writeCIFAR(t, dir, 4, 3)
	s, err := Open("cifar10:"+dir, Options{Split: SplitVal, ValFraction: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	// The validation half spans data_batch_3 to data_batch_5.
	checkBytes(t, s, []int{3, 32, 32}, 10, 10, cifarPixel, cifarLabel)
	s, err = Open("cifar10:"+dir, Options{Split: SplitTest})
	if err != nil {
		t.Fatal(err)
	}
	checkBytes(t, s, []int{3, 32, 32}, 3, 20, cifarPixel, cifarLabel)
}

// TestOpenNPZ reads the files that testdata/gen_numpy.py wrote with NumPy.
func TestOpenNPZ(t *testing.T) {
	f4 := func(k int) float32 { return float32(k)*0.5 - 3 }
	tests := []struct {
		file   string
		shape  []int
		value  func(k int) float32 // value k of the flattened x
		labels []int64
	}{
		{"numpy_f4.npz", []int{2, 2, 3}, f4, []int64{3, 1, 4, 1, 5, 9}},
		{"numpy_v2v3.npz", []int{2, 2, 3}, f4, []int64{3, 1, 4, 1, 5, 9}},
		{"numpy_u8.npz", []int{4}, func(k int) float32 { return float32(k*13%256) / 255 }, []int64{0, 1, 2, 1, 0}},
		{"numpy_f8_i4.npz", []int{3}, func(k int) float32 { return float32(float64(k) * 0.1) }, []int64{2, 0, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			s, err := Open("npz:"+filepath.Join("testdata", tt.file), Options{Split: SplitTest})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Shape(), tt.shape) {
				t.Fatalf("Shape = %v, want %v", s.Shape(), tt.shape)
			}
			if s.Len() != len(tt.labels) {
				t.Fatalf("Len = %d, want %d", s.Len(), len(tt.labels))
			}
			x, y := readAll(t, s)
			if !slices.Equal(y, tt.labels) {
				t.Errorf("labels = %v, want %v", y, tt.labels)
			}
			for k, v := range x {
				if v != tt.value(k) {
					t.Fatalf("x[%d] = %v, want %v", k, v, tt.value(k))
				}
			}
		})
	}
}

// writeSeqNPZ writes an npz file of n examples of one value, x[i] = i,
// labelled i % classes, and returns its spec.
func writeSeqNPZ(t *testing.T, n, classes int) string {
	x := make([]float32, n)
	y := make([]int64, n)
	for i := range n {
		x[i], y[i] = float32(i), int64(i%classes)
	}
	path := filepath.Join(t.TempDir(), "seq.npz")
	writeFile(t, path, zipFile(t, false,
		member{"x.npy", npyFile(1, npyDict("<f4", fmt.Sprintf("(%d, 1)", n)), f32Bytes(x...))},
		member{"y.npy", npyFile(1, npyDict("<i8", fmt.Sprintf("(%d,)", n)), i64Bytes(y...))}))
	return "npz:" + path
}

func TestSelection(t *testing.T) {
	spec := writeSeqNPZ(t, 20, 4)
	seq := func(lo, hi int) []int64 {
		var s []int64
		for i := lo; i < hi; i++ {
			s = append(s, int64(i))
		}
		return s
	}
	mod4 := func(idx []int64) []int64 {
		var s []int64
		for _, i := range idx {
			s = append(s, i%4)
		}
		return s
	}
	tests := []struct {
		name   string
		opt    Options
		idx    []int64 // the examples selected, in order
		labels []int64 // nil: idx % 4
	}{
		{"default is train minus 10%", Options{}, seq(0, 18), nil},
		{"train", Options{Split: SplitTrain}, seq(0, 18), nil},
		{"val is the last 10%", Options{Split: SplitVal}, seq(18, 20), nil},
		{"test is the whole npz", Options{Split: SplitTest}, seq(0, 20), nil},
		{"val fraction train", Options{ValFraction: 0.25}, seq(0, 15), nil},
		{"val fraction val", Options{Split: SplitVal, ValFraction: 0.25}, seq(15, 20), nil},
		{"val fraction rounds", Options{Split: SplitVal, ValFraction: 0.33}, seq(13, 20), nil},
		{"limit", Options{Limit: 5}, seq(0, 5), nil},
		{"limit of val", Options{Split: SplitVal, ValFraction: 0.5, Limit: 3}, seq(10, 13), nil},
		{"limit above size", Options{Split: SplitVal, Limit: 100}, seq(18, 20), nil},
		{"classes", Options{Classes: []int{2}}, []int64{2, 6, 10, 14}, nil},
		{"classes keep labels", Options{Classes: []int{3, 1}}, []int64{1, 3, 5, 7, 9, 11, 13, 15, 17}, nil},
		{"relabel in the given order", Options{Classes: []int{3, 1}, Relabel: true},
			[]int64{1, 3, 5, 7, 9, 11, 13, 15, 17}, []int64{1, 0, 1, 0, 1, 0, 1, 0, 1}},
		{"relabel then limit", Options{Classes: []int{3, 1}, Relabel: true, Limit: 3},
			[]int64{1, 3, 5}, []int64{1, 0, 1}},
		{"classes of val", Options{Split: SplitVal, Classes: []int{3, 0}, Relabel: true}, []int64{19}, []int64{0}},
		{"absent class", Options{Classes: []int{0, 7}, Relabel: true, Split: SplitTest},
			[]int64{0, 4, 8, 12, 16}, []int64{0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(spec, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			x, y := readAll(t, s)
			got := make([]int64, len(x))
			for i, v := range x {
				got[i] = int64(v)
			}
			if !slices.Equal(got, tt.idx) {
				t.Errorf("examples = %v, want %v", got, tt.idx)
			}
			want := tt.labels
			if want == nil {
				want = mod4(tt.idx)
			}
			if !slices.Equal(y, want) {
				t.Errorf("labels = %v, want %v", y, want)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	cifarDir := t.TempDir()
	writeCIFAR(t, cifarDir, 1, 2)
	f4 := func(k int) float32 { return float32(k)*0.5 - 3 }
	u8 := func(k int) float32 { return float32(k*13%256) / 255 }
	cifar := func(k int) float32 { return float32(cifarPixel(5+k/cifarImage, k%cifarImage)) / 255 }
	tests := []struct {
		name      string
		spec      string
		mean, std []float32
		value     func(k int) float32 // raw value k, scaled to [0,1] for bytes
		channel   func(k int) int     // channel of value k
	}{
		{"cifar per channel", "cifar10:" + cifarDir, []float32{0.5, 0.25, 0.125}, []float32{0.5, 2, 4},
			cifar, func(k int) int { return k % cifarImage / 1024 }},
		{"cifar one value", "cifar10:" + cifarDir, []float32{0.5}, []float32{0.25}, cifar, func(int) int { return 0 }},
		{"cifar mean only", "cifar10:" + cifarDir, []float32{0.1, 0.2, 0.3}, nil, cifar, func(k int) int { return k % cifarImage / 1024 }},
		{"cifar std only", "cifar10:" + cifarDir, nil, []float32{3}, cifar, func(int) int { return 0 }},
		{"float per channel", "npz:testdata/numpy_f4.npz", []float32{1, -2}, []float32{2, 0.5},
			f4, func(k int) int { return k % 12 / 6 }},
		{"bytes per feature", "npz:testdata/numpy_u8.npz", []float32{0, 0.1, 0.2, 0.3}, []float32{1, 2, 3, 4},
			u8, func(k int) int { return k % 4 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.spec, Options{Split: SplitTest, Mean: tt.mean, Std: tt.std})
			if err != nil {
				t.Fatal(err)
			}
			x, _ := readAll(t, s)
			for k, got := range x {
				c := tt.channel(k)
				m, sd := pick(tt.mean, c, 0), pick(tt.std, c, 1)
				want := (tt.value(k) - m) / sd
				if math.Abs(float64(got-want)) > 1e-6*max(1, math.Abs(float64(want))) {
					t.Fatalf("x[%d] = %v, want (%v - %v) / %v = %v", k, got, tt.value(k), m, sd, want)
				}
			}
		})
	}
}

// checkErr checks that err is a well-formed error of this package that
// contains want.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "dataset: ") || strings.Contains(msg, "dataset: dataset:") {
		t.Errorf("error %q is not prefixed by a single \"dataset: \"", msg)
	}
	if !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", msg, want)
	}
}

func TestOptionErrors(t *testing.T) {
	tests := []struct {
		name string
		spec string
		opt  Options
		want string
	}{
		{"unknown split", "mnist:testdata/mnist", Options{Split: "dev"}, `unknown split "dev"`},
		{"val fraction 1", "mnist:testdata/mnist", Options{ValFraction: 1}, "validation fraction 1, want a value in [0, 1)"},
		{"negative val fraction", "mnist:testdata/mnist", Options{ValFraction: -0.1}, "validation fraction -0.1"},
		{"NaN val fraction", "mnist:testdata/mnist", Options{ValFraction: math.NaN()}, "validation fraction NaN"},
		{"negative limit", "mnist:testdata/mnist", Options{Limit: -1}, "limit -1"},
		{"negative class", "mnist:testdata/mnist", Options{Classes: []int{-1}}, "class -1"},
		{"repeated class", "mnist:testdata/mnist", Options{Classes: []int{1, 2, 1}}, "class 1 listed twice"},
		{"relabel without classes", "mnist:testdata/mnist", Options{Relabel: true}, "relabelling needs a class list"},
		{"NaN mean", "mnist:testdata/mnist", Options{Mean: []float32{float32(math.NaN())}}, "mean NaN, want a finite value"},
		{"zero std", "mnist:testdata/mnist", Options{Std: []float32{0}}, "standard deviation 0"},
		{"infinite std", "mnist:testdata/mnist", Options{Std: []float32{float32(math.Inf(1))}}, "standard deviation +Inf"},
		{"mean per channel of MNIST", "mnist:testdata/mnist", Options{Mean: []float32{0.1, 0.2}},
			"mean has 2 values, want 1 or one per channel (1, the first axis of example shape [1 4 3])"},
		{"std per channel of CIFAR", "cifar10:testdata/cifar10", Options{Std: []float32{1, 2}}, "std has 2 values"},
		{"no example of the classes", "mnist:testdata/mnist", Options{Classes: []int{8}}, "no examples selected"},
		{"empty val", "mnist:testdata/mnist", Options{Split: SplitVal, ValFraction: 0.01}, "no examples selected (split val, 10 loaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.spec, tt.opt)
			checkErr(t, err, tt.want)
		})
	}
}

func TestOpenErrors(t *testing.T) {
	imgs, labs := mnistFiles(t, 0, 3, 2, 2, false)
	gzImgs, _ := mnistFiles(t, 0, 3, 2, 2, true)
	npy := func(descr, shape string, data []byte) []byte { return npyFile(1, npyDict(descr, shape), data) }
	x3 := member{"x.npy", npy("<f4", "(3, 2)", f32Bytes(1, 2, 3, 4, 5, 6))}
	y3 := member{"y.npy", npy("<i8", "(3,)", i64Bytes(0, 1, 2))}
	badCRC := slices.Clone(gzImgs)
	badCRC[len(badCRC)-8] ^= 0xff
	tests := []struct {
		name     string
		files    map[string][]byte // written into a temporary folder
		spec     string            // $DIR stands for that folder
		want     string
		notExist bool
		split    Split
	}{
		{"no scheme", nil, "mnist", "bad spec \"mnist\"", false, ""},
		{"empty path", nil, "mnist:", "bad spec \"mnist:\"", false, ""},
		{"unknown scheme", nil, "imagenet:x", `unknown scheme "imagenet"`, false, ""},

		{"mnist missing folder", nil, "mnist:$DIR/nowhere", "no train-images-idx3-ubyte[.gz] in", true, ""},
		{"mnist missing labels", map[string][]byte{"train-images-idx3-ubyte": imgs}, "mnist:$DIR",
			"no train-labels-idx1-ubyte[.gz] in", true, ""},
		{"mnist missing test", map[string][]byte{"train-images-idx3-ubyte": imgs, "train-labels-idx1-ubyte": labs}, "mnist:$DIR",
			"no t10k-images-idx3-ubyte[.gz]", true, SplitTest},
		{"mnist zero magic", map[string][]byte{"train-images-idx3-ubyte.gz": gzipBytes(t, make([]byte, 100))}, "mnist:$DIR",
			"train-images-idx3-ubyte.gz: bad magic 0x00000000, want 0x00000803 (IDX unsigned byte, 3 dims)", false, ""},
		{"mnist labels as images", map[string][]byte{"train-images-idx3-ubyte": idxFile(t, []int{20}, make([]byte, 20), false)}, "mnist:$DIR",
			"train-images-idx3-ubyte: bad magic 0x00000801, want 0x00000803", false, ""},
		{"mnist images as labels", map[string][]byte{"train-images-idx3-ubyte": imgs, "train-labels-idx1-ubyte": imgs}, "mnist:$DIR",
			"train-labels-idx1-ubyte: bad magic 0x00000803, want 0x00000801 (IDX unsigned byte, 1 dims)", false, ""},
		{"mnist truncated header", map[string][]byte{"train-images-idx3-ubyte": imgs[:10]}, "mnist:$DIR",
			"IDX header of 16 bytes truncated at 10", false, ""},
		{"mnist truncated data", map[string][]byte{"train-images-idx3-ubyte": imgs[:len(imgs)-1]}, "mnist:$DIR",
			"IDX dimensions 3x2x2 declare 12 data bytes, file has 11", false, ""},
		{"mnist trailing data", map[string][]byte{"train-images-idx3-ubyte": append(slices.Clone(imgs), 0)}, "mnist:$DIR",
			"declare 12 data bytes, file has 13", false, ""},
		{"mnist huge dims", map[string][]byte{"train-images-idx3-ubyte": idxFile(t, []int{1 << 31, 1 << 20, 1 << 20}, nil, false)}, "mnist:$DIR",
			"IDX dimensions 2147483648x1048576x1048576 are too large", false, ""},
		{"mnist huge count gzip", map[string][]byte{"train-images-idx3-ubyte.gz": idxFile(t, []int{1 << 30, 28, 28}, make([]byte, 784), true)}, "mnist:$DIR",
			"declare 841813590016 data bytes, file has 784", false, ""},
		{"mnist bad gzip checksum", map[string][]byte{"train-images-idx3-ubyte.gz": badCRC}, "mnist:$DIR",
			"train-images-idx3-ubyte.gz: gzip: gzip: invalid checksum", false, ""},
		{"mnist count mismatch", map[string][]byte{
			"train-images-idx3-ubyte": idxFile(t, []int{2, 2, 2}, make([]byte, 8), false),
			"train-labels-idx1-ubyte": labs}, "mnist:$DIR",
			"train-images-idx3-ubyte holds 2 images but", false, ""},
		{"mnist empty images", map[string][]byte{
			"train-images-idx3-ubyte": idxFile(t, []int{3, 0, 2}, nil, false),
			"train-labels-idx1-ubyte": labs}, "mnist:$DIR",
			"example shape [1 0 2], want at least one dimension and none of size 0", false, ""},

		{"cifar missing batch", map[string][]byte{"data_batch_1.bin": cifarBatch(0, 1), "data_batch_2.bin": cifarBatch(0, 1)}, "cifar10:$DIR",
			"data_batch_3.bin: no such file", true, ""},
		{"cifar missing test", nil, "cifar10:$DIR", "test_batch.bin: no such file", true, SplitTest},
		{"cifar bad size", map[string][]byte{"data_batch_1.bin": cifarBatch(0, 1)[:100]}, "cifar10:$DIR",
			"data_batch_1.bin: size 100 is not a positive multiple of the 3073-byte CIFAR-10 record", false, ""},
		{"cifar empty", map[string][]byte{"data_batch_1.bin": {}}, "cifar10:$DIR", "size 0 is not a positive multiple", false, ""},
		{"cifar bad label", map[string][]byte{"data_batch_1.bin": append(cifarBatch(0, 1), append([]byte{10}, make([]byte, cifarImage)...)...)}, "cifar10:$DIR",
			"data_batch_1.bin: record 1 has label 10, want 0 to 9", false, ""},

		{"npz missing", nil, "npz:$DIR/none.npz", "none.npz: no such file", true, ""},
		{"npz not zip", map[string][]byte{"a.npz": imgs}, "npz:$DIR/a.npz", "a.npz: not an npz (zip) file: zip: not a valid zip file", false, ""},
		{"npz no x", map[string][]byte{"a.npz": zipFile(t, false, y3)}, "npz:$DIR/a.npz", `a.npz: npz has no array "x" (member x.npy)`, false, ""},
		{"npz no y", map[string][]byte{"a.npz": zipFile(t, false, x3)}, "npz:$DIR/a.npz", `npz has no array "y"`, false, ""},
		{"npz x dtype", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npy("<i8", "(3, 1)", i64Bytes(1, 2, 3))}, y3)},
			"npz:$DIR/a.npz", `a.npz: x.npy: unsupported dtype "<i8", want '<f4', '<f8' or '|u1'`, false, ""},
		{"npz y dtype", map[string][]byte{"a.npz": zipFile(t, false, x3, member{"y.npy", npy("<f4", "(3,)", f32Bytes(0, 1, 2))})},
			"npz:$DIR/a.npz", `y.npy: unsupported dtype "<f4", want '<i4', '<i8' or '|u1'`, false, ""},
		{"npz big-endian", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npy(">f4", "(3, 2)", make([]byte, 24))}, y3)},
			"npz:$DIR/a.npz", `unsupported dtype ">f4"`, false, ""},
		{"npz fortran order", nil, "npz:testdata/numpy_fortran.npz",
			"numpy_fortran.npz: x.npy: array is in Fortran order; save it in C order", false, ""},
		{"npz label count", map[string][]byte{"a.npz": zipFile(t, false, x3, member{"y.npy", npy("<i8", "(2,)", i64Bytes(0, 1))})},
			"npz:$DIR/a.npz", "x.npy holds 3 examples but y.npy holds 2 labels", false, ""},
		{"npz flat x", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npy("<f4", "(3,)", f32Bytes(1, 2, 3))}, y3)},
			"npz:$DIR/a.npz", "x.npy has shape [3], want N×C×H×W or N×D", false, ""},
		{"npz y matrix", map[string][]byte{"a.npz": zipFile(t, false, x3, member{"y.npy", npy("<i8", "(3, 2)", make([]byte, 48))})},
			"npz:$DIR/a.npz", "y.npy has shape [3 2], want N or N×1", false, ""},
		{"npz negative label", map[string][]byte{"a.npz": zipFile(t, false, x3, member{"y.npy", npy("<i4", "(3,)", []byte{0, 0, 0, 0, 255, 255, 255, 255, 1, 0, 0, 0})})},
			"npz:$DIR/a.npz", "y.npy: label -1 of example 1 is negative", false, ""},
		{"npy bad magic", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", []byte("\x93NUMPX\x01\x00")}, y3)},
			"npz:$DIR/a.npz", `x.npy: bad .npy magic "\x93NUMPX", want "\x93NUMPY"`, false, ""},
		{"npy version", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", []byte("\x93NUMPY\x04\x00\x00\x00")}, y3)},
			"npz:$DIR/a.npz", "x.npy: .npy format version 4.0, want 1.0, 2.0 or 3.0", false, ""},
		{"npy short header", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npyFile(1, npyDict("<f4", "(3, 2)"), nil)[:20]}, y3)},
			"npz:$DIR/a.npz", "x.npy: .npy header of 60 bytes truncated at 10", false, ""},
		{"npy header syntax", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npyFile(1, "{'descr': '<f4' 'shape': (3, 2)}", nil)}, y3)},
			"npz:$DIR/a.npz", "x.npy: malformed .npy header: want ',' or '}' at offset 16", false, ""},
		{"npy header key", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npyFile(1, "{'descr': '<f4', 'order': 1}", nil)}, y3)},
			"npz:$DIR/a.npz", `malformed .npy header: unknown key "order"`, false, ""},
		{"npy header missing key", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npyFile(1, "{'descr': '<f4', 'shape': (3, 2)}", nil)}, y3)},
			"npz:$DIR/a.npz", "malformed .npy header: want keys descr, fortran_order and shape", false, ""},
		{"npy truncated data", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npy("<f4", "(3, 2)", make([]byte, 23))}, y3)},
			"npz:$DIR/a.npz", "x.npy: shape [3 2] of <f4 declares 24 data bytes, file has 23", false, ""},
		{"npy trailing data", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npy("<f4", "(3, 2)", make([]byte, 25))}, y3)},
			"npz:$DIR/a.npz", "declares 24 data bytes, file has 25", false, ""},
		{"npy huge shape", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npy("<f4", "(100000000000, 1000)", nil)}, y3)},
			"npz:$DIR/a.npz", "x.npy: shape [100000000000 1000] is too large", false, ""},
		{"npy huge count", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npy("<f8", "(1000000000, 784)", nil)}, y3)},
			"npz:$DIR/a.npz", "declares 6272000000000 data bytes, file has 0", false, ""},
		{"npy empty example", map[string][]byte{"a.npz": zipFile(t, false, member{"x.npy", npy("<f4", "(3, 0)", nil)}, y3)},
			"npz:$DIR/a.npz", "example shape [0], want at least one dimension and none of size 0", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				writeFile(t, filepath.Join(dir, name), data)
			}
			_, err := Open(strings.ReplaceAll(tt.spec, "$DIR", dir), Options{Split: tt.split})
			checkErr(t, err, tt.want)
			if tt.notExist != errors.Is(err, fs.ErrNotExist) {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v, want %v", err, !tt.notExist, tt.notExist)
			}
		})
	}
}

// rangeSource is a Source outside this package's own: example i is the
// single value i, labelled 2i.
type rangeSource int

func (r rangeSource) Len() int     { return int(r) }
func (r rangeSource) Shape() []int { return []int{1} }
func (r rangeSource) Batch(idx []int, x []float32, y []int64) error {
	if err := checkBatch(int(r), 1, idx, x, y); err != nil {
		return err
	}
	for i, k := range idx {
		x[i], y[i] = float32(k), 2*int64(k)
	}
	return nil
}

func TestSubset(t *testing.T) {
	relabelled, err := Open(writeSeqNPZ(t, 12, 3), Options{Split: SplitTest, Classes: []int{2, 0}, Relabel: true})
	if err != nil {
		t.Fatal(err)
	}
	// relabelled holds examples 0 2 3 5 6 8 9 11 labelled 1 0 1 0 1 0 1 0.
	tests := []struct {
		name   string
		src    Source
		idx    [][]int // applied in turn
		x      []float32
		labels []int64
	}{
		{"any Source", rangeSource(10), [][]int{{7, 2, 7}}, []float32{7, 2, 7}, []int64{14, 4, 14}},
		{"nested", rangeSource(10), [][]int{{9, 8, 7, 6}, {3, 0}}, []float32{6, 9}, []int64{12, 18}},
		{"empty", rangeSource(10), [][]int{{}}, []float32{}, []int64{}},
		{"keeps relabelling", relabelled, [][]int{{7, 0, 1}}, []float32{11, 0, 2}, []int64{0, 1, 0}},
		{"nested relabelling", relabelled, [][]int{{7, 6, 5, 4}, {1, 3}}, []float32{9, 6}, []int64{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.src
			for _, idx := range tt.idx {
				if s, err = Subset(s, idx); err != nil {
					t.Fatal(err)
				}
			}
			x, y := readAll(t, s)
			if !slices.Equal(x, tt.x) || !slices.Equal(y, tt.labels) {
				t.Errorf("examples, labels = %v, %v, want %v, %v", x, y, tt.x, tt.labels)
			}
		})
	}
	_, err = Subset(rangeSource(3), []int{0, 3})
	checkErr(t, err, "index 3 at position 1 out of range [0, 3)")
}

func TestBatchErrors(t *testing.T) {
	v, err := Open("mnist:testdata/mnist", Options{Split: SplitTest})
	if err != nil {
		t.Fatal(err)
	}
	base := v.(*view).src
	tests := []struct {
		name string
		idx  []int
		nx   int
		ny   int
		want string
	}{
		{"index past the end", []int{0, 5}, 24, 2, "index 5 at position 1 out of range [0, 5)"},
		{"negative index", []int{-1}, 12, 1, "index -1 at position 0 out of range [0, 5)"},
		{"short x", []int{0, 1}, 23, 2, "batch of 2 examples needs 24 values in x, have 23"},
		{"short y", []int{0, 1}, 24, 1, "batch of 2 examples needs 2 labels in y, have 1"},
	}
	for _, tt := range tests {
		for _, s := range []Source{v, base} {
			t.Run(fmt.Sprintf("%s/%T", tt.name, s), func(t *testing.T) {
				x, y := make([]float32, tt.nx), make([]int64, tt.ny)
				for i := range x {
					x[i] = -7
				}
				for i := range y {
					y[i] = -7
				}
				checkErr(t, s.Batch(tt.idx, x, y), tt.want)
				if slices.ContainsFunc(x, func(v float32) bool { return v != -7 }) ||
					slices.ContainsFunc(y, func(v int64) bool { return v != -7 }) {
					t.Errorf("Batch wrote into x or y although it failed")
				}
			})
		}
	}
	// Longer buffers than needed are fine, and only their prefix changes.
	x, y := make([]float32, 30), make([]int64, 3)
	x[29], y[2] = -7, -7
	if err := v.Batch([]int{4, 0}, x, y); err != nil {
		t.Fatal(err)
	}
	if x[29] != -7 || y[2] != -7 || y[0] != int64(mnistLabel(104)) || y[1] != int64(mnistLabel(100)) {
		t.Errorf("x[29], y = %v, %v", x[29], y)
	}
}

// TestShapeIsACopy checks that callers cannot change a Source's shape.
func TestShapeIsACopy(t *testing.T) {
	s, err := Open("mnist:testdata/mnist", Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Shape()[0] = 99
	if got := s.Shape(); !slices.Equal(got, []int{1, 4, 3}) {
		t.Errorf("Shape = %v after changing a returned copy", got)
	}
}

// gomnistData returns the data folder of the GoMNIST module, which holds the real MNIST files.
func gomnistData(t testing.TB) string {
	dir, err := ModuleMNIST()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRealMNIST(t *testing.T) {
	dir := gomnistData(t)
	test, err := Open("mnist:"+dir, Options{Split: SplitTest})
	if err != nil {
		t.Fatal(err)
	}
	if test.Len() != 10000 || !slices.Equal(test.Shape(), []int{1, 28, 28}) {
		t.Fatalf("test Len, Shape = %d, %v, want 10000, [1 28 28]", test.Len(), test.Shape())
	}
	x, y := readAll(t, test)
	counts := make([]int, 10)
	for _, l := range y {
		counts[l]++
	}
	if want := []int{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}; !slices.Equal(counts, want) {
		t.Errorf("test label counts = %v, want %v", counts, want)
	}
	if y[0] != 7 {
		t.Errorf("first test label = %d, want 7", y[0])
	}
	for _, v := range x {
		if v < 0 || v > 1 {
			t.Fatalf("value %v outside [0,1]", v)
		}
	}
	if testing.Short() {
		t.Skip("skipping the training set in short mode")
	}
	train, err := Open("mnist:"+dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	val, err := Open("mnist:"+dir, Options{Split: SplitVal})
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != 54000 || val.Len() != 6000 {
		t.Errorf("train, val Len = %d, %d, want 54000, 6000", train.Len(), val.Len())
	}
	yb := make([]int64, 1)
	if err := train.Batch([]int{0}, make([]float32, 784), yb); err != nil || yb[0] != 5 {
		t.Errorf("first training label = %d (%v), want 5", yb[0], err)
	}
}

func BenchmarkBatch(b *testing.B) {
	dir := b.TempDir()
	writeMNIST(b, dir, "train", "-", 0, 1000, 28, 28, false)
	idx := Shuffle(900, 1, 0)[:128]
	x, y := make([]float32, 128*784), make([]int64, 128)
	for _, bench := range []struct {
		name string
		opt  Options
	}{
		{"MNIST-128", Options{}},
		{"MNIST-128-normalized", Options{Mean: []float32{0.1307}, Std: []float32{0.3081}}},
	} {
		b.Run(bench.name, func(b *testing.B) {
			s, err := Open("mnist:"+dir, bench.opt)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(128 * 784)
			for b.Loop() {
				if err := s.Batch(idx, x, y); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
