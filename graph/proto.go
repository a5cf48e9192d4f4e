package graph

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
)

// ErrFormat is wrapped by every error about a file that is not a well-formed ONNX model.
var ErrFormat = errors.New("not a valid ONNX model")

// maxTensorElements bounds the element count a tensor may declare (2^40), far beyond any real
// model; it keeps size arithmetic from overflowing on hostile files.
const maxTensorElements = int64(1) << 40

// elemSize is the byte size of one element of the ONNX data types with a fixed-width raw encoding.
var elemSize = map[onnxpb.TensorProto_DataType]int64{
	onnxpb.TensorProto_FLOAT: 4, onnxpb.TensorProto_UINT8: 1, onnxpb.TensorProto_INT8: 1,
	onnxpb.TensorProto_UINT16: 2, onnxpb.TensorProto_INT16: 2, onnxpb.TensorProto_INT32: 4,
	onnxpb.TensorProto_INT64: 8, onnxpb.TensorProto_BOOL: 1, onnxpb.TensorProto_FLOAT16: 2,
	onnxpb.TensorProto_DOUBLE: 8, onnxpb.TensorProto_UINT32: 4, onnxpb.TensorProto_UINT64: 8,
	onnxpb.TensorProto_COMPLEX64: 8, onnxpb.TensorProto_COMPLEX128: 16, onnxpb.TensorProto_BFLOAT16: 2,
}

// decodeProto parses an ONNX model of size bytes from r (see readModel) and checks the parts that the rest of the package relies on:
// a graph with nodes and outputs, and initializers whose declared size matches their data.
// Initializers stored as external data are read from dir and inlined into the returned message;
// the returned locations remember where each came from so that Save can write them back the
// same way.
func decodeProto(r *bufio.Reader, size int64, dir string) (*onnxpb.ModelProto, map[string]externalRef, error) {
	if size == 0 {
		return nil, nil, fmt.Errorf("empty file: %w", ErrFormat)
	}
	m, err := readModel(r, size)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: protobuf: %v", ErrFormat, err)
	}
	g := m.GetGraph()
	if g == nil || len(g.GetNode()) == 0 {
		return nil, nil, fmt.Errorf("%w: no graph or no nodes (is this an ONNX model file?)", ErrFormat)
	}
	if len(g.GetOutput()) == 0 {
		return nil, nil, fmt.Errorf("%w: graph has no outputs", ErrFormat)
	}
	external := map[string]externalRef{}
	names := map[string]bool{}
	for i, t := range g.GetInitializer() {
		if t.GetName() == "" {
			return nil, nil, fmt.Errorf("%w: initializer %d has no name", ErrFormat, i)
		}
		if names[t.GetName()] {
			return nil, nil, fmt.Errorf("%w: two initializers are named %q", ErrFormat, t.GetName())
		}
		names[t.GetName()] = true
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			ref, err := inlineExternal(t, dir)
			if err != nil {
				return nil, nil, fmt.Errorf("initializer %q: %w", t.GetName(), err)
			}
			external[t.GetName()] = ref
		}
		if err := checkTensor(t); err != nil {
			return nil, nil, fmt.Errorf("initializer %q: %w", t.GetName(), err)
		}
	}
	for _, n := range g.GetNode() {
		for _, out := range n.GetOutput() {
			if out != "" && names[out] {
				return nil, nil, fmt.Errorf("%w: node %q writes %q, which an initializer or another node already defines", ErrFormat, n.GetName(), out)
			}
			names[out] = true
		}
	}
	return m, external, nil
}

// elementCount returns the number of elements that dims declare, refusing negative or absurd sizes.
func elementCount(dims []int64) (int64, error) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("%w: negative dimension in %v", ErrFormat, dims)
		}
		if d != 0 && n > maxTensorElements/d {
			return 0, fmt.Errorf("%w: dimensions %v declare more than 2^40 elements", ErrFormat, dims)
		}
		n *= d
	}
	return n, nil
}

