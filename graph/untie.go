package graph

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
	"github.com/ltransfer/ltransfer/params"
)

// untie gives every float32 initializer exactly one reader, so that a parameter is one tensor
// of one layer in every checkpoint of a run.
//
// torch.onnx.export deduplicates initializers with equal values. At initialization many fused
// Conv biases are all zero, and the exported file then holds one of them, read by its own Conv
// and, through Identity nodes, by the others; the trained checkpoint of the same run holds a
// separate tensor for each. Such a file is rewritten as the trained one is: an Identity whose
// input is a float32 initializer is removed and its output becomes an initializer of its own,
// and an initializer read at several node inputs gets one copy per input.
//
// Names: a reader through an Identity gets the Identity's output name, which is the name
// torch.onnx.export gives that tensor when it is not deduplicated; the first direct reader keeps
// the initializer's name; further readers get the name NAME@NODE:INPUT (initializer, reading
// node, input position), made unique if needed. An initializer left with no reader is dropped.
//
// Genuinely tied weights (one tensor that a layer reuses) are untied the same way: every
// checkpoint of a run unties them alike, the written files hold the copies separately, and the
// transfer may permute them differently. The files compute what the tied model computes, but
// training one of them updates the copies independently.
//
// A graph output that is an initializer, or an Identity of one, is left as it is.
func (m *Model) untie() {
	g := m.proto.Graph
	outputs := map[string]bool{}
	for _, o := range g.Output {
		outputs[o.GetName()] = true
	}
	// alias maps the output of a removable Identity to the initializer it reads.
	alias := map[string]string{}
	keep := make([]bool, len(m.Nodes))
	for i, n := range m.Nodes {
		keep[i] = true
		if n.Op != "Identity" || len(n.Inputs) != 1 || len(n.Outputs) != 1 || outputs[n.Outputs[0]] {
			continue
		}
		src := n.Inputs[0]
		if a, ok := alias[src]; ok {
			src = a
		}
		if _, ok := m.Params[src]; ok {
			alias[n.Outputs[0]] = src
			keep[i] = false
		}
	}
	// A reader is one node input that reads an initializer, directly or through aliases.
	type reader struct {
		node, input int
		via         string // the name read: the initializer or an alias of it
	}
	readers := map[string][]reader{}
	for i, n := range m.Nodes {
		if !keep[i] {
			continue
		}
		for k, name := range n.Inputs {
			src := name
			if a, ok := alias[name]; ok {
				src = a
			}
			if _, ok := m.Params[src]; ok {
				readers[src] = append(readers[src], reader{i, k, name})
			}
		}
	}
	shared := false
	for _, rs := range readers {
		shared = shared || len(rs) > 1
	}
	if len(alias) == 0 && !shared {
		return
	}

	used := m.names() // no new name may clash with one
	// Names of removed Identity outputs become free for the initializers that replace them.
	for a := range alias {
		delete(used, a)
	}

	inputs := map[string]*onnxpb.ValueInfoProto{} // initializers listed as graph inputs (IR < 4)
	for _, v := range g.Input {
		inputs[v.GetName()] = v
	}
	// copies maps an initializer to the names of its copies, in reader order.
	copies := map[string][]string{}
	for src, rs := range readers {
		if len(rs) == 1 && rs[0].via == src {
			used[src] = true
			continue
		}
		kept := outputs[src] // a graph output keeps the initializer under its own name
		for _, r := range rs {
			n := m.Nodes[r.node]
			name := r.via
			if name == src && !kept {
				kept = true
			} else if name == src || used[name] {
				name = unique(fmt.Sprintf("%s@%s:%d", src, n.Name, r.input), used)
			}
			used[name] = true
			n.Inputs[r.input] = name
			g.Node[r.node].Input[r.input] = name
			if name != src {
				copies[src] = append(copies[src], name)
			}
		}
		if !kept {
			copies[src] = append(copies[src], "") // marks the original for removal
		}
	}

	var nodes []*Node
	var protoNodes []*onnxpb.NodeProto
	for i, n := range m.Nodes {
		if keep[i] {
			nodes = append(nodes, n)
			protoNodes = append(protoNodes, g.Node[i])
		}
	}
	m.Nodes, g.Node = nodes, protoNodes

	var infos []ParamInfo
	var inits []*onnxpb.TensorProto
	var graphInputs []*onnxpb.ValueInfoProto
	for _, v := range g.Input {
		if _, ok := copies[v.GetName()]; !ok {
			graphInputs = append(graphInputs, v)
		}
	}
	infoOf := map[string]ParamInfo{}
	for _, in := range m.Infos {
		infoOf[in.Name] = in
	}
	for _, t := range g.Initializer {
		src := t.GetName()
		names, ok := copies[src]
		if !ok {
			inits = append(inits, t)
			if in, isFloat := infoOf[src]; isFloat {
				infos = append(infos, in)
			}
			continue
		}
		orig := m.Params[src]
		if names[len(names)-1] == "" {
			names = names[:len(names)-1]
			delete(m.Params, src)
			delete(m.released, src)
			delete(m.external, src)
		} else {
			inits = append(inits, t)
			infos = append(infos, infoOf[src])
			if v, listed := inputs[src]; listed {
				graphInputs = append(graphInputs, v)
			}
		}
		for _, name := range names {
			data := orig.Data
			if _, still := m.Params[src]; still || name != names[0] {
				data = slices.Clone(orig.Data)
			}
			m.Params[name] = &params.Tensor{Shape: orig.Shape, Data: data}
			infos = append(infos, ParamInfo{Name: name, Shape: orig.Shape})
			// The bytes are written back from Params, as for every decoded float32 initializer.
			inits = append(inits, &onnxpb.TensorProto{Name: proto.String(name), Dims: t.Dims, DataType: t.DataType})
			m.released[name] = true
			if ref, ok := m.external[src]; ok {
				m.external[name] = ref
			}
			if v, listed := inputs[src]; listed {
				c := proto.Clone(v).(*onnxpb.ValueInfoProto)
				c.Name = proto.String(name)
				graphInputs = append(graphInputs, c)
			}
		}
	}
	m.Infos, g.Initializer, g.Input = infos, inits, graphInputs
	// A value_info entry for a removed Identity's output would now describe an initializer.
	g.ValueInfo = slices.DeleteFunc(g.ValueInfo, func(v *onnxpb.ValueInfoProto) bool {
		_, removed := alias[v.GetName()]
		return removed
	})
}

// names returns every name the graph uses: node inputs and outputs, graph inputs and outputs,
// initializers.
func (m *Model) names() map[string]bool {
	g := m.proto.Graph
	used := map[string]bool{}
	for _, n := range m.Nodes {
		for _, s := range slices.Concat(n.Inputs, n.Outputs) {
			used[s] = true
		}
	}
	for _, v := range slices.Concat(g.Input, g.Output) {
		used[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		used[t.GetName()] = true
	}
	return used
}

// unique returns name, or name with the smallest suffix "#2", "#3", ... that used does not hold.
func unique(name string, used map[string]bool) string {
	if !used[name] {
		return name
	}
	for i := 2; ; i++ {
		if s := fmt.Sprintf("%s#%d", name, i); !used[s] {
			return s
		}
	}
}
