package graph

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"testing"

	onnx "github.com/owulveryck/onnx-go"
	"google.golang.org/protobuf/proto"
	"gorgonia.org/tensor"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
)

// TestFeedMatchesOnnxGo checks the backend that feed builds from our one decode against the
// backend onnx-go's own decoder builds from the file's bytes: the same operators in order, the
// same attributes and the same non-float32 initializer values, for every PyTorch export in the
// repository's testdata that onnx-go can decode (it cannot decode BOOL raw data or empty
// tensors, which feed handles).
func TestFeedMatchesOnnxGo(t *testing.T) {
	compared := 0
	for _, path := range testdataModels(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ref := newBackend()
		if err := decodeByOnnxGo(ref, data); err != nil {
			t.Logf("%s: onnx-go cannot decode it: %v", path, err)
			continue
		}
		pb := &onnxpb.ModelProto{}
		if err := proto.Unmarshal(data, pb); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		got := newBackend()
		if err := feed(got, pb.Graph); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(got.ops) != len(ref.ops) {
			t.Fatalf("%s: %d operators, onnx-go has %d", path, len(got.ops), len(ref.ops))
		}
		for i := range ref.ops {
			g, r := got.ops[i], ref.ops[i]
			if g.opType != r.opType || len(g.attrs) != len(r.attrs) {
				t.Fatalf("%s: operator %d is %s %v, onnx-go has %s %v", path, i, g.opType, g.attrs, r.opType, r.attrs)
			}
			for k, rv := range r.attrs {
				if !sameAttr(t, g.attrs[k], rv) {
					t.Errorf("%s: operator %d (%s) attribute %s is %v, onnx-go has %v", path, i, r.opType, k, g.attrs[k], rv)
				}
			}
		}
		have := got.tensors()
		for _, init := range pb.Graph.Initializer {
			if onnxpb.TensorProto_DataType(init.GetDataType()) == onnxpb.TensorProto_FLOAT {
				continue
			}
			if rt, ok := ref.tensors()[init.GetName()]; ok && !sameAttr(t, have[init.GetName()], rt) {
				t.Errorf("%s: initializer %q is %v, onnx-go has %v", path, init.GetName(), have[init.GetName()], rt)
			}
		}
		compared++
	}
	if compared < 20 {
		t.Fatalf("only %d files compared with onnx-go's decoder", compared)
	}
	t.Logf("%d files decoded alike", compared)
}

// decodeByOnnxGo runs onnx-go's decoder, which panics on some malformed tensors.
func decodeByOnnxGo(b *backend, data []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("onnx-go panicked: %v", r)
		}
	}()
	return onnx.NewModel(b).UnmarshalBinary(data)
}

// sameAttr compares attribute values, tensors by shape and values (onnx-go keeps INT32 tensors
// as int32, feed widens every integer type to int64).
func sameAttr(t *testing.T, got, want any) bool {
	wt, ok := want.(tensor.Tensor)
	if !ok {
		return reflect.DeepEqual(got, want)
	}
	gt, ok := got.(tensor.Tensor)
	if !ok {
		return false
	}
	gk, err := konstFromTensor(gt)
	if err != nil {
		t.Fatal(err)
	}
	wk, err := konstFromTensor(wt)
	if err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(gk, wk)
}

// TestTensorsOfEveryShape decodes integer tensors as initializers and Constant values carry
// them, empty ones included (which crashed the engine): the values, in row-major order, and the
// shape, a scalar having none.
func TestTensorsOfEveryShape(t *testing.T) {
	for _, dims := range [][]int64{{0}, {0, 3}, {}, {1}, {2, 3}} {
		n, err := elementCount(dims)
		if err != nil {
			t.Fatal(err)
		}
		tp := &onnxpb.TensorProto{Dims: dims, DataType: proto.Int32(int32(onnxpb.TensorProto_INT64))}
		for i := range n {
			tp.Int64Data = append(tp.Int64Data, 7*i-3)
		}
		if err := checkTensor(tp); err != nil {
			t.Fatal(err)
		}
		dt, err := tensorOf(tp)
		if err != nil {
			t.Fatalf("dims %v: %v", dims, err)
		}
		k, err := konstFromTensor(dt)
		if err != nil {
			t.Fatalf("dims %v: %v", dims, err)
		}
		wantShape := make([]int, len(dims))
		for i, d := range dims {
			wantShape[i] = int(d)
		}
		if !slices.Equal(k.shape, wantShape) || !slices.Equal(k.ints, tp.Int64Data) && len(tp.Int64Data)+len(k.ints) > 0 || len(k.floats) > 0 {
			t.Errorf("dims %v: decoded shape %v ints %v floats %v, want shape %v ints %v", dims, k.shape, k.ints, k.floats, wantShape, tp.Int64Data)
		}
	}
}