// checkTensor verifies that a tensor's data holds exactly the number of elements its dims declare.
func checkTensor(t *onnxpb.TensorProto) error {
	n, err := elementCount(t.GetDims())
	if err != nil {
		return err
	}
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	if t.GetSegment() != nil {
		return fmt.Errorf("%w: segmented tensors are not supported", ErrFormat)
	}
	if t.RawData != nil {
		size, ok := elemSize[dt]
		if !ok {
			return fmt.Errorf("%w: raw data of type %v", ErrFormat, dt)
		}
		if int64(len(t.RawData)) != n*size {
			return fmt.Errorf("%w: raw data has %d bytes, dims %v of %v need %d", ErrFormat, len(t.RawData), t.GetDims(), dt, n*size)
		}
		return nil
	}
	var have int64
	switch dt {
	case onnxpb.TensorProto_FLOAT:
		have = int64(len(t.FloatData))
	case onnxpb.TensorProto_DOUBLE:
		have = int64(len(t.DoubleData))
	case onnxpb.TensorProto_INT64:
		have = int64(len(t.Int64Data))
	case onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT64:
		have = int64(len(t.Uint64Data))
	case onnxpb.TensorProto_STRING:
		have = int64(len(t.StringData))
	case onnxpb.TensorProto_COMPLEX64:
		have = int64(len(t.FloatData)) / 2
	case onnxpb.TensorProto_COMPLEX128:
		have = int64(len(t.DoubleData)) / 2
	case onnxpb.TensorProto_UNDEFINED:
		return fmt.Errorf("%w: undefined data type", ErrFormat)
	default:
		have = int64(len(t.Int32Data))
	}
	if have != n {
		return fmt.Errorf("%w: holds %d values, dims %v declare %d", ErrFormat, have, t.GetDims(), n)
	}
	return nil
}

// externalRef records where an initializer's bytes were stored outside the model file.
type externalRef struct {
	Location string
	Offset   int64
	Length   int64
}

// inlineExternal reads the external bytes of t (ONNX external data convention: keys location,
// offset, length, relative to the model's folder) into t.RawData and marks the tensor as default
// located.
func inlineExternal(t *onnxpb.TensorProto, dir string) (externalRef, error) {
	var ref externalRef
	ref.Length = -1
	for _, kv := range t.GetExternalData() {
		switch kv.GetKey() {
		case "location":
			ref.Location = kv.GetValue()
		case "offset", "length":
			v, err := strconv.ParseInt(kv.GetValue(), 10, 64)
			if err != nil || v < 0 {
				return ref, fmt.Errorf("%w: external data %s %q is not a non-negative integer", ErrFormat, kv.GetKey(), kv.GetValue())
			}
			if kv.GetKey() == "offset" {
				ref.Offset = v
			} else {
				ref.Length = v
			}
		}
	}
	if ref.Location == "" {
		return ref, fmt.Errorf("%w: external data without a location", ErrFormat)
	}
	if filepath.IsAbs(ref.Location) || strings.HasPrefix(filepath.Clean(ref.Location), "..") {
		return ref, fmt.Errorf("%w: external data location %q leaves the model's folder", ErrFormat, ref.Location)
	}
	path := filepath.Join(dir, ref.Location)
	f, err := os.Open(path)
	if err != nil {
		return ref, fmt.Errorf("external data: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ref, fmt.Errorf("external data: %w", err)
	}
	if ref.Length < 0 {
		ref.Length = st.Size() - ref.Offset
	}
	if ref.Offset+ref.Length > st.Size() || ref.Length < 0 {
		return ref, fmt.Errorf("%w: external data %s: offset %d + length %d exceeds its size %d", ErrFormat, path, ref.Offset, ref.Length, st.Size())
	}
	n, err := elementCount(t.GetDims())
	if err != nil {
		return ref, err
	}
	size, ok := elemSize[onnxpb.TensorProto_DataType(t.GetDataType())]
	if !ok || n*size != ref.Length {
		return ref, fmt.Errorf("%w: external data length %d does not match dims %v of type %v", ErrFormat, ref.Length, t.GetDims(), onnxpb.TensorProto_DataType(t.GetDataType()))
	}
	buf := make([]byte, ref.Length)
	if _, err := f.ReadAt(buf, ref.Offset); err != nil && !(errors.Is(err, io.EOF) && ref.Length == 0) {
		return ref, fmt.Errorf("external data %s: %w", path, err)
	}
	t.RawData = buf
	t.ExternalData = nil
	t.DataLocation = nil
	return ref, nil
}

// floatsOf decodes the float32 elements of a checked FLOAT tensor.
func floatsOf(t *onnxpb.TensorProto) []float32 {
	if t.RawData == nil {
		return append([]float32(nil), t.FloatData...)
	}
	out := make([]float32, len(t.RawData)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.RawData[4*i:]))
	}
	return out
}

