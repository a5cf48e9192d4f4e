package graph

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/ltransfer/ltransfer/params"
)

// FuzzDecode feeds arbitrary bytes to the whole decoding path of an ONNX file: protobuf
// parsing, validation, onnx-go's decoder into our backend and the model's construction, then
// the symmetry analysis, a save and load round trip and one forward and backward pass of small
// models. Decoding must fail with ErrFormat or ErrUnsupported or succeed, never panic or
// allocate in proportion to sizes the file declares; whatever decodes must survive the rest.
// The seed corpus is PyTorch's exports in the repository's testdata, a hand-built MLP and the
// inputs in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, p := range [][]string{
		{"cnn", "seed1", "ckpt_000.onnx"},
		{"cnn-eval", "model.onnx"},
		{"depthwise", "model.onnx"},
		{"resnet", "seed1", "ckpt_000.onnx"},
	} {
		data, err := os.ReadFile(testdataPath(p...))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, op := range []string{"Relu", "Sigmoid", "Tanh"} {
		data, err := tinyMLP(f, op).Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	dir := f.TempDir() // external data may name files; none exist here
	// A mutated padding or shape can ask for tensors that are allowed but slow to compute;
	// fuzzing is about malformed files, so tensors are kept small.
	defer func(limit int) { maxValues = limit }(maxValues)
	maxValues = 1 << 16
	f.Fuzz(func(t *testing.T, data []byte) {
		var m *Model
		var err error
		checkAlloc(t, len(data), func() { m, err = Decode(data, dir) })
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("decoding error %q is neither ErrFormat nor ErrUnsupported", err)
			}
			return
		}
		_, _, _ = Symmetries(m) // may refuse the model, must not panic

		saved, err := m.Encode(m.Params)
		if err != nil {
			t.Fatalf("a decoded model does not encode: %v", err)
		}
		again, err := Decode(saved, dir)
		if err != nil {
			t.Fatalf("a saved model does not decode: %v", err)
		}
		if err := SameArchitecture(m, again); err != nil {
			t.Fatalf("the saved model differs: %v", err)
		}
		if again.ParamCount() != m.ParamCount() {
			t.Fatalf("the saved model has %d parameters, the model %d", again.ParamCount(), m.ParamCount())
		}

		if m.CheckSupported() != nil || m.ParamCount() > 1<<16 || len(m.Input.Shape) == 0 || params.Size(m.Input.Shape[1:]) > 1<<12 {
			return
		}
		s, err := NewSession(m, 2)
		if err != nil {
			return
		}
		x := make([]float32, 2*s.ExampleSize())
		logits, err := s.Logits(x)
		if err != nil || len(logits) == 0 {
			return
		}
		_, _, _ = s.LossAndGrad(x, make([]int64, 2))
	})
}

// checkAlloc runs decode, the decoding of an n-byte input, and fails if it allocated more than
// 64 MiB plus 1000 bytes per input byte: decoding copies the message a few times, so only an
// allocation sized by a declared shape, not by the content, can pass that bound on small inputs.
func checkAlloc(t *testing.T, n int, decode func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	decode()
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(64<<20+1000*n); got > limit {
		t.Fatalf("decoding %d bytes allocated %d bytes, limit %d", n, got, limit)
	}
}
