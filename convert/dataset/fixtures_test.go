package dataset

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// update rewrites the Go-generated fixtures in testdata (the npz ones come
// from testdata/gen_numpy.py).
var update = flag.Bool("update", false, "rewrite the fixtures in testdata")

// mnistPixel is pixel j of image i in the MNIST fixtures, and mnistLabel its
// label.
func mnistPixel(i, j int) byte { return byte(i*37 + j*11 + 5) }
func mnistLabel(i int) byte    { return byte((3*i + 1) % 10) }

// cifarPixel is byte j (CHW order) of image i of the CIFAR-10 fixtures, i
// counted across the batch files, and cifarLabel its label.
func cifarPixel(i, j int) byte { return byte(i*7 + j*3) }
func cifarLabel(i int) byte    { return byte((i + 4) % 10) }

// idxFile returns an IDX file of unsigned bytes, gzipped if gz.
func idxFile(t testing.TB, dims []int, payload []byte, gz bool) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, idxUnsignedByte, byte(len(dims))})
	for _, d := range dims {
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(d)))
	}
	b.Write(payload)
	if !gz {
		return b.Bytes()
	}
	return gzipBytes(t, b.Bytes())
}

// gzipBytes compresses data.
func gzipBytes(t testing.TB, data []byte) []byte {
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return z.Bytes()
}

// mnistFiles returns the image and label IDX files of n MNIST-like
// rows×cols images, the first being image first.
func mnistFiles(t testing.TB, first, n, rows, cols int, gz bool) (images, labels []byte) {
	pix := make([]byte, 0, n*rows*cols)
	lab := make([]byte, 0, n)
	for i := first; i < first+n; i++ {
		for j := range rows * cols {
			pix = append(pix, mnistPixel(i, j))
		}
		lab = append(lab, mnistLabel(i))
	}
	return idxFile(t, []int{n, rows, cols}, pix, gz), idxFile(t, []int{n}, lab, gz)
}

// writeMNIST writes the MNIST files of prefix (train or t10k) into dir: n
// images of rows×cols from image first, named with sep before idx and .gz
// when gz.
func writeMNIST(t testing.TB, dir, prefix, sep string, first, n, rows, cols int, gz bool) {
	images, labels := mnistFiles(t, first, n, rows, cols, gz)
	ext := ""
	if gz {
		ext = ".gz"
	}
	writeFile(t, filepath.Join(dir, prefix+"-images"+sep+"idx3-ubyte"+ext), images)
	writeFile(t, filepath.Join(dir, prefix+"-labels"+sep+"idx1-ubyte"+ext), labels)
}

// cifarBatch returns a CIFAR-10 batch file of the n images from image first.
func cifarBatch(first, n int) []byte {
	var b []byte
	for i := first; i < first+n; i++ {
		b = append(b, cifarLabel(i))
		for j := range cifarImage {
			b = append(b, cifarPixel(i, j))
		}
	}
	return b
}

// writeCIFAR writes five training batches of perFile images and a test
// batch of nTest images into dir. The test images follow the training ones.
func writeCIFAR(t testing.TB, dir string, perFile, nTest int) {
	for k := range 5 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("data_batch_%d.bin", k+1)), cifarBatch(k*perFile, perFile))
	}
	writeFile(t, filepath.Join(dir, "test_batch.bin"), cifarBatch(5*perFile, nTest))
}

// npyFile returns a .npy file of format version major.0 with the given
// header dict and data.
func npyFile(major byte, dict string, data []byte) []byte {
	b := []byte(npyMagic)
	b = append(b, major, 0)
	if major == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(dict)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(dict)))
	}
	return append(append(b, dict...), data...)
}

// npyDict returns a .npy header dict.
func npyDict(descr string, shape string) string {
	return fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }\n", descr, shape)
}

// member is one file of a zip archive.
type member struct {
	name string
	data []byte
}

// zipFile returns a zip archive of members, stored uncompressed. When
// noCRC, the members carry no checksum, which lets a fuzzer change their
// content.
func zipFile(t testing.TB, noCRC bool, members ...member) []byte {
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for _, m := range members {
		var f interface{ Write([]byte) (int, error) }
		var err error
		if noCRC {
			f, err = w.CreateRaw(&zip.FileHeader{Name: m.name, Method: zip.Store,
				CompressedSize64: uint64(len(m.data)), UncompressedSize64: uint64(len(m.data))})
		} else {
			f, err = w.Create(m.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(m.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// f32Bytes returns the little-endian bytes of v.
func f32Bytes(v ...float32) []byte {
	var b []byte
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

// i64Bytes returns the little-endian bytes of v.
func i64Bytes(v ...int64) []byte {
	var b []byte
	for _, i := range v {
		b = binary.LittleEndian.AppendUint64(b, uint64(i))
	}
	return b
}

// writeFile writes data to path, creating its folder.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Layout of the committed MNIST and CIFAR-10 fixtures.
const (
	fixtureMNISTTrain, fixtureMNISTTest = 10, 5
	fixtureMNISTTestFirst               = 100
	fixtureMNISTRows, fixtureMNISTCols  = 4, 3
	fixtureCIFARPerFile, fixtureCIFAR   = 2, 3
)

// writeFixtures writes the committed MNIST and CIFAR-10 fixtures: MNIST
// training images gzipped with plain labels, test images (from image
// fixtureMNISTTestFirst) named with a dot and plain with gzipped labels, and
// CIFAR-10 in the folder layout of its archive.
func writeFixtures(t *testing.T) {
	dir := filepath.Join("testdata", "mnist")
	trainImages, _ := mnistFiles(t, 0, fixtureMNISTTrain, fixtureMNISTRows, fixtureMNISTCols, true)
	_, trainLabels := mnistFiles(t, 0, fixtureMNISTTrain, fixtureMNISTRows, fixtureMNISTCols, false)
	testImages, _ := mnistFiles(t, fixtureMNISTTestFirst, fixtureMNISTTest, fixtureMNISTRows, fixtureMNISTCols, false)
	_, testLabels := mnistFiles(t, fixtureMNISTTestFirst, fixtureMNISTTest, fixtureMNISTRows, fixtureMNISTCols, true)
	writeFile(t, filepath.Join(dir, "train-images-idx3-ubyte.gz"), trainImages)
	writeFile(t, filepath.Join(dir, "train-labels-idx1-ubyte"), trainLabels)
	writeFile(t, filepath.Join(dir, "t10k-images.idx3-ubyte"), testImages)
	writeFile(t, filepath.Join(dir, "t10k-labels.idx1-ubyte.gz"), testLabels)
	writeCIFAR(t, filepath.Join("testdata", "cifar10", "cifar-10-batches-bin"), fixtureCIFARPerFile, fixtureCIFAR)
}