// doublesOf decodes the float64 elements of a checked DOUBLE tensor.
func doublesOf(t *onnxpb.TensorProto) []float64 {
	if t.RawData == nil {
		return append([]float64(nil), t.DoubleData...)
	}
	out := make([]float64, len(t.RawData)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.RawData[8*i:]))
	}
	return out
}

// floatsInPlace returns the float32 elements of a checked FLOAT tensor, reading its raw bytes in
// place when the machine is little-endian and the bytes are 4-byte aligned (the caller then
// releases RawData, so the values are held once), and decoding a copy otherwise.
func floatsInPlace(t *onnxpb.TensorProto) []float32 {
	raw := t.RawData
	if len(raw) == 0 || !littleEndian || uintptr(unsafe.Pointer(&raw[0]))%4 != 0 {
		return floatsOf(t)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&raw[0])), len(raw)/4)
}

// setRaw is setFloats for a message that is encoded at once: on a little-endian machine a tensor
// stored as raw bytes views v's memory instead of a copy of it.
func setRaw(t *onnxpb.TensorProto, v []float32) {
	if !littleEndian || len(v) == 0 || t.FloatData != nil && t.RawData == nil {
		setFloats(t, v)
		return
	}
	t.RawData = unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// littleEndian reports whether the machine stores numbers little-endian, as ONNX raw data does.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// int64sOf decodes the elements of a checked integer tensor (INT64, INT32, INT16, INT8, UINT8,
// UINT16, BOOL) as int64.
func int64sOf(t *onnxpb.TensorProto) ([]int64, error) {
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	if t.RawData == nil {
		switch dt {
		case onnxpb.TensorProto_INT64:
			return append([]int64(nil), t.Int64Data...), nil
		case onnxpb.TensorProto_INT32, onnxpb.TensorProto_INT16, onnxpb.TensorProto_INT8,
			onnxpb.TensorProto_UINT8, onnxpb.TensorProto_UINT16, onnxpb.TensorProto_BOOL:
			out := make([]int64, len(t.Int32Data))
			for i, v := range t.Int32Data {
				out[i] = int64(v)
			}
			return out, nil
		}
		return nil, fmt.Errorf("type %v is not an integer type", dt)
	}
	raw := t.RawData
	var out []int64
	switch dt {
	case onnxpb.TensorProto_INT64:
		out = make([]int64, len(raw)/8)
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	case onnxpb.TensorProto_INT32:
		out = make([]int64, len(raw)/4)
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
		}
	case onnxpb.TensorProto_INT16:
		out = make([]int64, len(raw)/2)
		for i := range out {
			out[i] = int64(int16(binary.LittleEndian.Uint16(raw[2*i:])))
		}
	case onnxpb.TensorProto_UINT16:
		out = make([]int64, len(raw)/2)
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case onnxpb.TensorProto_INT8:
		out = make([]int64, len(raw))
		for i, b := range raw {
			out[i] = int64(int8(b))
		}
	case onnxpb.TensorProto_UINT8, onnxpb.TensorProto_BOOL:
		out = make([]int64, len(raw))
		for i, b := range raw {
			out[i] = int64(b)
		}
	default:
		return nil, fmt.Errorf("type %v is not an integer type", dt)
	}
	return out, nil
}

// setFloats replaces the data of a FLOAT tensor, keeping its encoding (raw bytes or float_data).
func setFloats(t *onnxpb.TensorProto, v []float32) {
	if t.FloatData != nil && t.RawData == nil {
		t.FloatData = append(t.FloatData[:0:0], v...)
		return
	}
	raw := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	t.RawData = raw
}
