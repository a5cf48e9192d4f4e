package graph

import (
	"slices"

	"github.com/ltransfer/ltransfer/align"
	"github.com/ltransfer/ltransfer/params"
)

// Summary describes a model for people and programs (`ltransfer inspect`).
type Summary struct {
	Path        string         `json:"path"`
	Opset       int64          `json:"opset"`
	Inputs      []ValueSummary `json:"inputs"`
	Outputs     []ValueSummary `json:"outputs"`
	Ops         map[string]int `json:"ops"`
	Params      []ParamSummary `json:"params"`
	ParamCount  int            `json:"param_count"`
	Unsupported []string       `json:"unsupported,omitempty"`
	// Groups and Unpermuted describe the permutation symmetries (see Symmetries); Dropped lists
	// the groups a verification rejected.
	Groups     []GroupSummary `json:"groups"`
	Unpermuted []Unpermuted   `json:"unpermuted"`
	Dropped    []Dropped      `json:"dropped,omitempty"`
}

// GroupSummary is one permutation group.
type GroupSummary struct {
	Name    string          `json:"name"`
	Size    int             `json:"size"`
	Members []MemberSummary `json:"members"`
}

// MemberSummary is one parameter axis of a group: its positions from Offset, Block positions per
// unit, Repeat copies of the group (see align.Member).
type MemberSummary struct {
	Param  string `json:"param"`
	Axis   int    `json:"axis"`
	Block  int    `json:"block"`
	Offset int    `json:"offset,omitempty"`
	Repeat int    `json:"repeat,omitempty"`
}

// ValueSummary is a graph input or output; symbolic dimensions are -1.
type ValueSummary struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
}

// ParamSummary is one float32 initializer.
type ParamSummary struct {
	Name      string `json:"name"`
	Shape     []int  `json:"shape"`
	Count     int    `json:"count"`
	Role      Role   `json:"role"`
	Trainable bool   `json:"trainable"`
}

// Summarize describes the model: opset, data input and output, operator counts, parameters and
// the total number of trainable values, the operators the engine cannot run, if any, and the
// permutation groups of spec with the unpermuted axes.
func (m *Model) Summarize(spec align.Spec, unpermuted []Unpermuted) Summary {
	s := Summary{
		Path:       m.Path,
		Opset:      m.Opset,
		Inputs:     []ValueSummary{{Name: m.Input.Name, Shape: m.Input.Shape}},
		Outputs:    []ValueSummary{{Name: m.Output.Name, Shape: m.Output.Shape}},
		Ops:        m.OpCounts(),
		ParamCount: m.ParamCount(),
	}
	for _, in := range m.Infos {
		s.Params = append(s.Params, ParamSummary{Name: in.Name, Shape: in.Shape, Count: params.Size(in.Shape), Role: in.Role, Trainable: in.Trainable})
	}
	for op := range s.Ops {
		if !slices.Contains(SupportedOps(), op) {
			s.Unsupported = append(s.Unsupported, op)
		}
	}
	slices.Sort(s.Unsupported)
	for _, g := range spec.Groups {
		gs := GroupSummary{Name: g.Name, Size: g.Size}
		for _, mb := range g.Members {
			gs.Members = append(gs.Members, MemberSummary{Param: mb.Param, Axis: mb.Axis, Block: mb.Block, Offset: mb.Offset, Repeat: max(mb.Repeat, 1)})
		}
		s.Groups = append(s.Groups, gs)
	}
	s.Unpermuted = unpermuted
	return s
}
