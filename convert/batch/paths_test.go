package batch

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkParseManifest parses a manifest of 10,000 transfers sharing their defaults, the
// shape of a large sweep.
func BenchmarkParseManifest(b *testing.B) {
	var text strings.Builder
	text.WriteString("defaults: {trajectory: runs/seed1, data: 'mnist:data/mnist', method: fgmt, save: 'best,final'}\njobs:\n")
	for i := range 10_000 {
		fmt.Fprintf(&text, "  - {init: inits/seed%d.onnx, out: out/seed%d, seed: %d}\n", i, i, i)
	}
	path := filepath.Join(b.TempDir(), "sweep.yaml")
	data := []byte(text.String())
	for b.Loop() {
		if _, err := ParseManifest(path, data); err != nil {
			b.Fatal(err)
		}
	}
}
