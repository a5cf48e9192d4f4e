package graph

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
	"github.com/ltransfer/ltransfer/params"
)

// Encode returns the model's ONNX encoding with the float32 initializers named in ps
// replaced (nil ps: the model as read) (the others keep their values); a name the model
// does not have is an error. Everything else (opset, metadata, names, nodes, the
// other initializers, fields of newer ONNX versions) is written back as it was read. Initializers
// that were stored as external data are inlined; use Save to keep them external.
func (m *Model) Encode(ps params.Set) ([]byte, error) {
	pb, err := m.withParams(ps)
	if err != nil {
		return nil, err
	}
	return marshalMessage(pb)
}

// withParams returns a copy of the model's message with parameter data replaced. The
// initializers whose bytes were released after decoding and that ps does not replace get
// the model's own values back, in the raw little-endian form they were read in. The copy's raw
// data views the parameters' memory where it can (see floatBytes): it is for encoding at once,
// not for keeping.
func (m *Model) withParams(ps params.Set) (*onnxpb.ModelProto, error) {
	pb := proto.Clone(m.proto).(*onnxpb.ModelProto)
	replaced := 0
	for _, t := range pb.Graph.Initializer {
		v, ok := ps[t.GetName()]
		if !ok {
			if m.released[t.GetName()] {
				setRaw(t, m.Params[t.GetName()].Data)
			}
			continue
		}
		replaced++
		info, isFloat := m.Info(t.GetName())
		if !isFloat {
			return nil, fmt.Errorf("graph: %s: initializer %q is not a float32 parameter", m.Path, t.GetName())
		}
		if !slices.Equal(v.Shape, info.Shape) || len(v.Data) != params.Size(info.Shape) {
			return nil, fmt.Errorf("graph: %s: parameter %q gets shape %v with %d values, the model has %v", m.Path, t.GetName(), v.Shape, len(v.Data), info.Shape)
		}
		setRaw(t, v.Data)
	}
	if replaced < len(ps) {
		// Parameters keyed by other names (another checkpoint's, see AdoptNames) would be lost.
		for name := range ps {
			if _, ok := m.Params[name]; !ok {
				return nil, fmt.Errorf("graph: %s: no float32 initializer %q to write the given parameter into", m.Path, name)
			}
		}
	}
	return pb, nil
}

// Save writes the model with the given parameters to path, atomically (a temporary file in the
// same folder, then a rename), streaming the parameters' bytes from their tensors: it holds no
// copy of them. Initializers that the source file stored as external data are
// written the same way, into a file named after path with the suffix ".data", next to it.
func (m *Model) Save(path string, ps params.Set) error {
	pb, err := m.withParams(ps)
	if err != nil {
		return err
	}
	if len(m.external) > 0 {
		if err := m.externalize(pb, path); err != nil {
			return err
		}
	}
	return WriteAtomic(path, func(w io.Writer) error { return encodeTo(w, pb) })
}

// externalize moves the data of the initializers that were external in the source into
// path+".data", in file order, and points the tensors at it.
func (m *Model) externalize(pb *onnxpb.ModelProto, path string) error {
	location := filepath.Base(path) + ".data"
	var blob [][]byte
	offset := 0
	for _, t := range pb.Graph.Initializer {
		if _, ok := m.external[t.GetName()]; !ok {
			continue
		}
		raw := t.RawData
		if raw == nil { // typed fields: re-encode as little-endian bytes, as ONNX external data is
			raw = make([]byte, 4*len(t.FloatData))
			for i, f := range t.FloatData {
				binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
			}
		}
		blob = append(blob, raw)
		t.RawData, t.FloatData = nil, nil
		t.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
		t.ExternalData = []*onnxpb.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String(location)},
			{Key: proto.String("offset"), Value: proto.String(strconv.Itoa(offset))},
			{Key: proto.String("length"), Value: proto.String(strconv.Itoa(len(raw)))},
		}
		offset += len(raw)
	}
	return WriteAtomic(filepath.Join(filepath.Dir(path), location), func(w io.Writer) error {
		for _, raw := range blob {
			if _, err := w.Write(raw); err != nil {
				return err
			}
		}
		return nil
	})
}

// WriteDelay, when positive, makes WriteFileAtomic wait that long between writing its
// temporary file and renaming it. It is for tests only (ltransfer batch sets it from
// LTRANSFER_TEST_WRITE_DELAY), which widen so the moments in which a kill or a concurrent
// process meets a temporary file; it is zero otherwise.
var WriteDelay time.Duration

// WriteFileAtomic writes data to path through a temporary file in the same folder and a rename,
// so that path holds either its old content or the new one, never a part.
func WriteFileAtomic(path string, data []byte) error {
	return WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteAtomic is WriteFileAtomic for content that write produces, through a buffer, without
// holding it whole.
func WriteAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("graph: %w", err)
	}
	tmp := f.Name()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = write(bw); err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil && WriteDelay > 0 {
		time.Sleep(WriteDelay)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("graph: writing %s: %w", path, err)
	}
	return nil
}
