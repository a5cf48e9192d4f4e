package graph

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
	"github.com/ltransfer/ltransfer/params"
)

// tinyMLP builds a 4-3-2 MLP (Gemm, Relu, Gemm) with deterministic weights; op replaces the
// activation.
func tinyMLP(t testing.TB, op string) *Builder {
	t.Helper()
	b := NewBuilder("tiny", 13)
	b.Input("x", []int{-1, 4})
	b.Output("y", []int{-1, 2})
	seq := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * float32(math.Sin(float64(i)+1))
		}
		return v
	}
	b.Initializer("w1", &params.Tensor{Shape: []int{3, 4}, Data: seq(12, 0.5)})
	b.Initializer("b1", &params.Tensor{Shape: []int{3}, Data: seq(3, 0.1)})
	b.Initializer("w2", &params.Tensor{Shape: []int{2, 3}, Data: seq(6, 0.7)})
	b.Initializer("b2", &params.Tensor{Shape: []int{2}, Data: seq(2, 0.2)})
	b.IntInitializer("unused_ints", []int{2}, []int64{7, 9})
	must(t, b.Node("Gemm", "fc1", []string{"x", "w1", "b1"}, []string{"h"}, Attr{"transB", int64(1)}))
	must(t, b.Node(op, "act", []string{"h"}, []string{"a"}))
	must(t, b.Node("Gemm", "fc2", []string{"a", "w2", "b2"}, []string{"y"}, Attr{"transB", int64(1)}))
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeModel(t *testing.T, dir, name string, b *Builder) string {
	t.Helper()
	data, err := b.Encode()
	must(t, err)
	path := filepath.Join(dir, name)
	must(t, os.WriteFile(path, data, 0o644))
	return path
}

func TestLoadErrorsNameFileAndProblem(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(testdataPath("mlp", "seed1", "ckpt_000.onnx"))
	must(t, err)
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"empty.onnx", "empty file", nil},
		{"truncated.onnx", "not a valid ONNX model", good[:len(good)/2]},
		{"text.onnx", "not a valid ONNX model", []byte("this is not a protobuf message at all\n")},
		{"png.onnx", "not a valid ONNX model", []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name)
			must(t, os.WriteFile(path, c.data, 0o644))
			_, err := Load(path)
			if err == nil {
				t.Fatal("loaded a broken file")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q should name %s and say %q", err, path, c.want)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %q does not wrap ErrFormat", err)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing.onnx")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestTensorSizeMismatchIsRefused(t *testing.T) {
	b := tinyMLP(t, "Relu")
	b.pb.Graph.Initializer[0].Dims = []int64{1 << 20, 1 << 20} // declares 2^40 floats, holds 12
	data, err := b.Encode()
	must(t, err)
	checkAlloc(t, len(data), func() { _, err = Decode(data, t.TempDir()) }) // nothing sized by the declaration
	if err == nil || !strings.Contains(err.Error(), `initializer "w1"`) || !errors.Is(err, ErrFormat) {
		t.Fatalf("huge declared tensor: %v", err)
	}
}

func TestUnsupportedOperatorNamesNodeAndOperator(t *testing.T) {
	m, err := tinyMLP(t, "Elu").Model()
	must(t, err) // the model loads (inspect can show it); running it fails
	if s := m.Summarize(align.Spec{}, nil); !slices.Equal(s.Unsupported, []string{"Elu"}) {
		t.Errorf("summary lists unsupported %v", s.Unsupported)
	}
	_, err = NewSession(m, 2)
	opset := fmt.Sprintf("operator Elu (opset %d) is not supported", m.Opset)
	if err == nil || !strings.Contains(err.Error(), `node "act" (Elu)`) || !strings.Contains(err.Error(), opset) || !errors.Is(err, ErrUnsupported) {
		t.Fatalf("error %v should name node act, operator Elu and opset %d", err, m.Opset)
	}
}

