package dataset

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

// checkAlloc runs parse, the parsing of an n-byte input, and fails if it
// allocated more than a fixed 1 MiB plus 10000 bytes per input byte: gzip
// and deflate expand data at most about 1032 times and labels widen bytes
// to int64, so only an allocation sized by a declared count, not by the
// content, can pass that bound on small inputs.
func checkAlloc(t *testing.T, n int, parse func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	parse()
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(1<<20+10000*n); got > limit {
		t.Fatalf("parsing %d bytes allocated %d bytes, limit %d", n, got, limit)
	}
}

// checkFuzzErr fails unless err is nil or a well-formed error of this
// package.
func checkFuzzErr(t *testing.T, err error) {
	t.Helper()
	if err != nil && (!strings.HasPrefix(err.Error(), "dataset: fuzz") || strings.Contains(err.Error(), "dataset: dataset:")) {
		t.Fatalf("error %q lacks the \"dataset: fuzz\" prefix", err)
	}
}

// addFiles adds the files matching pattern in testdata to the seed corpus.
func addFiles(f *testing.F, pattern string) {
	paths, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed files match testdata/%s (%v)", pattern, err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

func FuzzIDX(f *testing.F) {
	addFiles(f, "mnist/*")
	for _, gz := range []bool{false, true} {
		images, labels := mnistFiles(f, 0, 3, 2, 2, gz)
		f.Add(images)
		f.Add(labels)
		f.Add(images[:len(images)-1])
		f.Add(idxFile(f, []int{1 << 30, 28, 28}, make([]byte, 10), gz))
		f.Add(idxFile(f, []int{1 << 31, 1 << 31, 1 << 31}, nil, gz))
		f.Add(idxFile(f, []int{3, 0, 5}, nil, gz))
	}
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ndims := range []int{1, 3} {
			var dims []int
			var payload []byte
			var err error
			checkAlloc(t, len(data), func() { dims, payload, err = parseIDX("fuzz", data, ndims) })
			checkFuzzErr(t, err)
			if err != nil {
				continue
			}
			if n, ok := params.Volume(dims, maxValues); !ok || len(dims) != ndims || n != len(payload) {
				t.Fatalf("dims %v for %d payload bytes", dims, len(payload))
			}
			if !isGzip(data) && len(payload) > len(data) {
				t.Fatalf("payload of %d bytes from %d bytes", len(payload), len(data))
			}
		}
	})
}

func FuzzCIFAR(f *testing.F) {
	addFiles(f, "cifar10/cifar-10-batches-bin/*.bin")
	f.Add(cifarBatch(0, 1))
	f.Add(cifarBatch(0, 2)[:cifarRecord+10])
	f.Add(append([]byte{10}, make([]byte, cifarImage)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var images []byte
		var labels []int64
		var err error
		checkAlloc(t, len(data), func() { images, labels, err = appendCIFAR("fuzz", data, nil, nil) })
		checkFuzzErr(t, err)
		if err != nil {
			return
		}
		if len(labels)*cifarRecord != len(data) || len(images) != len(labels)*cifarImage {
			t.Fatalf("%d labels and %d image bytes from %d bytes", len(labels), len(images), len(data))
		}
		for i, l := range labels {
			if l < 0 || l >= cifarClasses || images[i*cifarImage] != data[i*cifarRecord+1] {
				t.Fatalf("record %d decoded wrong", i)
			}
		}
	})
}

func FuzzNPZ(f *testing.F) {
	addFiles(f, "*.npz")
	x := npyFile(1, npyDict("<f4", "(2, 1, 2)"), f32Bytes(1, 2, 3, 4))
	xu8 := npyFile(2, npyDict("|u1", "(2, 3)"), []byte{0, 1, 2, 253, 254, 255})
	y := npyFile(3, npyDict("<i8", "(2,)"), i64Bytes(0, 1))
	y32 := npyFile(1, npyDict("<i4", "(2, 1)"), []byte{1, 0, 0, 0, 2, 0, 0, 0})
	// Members without checksums let the fuzzer change their content.
	f.Add(zipFile(f, true, member{"x.npy", x}, member{"y.npy", y}))
	f.Add(zipFile(f, true, member{"x.npy", xu8}, member{"y.npy", y32}))
	f.Add(zipFile(f, true, member{"x.npy", npyFile(1, npyDict("<f8", "(1000000, 1000000)"), nil)}, member{"y.npy", y}))
	f.Add(x)
	f.Add(y32)
	f.Add([]byte(npyDict("<f4", "(3L, 4L)")))
	f.Add([]byte("{'descr': '<f4', 'fortran_order': True, 'shape': (), }"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s *memSource
		var err error
		checkAlloc(t, len(data), func() { s, err = parseNPZ("fuzz", data) })
		checkFuzzErr(t, err)
		if err == nil {
			// Whatever parses must batch.
			if err := s.normalize(nil, nil); err != nil {
				t.Fatal(err)
			}
			if err := s.Batch(Shuffle(s.Len(), 0, 0), make([]float32, s.Len()*s.size), make([]int64, s.Len())); err != nil {
				t.Fatal(err)
			}
		}
		// The .npy and header parsers on their own, which a zip archive
		// shields from most mutations.
		for _, allowed := range []dtypes{xDtypes, yDtypes} {
			checkAlloc(t, len(data), func() { _, err = readNPY("fuzz", bytes.NewReader(data), allowed) })
			checkFuzzErr(t, err)
		}
		// A parsed header must survive formatting and parsing again.
		if h, err := parseNPYHeader(string(data)); err == nil {
			if again, err := parseNPYHeader(formatHeader(h)); err != nil || !reflect.DeepEqual(h, again) {
				t.Fatalf("header %q parsed as %+v, then %+v (%v)", data, h, again, err)
			}
		}
	})
}

// formatHeader writes h as NumPy would.
func formatHeader(h npyHeader) string {
	q := "'"
	if strings.Contains(h.descr, q) {
		q = `"`
	}
	fortran := "False"
	if h.fortran {
		fortran = "True"
	}
	var shape strings.Builder
	for _, d := range h.shape {
		fmt.Fprintf(&shape, "%d,", d)
	}
	return fmt.Sprintf("{'descr': %s%s%s, 'fortran_order': %s, 'shape': (%s), }", q, h.descr, q, fortran, shape.String())
}
