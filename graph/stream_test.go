package graph

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
	"github.com/ltransfer/ltransfer/params"
)

// testdataModels lists the ONNX files of the repository's testdata (PyTorch exports), at least 20.
func testdataModels(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(testdataPath("*", "*.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	deeper, _ := filepath.Glob(testdataPath("*", "*", "*.onnx"))
	files = append(files, deeper...)
	if len(files) < 20 {
		t.Fatalf("only %d ONNX files in testdata", len(files))
	}
	return files
}

// TestReadModelMatchesUnmarshal checks the streaming parser against the protobuf library's on
// every ONNX file of the repository's testdata, and on messages whose fields repeat and come in
// any order, as protobuf allows: a graph given in two parts, a tensor with two raw_data fields.
func TestReadModelMatchesUnmarshal(t *testing.T) {
	var inputs [][]byte
	for _, path := range testdataModels(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, data)
	}
	part := func(g *onnxpb.GraphProto) []byte {
		b, err := proto.Marshal(&onnxpb.ModelProto{Graph: g})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	raw := func(v byte) *onnxpb.TensorProto {
		return &onnxpb.TensorProto{Name: proto.String("w"), Dims: []int64{2}, DataType: proto.Int32(1), RawData: []byte{v, v, v, v, v, v, v, v}}
	}
	first := part(&onnxpb.GraphProto{Name: proto.String("a"), Initializer: []*onnxpb.TensorProto{raw(1)}, Node: []*onnxpb.NodeProto{{OpType: proto.String("Relu")}}})
	second := part(&onnxpb.GraphProto{Name: proto.String("b"), Initializer: []*onnxpb.TensorProto{raw(2), raw(3)}})
	tensor, err := proto.Marshal(raw(4))
	if err != nil {
		t.Fatal(err)
	}
	again, err := proto.Marshal(&onnxpb.TensorProto{RawData: []byte{5, 5, 5, 5}})
	if err != nil {
		t.Fatal(err)
	}
	// One initializer encoded as two tensors' fields one after the other: the last raw_data wins.
	init := protowire.AppendBytes(protowire.AppendTag(nil, fieldGraphInitializer, protowire.BytesType), append(tensor, again...))
	merged := protowire.AppendBytes(protowire.AppendTag(nil, fieldModelGraph, protowire.BytesType), init)
	inputs = append(inputs, append(append(first, second...), merged...))
	for i, data := range inputs {
		want := &onnxpb.ModelProto{}
		if err := proto.Unmarshal(data, want); err != nil {
			t.Fatal(err)
		}
		got, err := readModel(bufio.NewReader(bytes.NewReader(data)), int64(len(data)))
		if err != nil {
			t.Fatalf("input %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("input %d: readModel gives\n%v\nproto.Unmarshal gives\n%v", i, got, want)
		}
	}
	// Truncated messages are refused as the protobuf library refuses them.
	for cut := 1; cut < len(first); cut++ {
		_, err := readModel(bufio.NewReader(bytes.NewReader(first[:cut])), int64(cut))
		if want := proto.Unmarshal(first[:cut], &onnxpb.ModelProto{}); (err == nil) != (want == nil) {
			t.Fatalf("a model cut at %d bytes: readModel says %v, proto.Unmarshal %v", cut, err, want)
		}
	}
}

// TestSaveMatchesEncode checks that Save, which streams the parameters, writes byte for byte what
// the protobuf library encodes (Encode), for every ONNX file of testdata with its parameters
// replaced, and for a model with fields unknown to onnx.proto at every level it streams.
func TestSaveMatchesEncode(t *testing.T) {
	dir := t.TempDir()
	unknown := func(num protowire.Number) []byte { // a string
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), "future")
	}
	var models []*Model
	for _, path := range testdataModels(t) {
		m, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		models = append(models, m)
	}
	pb := proto.Clone(models[0].proto).(*onnxpb.ModelProto)
	for _, init := range pb.Graph.Initializer {
		init.ProtoReflect().SetUnknown(unknown(1000))
	}
	// A number below the initializers' that onnx.proto reserves: encoded last all the same.
	pb.Graph.ProtoReflect().SetUnknown(unknown(3))
	pb.ProtoReflect().SetUnknown(unknown(1000))
	for name := range models[0].released {
		setRaw(pb.Graph.Initializer[slices.IndexFunc(pb.Graph.Initializer, func(t *onnxpb.TensorProto) bool { return t.GetName() == name })], models[0].Params[name].Data)
	}
	data, err := proto.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(data, dir)
	if err != nil {
		t.Fatal(err)
	}
	models = append(models, m)
	for i, m := range models {
		p := map[string]*params.Tensor{}
		for name, v := range m.Params {
			d := slices.Clone(v.Data)
			for k := range d {
				d[k] += 1
			}
			p[name] = &params.Tensor{Shape: v.Shape, Data: d}
		}
		want, err := m.Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "saved.onnx")
		if err := m.Save(path, p); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("model %d (%s): Save wrote %d bytes, Encode gives %d, not the same", i, m.Path, len(got), len(want))
		}
	}
	if !bytes.Contains(mustEncode(t, models[len(models)-1]), []byte("future")) {
		t.Fatal("the unknown fields were not kept")
	}
	// A graph with no known field after its initializers, and an unknown one before them.
	g := &onnxpb.GraphProto{Name: proto.String("g"), Initializer: []*onnxpb.TensorProto{{Name: proto.String("w"), RawData: []byte{1, 2, 3, 4}}}}
	g.ProtoReflect().SetUnknown(unknown(3))
	bare := &onnxpb.ModelProto{Graph: g}
	want, err := marshalMessage(bare)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := encodeTo(&got, bare); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("encodeTo gives %x, the protobuf library %x", got.Bytes(), want)
	}
}

func mustEncode(t *testing.T, m *Model) []byte {
	data, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
