package graph

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
	"github.com/ltransfer/ltransfer/params"
)

// Builder assembles a new ONNX model from operators and initializers; the models package emits
// the built-in architectures with it. The zero value is not usable: call NewBuilder.
type Builder struct {
	pb *onnxpb.ModelProto
}

// Attr is an operator attribute. Value is an int64, float32, string, []int64 or []float32.
type Attr struct {
	Name  string
	Value any
}

// NewBuilder starts a model with the given graph name and default-domain opset.
func NewBuilder(name string, opset int64) *Builder {
	return &Builder{pb: &onnxpb.ModelProto{
		IrVersion:       proto.Int64(8),
		ProducerName:    proto.String("ltransfer"),
		OpsetImport:     []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph:           &onnxpb.GraphProto{Name: proto.String(name)},
		ProducerVersion: proto.String("1"),
	}}
}

// valueInfo declares a float32 tensor; a negative dimension becomes the symbolic "batch".
func valueInfoProto(name string, shape []int) *onnxpb.ValueInfoProto {
	dims := make([]*onnxpb.TensorShapeProto_Dimension, len(shape))
	for i, d := range shape {
		if d < 0 {
			dims[i] = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}}
		} else {
			dims[i] = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}}
		}
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)),
			Shape:    &onnxpb.TensorShapeProto{Dim: dims},
		}}},
	}
}

// Input declares a float32 graph input; negative dimensions are symbolic (the batch).
func (b *Builder) Input(name string, shape []int) {
	b.pb.Graph.Input = append(b.pb.Graph.Input, valueInfoProto(name, shape))
}

// Output declares a float32 graph output.
func (b *Builder) Output(name string, shape []int) {
	b.pb.Graph.Output = append(b.pb.Graph.Output, valueInfoProto(name, shape))
}

// Initializer adds a float32 initializer, stored as raw little-endian bytes like PyTorch does.
func (b *Builder) Initializer(name string, t *params.Tensor) {
	dims := make([]int64, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = int64(d)
	}
	tp := &onnxpb.TensorProto{Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT))}
	setFloats(tp, t.Data)
	b.pb.Graph.Initializer = append(b.pb.Graph.Initializer, tp)
}

// IntInitializer adds an int64 initializer (shapes, indices).
func (b *Builder) IntInitializer(name string, shape []int, data []int64) {
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	b.pb.Graph.Initializer = append(b.pb.Graph.Initializer, &onnxpb.TensorProto{
		Name: proto.String(name), Dims: dims, DataType: proto.Int32(int32(onnxpb.TensorProto_INT64)), Int64Data: append([]int64{}, data...),
	})
}

// Node adds an operator.
func (b *Builder) Node(op, name string, inputs, outputs []string, attrs ...Attr) error {
	n := &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: inputs, Output: outputs}
	for _, a := range attrs {
		ap := &onnxpb.AttributeProto{Name: proto.String(a.Name)}
		switch v := a.Value.(type) {
		case int64:
			ap.Type, ap.I = onnxpb.AttributeProto_INT.Enum(), proto.Int64(v)
		case float32:
			ap.Type, ap.F = onnxpb.AttributeProto_FLOAT.Enum(), proto.Float32(v)
		case string:
			ap.Type, ap.S = onnxpb.AttributeProto_STRING.Enum(), []byte(v)
		case []int64:
			ap.Type, ap.Ints = onnxpb.AttributeProto_INTS.Enum(), v
		case []float32:
			ap.Type, ap.Floats = onnxpb.AttributeProto_FLOATS.Enum(), v
		default:
			return fmt.Errorf("graph: node %q (%s): attribute %q has unsupported type %T", name, op, a.Name, a.Value)
		}
		n.Attribute = append(n.Attribute, ap)
	}
	b.pb.Graph.Node = append(b.pb.Graph.Node, n)
	return nil
}

// Encode returns the model's ONNX encoding.
func (b *Builder) Encode() ([]byte, error) {
	return marshalMessage(b.pb)
}

// Model encodes the model and decodes it back, as any ONNX file is loaded.
func (b *Builder) Model() (*Model, error) {
	data, err := b.Encode()
	if err != nil {
		return nil, err
	}
	return Decode(data, ".")
}
