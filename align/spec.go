package align

import (
	"errors"
	"fmt"

	"github.com/ltransfer/ltransfer/params"
)

// Member is one axis of one parameter that a group permutes, through an index map of the axis:
// group element i owns the positions
//
//	Offset + (r*Size + i)*Block + b,  for 0 <= r < Repeat and 0 <= b < Block,
//
// and a permutation moves them together. Block is the number of contiguous positions per element
// (1 normally; H*W when a Flatten follows a convolution). Offset is where the member's slice of
// the axis starts (each input of a Concat owns a slice of the output axis). Repeat applies the
// same permutation to consecutive copies of the group (the input channels of a grouped
// convolution: one within-group permutation shared by every convolution group); 0 is read as 1.
// A member covers Repeat*Size*Block positions; the rest of the axis may belong to other groups'
// members or stay unpermuted.
type Member struct {
	Param  string
	Axis   int
	Block  int
	Offset int
	Repeat int
}

// copies returns the member's Repeat, reading 0 as 1.
func (m Member) copies() int { return max(m.Repeat, 1) }

// Group is one permutation group (a hidden-unit axis shared by several parameters).
type Group struct {
	Name    string
	Size    int
	Members []Member
}

// Spec lists the groups of a model.
type Spec struct {
	Groups []Group
}

// groupLabel names group gi of s in error messages.
func (s Spec) groupLabel(gi int) string {
	return fmt.Sprintf("group %d (%q)", gi, s.Groups[gi].Name)
}

// Validate checks the spec against a parameter set: every group has Size >= 1; every member
// names an existing, well-formed parameter (len(Data) == product of Shape); the member's axis is
// in range; Block >= 1, Offset >= 0 and Repeat >= 0; the member's positions lie inside the axis
// (Offset + Repeat*Size*Block <= its length); and no two members (of one group or two) own
// overlapping positions of one axis. Parameters not named by the spec are ignored.
func (s Spec) Validate(p params.Set) error {
	if err := s.validate(p); err != nil {
		return fmt.Errorf("align: spec: %w", err)
	}
	return nil
}

// validate is Validate without the package prefix.
func (s Spec) validate(p params.Set) error {
	return s.validateShapes(func(name string) ([]int, error) {
		t, ok := p[name]
		if !ok || t == nil {
			return nil, errNoParam
		}
		if err := t.Check(); err != nil {
			return nil, err
		}
		return t.Shape, nil
	})
}

// errNoParam is what a shape lookup returns for a parameter it does not hold.
var errNoParam = errors.New("no such parameter")

// validateShapes is validate on the shapes that shape returns for each parameter name (or the
// error that makes the parameter unusable).
func (s Spec) validateShapes(shape func(name string) ([]int, error)) error {
	type axisKey struct {
		param string
		axis  int
	}
	type owned struct{ group, from, to int }
	owners := make(map[axisKey][]owned)
	for gi, g := range s.Groups {
		if g.Size < 1 {
			return fmt.Errorf("%s: size %d, want >= 1", s.groupLabel(gi), g.Size)
		}
		for mi, m := range g.Members {
			where := fmt.Sprintf("%s: member %d (param %q, axis %d)", s.groupLabel(gi), mi, m.Param, m.Axis)
			dims, err := shape(m.Param)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			if m.Axis < 0 || m.Axis >= len(dims) {
				return fmt.Errorf("%s: axis out of range for shape %v", where, dims)
			}
			if m.Block < 1 || m.Offset < 0 || m.Repeat < 0 {
				return fmt.Errorf("%s: block %d, offset %d, repeat %d, want block >= 1, offset >= 0, repeat >= 0", where, m.Block, m.Offset, m.Repeat)
			}
			// dims[m.Axis] bounds every factor, so the products cannot overflow once checked in turn.
			span := g.Size
			for _, f := range []int{m.Block, m.copies()} {
				if span > dims[m.Axis]/f {
					return fmt.Errorf("%s: axis length %d < size %d * block %d * repeat %d", where, dims[m.Axis], g.Size, m.Block, m.copies())
				}
				span *= f
			}
			if m.Offset > dims[m.Axis]-span {
				return fmt.Errorf("%s: offset %d + size %d * block %d * repeat %d exceeds axis length %d", where, m.Offset, g.Size, m.Block, m.copies(), dims[m.Axis])
			}
			k := axisKey{m.Param, m.Axis}
			for _, o := range owners[k] {
				if m.Offset < o.to && o.from < m.Offset+span {
					return fmt.Errorf("%s: positions %d..%d already permuted by %s", where, m.Offset, m.Offset+span-1, s.groupLabel(o.group))
				}
			}
			owners[k] = append(owners[k], owned{gi, m.Offset, m.Offset + span})
		}
	}
	return nil
}

// strides returns the row-major element strides of shape.
func strides(shape []int) []int {
	st := make([]int, len(shape))
	s := 1
	for d := len(shape) - 1; d >= 0; d-- {
		st[d] = s
		s *= shape[d]
	}
	return st
}

// gather fills dst with src elements in the row-major order of the axes in tabs: tabs[k][x] is
// the source offset contributed by position x of the k-th axis, and the element at positions
// (x_0, ..., x_{r-1}) is src[base + sum_k tabs[k][x_k]]. len(dst) must equal the product of the
// table lengths (1 for no tables).
func gather(dst, src []float32, base int, tabs [][]int) {
	outer, run := runs(tabs)
	gatherRuns(dst, src, base, outer, run)
}

// runs splits gather tables into the outer tables and the length of the runs of consecutive
// source elements that the trailing tables address: the longest suffix of tables whose position
// x adds x times the product of the lengths of the tables after it (an unpermuted, contiguous
// tail such as a convolution's kernel axes) is copied as one run, not element by element.
func runs(tabs [][]int) ([][]int, int) {
	run := 1
	for d := len(tabs) - 1; d >= 0; d-- {
		for x, o := range tabs[d] {
			if o != x*run {
				return tabs[:d+1], run
			}
		}
		run *= len(tabs[d])
	}
	return nil, run
}

// gatherRuns is gather on the outer tables and run length returned by runs.
func gatherRuns(dst, src []float32, base int, tabs [][]int, run int) {
	if len(dst) == 0 {
		return
	}
	switch len(tabs) {
	case 0:
		copy(dst[:run], src[base:base+run])
	case 1:
		for x, o := range tabs[0] {
			copy(dst[x*run:x*run+run], src[base+o:base+o+run])
		}
	default:
		inner := len(dst) / len(tabs[0])
		for x, o := range tabs[0] {
			gatherRuns(dst[x*inner:(x+1)*inner], src, base+o, tabs[1:], run)
		}
	}
}
