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
