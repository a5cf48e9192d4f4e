package graph

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/ltransfer/ltransfer/graph/internal/onnxpb"
)

// InferenceCopy returns a copy of m whose BatchNormalization nodes run in inference mode:
// training_mode is cleared and the running-statistics outputs (unread by the graph) are dropped.
// PyTorch exports that keep BatchNorm (training=TrainingMode.TRAINING) mark its nodes
// training_mode=1, and an ONNX runtime then normalises with the statistics of whatever batch it is
// given; the copy's saved files evaluate with the running statistics everywhere, as ltransfer
// evaluates them. A model without training-mode BatchNorm comes back unchanged (the same
// pointer). The copy shares m's parameters; nothing is decoded again.
func (m *Model) InferenceCopy() (*Model, error) {
	pb := proto.Clone(m.proto).(*onnxpb.ModelProto)
	nodes := slices.Clone(m.Nodes)
	changed := false
	for i, n := range pb.Graph.Node {
		if n.GetOpType() != "BatchNormalization" {
			continue
		}
		kept := n.Attribute[:0]
		for _, a := range n.Attribute {
			if a.GetName() == "training_mode" {
				changed = changed || a.GetI() != 0
				continue
			}
			kept = append(kept, a)
		}
		n.Attribute = kept
		for _, out := range n.Output[min(1, len(n.Output)):] {
			if out != "" && m.isRead(out) {
				return nil, fmt.Errorf("graph: %s: %w", m.Path, nodeError(m.Nodes[i], fmt.Errorf("its running statistics output %q is read", out)))
			}
		}
		if len(n.Output) > 1 {
			n.Output, changed = n.Output[:1], true
		}
		// The decoded node, likewise (graph.Node keeps the attribute; the engine's BatchNorm
		// mode comes from the program, not from it).
		c := *m.Nodes[i]
		c.Attrs = maps.Clone(c.Attrs)
		delete(c.Attrs, "training_mode")
		c.Outputs = slices.Clone(n.Output)
		nodes[i] = &c
	}
	if !changed {
		return m, nil
	}
	c := *m
	c.proto, c.Nodes = pb, nodes
	return &c, nil
}
