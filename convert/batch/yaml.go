package batch

import (
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// decodeYAML decodes a YAML manifest into JSON-like values (maps with string keys, slices,
// strings, numbers, booleans, nil) and returns the line of every job. Timestamps stay strings,
// and merge keys (<<) are applied.
func decodeYAML(data []byte) (map[string]any, []int, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, err
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, nil, errors.New("want a YAML mapping with defaults and jobs")
	}
	top := root.Content[0]
	budget := max(maxAliasValues, aliasRatio*countNodes(top))
	v, err := (&yamlWalk{limit: budget, open: map[*yaml.Node]bool{}}).value(top)
	if err != nil {
		return nil, nil, err
	}
	var lines []int
	for i := 0; i+1 < len(top.Content); i += 2 {
		if jobs := resolveAlias(top.Content[i+1]); top.Content[i].Value == "jobs" && jobs.Kind == yaml.SequenceNode {
			for _, n := range jobs.Content {
				lines = append(lines, n.Line)
			}
		}
	}
	return v.(map[string]any), lines, nil
}

// resolveAlias returns the node an alias stands for.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// countNodes returns the number of nodes written out in a YAML document: an alias counts as
// one, not as the nodes it stands for.
func countNodes(n *yaml.Node) int {
	count := 1
	for _, c := range n.Content {
		count += countNodes(c)
	}
	return count
}

// yamlWalk converts YAML nodes into JSON-like values.
type yamlWalk struct {
	// added is the number of values that aliases added so far, limit the most allowed.
	added, limit int
	// aliases is the number of aliases being expanded around the node converted.
	aliases int
	// open holds the nodes being converted: an alias to one of them would never end.
	open map[*yaml.Node]bool
}

// value converts a YAML node into a JSON-like value.
func (w *yamlWalk) value(n *yaml.Node) (any, error) {
	if n.Kind == yaml.AliasNode {
		w.aliases++
		defer func() { w.aliases-- }()
	}
	n = resolveAlias(n)
	if w.aliases > 0 {
		if w.added++; w.added > w.limit {
			return nil, fmt.Errorf("%w: the manifest expands to more than %d values through its aliases (aliases of aliases?)", errTooLarge, w.limit)
		}
	}
	if w.open[n] { // only an alias can lead back to a node being converted
		return nil, fmt.Errorf("line %d: an alias refers to a node that contains it", n.Line)
	}
	w.open[n] = true
	defer delete(w.open, n)
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		var merged []map[string]any
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, vn := resolveAlias(n.Content[i]), n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a mapping key must be a string", k.Line)
			}
			v, err := w.value(vn)
			if err != nil {
				return nil, err
			}
			if k.Tag == "!!merge" {
				switch v := v.(type) {
				case map[string]any:
					merged = append(merged, v)
				case []any:
					for _, e := range v {
						em, ok := e.(map[string]any)
						if !ok {
							return nil, fmt.Errorf("line %d: a merge key wants mappings", k.Line)
						}
						merged = append(merged, em)
					}
				default:
					return nil, fmt.Errorf("line %d: a merge key wants a mapping", k.Line)
				}
				continue
			}
			if _, ok := m[k.Value]; ok {
				return nil, fmt.Errorf("line %d: %q is given twice", k.Line, k.Value)
			}
			m[k.Value] = v
		}
		for _, mm := range merged {
			for k, v := range mm {
				if _, ok := m[k]; !ok {
					m[k] = v
				}
			}
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			v, err := w.value(e)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	case yaml.ScalarNode:
		if n.Tag == "!!timestamp" {
			return n.Value, nil
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return v, nil
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
}
