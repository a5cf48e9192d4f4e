package dataset

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// CIFAR-10 binary record layout: one label byte, then a 32x32 image as three
// channel planes (red, green, blue) of row-major bytes.
const (
	cifarImage   = 3 * 32 * 32
	cifarRecord  = 1 + cifarImage
	cifarClasses = 10
)

// loadCIFAR reads the CIFAR-10 training batches data_batch_1.bin …
// data_batch_5.bin in dir, or test_batch.bin if test. When dir holds the
// cifar-10-batches-bin folder of the official archive, the files are read
// from there.
func loadCIFAR(dir string, test bool) (*memSource, error) {
	if fi, err := os.Stat(filepath.Join(dir, "cifar-10-batches-bin")); err == nil && fi.IsDir() {
		dir = filepath.Join(dir, "cifar-10-batches-bin")
	}
	names := []string{"test_batch.bin"}
	if !test {
		names = []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"}
	}
	var images []byte
	var labels []int64
	for _, name := range names {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("dataset: cifar10: %w", err)
		}
		if images, labels, err = appendCIFAR(path, data, images, labels); err != nil {
			return nil, err
		}
	}
	return newMemSource(filepath.Join(dir, names[0]), []int{3, 32, 32}, images, nil, labels)
}

// appendCIFAR decodes data, the content of the CIFAR-10 batch file name, and
// appends its images to images and its labels to labels.
func appendCIFAR(name string, data []byte, images []byte, labels []int64) ([]byte, []int64, error) {
	if len(data) == 0 || len(data)%cifarRecord != 0 {
		return nil, nil, fmt.Errorf("dataset: %s: size %d is not a positive multiple of the %d-byte CIFAR-10 record (1 label byte, %d image bytes)",
			name, len(data), cifarRecord, cifarImage)
	}
	n := len(data) / cifarRecord
	images, labels = slices.Grow(images, n*cifarImage), slices.Grow(labels, n)
	for i := 0; i < len(data); i += cifarRecord {
		if l := data[i]; l >= cifarClasses {
			return nil, nil, fmt.Errorf("dataset: %s: record %d has label %d, want 0 to %d", name, i/cifarRecord, l, cifarClasses-1)
		}
		labels = append(labels, int64(data[i]))
		images = append(images, data[i+1:i+cifarRecord]...)
	}
	return images, labels, nil
}