func TestNonFloatInitializerIsKeptNotParam(t *testing.T) {
	m, err := tinyMLP(t, "Relu").Model()
	must(t, err)
	if _, ok := m.Params["unused_ints"]; ok {
		t.Error("int64 initializer became a parameter")
	}
	if got := m.Trainable(); !slices.Equal(got, []string{"w1", "b1", "w2", "b2"}) {
		t.Errorf("trainable %v", got)
	}
	data, err := m.Encode(nil)
	must(t, err)
	var pb onnxpb.ModelProto
	must(t, proto.Unmarshal(data, &pb))
	ints, err := int64sOf(pb.Graph.Initializer[4])
	must(t, err)
	if !slices.Equal(ints, []int64{7, 9}) {
		t.Errorf("int64 initializer written back as %v", ints)
	}
}

func TestSaveRoundTrip(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			path := testdataPath(fx.model)
			m, err := Load(path)
			must(t, err)
			dir := t.TempDir()
			// Unchanged parameters: the same protobuf message as the input.
			out := filepath.Join(dir, "same.onnx")
			must(t, m.Save(out, m.Params))
			var in, back onnxpb.ModelProto
			orig, err := os.ReadFile(path)
			must(t, err)
			saved, err := os.ReadFile(out)
			must(t, err)
			must(t, proto.Unmarshal(orig, &in))
			must(t, proto.Unmarshal(saved, &back))
			if !proto.Equal(&in, &back) {
				t.Error("saving unchanged parameters changed the message")
			}
			// Changed parameters come back bit for bit, NaN payloads and signed zeros included.
			changed := params.Set{}
			for name, p := range m.Params {
				d := slices.Clone(p.Data)
				for i := range d {
					d[i] = d[i]*1.5 + float32(i%7)
				}
				d[0] = math.Float32frombits(0x7fc00123)
				changed[name] = &params.Tensor{Shape: p.Shape, Data: d}
			}
			out = filepath.Join(dir, "changed.onnx")
			must(t, m.Save(out, changed))
			m2, err := Load(out)
			must(t, err)
			for name, p := range changed {
				got := m2.Params[name].Data
				for i := range p.Data {
					if math.Float32bits(got[i]) != math.Float32bits(p.Data[i]) {
						t.Fatalf("%s[%d]: saved %x, loaded %x", name, i, math.Float32bits(p.Data[i]), math.Float32bits(got[i]))
					}
				}
			}
			must(t, SameArchitecture(m, m2))
			entries, err := os.ReadDir(dir)
			must(t, err)
			if len(entries) != 2 {
				t.Errorf("the folder holds %d files, want the 2 saved models (no temporary files left)", len(entries))
			}
		})
	}
}

func TestExternalDataIsReadAndWrittenBack(t *testing.T) {
	dir := t.TempDir()
	b := tinyMLP(t, "Relu")
	// Move w1 and b2 to an external file, as onnx.save_model(..., save_as_external_data=True) does.
	var blob []byte
	for _, tp := range b.pb.Graph.Initializer {
		if tp.GetName() != "w1" && tp.GetName() != "b2" {
			continue
		}
		blob = append(blob, make([]byte, 16)...) // some alignment padding before the tensor
		off := len(blob)
		blob = append(blob, tp.RawData...)
		tp.ExternalData = []*onnxpb.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String("weights.bin")},
			{Key: proto.String("offset"), Value: proto.String(strconv.Itoa(off))},
			{Key: proto.String("length"), Value: proto.String(strconv.Itoa(len(tp.RawData)))},
		}
		tp.RawData = nil
		tp.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
	}
	must(t, os.WriteFile(filepath.Join(dir, "weights.bin"), blob, 0o644))
	path := writeModel(t, dir, "ext.onnx", b)
	m, err := Load(path)
	must(t, err)
	ref, err := tinyMLP(t, "Relu").Model()
	must(t, err)
	for name, p := range ref.Params {
		if !slices.Equal(m.Params[name].Data, p.Data) {
			t.Errorf("%s read as %v, want %v", name, m.Params[name].Data, p.Data)
		}
	}
	outDir := t.TempDir()
	out := filepath.Join(outDir, "saved.onnx")
	must(t, m.Save(out, m.Params))
	if _, err := os.Stat(filepath.Join(outDir, "saved.onnx.data")); err != nil {
		t.Fatalf("external data file not written: %v", err)
	}
	var pb onnxpb.ModelProto
	saved, err := os.ReadFile(out)
	must(t, err)
	must(t, proto.Unmarshal(saved, &pb))
	for _, tp := range pb.Graph.Initializer {
		external := tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL
		if want := tp.GetName() == "w1" || tp.GetName() == "b2"; external != want {
			t.Errorf("%s external=%v, want %v", tp.GetName(), external, want)
		}
	}
	back, err := Load(out)
	must(t, err)
	for name, p := range ref.Params {
		if !slices.Equal(back.Params[name].Data, p.Data) {
			t.Errorf("after save, %s = %v, want %v", name, back.Params[name].Data, p.Data)
		}
	}
	// A location outside the model's folder is refused.
	b.pb.Graph.Initializer[0].ExternalData[0].Value = proto.String("../weights.bin")
	if _, err := Load(writeModel(t, dir, "escape.onnx", b)); err == nil || !strings.Contains(err.Error(), "leaves the model's folder") {
		t.Errorf("escaping location: %v", err)
	}
}

