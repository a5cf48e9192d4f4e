package graph

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
)

// Field numbers of onnx.proto that readModel streams.
const (
	fieldModelGraph       protowire.Number = 7 // ModelProto.graph
	fieldGraphInitializer protowire.Number = 5 // GraphProto.initializer
	fieldTensorRawData    protowire.Number = 9 // TensorProto.raw_data
)

// readModel parses an encoded ModelProto of size bytes from r without holding the encoding
// whole: the raw bytes of every initializer are read from r straight into the buffer the
// decoded tensor keeps, and only the rest of the message (nodes, names, shapes, small tensors)
// is buffered and handed to the protobuf decoder. A model's parameters are then in memory once
// while it is parsed, not twice (file bytes and decoded copy). The result is the message
// proto.Unmarshal would give: fields split off are merged back as protobuf merges repeated
// occurrences (the last raw_data of a tensor wins, initializers keep their order).
func readModel(r *bufio.Reader, size int64) (*onnxpb.ModelProto, error) {
	var graphRest []byte
	var inits []*onnxpb.TensorProto
	hasGraph := false
	readTensor := func(r *bufio.Reader, n int64) error {
		var raw []byte
		rest, err := scan(r, n, nil, map[protowire.Number]func(*bufio.Reader, int64) error{
			fieldTensorRawData: func(r *bufio.Reader, n int64) error {
				raw = make([]byte, n)
				_, err := io.ReadFull(r, raw)
				return err
			},
		})
		if err != nil {
			return err
		}
		t := &onnxpb.TensorProto{}
		if err := proto.Unmarshal(rest, t); err != nil {
			return err
		}
		if raw != nil {
			t.RawData = raw
		}
		inits = append(inits, t)
		return nil
	}
	readGraph := func(r *bufio.Reader, n int64) error {
		hasGraph = true
		var err error
		graphRest, err = scan(r, n, graphRest, map[protowire.Number]func(*bufio.Reader, int64) error{fieldGraphInitializer: readTensor})
		return err
	}
	rest, err := scan(r, size, nil, map[protowire.Number]func(*bufio.Reader, int64) error{fieldModelGraph: readGraph})
	if err != nil {
		return nil, err
	}
	m := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(rest, m); err != nil {
		return nil, err
	}
	if hasGraph {
		m.Graph = &onnxpb.GraphProto{}
		if err := proto.Unmarshal(graphRest, m.Graph); err != nil {
			return nil, err
		}
		m.Graph.Initializer = inits
	}
	return m, nil
}

// errTruncated is the error of a message whose fields do not end where its length says.
var errTruncated = errors.New("truncated or overlong field")

// scan reads the fields of one encoded message of n bytes from r. A length-delimited field with a
// handler in take is given to it, with r positioned at its first byte and its length, and must
// consume exactly that many bytes; every other field is appended to rest as it was encoded.
func scan(r *bufio.Reader, n int64, rest []byte, take map[protowire.Number]func(*bufio.Reader, int64) error) ([]byte, error) {
	varint := func() (uint64, error) {
		var v uint64
		for shift := 0; shift < 64; shift += 7 {
			b, err := r.ReadByte()
			if err != nil {
				return 0, err
			}
			n--
			v |= uint64(b&0x7f) << shift
			if b < 0x80 {
				return v, nil
			}
		}
		return 0, errors.New("varint overflows 64 bits")
	}
	for n > 0 {
		tag, err := varint()
		if err != nil {
			return nil, err
		}
		num, typ := protowire.DecodeTag(tag)
		if !num.IsValid() {
			return nil, fmt.Errorf("invalid field number %d", num)
		}
		var length int64
		switch typ {
		case protowire.VarintType:
			v, err := varint()
			if err != nil {
				return nil, err
			}
			rest = protowire.AppendVarint(protowire.AppendTag(rest, num, typ), v)
			continue
		case protowire.Fixed32Type:
			length = 4
		case protowire.Fixed64Type:
			length = 8
		case protowire.BytesType:
			l, err := varint()
			if err != nil {
				return nil, err
			}
			if l > uint64(n) {
				return nil, errTruncated
			}
			length = int64(l)
			if h := take[num]; h != nil {
				if err := h(r, length); err != nil {
					return nil, err
				}
				n -= length
				continue
			}
			rest = protowire.AppendVarint(protowire.AppendTag(rest, num, typ), l)
		default:
			return nil, fmt.Errorf("field %d has wire type %d, which ONNX does not use", num, typ)
		}
		if length > n {
			return nil, errTruncated
		}
		if typ != protowire.BytesType {
			rest = protowire.AppendTag(rest, num, typ)
		}
		start := len(rest)
		rest = slices.Grow(rest, int(length))[:start+int(length)]
		if _, err := io.ReadFull(r, rest[start:]); err != nil {
			return nil, err
		}
		n -= length
	}
	if n < 0 {
		return nil, errTruncated
	}
	return rest, nil
}

