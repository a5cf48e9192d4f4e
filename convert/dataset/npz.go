package dataset

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/ltransfer/ltransfer/params"
)

// The dtypes accepted for the arrays of an npz file, with their item sizes.
var (
	xDtypes = dtypes{"<f4": 4, "<f8": 8, "|u1": 1}
	yDtypes = dtypes{"<i8": 8, "<i4": 4, "|u1": 1}
)

// dtypes maps NumPy type descriptors to their item sizes.
type dtypes map[string]int

// String lists the descriptors in order, as in "'<f4', '<f8' or '|u1'".
func (d dtypes) String() string {
	var s []string
	for k := range d {
		s = append(s, "'"+k+"'")
	}
	slices.Sort(s)
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// loadNPZ reads the npz file path.
func loadNPZ(path string) (*memSource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dataset: npz: %w", err)
	}
	return parseNPZ(path, data)
}

// parseNPZ decodes data, the content of the npz file name: a zip archive
// holding x.npy (float32, float64 or uint8 examples, N×… with at least one
// axis after N) and y.npy (int64, int32 or uint8 labels, N or N×1).
func parseNPZ(name string, data []byte) (*memSource, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("dataset: %s: not an npz (zip) file: %w", name, err)
	}
	x, err := readNPZArray(name, zr, "x", xDtypes)
	if err != nil {
		return nil, err
	}
	y, err := readNPZArray(name, zr, "y", yDtypes)
	if err != nil {
		return nil, err
	}
	if len(x.shape) < 2 {
		return nil, fmt.Errorf("dataset: %s: x.npy has shape %v, want N×C×H×W or N×D", name, x.shape)
	}
	if len(y.shape) != 1 && !(len(y.shape) == 2 && y.shape[1] == 1) {
		return nil, fmt.Errorf("dataset: %s: y.npy has shape %v, want N or N×1", name, y.shape)
	}
	if x.shape[0] != y.shape[0] {
		return nil, fmt.Errorf("dataset: %s: x.npy holds %d examples but y.npy holds %d labels", name, x.shape[0], y.shape[0])
	}
	labels := make([]int64, y.shape[0])
	for i := range labels {
		switch y.descr {
		case "<i8":
			labels[i] = int64(binary.LittleEndian.Uint64(y.data[8*i:]))
		case "<i4":
			labels[i] = int64(int32(binary.LittleEndian.Uint32(y.data[4*i:])))
		case "|u1":
			labels[i] = int64(y.data[i])
		}
		if labels[i] < 0 {
			return nil, fmt.Errorf("dataset: %s: y.npy: label %d of example %d is negative", name, labels[i], i)
		}
	}
	var u8 []byte
	var f32 []float32
	switch x.descr {
	case "|u1":
		u8 = x.data
	case "<f4":
		f32 = make([]float32, len(x.data)/4)
		for i := range f32 {
			f32[i] = math.Float32frombits(binary.LittleEndian.Uint32(x.data[4*i:]))
		}
	case "<f8":
		f32 = make([]float32, len(x.data)/8)
		for i := range f32 {
			f32[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(x.data[8*i:])))
		}
	}
	return newMemSource(name, x.shape[1:], u8, f32, labels)
}

// npyArray is a decoded .npy array: its descriptor, shape and raw
// little-endian C-order data.
type npyArray struct {
	descr string
	shape []int
	data  []byte
}

// readNPZArray reads the array key (the member key.npy) of the npz file
// name, whose descriptor must be one of allowed.
func readNPZArray(name string, zr *zip.Reader, key string, allowed dtypes) (npyArray, error) {
	member := key + ".npy"
	for _, f := range zr.File {
		if f.Name != member {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return npyArray{}, fmt.Errorf("dataset: %s: %s: %w", name, member, err)
		}
		defer rc.Close()
		return readNPY(name+": "+member, rc, allowed)
	}
	return npyArray{}, fmt.Errorf("dataset: %s: npz has no array %q (member %s)", name, key, member)
}

// npyMagic starts every .npy file.
const npyMagic = "\x93NUMPY"

