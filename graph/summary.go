package graph

import "slices"

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
// the total number of trainable values, and the operators the engine cannot run, if any.
func (m *Model) Summarize() Summary {
	s := Summary{
		Path:       m.Path,
		Opset:      m.Opset,
		Inputs:     []ValueSummary{{Name: m.Input.Name, Shape: m.Input.Shape}},
		Outputs:    []ValueSummary{{Name: m.Output.Name, Shape: m.Output.Shape}},
		Ops:        m.OpCounts(),
		ParamCount: m.ParamCount(),
	}
	for _, in := range m.Infos {
		s.Params = append(s.Params, ParamSummary{Name: in.Name, Shape: in.Shape, Count: prod(in.Shape), Role: in.Role, Trainable: in.Trainable})
	}
	for op := range s.Ops {
		if !slices.Contains(SupportedOps(), op) {
			s.Unsupported = append(s.Unsupported, op)
		}
	}
	slices.Sort(s.Unsupported)
	return s
}