// encodeTo writes pb to w byte for byte as marshal encodes it, without holding the encoding
// in memory: the raw bytes of every initializer are written from the tensor's own buffer (which
// views the parameters, see withParams), and only the rest of the message is encoded. Saving a
// model then needs no memory in proportion to its parameters.
func encodeTo(w io.Writer, pb *onnxpb.ModelProto) error {
	g := pb.Graph
	pb.Graph = nil
	head, err := marshalMessage(pb)
	pb.Graph = g
	if err != nil || g == nil {
		if err == nil {
			_, err = w.Write(head)
		}
		return err
	}
	inits := g.Initializer
	g.Initializer = nil
	body, err := marshalMessage(g)
	g.Initializer = inits
	if err != nil {
		return err
	}
	tensors := make([][]byte, len(inits))
	graphLen := len(body)
	for i, t := range inits {
		raw := t.RawData
		t.RawData = nil
		tensors[i], err = marshalMessage(t)
		t.RawData = raw
		if err != nil {
			return err
		}
		graphLen += protowire.SizeTag(fieldGraphInitializer) + protowire.SizeBytes(tensorLen(tensors[i], raw))
	}
	var buf []byte
	put := func(b []byte) error {
		_, err := w.Write(b)
		return err
	}
	headLo, headHi := splitFields(pb, head, fieldModelGraph)
	bodyLo, bodyHi := splitFields(g, body, fieldGraphInitializer)
	buf = protowire.AppendVarint(protowire.AppendTag(append(buf, headLo...), fieldModelGraph, protowire.BytesType), uint64(graphLen))
	buf = append(buf, bodyLo...)
	for i, t := range inits {
		lo, hi := splitFields(t, tensors[i], fieldTensorRawData)
		buf = protowire.AppendTag(buf, fieldGraphInitializer, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(tensorLen(tensors[i], t.RawData)))
		buf = append(buf, lo...)
		if t.RawData != nil {
			buf = protowire.AppendVarint(protowire.AppendTag(buf, fieldTensorRawData, protowire.BytesType), uint64(len(t.RawData)))
			if err := put(buf); err != nil {
				return err
			}
			if err := put(t.RawData); err != nil {
				return err
			}
			buf = buf[:0]
		}
		buf = append(buf, hi...)
	}
	buf = append(append(buf, bodyHi...), headHi...)
	return put(buf)
}

// tensorLen is the encoded size of a tensor whose other fields encode as rest.
func tensorLen(rest, raw []byte) int {
	if raw == nil {
		return len(rest)
	}
	return len(rest) + protowire.SizeTag(fieldTensorRawData) + protowire.SizeBytes(len(raw))
}

// marshalMessage encodes m as marshal does.
func marshalMessage(m proto.Message) ([]byte, error) {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("graph: encoding: %w", err)
	}
	return data, nil
}

// splitFields splits the encoding of m, as the protobuf library writes it (known fields in
// number order, then unknown ones), where a field numbered num would go: before the first field
// with a higher number or unknown to m's type.
func splitFields(m proto.Message, b []byte, num protowire.Number) (lo, hi []byte) {
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := 0; i < len(b); {
		n, typ, k := protowire.ConsumeTag(b[i:])
		if k < 0 {
			break // the library's own encoding: cannot happen
		}
		if n > num || fields.ByNumber(n) == nil {
			return b[:i], b[i:]
		}
		v := protowire.ConsumeFieldValue(n, typ, b[i+k:])
		if v < 0 {
			break
		}
		i += k + v
	}
	return b, nil
}