// readNPY decodes a .npy stream (format version 1, 2 or 3) whose descriptor
// must be one of allowed. name appears in errors.
func readNPY(name string, r io.Reader, allowed dtypes) (npyArray, error) {
	var pre [len(npyMagic) + 2]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return npyArray{}, fmt.Errorf("dataset: %s: .npy preamble: %w", name, err)
	}
	if string(pre[:len(npyMagic)]) != npyMagic {
		return npyArray{}, fmt.Errorf("dataset: %s: bad .npy magic %q, want %q", name, pre[:len(npyMagic)], npyMagic)
	}
	major, minor := pre[len(npyMagic)], pre[len(npyMagic)+1]
	var lenBytes []byte
	switch major {
	case 1:
		lenBytes = make([]byte, 2)
	case 2, 3:
		lenBytes = make([]byte, 4)
	default:
		return npyArray{}, fmt.Errorf("dataset: %s: .npy format version %d.%d, want 1.0, 2.0 or 3.0", name, major, minor)
	}
	if _, err := io.ReadFull(r, lenBytes); err != nil {
		return npyArray{}, fmt.Errorf("dataset: %s: .npy header length: %w", name, err)
	}
	var hlen int
	for i, b := range lenBytes {
		hlen |= int(b) << (8 * i)
	}
	header, err := readUpTo(r, hlen)
	if err != nil {
		return npyArray{}, fmt.Errorf("dataset: %s: .npy header: %w", name, err)
	}
	if len(header) != hlen {
		return npyArray{}, fmt.Errorf("dataset: %s: .npy header of %d bytes truncated at %d", name, hlen, len(header))
	}
	h, err := parseNPYHeader(string(header))
	if err != nil {
		return npyArray{}, fmt.Errorf("dataset: %s: %w", name, err)
	}
	if h.fortran {
		return npyArray{}, fmt.Errorf("dataset: %s: array is in Fortran order; save it in C order (numpy.ascontiguousarray)", name)
	}
	itemSize, ok := allowed[h.descr]
	if !ok {
		return npyArray{}, fmt.Errorf("dataset: %s: unsupported dtype %q, want %v", name, h.descr, allowed)
	}
	count, ok := params.Volume(h.shape, maxValues)
	if !ok {
		return npyArray{}, fmt.Errorf("dataset: %s: shape %v is too large", name, h.shape)
	}
	size := count * itemSize
	data, err := readUpTo(r, size+1)
	if err != nil {
		return npyArray{}, fmt.Errorf("dataset: %s: .npy data: %w", name, err)
	}
	if len(data) != size {
		return npyArray{}, fmt.Errorf("dataset: %s: shape %v of %s declares %d data bytes, file has %d", name, h.shape, h.descr, size, len(data))
	}
	return npyArray{descr: h.descr, shape: h.shape, data: data}, nil
}

// npyHeader is the content of a .npy header.
type npyHeader struct {
	descr   string
	fortran bool
	shape   []int
}

// errHeader marks malformed .npy headers.
var errHeader = errors.New("malformed .npy header")

// parseNPYHeader parses the Python dict literal of a .npy header, such as
// "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", padded with
// spaces and a newline.
func parseNPYHeader(s string) (npyHeader, error) {
	p := pyParser{s: s}
	var h npyHeader
	seen := map[string]bool{}
	if !p.eat('{') {
		return h, p.fail("want '{'")
	}
	for !p.eat('}') {
		key, err := p.str()
		if err != nil {
			return h, err
		}
		if seen[key] {
			return h, p.fail("key " + strconv.Quote(key) + " repeated")
		}
		seen[key] = true
		if !p.eat(':') {
			return h, p.fail("want ':'")
		}
		switch key {
		case "descr":
			h.descr, err = p.str()
		case "fortran_order":
			h.fortran, err = p.boolean()
		case "shape":
			h.shape, err = p.tuple()
		default:
			return h, p.fail("unknown key " + strconv.Quote(key))
		}
		if err != nil {
			return h, err
		}
		if !p.eat(',') && !p.peek('}') {
			return h, p.fail("want ',' or '}'")
		}
	}
	if p.skipSpace(); p.i != len(p.s) {
		return h, p.fail("trailing text")
	}
	if len(seen) != 3 {
		return h, fmt.Errorf("%w: want keys descr, fortran_order and shape", errHeader)
	}
	return h, nil
}

// pyParser scans the Python literals of .npy headers. Its methods skip
// leading white space.
type pyParser struct {
	s string
	i int
}

// fail returns an error for the current position.
func (p *pyParser) fail(msg string) error {
	return fmt.Errorf("%w: %s at offset %d", errHeader, msg, p.i)
}

// skipSpace advances past white space.
func (p *pyParser) skipSpace() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

// peek reports whether the next character is c.
func (p *pyParser) peek(c byte) bool {
	p.skipSpace()
	return p.i < len(p.s) && p.s[p.i] == c
}

// eat consumes the next character if it is c.
func (p *pyParser) eat(c byte) bool {
	if !p.peek(c) {
		return false
	}
	p.i++
	return true
}

// str parses a quoted string without escapes.
func (p *pyParser) str() (string, error) {
	if !p.peek('\'') && !p.peek('"') {
		return "", p.fail("want a string")
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", p.fail("unterminated string")
	}
	v := p.s[p.i+1 : p.i+1+end]
	if strings.IndexByte(v, '\\') >= 0 {
		return "", p.fail("escapes in strings are not supported")
	}
	p.i += end + 2
	return v, nil
}

// boolean parses True or False.
func (p *pyParser) boolean() (bool, error) {
	p.skipSpace()
	for _, lit := range []string{"True", "False"} {
		if strings.HasPrefix(p.s[p.i:], lit) {
			p.i += len(lit)
			return lit == "True", nil
		}
	}
	return false, p.fail("want True or False")
}

// tuple parses a tuple of non-negative integers such as (), (3,) or
// (2, 3); integers may carry Python 2's L suffix.
func (p *pyParser) tuple() ([]int, error) {
	if !p.eat('(') {
		return nil, p.fail("want '('")
	}
	dims := []int{}
	for !p.eat(')') {
		start := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		d, err := strconv.Atoi(p.s[start:p.i])
		if err != nil {
			p.i = start
			return nil, p.fail("want a dimension (a non-negative int)")
		}
		if p.i < len(p.s) && p.s[p.i] == 'L' {
			p.i++
		}
		dims = append(dims, d)
		if !p.eat(',') && !p.peek(')') {
			return nil, p.fail("want ',' or ')'")
		}
	}
	return dims, nil
}
