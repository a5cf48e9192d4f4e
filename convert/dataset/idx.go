package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ltransfer/ltransfer/params"
)

// loadMNIST reads the MNIST training set in dir, or its test set if test.
// It accepts the names train-images-idx3-ubyte and train-images.idx3-ubyte,
// each optionally ending in .gz (and likewise for the labels and the t10k
// test files); gzip compression is recognised by content, not by name.
func loadMNIST(dir string, test bool) (*memSource, error) {
	prefix := "train"
	if test {
		prefix = "t10k"
	}
	imgPath, imgData, err := readMNISTFile(dir, prefix+"-images", "idx3-ubyte")
	if err != nil {
		return nil, err
	}
	dims, pixels, err := parseIDX(imgPath, imgData, 3)
	if err != nil {
		return nil, err
	}
	labPath, labData, err := readMNISTFile(dir, prefix+"-labels", "idx1-ubyte")
	if err != nil {
		return nil, err
	}
	ldims, lab, err := parseIDX(labPath, labData, 1)
	if err != nil {
		return nil, err
	}
	if dims[0] != ldims[0] {
		return nil, fmt.Errorf("dataset: %s holds %d images but %s holds %d labels", imgPath, dims[0], labPath, ldims[0])
	}
	labels := make([]int64, len(lab))
	for i, b := range lab {
		labels[i] = int64(b)
	}
	return newMemSource(imgPath, []int{1, dims[1], dims[2]}, pixels, nil, labels)
}

// readMNISTFile reads the first of stem-suffix, stem.suffix, stem-suffix.gz
// and stem.suffix.gz found in dir.
func readMNISTFile(dir, stem, suffix string) (string, []byte, error) {
	for _, ext := range []string{"", ".gz"} {
		for _, sep := range []string{"-", "."} {
			path := filepath.Join(dir, stem+sep+suffix+ext)
			data, err := os.ReadFile(path)
			if err == nil {
				return path, data, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", nil, fmt.Errorf("dataset: %w", err)
			}
		}
	}
	return "", nil, fmt.Errorf("dataset: mnist: no %s-%s[.gz] in %s: %w", stem, suffix, dir, fs.ErrNotExist)
}

// idxUnsignedByte is the IDX type code of unsigned bytes.
const idxUnsignedByte = 0x08

// parseIDX decodes data, the content of the IDX file name holding unsigned
// bytes in ndims dimensions, gzip-compressed or not. It returns the
// dimensions and the payload, which has exactly their product of bytes.
func parseIDX(name string, data []byte, ndims int) ([]int, []byte, error) {
	var r io.Reader = bytes.NewReader(data)
	compressed := isGzip(data)
	if compressed {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("dataset: %s: gzip: %w", name, err)
		}
		r = zr
	}
	header := make([]byte, 4+4*ndims)
	if n, err := io.ReadFull(r, header); err != nil {
		return nil, nil, fmt.Errorf("dataset: %s: IDX header of %d bytes truncated at %d: %w", name, len(header), n, err)
	}
	want := uint32(idxUnsignedByte<<8 | ndims)
	if magic := binary.BigEndian.Uint32(header); magic != want {
		return nil, nil, fmt.Errorf("dataset: %s: bad magic 0x%08x, want 0x%08x (IDX unsigned byte, %d dims)", name, magic, want, ndims)
	}
	dims := make([]int, ndims)
	for i := range dims {
		dims[i] = int(binary.BigEndian.Uint32(header[4+4*i:]))
	}
	size, ok := params.Volume(dims, maxValues)
	if !ok {
		return nil, nil, fmt.Errorf("dataset: %s: IDX dimensions %s are too large", name, dimString(dims))
	}
	payload := data[len(header):]
	if compressed {
		var err error
		if payload, err = readUpTo(r, size+1); err != nil {
			return nil, nil, fmt.Errorf("dataset: %s: gzip: %w", name, err)
		}
	}
	if len(payload) != size {
		return nil, nil, fmt.Errorf("dataset: %s: IDX dimensions %s declare %d data bytes, file has %d", name, dimString(dims), size, len(payload))
	}
	return dims, payload, nil
}

// isGzip reports whether data starts with the gzip magic number.
func isGzip(data []byte) bool {
	return len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
}

// readUpTo reads r to its end or to n bytes, whichever comes first. Memory
// grows with the bytes actually read, whatever n is.
func readUpTo(r io.Reader, n int) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, int64(n)))
}

// dimString formats dims as 60000x28x28.
func dimString(dims []int) string {
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = fmt.Sprint(d)
	}
	return strings.Join(s, "x")
}