func TestSameArchitectureNamesTheDifference(t *testing.T) {
	a, err := Load(testdataPath("mlp", "seed1", "ckpt_000.onnx"))
	must(t, err)
	b, err := Load(testdataPath("mlp", "seed2", "ckpt_005.onnx"))
	must(t, err)
	must(t, SameArchitecture(a, b))
	c, err := Load(testdataPath("linear512", "seed1", "ckpt_000.onnx"))
	must(t, err)
	if err := SameArchitecture(a, c); err == nil {
		t.Error("mlp and linear512 have the same architecture?")
	}
	narrow := tinyMLP(t, "Relu")
	wide := tinyMLP(t, "Relu")
	wide.pb.Graph.Initializer[1].Dims = []int64{1, 3} // b1 reshaped
	ma, err := narrow.Model()
	must(t, err)
	mb, err := wide.Model()
	must(t, err)
	err = SameArchitecture(ma, mb)
	if err == nil || !strings.Contains(err.Error(), `parameter "b1"`) {
		t.Errorf("error %v should name parameter b1", err)
	}
	other := tinyMLP(t, "Tanh")
	mc, err := other.Model()
	must(t, err)
	err = SameArchitecture(ma, mc)
	if err == nil || !strings.Contains(err.Error(), `"act"`) {
		t.Errorf("error %v should name node act", err)
	}
}

func TestInferenceCopyRunsBatchNormInInferenceMode(t *testing.T) {
	m, err := Load(testdataPath("cnn", "seed1", "ckpt_002.onnx"))
	must(t, err)
	c, err := m.InferenceCopy()
	must(t, err)
	for _, n := range c.Nodes {
		if n.Op == "BatchNormalization" && (len(n.Outputs) != 1 || n.attrInt("training_mode", 0) != 0) {
			t.Errorf("node %q still in training mode: outputs %v, attrs %v", n.Name, n.Outputs, n.Attrs)
		}
	}
	must(t, SameArchitecture(m, c))
	ref := loadReference(t, "cnn")
	var logits [2][]float32
	for i, model := range []*Model{m, c} {
		s, err := NewSession(model, len(ref.labels))
		must(t, err)
		logits[i], err = s.Logits(ref.input)
		must(t, err)
	}
	if d := maxAbsDiff(logits[0], logits[1]); d != 0 {
		t.Errorf("the inference copy computes other logits (max diff %g)", d)
	}
	out := filepath.Join(t.TempDir(), "inference.onnx")
	must(t, c.Save(out, m.Params))
	back, err := Load(out)
	must(t, err)
	must(t, SameArchitecture(m, back))
	if mlp, err := Load(testdataPath("mlp", "seed1", "ckpt_000.onnx")); err != nil {
		t.Fatal(err)
	} else if c, err := mlp.InferenceCopy(); err != nil || c != mlp {
		t.Errorf("a model without BatchNorm should come back unchanged: %v", err)
	}
}
